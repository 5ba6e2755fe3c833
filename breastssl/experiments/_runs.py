"""Training runs of an experiment as a small dependency graph, executed by N worker processes.

Each run is one ``breastssl train -c CONFIG`` in its own process (its own log, its own thread count), so
an experiment on a 16-core box or a multi-GPU node can train several models at once, and a killed
experiment picks up where it stopped: a run with ``metrics.json`` is skipped, an unfinished one resumes
from its newest checkpoint (the engine's exact resume). The configs are resolved and validated in the
parent before anything starts, so a typo fails in a second, not after the teacher has trained.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError


@dataclass
class RunSpec:
    """One training run: a name, its resolved config (a RunConfig) and the names of the runs it needs."""

    name: str
    cfg: Any
    needs: list[str] = field(default_factory=list)

    @property
    def out_dir(self) -> Path:
        return Path(self.cfg.train.out_dir)

    @property
    def done(self) -> bool:
        return (self.out_dir / "metrics.json").is_file()


def build_run_config(base: str | Path, overrides: Sequence[str]) -> Any:
    """A run config (any family, typed by its strategy) from a YAML recipe plus ``a.b=v`` overrides, validated now."""
    from ..run.config import load_run_config

    return load_run_config(base, list(overrides))


def spec_from_mapping(name: str, mapping: dict[str, Any], experiment: str, needs: Sequence[str] = ()) -> RunSpec:
    """A RunSpec of a run-config mapping (typed by its ``strategy.name``), validated now."""
    from ..config import build_config
    from ..run.config import config_class

    cls = config_class(mapping["strategy"]["name"])
    return RunSpec(name, build_config(cls, mapping, f"experiment {experiment}, run {name}"), list(needs))


def _launch(spec: RunSpec, config_dir: Path, threads: int, device: str | None) -> None:
    """Run one spec in a child process; raise with the tail of its log if it fails."""
    from ..config import save_config

    config_path = config_dir / f"{spec.name.replace('/', '_')}.yaml"
    save_config(spec.cfg, config_path)
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    log = spec.out_dir / "train.log"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if device is not None:  # one GPU per worker slot: CUDA_VISIBLE_DEVICES set by the scheduler
        env["CUDA_VISIBLE_DEVICES"] = device
    cmd = [sys.executable, "-m", "breastssl.cli", "train", "-c", str(config_path)]
    with log.open("a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        code = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    if code != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise UserError(f"run {spec.name} failed (exit {code}); its log {log} ends with:\n{tail}")


def execute(
    specs: Sequence[RunSpec],
    config_dir: Path,
    jobs: int = 1,
    threads: int = 1,
    devices: Sequence[str] = (),
    echo: Callable[[str], None] = print,
) -> None:
    """Run every spec whose ``needs`` are done, at most ``jobs`` at a time; skip finished runs.

    devices: optional GPU ids handed out round-robin, one per concurrently running job.
    A failed run stops the scheduling of new runs; the ones in flight finish, then the error is raised.
    """
    by_name = {s.name: s for s in specs}
    for s in specs:
        missing = [n for n in s.needs if n not in by_name]
        if missing:
            raise UserError(f"run {s.name} needs unknown runs {missing}")
    config_dir.mkdir(parents=True, exist_ok=True)
    pending = [s for s in specs if not s.done]
    finished = {s.name for s in specs if s.done}
    for name in sorted(finished):
        echo(f"  {name}: done before, skipped")
    running: dict[Future, tuple[RunSpec, float, str | None]] = {}
    free = list(devices)
    error: BaseException | None = None
    with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
        while pending or running:
            ready = [s for s in pending if all(n in finished for n in s.needs)] if error is None else []
            while ready and len(running) < max(jobs, 1):
                spec = ready.pop(0)
                pending.remove(spec)
                dev = free.pop(0) if free else None
                echo(f"  {spec.name}: training → {spec.out_dir}")
                running[pool.submit(_launch, spec, config_dir, threads, dev)] = (spec, time.time(), dev)
            if not running:
                if error is None and pending:
                    raise UserError(f"runs {[s.name for s in pending]} wait on runs that cannot finish")
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                spec, start, dev = running.pop(fut)
                if dev is not None:
                    free.append(dev)
                exc = fut.exception()
                if exc is not None:
                    error = error or exc
                    continue
                finished.add(spec.name)
                echo(f"  {spec.name}: finished in {time.time() - start:.0f} s")
    if error is not None:
        raise error
