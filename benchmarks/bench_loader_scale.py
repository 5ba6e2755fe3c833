"""The DataLoader at the paper's DBT slice size (issue 18): what each stage of a training batch costs per core.

    python benchmarks/bench_loader_scale.py [--slices 32] [--batch 16] [--reps 3] [--rate 2000] [--quick] [--json P]

Builds a float16 ``breastssl cache --mode dbt`` of two 896 × 640 stacks (the default cache dtype) and times, with
one thread and process CPU time, the three stages a batch goes through on its way to a GPU:

- **item**: ``SliceDataset[i]`` as the DBT recipe builds it: the slice read from the cache (+ its mask), with the
  per-sample augmentation (``augment_on: loader``) or without it (``augment_on: device``: the loop augments);
- **collate**: ``default_collate`` of ``--batch`` items into one batch (in a DataLoader worker);
- **pin copy**: copying the collated batch into another host buffer: the work of the DataLoader's ONE pin-memory
  thread (``pin_memory=True`` on CUDA) per rank, whatever the number of workers. Pinned and pageable copies cost
  the same memory bandwidth; here no GPU is needed to measure it.

Items travel as the dataset yields them (``items: float32``: image and mask float32) or compact (``items:
compact``: image float16 as the cache stores it, mask uint8; ``SliceDataset(compact=True)``, which the DBT
recipe uses when it augments on the device: the device transform makes them float32 there).

Reports slices/s per core and the cores each stage needs to feed a GPU consuming ``--rate`` slices/s; the pin copy
runs on one thread, so its rate is a ceiling for one rank however many workers load. Ratios within one run.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _common import Figure, hardware_line, write_figures
from bench_decode_scale import per_core
from torch.utils.data import default_collate

H, W = 896, 640
MG_SIZE = (1024, 832)


def write_cache(root: Path, slices: int, size: tuple[int, int] = (H, W)) -> Path:
    """Two (slices, H, W) stacks saved as .npy, cached as float16 at ``size``; returns the cache folder."""
    from breastssl.data.cache import build_cache

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: size[0], : size[1]].astype(np.float32)
    base = 0.4 + 0.2 * np.sin(yy / 40.0) * np.cos(xx / 30.0)
    rows = []
    for k in range(2):
        stack = np.clip(base + 0.05 * rng.random((slices, *size), dtype=np.float32), 0, 1)
        np.save(root / f"s{k}.npy", stack.astype(np.float32))
        rows.append({"patient_id": f"p{k}", "exam_id": f"e{k}", "image_id": f"s{k}", "laterality": "L",
                     "view": "CC", "modality": "DBT", "vendor": "bench", "site": "s", "path": f"s{k}.npy",
                     "n_slices": slices, "breast_label": "normal", "annotation": "none", "split": "train"})  # fmt: skip
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    build_cache(root / "manifest.csv", root / "cache", size, workers=1, dtype="float16", mode="dbt")
    return root / "cache"


def dataset(cache: Path, root: Path, slices: int, augment: bool, compact: bool, size: tuple[int, int] = (H, W)):
    """A SliceDataset over every slice of both stacks, read from the cache (one in four with a lesion mask)."""
    from breastssl.data.cache import CacheReader
    from breastssl.data.dbt_slices import SliceDataset, StackStore
    from breastssl.data.transforms import AugmentConfig

    manifest = pd.read_csv(root / "manifest.csv")
    store = StackStore(manifest, root, size, None, 1, 1024.0, CacheReader(cache))
    ids = [f"s{k}" for k in range(2) for _ in range(slices)]
    table = pd.DataFrame({"image_id": ids, "slice": [z for _ in range(2) for z in range(slices)], "label": 0.0,
                          "sup_cls": 1.0, "sup_seg": 0.0, "kd": 0.0})  # fmt: skip
    table.loc[::4, "sup_seg"] = 1.0
    return SliceDataset(table, store, AugmentConfig() if augment else None, seed=0, compact=compact)


def mammo_dataset(n: int, size: tuple[int, int] = MG_SIZE):
    """The self-training dataset over ``n`` in-memory pairs at ``size`` (as the mammography recipe loads them),
    a quarter fully annotated, the rest weak with a pseudo mask (the TP role: every item carries image, aux, mask)."""
    from breastssl.data.mammo_pairs import PairArrays
    from breastssl.data.self_training_data import FULL, TP, SelfTrainingDataset

    rng = np.random.default_rng(0)
    images = rng.random((n, 1, *size), dtype=np.float32)
    masks = np.zeros((n, 1, *size), np.uint8)
    table = pd.DataFrame({"image_id": [f"m{i}" for i in range(n)], "has_lesion": False})
    pairs = PairArrays(images, images[::-1].copy(), masks, table)
    full = np.arange(n) % 4 == 0
    ds = SelfTrainingDataset(pairs, full, np.full(n, 0.9, np.float32))
    ds.roles[:] = np.where(full, FULL, TP)
    return ds


def mammo_cached_dataset(root: Path, n: int, size: tuple[int, int] = MG_SIZE):
    """The self-training dataset over ``n`` pairs read from a float16 ``breastssl cache`` (the recipe's data.cache),
    compact items (float16 image, aux, mask); roles as :func:`mammo_dataset`."""
    from breastssl.data.cache import CacheReader, build_cache
    from breastssl.data.mammo_cache import load_pairs_cached
    from breastssl.data.self_training_data import FULL, TP
    from breastssl.run.self_training import self_training_data

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[: size[0], : size[1]].astype(np.float32)
    breast = ((yy - size[0] / 2) / (0.45 * size[0])) ** 2 + (xx / (0.8 * size[1])) ** 2 < 1  # chest wall left
    rows = []
    for k in range(n):
        img = np.where(breast, 0.5 + 0.1 * rng.random(size, dtype=np.float32), 0.0).astype(np.float32)
        np.save(root / f"m{k}.npy", img)
        rows.append({"patient_id": f"p{k // 2}", "exam_id": f"e{k // 2}", "image_id": f"m{k}",
                     "laterality": "LR"[k % 2], "view": "CC", "modality": "MG", "vendor": "bench", "site": "s",
                     "path": f"m{k}.npy", "n_slices": 1, "breast_label": "normal", "annotation": "none",
                     "split": "train"})  # fmt: skip
    manifest = pd.DataFrame(rows)
    manifest.to_csv(root / "mg.csv", index=False)
    build_cache(root / "mg.csv", root / "mg_cache", size, workers=1)
    pairs = load_pairs_cached(manifest, None, root, size, CacheReader(root / "mg_cache"))
    full = np.arange(n) % 4 == 0
    ds = self_training_data(pairs, np.flatnonzero(full), np.flatnonzero(~full), np.full(n, 0.9), compact=True)
    ds.roles[:] = np.where(np.r_[full[full], full[~full]], FULL, TP)
    return ds


def stage_rates(ds, batch: int, reps: int) -> dict[str, float]:
    """item, collate and pin-copy slices/s per core for one dataset."""
    n = len(ds)
    items = [ds[i] for i in range(batch)]
    collated = default_collate(items)
    target = {k: torch.empty_like(v) for k, v in collated.items()}

    def copy() -> None:
        for k, v in collated.items():
            target[k].copy_(v)

    return {
        "item": per_core(lambda: [ds[i] for i in range(n)], n, reps),
        "collate": per_core(lambda: default_collate(items), batch, reps),
        "pin copy": per_core(copy, batch, max(reps, 5)),
        "MB/slice": sum(v.element_size() * v[0].numel() for v in collated.values()) / 1e6,
    }


def report(rates: dict[str, dict[str, float]], rate: float, what: str, unit: str) -> list[Figure]:
    """Print one table row per variant and return its figures: worker cores (item + collate, CPU seconds per
    ``unit``) and the load on the one pin-memory thread (> 1: it bounds the rank) to feed ``rate`` per second."""
    figures = []
    for name, r in rates.items():
        per_item = 1.0 / r["item"] + 1.0 / r["collate"]  # a worker's CPU seconds per item
        cores, pin = rate * per_item, rate / r["pin copy"]
        label = f"{what} ({name})" if what else name
        print(f"{(unit + 's ' + name if what else name):28s} {r['MB/slice']:8.2f} {r['item']:8.1f} "
              f"{r['collate']:10.1f} {r['pin copy']:11.1f} {cores:13.1f} {pin:10.2f}x")  # fmt: skip
        figures += [
            Figure(f"loader {label}: item + collate", 1.0 / per_item, f"{unit}s/s/core",
                   note=f"worker cores for {rate:g}/s: {cores:.1f}"),
            Figure(f"loader {label}: pin-memory copy", r["pin copy"], f"{unit}s/s (one thread)",
                   note=f"{r['MB/slice']:.2f} MB/{unit}; load at {rate:g}/s: {pin:.2f}x"),
        ]  # fmt: skip
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=32, help="slices per stack (two stacks)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rate", type=float, default=2000.0, help="GPU consumption, slices/s, to feed")
    ap.add_argument(
        "--mg-rate",
        type=float,
        default=670.0,
        help="GPU consumption, mammography pairs/s (two backbone passes on 1.49x the pixels: ~2000/3)",
    )
    ap.add_argument("--quick", action="store_true", help="8 slices per stack, batch 8, 2 repetitions")
    ap.add_argument("--json", default=None, help="write the figures here (run_all.py)")
    args = ap.parse_args()
    if args.quick:
        args.slices, args.batch, args.reps = 8, 8, 2
    torch.set_num_threads(1)
    print(hardware_line())
    variants = {"loader aug, items float32": (True, False), "device aug, items float32": (False, False),
                "device aug, items compact": (False, True)}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cache = write_cache(root, args.slices)
        rates = {name: stage_rates(dataset(cache, root, args.slices, aug, compact), args.batch, args.reps)
                 for name, (aug, compact) in variants.items()}  # fmt: skip
        mg = {
            "in memory, float32": stage_rates(mammo_dataset(2 * args.slices), args.batch, args.reps),
            "cache, compact": stage_rates(mammo_cached_dataset(root, 2 * args.slices), args.batch, args.reps),
        }
    print(f"\n{H}x{W}, batch {args.batch}; one thread, process CPU time; cores to feed {args.rate:,.0f} slices/s")
    print(f"{'variant':28s} {'MB/slice':>8s} {'item/s':>8s} {'collate/s':>10s} {'pin copy/s':>11s} "
          f"{'worker cores':>13s} {'pin thread':>11s}")  # fmt: skip
    figures = report(rates, args.rate, "", "slice")
    print(f"\nmammography pairs {MG_SIZE[0]}x{MG_SIZE[1]} (image + aux + mask), batch {args.batch}; "
          f"to feed {args.mg_rate:,.0f} pairs/s")  # fmt: skip
    figures += report(mg, args.mg_rate, "mammography pairs", "pair")
    write_figures(args.json, "bench_loader_scale", figures)


if __name__ == "__main__":
    main()
