"""Reading and checking saved predictions against the truth, with :class:`DataError` on bad input.

A prediction file (CSV or Parquet) has a ``score`` and the keys of one level: ``image_id`` (images or
stacks; with ``slice`` for slice scores), ``exam_id, laterality`` (breasts) or ``exam_id`` (exams).
Detection files add boxes ``x, y, w, h`` (one row per region; DBT adds ``z, depth``). The challenge's
capitalised names (``X, Width, Height, Z, Depth, Score``) are accepted too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..data.schema import read_table
from ..errors import DataError

KNOWN = {
    "image_id",
    "patient_id",
    "exam_id",
    "laterality",
    "view",
    "slice",
    "score",
    "x",
    "y",
    "w",
    "h",
    "z",
    "depth",
    "lesion_id",
    "label",
    "model",
}
# descriptive columns that breastssl's own prediction files carry (a run's predictions_*.csv, predict's outputs):
# read past, so every run's predictions go straight into `breastssl evaluate`
DESCRIPTIVE = {"n_items", "aggregation", "vendor", "site", "det_score", "p_malignant", "iou", "split", "set", "file"}
RENAME = {"width": "w", "height": "h", "studyuid": "image_id", "patientid": "patient_id"}
BOX = ["x", "y", "w", "h"]
MAX_LISTED = 5


def listing(items: list[str]) -> str:
    """'a, b, c ... (n in all)'."""
    shown = ", ".join(str(i) for i in items[:MAX_LISTED])
    return f"{shown}{' ...' if len(items) > MAX_LISTED else ''} ({len(items)} in all)"


def load_predictions(path: str | Path) -> tuple[pd.DataFrame, str, str]:
    """Read and check one prediction file: ``(table, kind, level)``.

    kind: ``classification``, ``detection`` (2D boxes) or ``dbt`` (3D boxes); level: ``image``,
    ``breast`` or ``exam`` (the keys it is given at).
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    df = read_table(path)
    df = df.rename(columns={c: RENAME.get(c.lower(), c.lower()) for c in df.columns})
    if df.empty:
        raise DataError(f"{path}: no prediction rows (columns {list(df.columns)})")
    unknown = [c for c in df.columns if c not in KNOWN | DESCRIPTIVE]
    if unknown:
        raise DataError(f"{path}: unknown column(s) {unknown}; allowed: {sorted(KNOWN)}")
    df = df.drop(columns=[c for c in df.columns if c in DESCRIPTIVE])
    if "score" not in df.columns:
        raise DataError(f"{path}: missing required column score; has {list(df.columns)}")
    for key in ("image_id", "exam_id", "laterality", "patient_id"):
        if key in df.columns:
            df[key] = df[key].astype(str)
    present = [c for c in BOX if c in df.columns]
    if present and len(present) < 4:
        raise DataError(f"{path}: box columns must be x, y, w, h together; missing {sorted(set(BOX) - set(present))}")
    kind = "classification"
    if present:
        kind = "dbt" if {"z", "depth"} <= set(df.columns) else "detection"
    if kind != "classification" and "image_id" not in df.columns:
        raise DataError(f"{path}: detection predictions need column image_id; has {list(df.columns)}")
    if "image_id" in df.columns:
        level = "image"
    elif {"exam_id", "laterality"} <= set(df.columns):
        level = "breast"
    elif "exam_id" in df.columns:
        level = "exam"
    else:
        raise DataError(f"{path}: missing id column(s): need image_id, exam_id + laterality, or exam_id")
    numeric = ["score", *(BOX if present else []), *(["z", "depth"] if kind == "dbt" else [])]
    for col in numeric:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=float))
        if bad.any():
            rows = [f"row {i + 2}: {df[col].iloc[i]!r}" for i in np.flatnonzero(bad)]
            raise DataError(f"{path}: column {col} must be finite numbers; NaN/inf/text at {listing(rows)}")
        df[col] = values.astype(float)
    if kind == "classification":
        keys = {"image": ["image_id"], "breast": ["exam_id", "laterality"], "exam": ["exam_id"]}[level]
        keys = keys + (["slice"] if "slice" in df.columns and level == "image" else [])
        dup = df.duplicated(keys, keep=False)
        if dup.any():
            rows = [f"row {i + 2}" for i in np.flatnonzero(dup)]
            raise DataError(f"{path}: duplicated {'+'.join(keys)} at {listing(rows)}")
    return df, kind, level


def check_ids(pred: pd.DataFrame, truth: pd.DataFrame, keys: list[str], source: str, complete: bool) -> None:
    """Every prediction id must be in the truth; with ``complete`` every truth id must be predicted."""
    p = pred[keys].astype(str).drop_duplicates().agg("/".join, axis=1)
    t = truth[keys].astype(str).drop_duplicates().agg("/".join, axis=1)
    extra = sorted(set(p) - set(t))
    if extra:
        raise DataError(
            f"{source}: {len(extra)} {'+'.join(keys)} value(s) are not in the truth (manifest, after any "
            f"--split filter): {listing(extra)}"
        )
    if complete:
        missing = sorted(set(t) - set(p))
        if missing:
            raise DataError(f"{source}: no prediction for {len(missing)} {'+'.join(keys)} value(s): {listing(missing)}")
