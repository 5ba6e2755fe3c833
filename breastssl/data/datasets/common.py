"""Helpers shared by dataset adapters: pseudonyms, skip lists, and the adapter result."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ...errors import DataError
from ..schema import LESION_COLUMNS, MANIFEST_COLUMNS


class NoUsableImagesError(DataError):
    """An ingest that found inputs but could not turn any of them into a manifest row."""


def pseudonym(value: Any, prefix: str) -> str:
    """A stable pseudonymous ID (``prefix-`` + 12 hex digits of SHA-256) for a UID or a public dataset's ID.

    Unkeyed, so only for values that cannot be enumerated (DICOM UIDs); identifiers a person could guess
    (PatientID, InstitutionName) take the keyed :meth:`breastssl.data.pseudonyms.PseudonymKey.pseudonym`.
    """
    return f"{prefix}-{hashlib.sha256(str(value).encode()).hexdigest()[:12]}"


@dataclass
class Ingested:
    """What an adapter produced: manifest rows, lesion rows, and (file, reason) pairs it skipped."""

    manifest: list[dict[str, Any]] = field(default_factory=list)
    lesions: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Manifest and lesions as DataFrames with the schema columns first."""
        return ordered(pd.DataFrame(self.manifest), MANIFEST_COLUMNS), ordered(
            pd.DataFrame(self.lesions), LESION_COLUMNS
        )


def ordered(df: pd.DataFrame, schema: dict[str, str]) -> pd.DataFrame:
    """Schema columns first (all present), extras after."""
    for col in schema:
        if col not in df.columns:
            df[col] = pd.Series(dtype=object)
    return df[list(schema) + [c for c in df.columns if c not in schema]]


class Skipper:
    """Collects bad inputs when ``skip_bad`` is set, else re-raises them."""

    def __init__(self, out: Ingested, skip_bad: bool) -> None:
        self.out, self.skip_bad = out, skip_bad

    def bad(self, file: str | Path, exc: DataError) -> None:
        """Record ``exc`` for ``file`` (or raise it when not skipping)."""
        if not self.skip_bad:
            raise exc
        self.out.skipped.append((str(file), str(exc)))


def require(root: Path, names: list[str], fmt: str) -> None:
    """Raise a :class:`DataError` if ``root`` is not a folder or lacks any of ``names`` (globs allowed)."""
    if not root.is_dir():
        raise DataError(f"{root}: --root must be an existing folder for --format {fmt}")
    missing = [n for n in names if not any(root.glob(n))]
    if missing:
        listing = sorted(p.name for p in root.iterdir())[:10]
        raise DataError(f"{root}: does not look like a {fmt} dataset; missing {', '.join(missing)} (found: {listing})")


def find_one(root: Path, pattern: str, fmt: str) -> Path:
    """The single file matching ``pattern`` under ``root`` (recursive), or a DataError."""
    hits = sorted(root.rglob(pattern))
    if not hits:
        raise DataError(f"{root}: does not look like a {fmt} dataset; no file matching {pattern}")
    return hits[0]


def rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it, else absolute."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())
