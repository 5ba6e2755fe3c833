"""The canonical manifest and lesions tables (DESIGN §3) and their validation.

One manifest row per image (mammography, ultrasound) or stack (DBT). ``path`` is relative to the
manifest's folder unless absolute. Splits are by patient: a patient in two splits is an error.

Lesions are keyed by ``image_id`` (and carry ``exam_id, laterality, view`` for readability); boxes
are ``x, y, w, h`` in pixels of the stored image, ``slice`` is the key slice of a DBT lesion (-1
otherwise), ``mask_path`` is an optional binary mask of the stored image (key slice for DBT), relative to the
manifest's folder.

Validation names the file, the rows (file line numbers, first few and a count) and what is wrong, for every value
that would otherwise fail deep inside training or silently change what is trained: empty keys, ``n_slices`` that is
not a whole number in range (or exceeds the frames a ``.npy`` or DICOM stack holds), lesion coordinates that are not
finite or lie outside the image, key slices outside their stack, masks that are not images.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
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
MAX_SLICES = 10_000  # no DBT stack or cine loop has more frames; a larger n_slices is a typo or a unit error
MANIFEST_KEYS = ("image_id", "patient_id", "path")  # never empty: identity, the split-leak check, the file


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    more = f" ... ({len(items)} in all)" if len(items) > MAX_LISTED else f" ({len(items)})"
    return shown + more


def _short(value: Any, limit: int = 60) -> str:
    """A cell as messages show it (strings quoted, so a blank shows) cut to ``limit`` characters: a 5,000-character
    path must not flood the message."""
    quoted = isinstance(value, str)
    text = repr(value) if quoted else str(value)
    return text if len(text) <= limit else text[: limit - 4] + ("...'" if quoted else "...")


def _plain(value: Any, limit: int = 60) -> str:
    """``str(value)`` cut to ``limit`` characters (names shown as the file system or the table spells them)."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _at(mask: Any, values: pd.Series | None = None) -> str:
    """The rows where ``mask`` holds (file line numbers: header = 1), first few with their value, and a count."""
    idx = np.flatnonzero(np.asarray(mask, dtype=bool))
    shown = [f"row {i + 2}" + (f": {_short(values.iloc[i])}" if values is not None else "") for i in idx[:MAX_LISTED]]
    return ", ".join(shown) + (f" ... ({len(idx)} in all)" if len(idx) > MAX_LISTED else f" ({len(idx)})")


def _empty(column: pd.Series) -> np.ndarray:
    """Cells that are missing (NaN, None) or blank."""
    return (column.isna() | column.astype(str).str.strip().eq("")).to_numpy()


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet table, with an error that names the file if it cannot be read."""
    path = Path(path)
    try:
        exists = path.is_file()
    except OSError as exc:  # e.g. a name too long for the file system
        raise DataError(f"{str(path)[:200]}: cannot be accessed ({exc.strerror or type(exc).__name__})") from None
    if not exists:
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
            problems.append(f"column {col} must be one of {sorted(ok)}; bad values at {_at(bad, df[col])}")
    return problems


def resolve_path(root: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else root / p


def _numbers(column: pd.Series) -> np.ndarray:
    """The column as float64 (NaN where a cell is not a number; booleans are not numbers)."""
    values = pd.to_numeric(column.where(~column.map(lambda v: isinstance(v, bool)), None), errors="coerce")
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def _check_n_slices(df: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Problems of column n_slices, and its values (NaN where invalid)."""
    n = _numbers(df["n_slices"])
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(n) | (n < 1) | (n > MAX_SLICES) | (n != np.floor(n))
    if not bad.any():
        return [], n
    msg = f"n_slices must be a whole number from 1 to {MAX_SLICES}; bad at {_at(bad, df['n_slices'])}"
    return [msg], np.where(bad, np.nan, n)


def _check_paths(df: pd.DataFrame, root: Path, n: np.ndarray) -> list[str]:
    """Files of column path: they must exist, and a stack must hold at least n_slices frames."""
    from .schema_files import path_state, stored_frames, too_long

    values = df["path"].map(str)
    blank = _empty(df["path"])  # reported as empty keys
    missing, unusable, short = [], [], []
    for i, value in enumerate(values):
        if blank[i]:
            continue
        path = resolve_path(root, value)
        state = "is too long for a file name" if too_long(str(path)) else path_state(path)
        if state == "does not exist":
            missing.append(f"row {i + 2}: {_plain(value)}")
        elif state is not None:
            unusable.append(f"row {i + 2}: {_short(value)} {state}")
        elif n[i] > 1:  # a single image has at least one frame: only stacks can claim too many
            frames = stored_frames(path)
            if frames is not None and frames < n[i]:
                short.append(f"row {i + 2}: n_slices {int(n[i])} > {frames} frames in {_short(value)}")
    problems = []
    if missing:
        problems.append(f"files named in column path do not exist: {_listing(missing)}")
    if unusable:
        problems.append(f"files named in column path cannot be opened: {_listing(unusable)}")
    if short:
        problems.append(f"n_slices exceeds the frames the file holds: {_listing(short)}")
    return problems


