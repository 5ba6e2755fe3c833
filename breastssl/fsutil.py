"""Atomic outputs: write to a temporary name next to the target, then rename.

A run that fails half-way leaves nothing at the target path (DESIGN §9).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import UserError


def existing_ancestor(path: Path) -> Path:
    """``path`` itself or its nearest ancestor that exists (a file or a folder): where writing under it starts."""
    for part in [path, *path.parents]:
        if part.exists():
            return part
    return Path(path.anchor or ".")


def make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing ancestors; returns those created (outermost first).

    An ancestor that is a file, or a folder that cannot be created, is a :class:`UserError` naming it (``mkdir``
    would raise FileExistsError or OSError); nothing is left behind then.
    """
    base = existing_ancestor(folder)
    if not base.is_dir():
        raise UserError(f"cannot write under {folder}: {base} is a file, not a folder")
    missing = [part for part in [folder, *folder.parents] if part != base and base in part.parents][::-1]
    created: list[Path] = []
    try:
        for part in missing:
            part.mkdir()
            created.append(part)
    except OSError as exc:
        remove_created(created)
        raise UserError(f"cannot create folder {part} ({exc.strerror or exc})") from None
    return created


def remove_created(created: list[Path]) -> None:
    """Remove folders :func:`make_parents` created, innermost first, if they are still empty."""
    for part in reversed(created):
        with contextlib.suppress(OSError):
            part.rmdir()


@contextlib.contextmanager
def atomic_dir(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``target`` only if the block succeeds.

    An existing non-empty ``target`` is an error unless ``overwrite`` is set, in which case it is
    replaced only after the new content is complete.
    """
    target = Path(target)
    occupied = target.is_file() or (target.is_dir() and any(target.iterdir()))
    if occupied and not overwrite:
        raise UserError(f"output {target} already exists and is not empty (use --overwrite)")
    created = make_parents(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        remove_created(created)  # a failed run leaves no folder it made either
        raise
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


@contextlib.contextmanager
def atomic_file(target: str | Path, mode: str = "w") -> Iterator[Path]:
    """Yield a temporary path that is renamed to ``target`` only if the block succeeds."""
    target = Path(target)
    created = make_parents(target.parent)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        remove_created(created)
        raise
    os.replace(tmp, target)
