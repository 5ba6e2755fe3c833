"""Run logging: a JSONL metrics file, TensorBoard events and a progress bar (rank 0 only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..fsutil import atomic_file

METRICS_FILE = "metrics.jsonl"


def truncate_metrics(path: Path, after_step: int) -> None:
    """Drop records of steps > ``after_step``: a resumed run redoes them, and must not log them twice."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= after_step]
    with atomic_file(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept))


class RunLogger:
    """Writes one JSON object per logged step to ``metrics.jsonl`` and the same scalars to TensorBoard.

    Steps count completed optimiser steps. Disabled (every method a no-op) on ranks other than 0.
    ``start_step`` > 0 means a run resumed from the checkpoint of that step: later records are
    dropped first (the run redoes those steps), and TensorBoard purges them too.
    """

    def __init__(self, out_dir: str | Path, enabled: bool = True, tensorboard: bool = True, start_step: int = 0):
        self.enabled = enabled
        self.path = Path(out_dir) / METRICS_FILE
        self.writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        truncate_metrics(self.path, start_step)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # slow import, only when used

            self.writer = SummaryWriter(str(Path(out_dir) / "tb"), purge_step=start_step + 1 if start_step else None)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Record ``metrics`` (numbers) at ``step``."""
        if not self.enabled:
            return
        with self.path.open("a") as fh:
            fh.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def progress_bar(disable: bool) -> Progress:
    """A rich progress bar over optimiser steps, written to stderr."""
    columns = (
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=Console(stderr=True), disable=disable)
