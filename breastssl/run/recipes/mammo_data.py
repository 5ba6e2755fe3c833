"""The data of a mammography self-training run, read and checked: which images train with masks, which are weak.

From ``data`` of :class:`breastssl.run.recipes.mammo.RunConfig`:

- the manifest (validated as every manifest is) and its lesions table (``mask_path`` of every lesion of a
  fully annotated train image or a test image must exist: those masks are the stage-1 targets and the FROC's truth);
- the fully annotated train images (``annotation == full_annotation``) and the weak ones: the other train images
  whose exam × side has a soft label in ``data.labels`` (a CSV of ``breastssl label-reports``: ``exam_id,
  laterality, soft_label``, soft label in [0, 1]; other columns ignored; an empty soft label = none);
- the bilateral pairs (:func:`breastssl.data.mammo_pairs.load_pairs`) of those images and of the test split, each
  read with its contralateral partner; images of no use (val split, weak images without a soft label) are not read.
  With ``data.cache`` the pairs read a ``breastssl cache`` on demand (``data/mammo_cache.py``) instead.

Every problem is a :class:`DataError` naming the file, and the column or row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...data.mammo_pairs import PairArrays
from ...errors import DataError

LABEL_COLUMNS = ("exam_id", "laterality", "soft_label")
MAX_LISTED = 5


@dataclass
class MammoData:
    """Loaded pairs with positions of the full and weak train images (into ``pairs``) and the test pairs."""

    pairs: PairArrays  # the train images used (full and weak) and their partners: (N, 1, H, W) arrays
    full_idx: np.ndarray  # (F,) positions in ``pairs`` of the fully annotated train images
    weak_idx: np.ndarray  # (W,) positions of the weak train images
    soft_label: np.ndarray  # (N,) soft label of every pair (NaN where none)
    test: PairArrays  # the test split's pairs
    counts: dict[str, Any] = field(default_factory=dict)


def _rows(index: np.ndarray) -> str:
    """File line numbers (header = line 1) of 0-based table positions, the first few."""
    shown = ", ".join(str(i + 2) for i in index[:MAX_LISTED])
    return shown + (f" ... ({len(index)} in all)" if len(index) > MAX_LISTED else "")


def read_labels(path: str | Path) -> pd.DataFrame:
    """The soft labels of ``breastssl label-reports``: one row per (exam_id, laterality), ``soft_label`` in [0, 1]."""
    from ...data.schema import read_table

    table = read_table(path)
    missing = [c for c in LABEL_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(
            f"labels file {path}: missing column(s) {', '.join(missing)}; a labels file of "
            f"`breastssl label-reports` has {', '.join(LABEL_COLUMNS)} (this one: {list(table.columns)})"
        )
    out = table[list(LABEL_COLUMNS)].copy()
    out["exam_id"], out["laterality"] = out["exam_id"].astype(str), out["laterality"].astype(str)
    raw = table["soft_label"]
    value = pd.to_numeric(raw, errors="coerce")
    bad = np.flatnonzero((value.isna() & raw.notna()) | (value < 0) | (value > 1))
    if bad.size:
        raise DataError(f"labels file {path}: column soft_label must be a number in [0, 1]; bad at line(s) "
                        f"{_rows(bad)} (e.g. {raw.iloc[bad[0]]!r})")  # fmt: skip
    dup = np.flatnonzero(out.duplicated(["exam_id", "laterality"], keep=False).to_numpy())
    if dup.size:
        raise DataError(f"labels file {path}: (exam_id, laterality) must be unique; repeated at line(s) {_rows(dup)}")
    out["soft_label"] = value.astype(float)
    return out


def _lesions_with_masks(lesions: pd.DataFrame | None, ids: set[str], root: Path, source: str) -> pd.DataFrame | None:
    """The lesions of images ``ids``, each with a readable ``mask_path`` (checked)."""
    from ...data.schema import resolve_path

    if lesions is None:
        return None
    sub = lesions[lesions["image_id"].astype(str).isin(ids)]
    paths = sub["mask_path"]
    missing = np.flatnonzero(paths.isna().to_numpy() | (paths.astype(str).str.strip() == "").to_numpy())
    if missing.size:
        lines = sub.index.to_numpy()[missing]
        raise DataError(f"lesions table {source}: column mask_path is empty at line(s) {_rows(lines)}; lesions of "
                        "fully annotated train images and test images need their mask")  # fmt: skip
    gone = [i for i, p in zip(sub.index, paths.astype(str), strict=True) if not resolve_path(root, p).is_file()]
    if gone:
        raise DataError(f"lesions table {source}: mask files named in column mask_path do not exist at line(s) "
                        f"{_rows(np.asarray(gone))} (e.g. {lesions.loc[gone[0], 'mask_path']})")  # fmt: skip
    return sub.reset_index(drop=True)


def _soft_labels(manifest: pd.DataFrame, candidates: np.ndarray, data: Any) -> np.ndarray:
    """(N,) soft label of every manifest row from ``data.labels`` (NaN where none); checks the file when weak images
    (``candidates``) need it."""
    soft = np.full(len(manifest), np.nan)
    if not candidates.any():
        return soft
    if data.labels is None:
        raise DataError(
            f"{data.manifest}: {int(candidates.sum())} train images are weak (annotation other than "
            f"{data.full_annotation!r}) and need report soft labels: set data.labels to the CSV of "
            "`breastssl label-reports` (exam_id, laterality, soft_label), or data.use_weak=false"
        )
    labels = read_labels(data.labels)
    keys = pd.MultiIndex.from_frame(manifest[["exam_id", "laterality"]].astype(str))
    table = labels.set_index(["exam_id", "laterality"])["soft_label"]
    soft = table.reindex(keys).to_numpy(float)
    if not np.isfinite(soft[candidates]).any():
        raise DataError(f"labels file {data.labels}: no row matches a weak train image of {data.manifest} by "
                        "(exam_id, laterality)")  # fmt: skip
    return soft


def nested_exams(exams: pd.DataFrame, fractions: tuple[float, ...], seed: int) -> dict[float, set[str]]:
    """Nested exam subsets per fraction, stratified by ``positive`` (exams: exam_id, positive; one row per exam).

    Per stratum one permutation (seeded); a fraction f takes its first round(f·n) exams (at least 1), so the
    subset of a smaller fraction is part of every larger one.
    """
    rng = np.random.default_rng(seed)
    order = []
    for _, g in exams.groupby("positive"):
        ids = g["exam_id"].to_numpy()
        order.append((ids[rng.permutation(len(ids))], len(ids)))
    return {f: {e for ids, n in order for e in ids[: max(1, int(round(f * n))) if f > 0 else 0]} for f in fractions}


def _fractions(
    manifest: pd.DataFrame, lesions: pd.DataFrame | None, full: np.ndarray, candidates: np.ndarray, data: Any
) -> tuple[np.ndarray, np.ndarray]:
    """``full`` and weak ``candidates`` (N,) bool restricted to ``data.full_fraction`` / ``data.weak_fraction`` of
    their exams (an exam is positive when any of its images has a lesion row)."""
    exam = manifest["exam_id"].astype(str)
    with_lesion = set(lesions["exam_id"].astype(str)) if lesions is not None and "exam_id" in lesions else set()
    out = []
    for rows, fraction, seed in ((full, data.full_fraction, data.subset_seed),
                                 (candidates, data.weak_fraction, data.subset_seed + 1)):  # fmt: skip
        if fraction >= 1.0 or not rows.any():
            out.append(rows)
            continue
        ids = np.sort(exam[rows].unique())
        exams = pd.DataFrame({"exam_id": ids, "positive": [e in with_lesion for e in ids]})
        keep = nested_exams(exams, (fraction,), seed)[fraction]
        out.append(rows & exam.isin(keep).to_numpy())
    return out[0], out[1]


def read_mammo_data(data: Any, progress: bool = False) -> MammoData:
    """Read and check the data a run config's ``data`` section names (see the module doc)."""
    from ...data.mammo_pairs import load_pairs
    from ...data.schema import load_dataset

    manifest_path = Path(data.manifest)
    lesions_path = Path(data.lesions) if data.lesions else None
    if lesions_path is None:  # as load_dataset looks for it, so that messages can name the file
        beside = [manifest_path.with_name(f"lesions.{ext}") for ext in ("parquet", "csv")]
        lesions_path = next((p for p in beside if p.is_file()), None)
    manifest, lesions = load_dataset(manifest_path, lesions_path)
    manifest = manifest.reset_index(drop=True)
    root = manifest_path.parent
    split = manifest["split"].astype(str).to_numpy()
    train = split == data.train_split
    if not train.any():
        raise DataError(f"{manifest_path}: no rows in split {data.train_split!r} (data.train_split)")
    full = train & (manifest["annotation"].astype(str).to_numpy() == data.full_annotation)
    if not full.any():
        raise DataError(f"{manifest_path}: no fully annotated image in split {data.train_split!r} (annotation == "
                        f"{data.full_annotation!r}); stage 1 trains on their lesion masks")  # fmt: skip
    if lesions is None:
        raise DataError(f"{manifest_path}: no lesions table (lesions.csv beside the manifest, or data.lesions): the "
                        "fully annotated images' lesion masks come from it")  # fmt: skip
    candidates = train & ~full if data.use_weak and data.weak_fraction > 0 else np.zeros(len(manifest), bool)
    full, candidates = _fractions(manifest, lesions, full, candidates, data)
    soft = _soft_labels(manifest, candidates, data)
    weak = candidates & np.isfinite(soft)
    test = split == data.test_split
    ids = manifest["image_id"].astype(str).to_numpy()
    masked = _lesions_with_masks(lesions, set(ids[full | test]), root, str(lesions_path))
    if masked is None or not set(masked["image_id"].astype(str)) & set(ids[full]):
        raise DataError(f"{manifest_path}: no fully annotated train image has a lesion in the lesions table; stage 1 "
                        "would learn no lesion")  # fmt: skip
    # read the images used and their contralateral partners (same exam and view), nothing else
    pair_key = manifest["exam_id"].astype(str) + "|" + manifest["view"].astype(str)
    load = pair_key.isin(set(pair_key[full | weak | test])).to_numpy()
    if getattr(data, "cache", None):  # paper scale: the images stay in the cache, read on demand
        from ...data.mammo_cache import load_pairs_cached
        from .caches import open_cache

        reader = open_cache(data.cache, "prepare", tuple(data.image_size), manifest[load], "mammography")
        pairs = load_pairs_cached(manifest[load], masked, root, tuple(data.image_size), reader)
    else:
        pairs = load_pairs(manifest[load], masked, root, tuple(data.image_size), progress=progress)
    pos = np.flatnonzero(load)  # manifest row of each loaded pair
    used = pairs.subset(np.flatnonzero(full[pos] | weak[pos]))
    rows = pos[full[pos] | weak[pos]]
    counts = {
        "full": int(full.sum()), "full_with_lesion": int(used.table["has_lesion"].to_numpy()[full[rows]].sum()),
        "weak": int(weak.sum()), "weak_without_label": int((candidates & ~weak).sum()),
        "train_unused": int((train & ~full & ~weak).sum()), "test": int(test.sum()),
        "test_with_lesion": 0,
    }  # fmt: skip
    test_pairs = pairs.subset(np.flatnonzero(test[pos]))
    counts["test_with_lesion"] = int(test_pairs.table["has_lesion"].sum())
    return MammoData(used, np.flatnonzero(full[rows]), np.flatnonzero(weak[rows]), soft[rows], test_pairs, counts)
