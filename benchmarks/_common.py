"""What the benchmarks share: the machine's description, interleaved timing, and the figures file.

DESIGN §8: on a shared machine absolute times drift, so every result is a ratio measured in one run.
:func:`interleaved_ms` times the variants being compared round-robin (A B C, C A B, ...), so a burst of
load from another process slows all of them alike instead of one, and reports the median; with one
torch thread it reads the process's CPU time (:func:`clock`), which other processes do not inflate.

A benchmark that takes ``--json PATH`` writes its figures there as a list of :class:`Figure` dicts;
``run_all.py`` collects them into one table.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch


@dataclass
class Figure:
    """One measured figure: ``value`` in ``unit``; ``target`` like ``"<= 1.4"`` or ``""`` (no target)."""

    name: str
    value: float
    unit: str = ""
    target: str = ""
    note: str = ""

    @property
    def passed(self) -> bool | None:
        """True/False against the target; None when there is none (or the value is not finite)."""
        return meets(self.value, self.target)

    def as_dict(self) -> dict:
        """JSON-ready: a NaN value becomes null."""
        value = self.value if self.value == self.value else None
        return {**asdict(self), "value": value, "pass": self.passed}

    @classmethod
    def from_dict(cls, d: dict) -> Figure:
        value = d.get("value")
        return cls(d["name"], float("nan") if value is None else float(value), d.get("unit", ""),
                   d.get("target", ""), d.get("note", ""))  # fmt: skip


def meets(value: float, target: str) -> bool | None:
    """``value`` against ``"<= x"`` / ``">= x"``; None without a target or for a NaN."""
    if not target or value != value:
        return None
    op, _, bound = target.partition(" ")
    if op == "<=":
        return value <= float(bound)
    if op == ">=":
        return value >= float(bound)
    raise ValueError(f"target must be '<= x' or '>= x', not {target!r}")


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict[str, str]:
    """CPU model, cores, torch version and threads, accelerator, load: the header of every result."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu only"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return {
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "torch": torch.__version__,
        "torch_threads": str(torch.get_num_threads()),
        "device": device,
        "python": platform.python_version(),
        "load_average": load,
        "clock": clock()[0],
    }


def hardware_line() -> str:
    h = hardware()
    return (
        f"machine: {h['cpu']}, {h['cores']} cores, torch {h['torch']} ({h['torch_threads']} threads), "
        f"device {h['device']}, load {h['load_average']}; clock: {clock()[0]}"
    )


def clock() -> tuple[str, Callable[[], float]]:
    """The clock timings use: this process's CPU time when torch runs one thread, else wall time.

    With one thread, a step's CPU time equals its wall time on an idle machine, and it does not count the
    time the scheduler gives other processes: on a shared machine it is the far steadier measure.
    With several threads CPU time adds theirs up (and counts spin-waits), so wall time is used.
    """
    if torch.get_num_threads() == 1:
        return "process CPU time (1 thread)", time.process_time
    return "wall time", time.perf_counter


def interleaved(
    fns: dict[str, Callable[[], object]], reps: int, inner: int = 1, warmup: int = 1
) -> dict[str, list[float]]:
    """Milliseconds per call of each function in every round, timed round-robin.

    Each function runs ``warmup`` times first; then ``reps`` rounds, each timing ``inner`` calls of every
    function in turn, in a shuffled (seeded) order. Returns ``{name: [ms per call in round r]}``.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    now = clock()[1]
    times: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns)
    shuffle = random.Random(0).shuffle
    for _ in range(reps):
        shuffle(order)  # a fresh order each round: no variant always runs right after the same one
        for name in order:
            fn = fns[name]
            start = now()
            for _ in range(inner):
                fn()
            times[name].append((now() - start) * 1000.0 / inner)
    return times


def interleaved_ms(
    fns: dict[str, Callable[[], object]], reps: int, inner: int = 1, warmup: int = 1
) -> dict[str, float]:
    """Median milliseconds per call of each function (see :func:`interleaved`)."""
    return {k: statistics.median(v) for k, v in interleaved(fns, reps, inner, warmup).items()}


def paired_ratio(times: dict[str, list[float]], name: str, base: str) -> float:
    """Median over rounds of ``name``'s time over ``base``'s in the same round.

    Each round's two times were taken seconds apart, so a change of load between rounds cancels out in
    the pair; the median of the per-round ratios is steadier than the ratio of the two medians.
    """
    return statistics.median(a / b for a, b in zip(times[name], times[base], strict=True))


def write_figures(path: str | Path | None, bench: str, figures: list[Figure]) -> None:
    """Write ``figures`` as JSON (``{"bench", "hardware", "figures": [...]}``) when ``path`` is given."""
    if path is None:
        return
    payload = {"bench": bench, "hardware": hardware(), "figures": [f.as_dict() for f in figures]}
    Path(path).write_text(json.dumps(payload, indent=1))


def verdict(passed: bool | None) -> str:
    return "-" if passed is None else ("pass" if passed else "FAIL")
