"""The canonical manifest and lesions tables (DESIGN §3) and their validation.

One manifest row per image (mammography, ultrasound) or stack (DBT). ``path`` is relative to the
manifest's folder unless absolute. Splits are by patient: a patient in two splits is an error.

Lesions are keyed by ``image_id`` (and carry ``exam_id, laterality, view`` for readability); boxes
are ``x, y, w, h`` in pixels of the stored image, ``slice`` is the key slice of a DBT lesion (-1
otherwise), ``mask_path`` is an optional binary mask of the stored image (key slice for DBT).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ..errors import DataError

MANIFEST_COLUMNS: dict[str, str] = {
    "image_id": "str",
    "patient_id": "str",
    "exam_id": "str",
    "laterality": "str",
    "view": "str",
    "modality": "str",
    "vendor": "str",
    "site": "str",
    "path": "str",
    "n_slices": "int",
    "breast_label": "str",
    "annotation": "str",
    "split": "str",
}
LESION_COLUMNS: dict[str, str] = {
    "image_id": "str",
    "exam_id": "str",
    "laterality": "str",
    "view": "str",
    "lesion_id": "str",
    "slice": "int",
    "x": "float",
    "y": "float",
    "w": "float",
    "h": "float",
    "mask_path": "str",
    "lesion_class": "str",
}
ALLOWED: dict[str, set[str]] = {
    "laterality": {"L", "R", "U"},  # U: unknown (e.g. BUSI records no side)
    "view": {"CC", "MLO", "ML", "LM", "XCCL", "SIO", "US"},
    "modality": {"MG", "DBT", "US"},
    "breast_label": {"cancer", "benign", "normal", "unknown"},
    "annotation": {"full", "weak", "report", "none"},
    "split": {"train", "val", "test", "unlabeled"},
}
LESION_ALLOWED: dict[str, set[str]] = {"lesion_class": {"malignant", "benign"}}
MAX_LISTED = 5


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    more = f" ... ({len(items)} in all)" if len(items) > MAX_LISTED else f" ({len(items)})"
    return shown + more


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet table, with an error that names the file if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    try:
        if path.suffix in {".parquet", ".pq"}:
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={"image_id": str, "patient_id": str, "exam_id": str})
    except Exception as exc:  # pandas raises many types for unreadable files
        raise DataError(f"{path}: cannot be read as a table ({type(exc).__name__}: {exc})") from None


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write CSV or Parquet by suffix."""
    path = Path(path)
    if path.suffix in {".parquet", ".pq"}:
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)


def _check_columns(df: pd.DataFrame, required: Iterable[str], source: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing required column(s) {', '.join(missing)}; has {list(df.columns)}")


def _check_values(df: pd.DataFrame, allowed: dict[str, set[str]], source: str) -> list[str]:
    problems = []
    for col, ok in allowed.items():
        if col not in df.columns:
            continue
        bad = ~df[col].astype(str).isin(ok)
        if bad.any():
            rows = [f"row {i + 2}: {df[col].iloc[i]!r}" for i in bad.to_numpy().nonzero()[0]]
            problems.append(f"column {col} must be one of {sorted(ok)}; bad values at {_listing(rows)}")
    return problems


def resolve_path(root: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else root / p


def validate_manifest(
    df: pd.DataFrame, root: str | Path | None = None, source: str = "manifest", check_files: bool = True
) -> pd.DataFrame:
    """Check a manifest; raise :class:`DataError` listing every problem (first few of each, and counts).

    Row numbers in messages are file line numbers (header = line 1).
    """
    _check_columns(df, MANIFEST_COLUMNS, source)
    problems = _check_values(df, ALLOWED, source)
    dup = df["image_id"].astype(str).duplicated(keep=False)
    if dup.any():
        problems.append(f"image_id must be unique; duplicated: {_listing(sorted(set(df.loc[dup, 'image_id'])))}")
    n_slices = pd.to_numeric(df["n_slices"], errors="coerce")
    bad_n = n_slices.isna() | (n_slices < 1)
    if bad_n.any():
        rows = [f"row {i + 2}" for i in bad_n.to_numpy().nonzero()[0]]
        problems.append(f"n_slices must be a positive integer; bad at {_listing(rows)}")
    splits = df.groupby("patient_id")["split"].nunique()
    leaky = [str(p) for p in splits[splits > 1].index]
    if leaky:
        problems.append(f"splits must be by patient; patients in several splits: {_listing(leaky)}")
    if check_files and root is not None:
        root = Path(root)
        missing = [
            f"row {i + 2}: {p}" for i, p in enumerate(df["path"].astype(str)) if not resolve_path(root, p).exists()
        ]
        if missing:
            problems.append(f"files named in column path do not exist: {_listing(missing)}")
    if problems:
        raise DataError(f"{source} is invalid:\n  " + "\n  ".join(problems))
    return df


def validate_lesions(
    lesions: pd.DataFrame, manifest: pd.DataFrame | None = None, source: str = "lesions"
) -> pd.DataFrame:
    """Check a lesions table (and that every lesion's image is in ``manifest`` if given)."""
    _check_columns(lesions, LESION_COLUMNS, source)
    problems = _check_values(lesions, {**LESION_ALLOWED, "laterality": ALLOWED["laterality"]}, source)
    size = lesions[["w", "h"]].apply(pd.to_numeric, errors="coerce")
    bad = size.isna().any(axis=1) | (size <= 0).any(axis=1)
    if bad.any():
        rows = [f"row {i + 2}" for i in bad.to_numpy().nonzero()[0]]
        problems.append(f"w and h must be positive numbers; bad at {_listing(rows)}")
    if manifest is not None:
        known = set(manifest["image_id"].astype(str))
        orphans = sorted(set(lesions["image_id"].astype(str)) - known)
        if orphans:
            problems.append(f"lesions name images not in the manifest: {_listing(orphans)}")
    if problems:
        raise DataError(f"{source} is invalid:\n  " + "\n  ".join(problems))
    return lesions


def load_dataset(
    manifest_path: str | Path, lesions_path: str | Path | None = None, check_files: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Read and validate a manifest (and lesions table; by default ``lesions.*`` beside it)."""
    manifest_path = Path(manifest_path)
    df = validate_manifest(read_table(manifest_path), manifest_path.parent, str(manifest_path), check_files)
    if lesions_path is None:
        for cand in (manifest_path.with_name("lesions.parquet"), manifest_path.with_name("lesions.csv")):
            if cand.exists():
                lesions_path = cand
                break
    lesions = None
    if lesions_path is not None:
        lesions = validate_lesions(read_table(lesions_path), df, str(lesions_path))
    return df, lesions
