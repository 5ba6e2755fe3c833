"""What a selection threshold T admits: pool size and, where the truth is known, how many admitted slices
lie within a lesion's extent (SelectiveKD paper §3.4 and DESIGN §5.1; shown in the experiment report).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .sampling import POOL_ROLES

SWEEP_THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)


def near_lesion(table: pd.DataFrame, lesions: pd.DataFrame | None, halfwidth: int = 1) -> np.ndarray:
    """Per row of ``table`` (image_id, slice): within a malignant lesion's extent in depth.

    The extent is its key slice ± ``halfwidth``, or ± its ``half_depth`` column (slices where the synthetic
    lesion keeps half its contrast) where that is wider. On synthetic data the lesions table also holds
    the truth of weak stacks; rows of stacks with no lesion row are False. Returns a bool array aligned
    with ``table``.
    """
    if lesions is None or not len(lesions):
        return np.zeros(len(table), dtype=bool)
    cols = ["image_id", "slice", *(["half_depth"] if "half_depth" in lesions else [])]
    mal = lesions[lesions["lesion_class"].astype(str) == "malignant"][cols]
    keys = mal.astype({"image_id": str, "slice": int}).rename(columns={"slice": "key"})
    reach = np.maximum(keys.pop("half_depth").fillna(0).to_numpy(float), halfwidth) if len(cols) == 3 else halfwidth
    keys = keys.assign(reach=reach)
    m = table[["image_id", "slice"]].reset_index().merge(keys, on="image_id", how="left")
    m["near"] = (m["slice"] - m["key"]).abs() <= m["reach"]
    return m.groupby("index")["near"].any().reindex(range(len(table)), fill_value=False).to_numpy(bool)


def selection_sweep(
    table: pd.DataFrame,
    scores: pd.DataFrame,
    lesions: pd.DataFrame | None,
    thresholds: Sequence[float] = SWEEP_THRESHOLDS,
    halfwidth: int = 1,
) -> pd.DataFrame:
    """One row per (T, vendor incl. 'overall'): pool slices, selected by the calibrated ``score`` and by
    ``score_raw`` (when present), and the share of selected slices near a lesion (NaN when none selected).

    table: ``slice_table`` output (the strategy's roles); scores: image_id, slice, score[, score_raw].
    """
    pool = table[table["role"].isin(POOL_ROLES)].reset_index(drop=True)
    cols = ["image_id", "slice", "score", *(["score_raw"] if "score_raw" in scores else [])]
    m = pool.merge(scores[cols], on=["image_id", "slice"], how="left", validate="one_to_one")
    m["near"] = near_lesion(m, lesions, halfwidth)
    rows = []
    groups = [("overall", m), *((str(v), g) for v, g in m.groupby("vendor", sort=True))]
    for t in thresholds:
        for vendor, g in groups:
            sel = g["score"].to_numpy() > t
            row = {"threshold": t, "vendor": vendor, "pool": len(g), "selected": int(sel.sum()),
                   "near_lesion_share": float(g["near"].to_numpy()[sel].mean()) if sel.any() else float("nan"),
                   "pool_near_lesion_share": float(g["near"].mean()) if len(g) else float("nan")}  # fmt: skip
            if "score_raw" in g:
                raw = g["score_raw"].to_numpy() > t
                row["selected_raw"] = int(raw.sum())
                row["near_lesion_share_raw"] = float(g["near"].to_numpy()[raw].mean()) if raw.any() else float("nan")
            rows.append(row)
    return pd.DataFrame(rows)
