"""Atomic, resumable checkpoints: ``<out_dir>/checkpoints/step_00001000.pt``.

A checkpoint holds only tensors and plain containers of numbers and strings, so it loads with
``torch.load(..., weights_only=True)`` (DESIGN §9: nothing runs code from a data file). It is
written to a temporary name and renamed, so a run killed while saving leaves the previous
checkpoint intact and never a truncated one under a checkpoint's name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..fsutil import atomic_file

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_path(out_dir: str | Path, step: int) -> Path:
    """Where the checkpoint taken after ``step`` optimiser steps lives."""
    return Path(out_dir) / CHECKPOINT_DIR / f"step_{step:08d}.pt"


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """The run's checkpoints, oldest first (temporary files of an interrupted save are ignored)."""
    folder = Path(out_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest checkpoint of the run, or None."""
    found = list_checkpoints(out_dir)
    return found[-1] if found else None


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` atomically."""
    with atomic_file(path) as tmp, tmp.open("wb") as fh:
        torch.save(state, fh)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a damaged file is a :class:`UserError` naming it."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint {path} does not exist") from None
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise UserError(f"checkpoint {path} cannot be loaded ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise UserError(f"checkpoint {path} is not a breastssl training checkpoint")
    return state


def prune_checkpoints(out_dir: str | Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints."""
    for path in list_checkpoints(out_dir)[:-keep_last]:
        path.unlink(missing_ok=True)
