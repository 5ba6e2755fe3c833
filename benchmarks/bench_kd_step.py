"""One KD training step at the paper's size, fed by the DataLoader: loader vs device augmentation (issue 18).

    python benchmarks/bench_kd_step.py [--size 896 640] [--batch 32] [--steps 20] [--workers N] [--json PATH]
    python benchmarks/bench_kd_step.py --quick        # CPU smoke run: 128x96, tiny_cnn, batch 4 (run_all.py)

The step is the SelectiveKD family's (``kd``: the student ResNet-34 classifier-segmenter against a frozen teacher
of the same architecture, both channels-last, bf16 autocast on CUDA; SGD), as ``scripts/cuda_check.sh`` runs it.
Batches come from a float16 ``breastssl cache --mode dbt`` of synthetic stacks through ``SliceDataset`` and a
DataLoader with ``--workers`` workers and pinned memory, exactly as the DBT recipe builds them:

- **loader**: per-sample augmentation in the workers (``train.augment_on: loader``), float32 items;
- **device**: compact items (float16 image, uint8 mask), augmented on the device after the copy
  (``augment_on: device``: ``BatchAugment``).

Each path is also timed on one batch already on the device (the same step, the same augmentation on the device
for the device path): the step's device time. **busy share** = device time / fed time per step: the share of the
wall time the device computes (1.0: the data path never bounds it). Reports steps/s, slices/s and busy shares;
on CUDA wall times are synchronised. Absolute figures name the machine; compare within one run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import Figure, hardware_line, write_figures
from bench_loader_scale import dataset as slice_dataset
from bench_loader_scale import write_cache


def build_strategy(model_name: str, device: torch.device) -> Any:
    """The ``kd`` strategy with a student and a frozen teacher of ``model_name`` (random weights: no download)."""
    from breastssl.models.config import ModelConfig, build_model
    from breastssl.strategies import create_strategy
    from breastssl.strategies.distill import StrategyConfig

    kwargs = {"name": "classifier_segmenter", "backbone": "resnet34"} if model_name == "resnet34" else {}
    cfg = ModelConfig(**(kwargs or {"name": model_name}), pretrained=False)
    torch.manual_seed(0)
    student, teacher = build_model(cfg), build_model(cfg)
    strategy = create_strategy("kd", student, teacher.eval().requires_grad_(False), StrategyConfig(name="kd"))
    strategy.to(device)
    return strategy


def make_step(strategy: Any, device: torch.device, amp: bool) -> Any:
    """One optimiser step on a device batch: channels-last images, autocast, backward, SGD."""
    from breastssl.engine.loop import channels_last_modules

    channels_last_modules(strategy.student, strategy)
    params = [p for p in strategy.student.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)

    def step(batch: dict[str, Any], i: int) -> None:
        batch = {**batch, "image": batch["image"].contiguous(memory_format=torch.channels_last)}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            parts = strategy.loss(batch, i)
        opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        opt.step()

    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Any, steps: int, device: torch.device, warmup: int = 3) -> float:
    """Seconds per call of ``fn(i)`` over ``steps`` calls after ``warmup`` (wall time, device synchronised)."""
    for i in range(warmup):
        fn(i)
    sync(device)
    start = time.perf_counter()
    for i in range(warmup, warmup + steps):
        fn(i)
    sync(device)
    return (time.perf_counter() - start) / steps


def run_path(path: str, ds: Any, step: Any, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Fed and device-only seconds per step of one path."""
    from breastssl.data.device_augment import BatchAugment
    from breastssl.data.transforms import AugmentConfig
    from breastssl.engine.data import to_device

    transform = BatchAugment(AugmentConfig(), seed=0) if path == "device" else None
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch, shuffle=True, drop_last=True,
                                         num_workers=args.workers, pin_memory=device.type == "cuda",
                                         persistent_workers=args.workers > 0)  # fmt: skip

    def batches():
        while True:
            yield from loader

    stream = batches()

    def fed(i: int) -> None:
        batch = to_device(next(stream), device)
        step(transform(batch, i) if transform else batch, i)

    resident = to_device(next(stream), device)

    def device_only(i: int) -> None:
        step(transform(resident, i) if transform else resident, i)

    return {"fed": timed(fed, args.steps, device), "device": timed(device_only, args.steps, device)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs=2, default=(896, 640))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--workers", type=int, default=max((os.cpu_count() or 2) - 2, 0))
    ap.add_argument("--model", default="resnet34", help="resnet34 (classifier_segmenter) or a registry model name")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="CPU smoke: 128x96, tiny_cnn, batch 4, 2 steps")
    ap.add_argument("--json", default=None, help="write the figures here (run_all.py)")
    args = ap.parse_args()
    if args.quick:
        args.size, args.batch, args.steps, args.model, args.workers = (128, 96), 4, 2, "tiny_cnn", 0
    device = torch.device(args.device)
    amp = device.type == "cuda"
    print(hardware_line())
    precision = "bf16" if amp else "fp32"
    print(f"kd step: {args.model} student + frozen teacher, {args.size[0]}x{args.size[1]}, batch {args.batch}, "
          f"{precision}, channels-last, {args.workers} workers, {args.steps} steps, {device}")  # fmt: skip
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        slices = max(args.batch, 16)
        cache = write_cache(root, slices, tuple(args.size))
        for path in ("loader", "device"):
            ds = slice_dataset(cache, root, slices, path == "loader", path == "device", tuple(args.size))
            strategy = build_strategy(args.model, device)
            rows[path] = run_path(path, ds, make_step(strategy, device, amp), args, device)
    figures = []
    print(f"\n{'path':8s} {'fed s/step':>11s} {'device s/step':>14s} {'slices/s':>9s} {'busy share':>11s}")
    for path, r in rows.items():
        busy, rate = r["device"] / r["fed"], args.batch / r["fed"]
        print(f"{path:8s} {r['fed']:11.4f} {r['device']:14.4f} {rate:9.1f} {busy:11.2f}")
        figures += [Figure(f"kd step {path} aug: fed slices/s ({device.type})", rate, "slices/s"),
                    Figure(f"kd step {path} aug: busy share ({device.type})", busy, "")]  # fmt: skip
    print(f"device / loader augmentation, fed slices/s: {rows['loader']['fed'] / rows['device']['fed']:.2f}x")
    write_figures(args.json, "bench_kd_step", figures)


if __name__ == "__main__":
    main()
