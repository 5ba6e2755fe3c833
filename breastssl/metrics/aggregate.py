"""Score aggregation slice → stack → breast → exam (DESIGN §6).

Every aggregated table carries an ``aggregation`` column naming how it was made (for example
``"slice→stack: max; stack→breast: mean"``), so any results table built from it states it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

LEVEL_KEYS: dict[str, list[str]] = {
    "stack": ["image_id"],
    "image": ["image_id"],
    "breast": ["exam_id", "laterality"],
    "exam": ["exam_id"],
}
METHODS = ("max", "mean", "topk")


def describe(method: str, k: int = 3) -> str:
    """Human-readable name of an aggregation: ``max``, ``mean`` or ``top-3 mean``."""
    return f"top-{k} mean" if method == "topk" else method


def aggregate_scores(
    df: pd.DataFrame,
    keys: Sequence[str],
    method: str = "max",
    k: int = 3,
    score: str = "score",
    label: str = "",
) -> pd.DataFrame:
    """One row per ``keys`` with the aggregated ``score``, ``n_items`` and an ``aggregation`` column.

    method: ``max``, ``mean`` or ``topk`` (mean of the k highest; all of them when fewer than k).
    label: the step's name, e.g. ``"slice→stack"``; it is appended to any existing ``aggregation``.
    """
    if method not in METHODS:
        raise ValueError(f"aggregation method must be one of {METHODS}, got {method!r}")
    if method == "topk" and k < 1:
        raise ValueError(f"top-k needs k >= 1, got {k}")
    missing = [c for c in [*keys, score] if c not in df.columns]
    if missing:
        raise ValueError(f"cannot aggregate: missing column(s) {missing}; has {list(df.columns)}")
    keys = list(keys)
    if method == "topk":
        ranked = df.sort_values(score, ascending=False, kind="mergesort")
        ranked = ranked[ranked.groupby(keys, sort=False).cumcount() < k]
        out = ranked.groupby(keys, sort=True)[score].agg(["mean", "size"])
        n_items = df.groupby(keys, sort=True).size()
        out = pd.DataFrame({score: out["mean"], "n_items": n_items})
    else:
        grouped = df.groupby(keys, sort=True)[score]
        out = pd.DataFrame({score: grouped.agg(method), "n_items": grouped.size()})
    out = out.reset_index()
    step = f"{label}: {describe(method, k)}" if label else describe(method, k)
    previous = df["aggregation"].iloc[0] if "aggregation" in df.columns and len(df) else ""
    out["aggregation"] = f"{previous}; {step}" if previous else step
    return out


def to_level(
    scores: pd.DataFrame,
    manifest: pd.DataFrame,
    level: str,
    method: str = "max",
    k: int = 3,
    score: str = "score",
) -> pd.DataFrame:
    """Aggregate image/stack (or slice) scores up to ``level`` (image, stack, breast or exam).

    scores: has ``image_id`` (and ``slice`` for slice-level scores) and ``score``; manifest gives the
    exam and laterality of each image. Slice scores are first reduced to stacks with the same method.
    """
    if level not in LEVEL_KEYS:
        raise ValueError(f"level must be one of {sorted(LEVEL_KEYS)}, got {level!r}")
    df = scores
    if "slice" in df.columns:
        df = aggregate_scores(df, ["image_id"], method, k, score, "slice→stack")
    if level in {"image", "stack"}:
        return df if "aggregation" in df.columns else df.assign(aggregation="none (image level)")
    meta = manifest[["image_id", "exam_id", "laterality"]].astype(str)
    df = df.merge(meta, on="image_id", how="left", validate="many_to_one")
    df = aggregate_scores(df, LEVEL_KEYS["breast"], method, k, score, "view→breast")
    if level == "exam":
        df = aggregate_scores(df, LEVEL_KEYS["exam"], method, k, score, "breast→exam")
    return df


def truth_at_level(manifest: pd.DataFrame, level: str, positive: Sequence[str] = ("cancer",)) -> pd.DataFrame:
    """0/1 ``label`` per unit of ``level`` from ``breast_label``: a breast or exam is positive when any
    of its images is; rows labelled ``unknown`` are left out."""
    m = manifest[manifest["breast_label"].astype(str) != "unknown"].copy()
    m["label"] = np.isin(m["breast_label"].astype(str), list(positive)).astype(int)
    keys = LEVEL_KEYS[level]
    return m.groupby(keys, sort=True)["label"].max().reset_index()