def validate_manifest(
    df: pd.DataFrame, root: str | Path | None = None, source: str = "manifest", check_files: bool = True
) -> pd.DataFrame:
    """Check a manifest; raise :class:`DataError` listing every problem (first few of each, and counts).

    Row numbers in messages are file line numbers (header = line 1). With ``check_files`` and a ``root``, every
    ``path`` must exist and a stack (``n_slices`` > 1) must hold at least ``n_slices`` frames where its header
    tells (``.npy``, DICOM): a larger ``n_slices`` would index past the stack during training.
    """
    _check_columns(df, MANIFEST_COLUMNS, source)
    problems = _check_values(df, ALLOWED, source)
    empty = {col: _empty(df[col]) for col in MANIFEST_KEYS}
    for col, mask in empty.items():
        if mask.any():
            why = " (the split-leak check groups rows by patient)" if col == "patient_id" else ""
            problems.append(f"column {col} must not be empty{why}; empty at {_at(mask)}")
    ids = df["image_id"].astype(str)
    dup = ids.duplicated(keep=False).to_numpy() & ~empty["image_id"]
    if dup.any():
        problems.append(f"image_id must be unique; duplicated: {_listing(sorted(set(ids[dup])))}")
    n_problems, n = _check_n_slices(df)
    problems += n_problems
    keyed = df[~empty["patient_id"]]
    splits = keyed.groupby(keyed["patient_id"].astype(str))["split"].nunique()
    leaky = [str(p) for p in splits[splits > 1].index]
    if leaky:
        problems.append(f"splits must be by patient; patients in several splits: {_listing(leaky)}")
    if check_files and root is not None:
        problems += _check_paths(df, Path(root), n)
    if problems:
        raise DataError(f"{source} is invalid:\n  " + "\n  ".join(problems))
    return df


def _check_boxes(lesions: pd.DataFrame, manifest: pd.DataFrame | None) -> list[str]:
    """x, y finite and >= 0, w, h finite and > 0, and (where the manifest gives rows, columns) inside the image."""
    problems = []
    cols = {c: _numbers(lesions[c]) for c in ("x", "y", "w", "h") if c in lesions.columns}
    for names, positive in ((("x", "y"), False), (("w", "h"), True)):
        present = [c for c in names if c in cols]
        if not present:
            continue
        with np.errstate(invalid="ignore"):
            bad = np.zeros(len(lesions), bool)
            for c in present:
                bad |= ~np.isfinite(cols[c]) | ((cols[c] <= 0) if positive else (cols[c] < 0))
        if bad.any():
            what = "positive finite numbers" if positive else "finite numbers >= 0"
            problems.append(f"{' and '.join(present)} must be {what} (pixels); bad at {_at(bad)}")
    if manifest is not None and {"x", "y"} <= set(cols) and {"rows", "columns"} <= set(manifest.columns):
        size = manifest.assign(image_id=manifest["image_id"].astype(str)).drop_duplicates("image_id")
        size = size.set_index("image_id")[["rows", "columns"]].apply(pd.to_numeric, errors="coerce")
        keys = lesions["image_id"].astype(str)
        rows, columns = size["rows"].reindex(keys).to_numpy(float), size["columns"].reindex(keys).to_numpy(float)
        with np.errstate(invalid="ignore"):
            outside = (cols["x"] >= columns) | (cols["y"] >= rows)
        if outside.any():
            problems.append(f"boxes start outside their image (x >= columns or y >= rows of the manifest); bad at "
                            f"{_at(outside)}")  # fmt: skip
    return problems


