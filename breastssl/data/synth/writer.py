"""Turn per-item generators into an on-disk dataset: files, manifest, lesions table, statistics.

A modality plugs in with a :class:`Modality`: ``make(index) -> ItemRows`` writes the item's files
under the output folder and returns its manifest and lesion rows. Items are generated in a process
pool (each seeded from (seed, index) alone, so the result does not depend on the worker count),
splits are assigned by patient, stratified by (vendor or site, class), and everything is written to a
temporary folder that is renamed into place only when complete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...fsutil import atomic_dir
from ..schema import LESION_COLUMNS, MANIFEST_COLUMNS, validate_lesions, validate_manifest, write_table
from .common import rng_for


@dataclass
class ItemRows:
    """What generating one item (an exam, or an ultrasound image) produced."""

    manifest: list[dict[str, Any]]
    lesions: list[dict[str, Any]] = field(default_factory=list)
    stratum: str = ""  # key for stratified splitting, e.g. "Hologic/cancer"
    group: str = ""  # items with the same non-empty group (e.g. one patient's images) share one split
    split: str = ""  # a fixed split (e.g. an independent test site); empty: assigned by stratum


@dataclass
class Modality:
    """A generator plugin. ``make(out_dir, fmt, seed, index)`` must be a picklable top-level callable."""

    name: str
    make: Callable[[Path, str, int, int], ItemRows]
    summarize: Callable[[pd.DataFrame, pd.DataFrame], dict[str, Any]]
    preview: Callable[[Path, pd.DataFrame, pd.DataFrame, Path], None] | None = None


def _run(args: tuple) -> ItemRows:
    make, out, fmt, seed, index = args
    return make(out, fmt, seed, index)


def assign_splits(items: list[ItemRows], fractions: dict[str, float], seed: int) -> None:
    """Give every row of an item the same split, stratified by ``item.stratum``, in place.

    Items with a fixed ``split`` keep it; items sharing a ``group`` are split as one unit (stratum of
    the group's first item). Without groups or fixed splits, each item is its own unit.
    """
    names = list(fractions)
    probs = np.array([fractions[n] for n in names], dtype=float)
    probs = probs / probs.sum()
    units: dict[object, list[int]] = {}
    for i, item in enumerate(items):
        if item.split:
            for row in item.manifest:
                row["split"] = item.split
        else:
            units.setdefault(item.group or i, []).append(i)
    by_stratum: dict[str, list[list[int]]] = {}
    for members in units.values():
        by_stratum.setdefault(items[members[0]].stratum, []).append(members)
    for k, (_, idx) in enumerate(sorted(by_stratum.items())):
        order = rng_for(seed, 10**6 + k).permutation(len(idx))
        bounds = np.round(np.cumsum(probs) * len(idx)).astype(int)
        for rank, j in enumerate(order):
            split = names[int(np.searchsorted(bounds, rank, side="right"))]
            for member in idx[j]:
                for row in items[member].manifest:
                    row["split"] = split


def _ordered(df: pd.DataFrame, schema: dict[str, str]) -> pd.DataFrame:
    """Schema columns first (all present, even for an empty table), extras after."""
    for col in schema:
        if col not in df.columns:
            df[col] = pd.Series(dtype=object)
    return df[list(schema) + [c for c in df.columns if c not in schema]]


def generate_dataset(
    modality: Modality,
    out: str | Path,
    n: int,
    seed: int,
    fmt: str = "dicom",
    splits: dict[str, float] | None = None,
    workers: int | None = None,
    preview: bool = False,
    overwrite: bool = False,
    config: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Generate ``n`` items into ``out``; returns the dataset statistics (also in ``dataset.json``)."""
    if fmt not in {"dicom", "npy"}:
        raise ValueError(f"format must be 'dicom' or 'npy', not {fmt!r}")
    workers = workers or min(os.cpu_count() or 1, 8)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        jobs = [(modality.make, tmp, fmt, seed, i) for i in range(n)]
        items: list[ItemRows] = []
        if workers > 1 and n > 1:
            with ProcessPoolExecutor(workers) as pool:
                for item in pool.map(_run, jobs, chunksize=max(1, n // (workers * 8))):
                    items.append(item)
                    if progress:
                        progress(len(items), n)
        else:
            for job in jobs:
                items.append(_run(job))
                if progress:
                    progress(len(items), n)
        assign_splits(items, splits or {"train": 0.6, "val": 0.15, "test": 0.25}, seed)
        manifest = pd.DataFrame([r for it in items for r in it.manifest])
        lesions = pd.DataFrame([r for it in items for r in it.lesions])
        manifest = _ordered(manifest, MANIFEST_COLUMNS)
        lesions = _ordered(lesions, LESION_COLUMNS)
        validate_manifest(manifest, tmp, "generated manifest")
        validate_lesions(lesions, manifest, "generated lesions")
        write_table(manifest, tmp / "manifest.csv")
        write_table(lesions, tmp / "lesions.csv")
        stats = {
            "modality": modality.name,
            "n_items": n,
            "seed": seed,
            "format": fmt,
            "config": config or {},
            "statistics": modality.summarize(manifest, lesions),
        }
        (tmp / "dataset.json").write_text(json.dumps(stats, indent=2, default=float))
        if preview and modality.preview is not None:
            modality.preview(tmp, manifest, lesions, tmp / "preview.png")
    return stats
