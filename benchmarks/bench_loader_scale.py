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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=32, help="slices per stack (two stacks)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rate", type=float, default=2000.0, help="GPU consumption, slices/s, to feed")
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
    print(f"\n{H}x{W}, batch {args.batch}; one thread, process CPU time; cores to feed {args.rate:,.0f} slices/s")
    print(f"{'variant':28s} {'MB/slice':>8s} {'item/s':>8s} {'collate/s':>10s} {'pin copy/s':>11s} "
          f"{'worker cores':>13s} {'pin thread':>11s}")  # fmt: skip
    figures = []
    for name, r in rates.items():
        per_slice = 1.0 / r["item"] + 1.0 / r["collate"]  # a worker's CPU seconds per slice
        cores = args.rate * per_slice
        pin_load = args.rate / r["pin copy"]  # share of the one pin-memory thread (> 1: it bounds the rank)
        print(f"{name:28s} {r['MB/slice']:8.2f} {r['item']:8.1f} {r['collate']:10.1f} {r['pin copy']:11.1f} "
              f"{cores:13.1f} {pin_load:10.2f}x")  # fmt: skip
        figures += [
            Figure(f"loader {name}: item + collate", 1.0 / per_slice, "slices/s/core",
                   note=f"worker cores for {args.rate:g}/s: {cores:.1f}"),
            Figure(f"loader {name}: pin-memory copy", r["pin copy"], "slices/s (one thread)",
                   note=f"{r['MB/slice']:.2f} MB/slice; load at {args.rate:g}/s: {pin_load:.2f}x"),
        ]  # fmt: skip
    write_figures(args.json, "bench_loader_scale", figures)


if __name__ == "__main__":
    main()