def _check_slices(lesions: pd.DataFrame, manifest: pd.DataFrame | None) -> list[str]:
    """``slice``: a whole number; for a DBT stack the key slice 0 <= slice < n_slices, else empty, -1 or 0."""
    raw = lesions["slice"]
    given = ~_empty(raw)
    z = _numbers(raw)
    with np.errstate(invalid="ignore"):
        not_whole = given & (~np.isfinite(z) | (z != np.floor(z)) | (z < -1))
    problems = (
        [f"slice must be a whole number (-1 for a 2-D image); bad at {_at(not_whole, raw)}"] if not_whole.any() else []
    )
    if manifest is None:
        return problems
    meta = manifest.assign(image_id=manifest["image_id"].astype(str)).drop_duplicates("image_id").set_index("image_id")
    keys = lesions["image_id"].astype(str)
    n = _numbers(meta["n_slices"].reindex(keys))
    known = keys.isin(meta.index).to_numpy() & np.isfinite(n) & ~not_whole
    stack = known & ((meta["modality"].reindex(keys).astype(str).to_numpy() == "DBT") | (n > 1))
    with np.errstate(invalid="ignore"):
        bad_stack = stack & (~given | (z < 0) | (z >= n))
        bad_flat = known & ~stack & given & (z != -1) & (z != 0)
    if bad_stack.any():
        shown = [f"row {i + 2}: {_short(raw.iloc[i])} of {int(n[i])}" for i in np.flatnonzero(bad_stack)]
        problems.append(f"slice of a DBT lesion must be its key slice, 0 <= slice < n_slices of its stack; bad at "
                        f"{_listing(shown)}")  # fmt: skip
    if bad_flat.any():
        problems.append(f"slice of a lesion on a 2-D image must be -1 (or empty); bad at {_at(bad_flat, raw)}")
    return problems


def _check_masks(lesions: pd.DataFrame, root: Path | None) -> list[str]:
    """``mask_path``: empty, or an image file name of a sane length (that exists and opens, given ``root``)."""
    from .masks import MASK_SUFFIXES
    from .schema_files import image_problem, too_long

    raw = lesions["mask_path"]
    given = ~_empty(raw)
    values = raw.map(str)  # str of every cell (astype(str) keeps NaN missing)
    long = given & values.map(too_long).to_numpy()
    suffix = given & ~long & ~values.map(lambda v: Path(v).suffix.lower() in MASK_SUFFIXES).to_numpy()
    problems = []
    if long.any():
        problems.append(f"mask_path is too long for a file name; at {_at(long)}")
    if suffix.any():
        problems.append(f"mask_path must name an image ({', '.join(sorted(MASK_SUFFIXES))}); bad at {_at(suffix, raw)}")
    if root is not None:
        checked = np.flatnonzero(given & ~long & ~suffix)
        found = [(i, image_problem(resolve_path(root, values.iloc[i]))) for i in checked]
        bad = [f"row {i + 2}: {_plain(values.iloc[i])} {why}" for i, why in found if why is not None]
        if bad:
            problems.append(f"mask files named in column mask_path are not usable: {_listing(bad)}")
    return problems


def validate_lesions(
    lesions: pd.DataFrame,
    manifest: pd.DataFrame | None = None,
    source: str = "lesions",
    root: str | Path | None = None,
    required: Iterable[str] = tuple(LESION_COLUMNS),
) -> pd.DataFrame:
    """Check a lesions table; raise :class:`DataError` listing every problem (first few of each, and counts).

    ``manifest``: every lesion's image must be in it, and a DBT lesion's ``slice`` within its stack. ``root`` (the
    manifest's folder): every ``mask_path`` must exist and open as an image. ``required``: the columns the caller
    needs (a detector needs no ``mask_path``); the values of every column present are checked.
    """
    _check_columns(lesions, required, source)
    problems = _check_values(lesions, {**LESION_ALLOWED, "laterality": ALLOWED["laterality"]}, source)
    if "image_id" in lesions.columns and _empty(lesions["image_id"]).any():
        problems.append(f"column image_id must not be empty; empty at {_at(_empty(lesions['image_id']))}")
    problems += _check_boxes(lesions, manifest)
    if "slice" in lesions.columns:
        problems += _check_slices(lesions, manifest)
    if "mask_path" in lesions.columns:
        problems += _check_masks(lesions, Path(root) if root is not None else None)
    if manifest is not None and "image_id" in lesions.columns:
        known = set(manifest["image_id"].astype(str))
        ids = lesions["image_id"].astype(str)
        orphans = sorted(set(ids[~_empty(lesions["image_id"])]) - known)
        if orphans:
            problems.append(f"lesions name images not in the manifest: {_listing([_plain(o) for o in orphans])}")
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
        root = manifest_path.parent if check_files else None  # masks are relative to the manifest's folder
        lesions = validate_lesions(read_table(lesions_path), df, str(lesions_path), root)
    return df, lesions
