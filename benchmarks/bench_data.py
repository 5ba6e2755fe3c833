"""Data-path benchmark: DBT DICOM reading speed and cached loading throughput (DESIGN §8).

Prints: slices/s reading Breast Tomosynthesis DICOM stacks through ``read_image``; slices/s through a
torch DataLoader (with workers) over the preprocessing cache; and, when ``breastssl.models`` is
available, the slices/s a forward+backward of ``tiny_cnn`` consumes on the same batches, with the
ratio loading / consumption (the issue's aim: ≥ 3×). Ratios are measured in one run; absolute
figures depend on the machine (printed with the CPU count).

    python benchmarks/bench_data.py [--n 6] [--size 128 96] [--workers 2] [--batch 64]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from breastssl.commands.synth import run_synth
from breastssl.data.cache import CacheReader, build_cache
from breastssl.data.dicom import read_image


class CachedSlices(Dataset):
    """Every slice of every cached stack as a (1, H, W) float32 tensor."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.reader: CacheReader | None = None
        index = CacheReader(root).index
        self.items = [(k, z) for k, shape in enumerate(index["shape"]) for z in range(int(eval_shape(shape)[0]))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.reader is None:  # opened lazily in each worker
            self.reader = CacheReader(self.root)
        k, z = self.items[i]
        return torch.from_numpy(np.asarray(self.reader[k][z], dtype=np.float32))[None]


def eval_shape(text: str) -> list[int]:
    """Shape list from the index's JSON text."""
    import json

    return json.loads(text)


def bench_read(root: Path, manifest: pd.DataFrame) -> float:
    start, slices = time.perf_counter(), 0
    for row in manifest.to_dict("records"):
        slices += read_image(root / row["path"], row).pixels.shape[0]
    return slices / (time.perf_counter() - start)


def bench_loader(cache: Path, workers: int, batch: int, epochs: int = 3) -> tuple[float, torch.Tensor]:
    ds = CachedSlices(cache)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0)
    first = next(iter(loader))
    start, n = time.perf_counter(), 0
    for _ in range(epochs):
        for x in loader:
            n += x.shape[0]
    return n / (time.perf_counter() - start), first


def bench_train_step(x: torch.Tensor, steps: int = 10) -> float | None:
    try:
        from breastssl.models import create_model
    except ImportError:
        return None
    model = create_model("tiny_cnn")
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    target = torch.zeros(x.shape[0], 1)

    def step() -> None:
        out = model(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            out["logits"].reshape(x.shape[0], -1)[:, :1], target
        )
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * x.shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6, help="synthetic DBT exams (4 stacks each)")
    parser.add_argument("--size", type=int, nargs=2, default=[128, 96])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "dbt"
        run_synth("dbt", root, args.n, 0, "dicom", workers=args.workers, quiet=True)
        manifest = pd.read_csv(root / "manifest.csv")
        shape = (int(manifest["rows"].iloc[0]), int(manifest["columns"].iloc[0]), int(manifest["n_slices"].mean()))
        read_rate = bench_read(root, manifest)
        t0 = time.perf_counter()
        build_cache(root / "manifest.csv", Path(tmp) / "cache", tuple(args.size), workers=args.workers)
        build_s = time.perf_counter() - t0
        load_rate, batch = bench_loader(Path(tmp) / "cache", args.workers, args.batch)
        step_rate = bench_train_step(batch)
    print(f"machine: {os.cpu_count()} CPU cores; torch {torch.__version__}")
    print(
        f"DBT DICOM read (read_image, stored {shape[0]}x{shape[1]}, ~{shape[2]} slices/stack): "
        f"{read_rate:,.0f} slices/s"
    )
    print(
        f"cache build ({len(manifest)} stacks, size {args.size[0]}x{args.size[1]}, {args.workers} workers): "
        f"{build_s:.2f} s"
    )
    print(f"cached loading (DataLoader, {args.workers} workers, batch {args.batch}): {load_rate:,.0f} slices/s")
    if step_rate is not None:
        print(f"tiny_cnn forward+backward on the same batches: {step_rate:,.0f} slices/s")
        print(f"ratio cached loading / training consumption: {load_rate / step_rate:.1f}x (aim >= 3x)")


if __name__ == "__main__":
    main()
