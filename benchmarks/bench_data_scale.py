"""Augmentation at the paper's DBT slice size (896 × 640): loader path vs device path (issue 18).

    python benchmarks/bench_data_scale.py [--quick] [--batch 16] [--rate 2000] [--json PATH]

Loader path: ``transforms.augment`` (scipy/skimage), one slice per call, as a DataLoader worker runs it.
Device path: ``DeviceAugment`` on a batch of ``--batch`` slices, on the CPU with one thread and, where CUDA is
available, on the GPU. Both use the default ``AugmentConfig`` and fresh random parameters every call, so each
figure averages over which ops fire. Reports slices/s per core (per device for CUDA) and the cores each path needs
to feed a GPU consuming ``--rate`` slices/s (issue 18: ~2,000 for ResNet-34 at 896 × 640 on one current GPU).
CPU timings are interleaved round-robin and read the process's CPU time with one thread (``_common``).
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time

import numpy as np
import torch
from _common import Figure, hardware_line, interleaved, write_figures

from breastssl.data.device_augment import DeviceAugment
from breastssl.data.transforms import AugmentConfig, augment

H, W = 896, 640


def slice_and_mask(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A (H, W) slice in [0, 1] with smooth texture and a lesion blob, and the blob's mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W].astype(np.float32)
    img = 0.4 + 0.2 * np.sin(yy / 40.0) * np.cos(xx / 30.0) + 0.05 * rng.random((H, W), dtype=np.float32)
    blob = (yy - 300) ** 2 + (xx - 400) ** 2 < 60**2
    return np.clip(img + 0.3 * blob, 0, 1).astype(np.float32), blob.astype(np.float32)


def cuda_rate(aug: DeviceAugment, images: torch.Tensor, masks: torch.Tensor, reps: int) -> float:
    """Slices/s of the device path on the GPU (wall time, synchronised), over ``reps`` batches after warm-up."""
    x, m = images.cuda(), masks.cuda()
    seeds = itertools.count()
    for _ in range(3):
        aug(x, m, torch.Generator().manual_seed(next(seeds)))
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        aug(x, m, torch.Generator().manual_seed(next(seeds)))
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return len(x) / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds (well under 2 minutes)")
    ap.add_argument("--batch", type=int, default=16, help="device-path batch size")
    ap.add_argument("--rate", type=float, default=2000.0, help="GPU consumption, slices/s, to feed")
    ap.add_argument("--json", default=None, help="write the figures here (run_all.py)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # per-core figures: the loader path is one slice per worker process
    reps = 3 if args.quick else 10
    cfg = AugmentConfig()
    aug = DeviceAugment(cfg)
    img, mask = slice_and_mask()
    images = torch.from_numpy(img).expand(args.batch, 1, H, W).contiguous()
    masks = torch.from_numpy(mask).expand(args.batch, 1, H, W).contiguous()
    seeds = itertools.count()

    def loader() -> None:  # one batch's worth of slices, one at a time, each with its own draws
        for _ in range(args.batch):
            augment(img, mask, np.random.default_rng(next(seeds)), cfg)

    def device() -> None:
        aug(images, masks, torch.Generator().manual_seed(next(seeds)))

    print(hardware_line())
    times = interleaved({"loader": loader, "device": device}, reps=reps, warmup=1)
    ms = {k: statistics.median(v) / args.batch for k, v in times.items()}  # per slice
    rates = {k: 1000.0 / v for k, v in ms.items()}
    ratio = statistics.median(b / a for a, b in zip(times["device"], times["loader"], strict=True))
    rows = [("loader: transforms.augment, 1 slice/call", "CPU, 1 thread", ms["loader"], rates["loader"]),
            (f"device: DeviceAugment, batch {args.batch}", "CPU, 1 thread", ms["device"], rates["device"])]  # fmt: skip
    figures = [
        Figure("loader path augmentation at 896x640", rates["loader"], "slices/s/core", note="CPU, 1 thread"),
        Figure(
            "device path augmentation at 896x640 (CPU)",
            rates["device"],
            "slices/s/core",
            note=f"batch {args.batch}, 1 thread",
        ),  # fmt: skip
        Figure("device path / loader path per core (CPU)", ratio, "x", ">= 1", "paired per round"),
        Figure(f"cores to feed {args.rate:,.0f} slices/s, loader path", args.rate / rates["loader"], "cores"),
        Figure(f"cores to feed {args.rate:,.0f} slices/s, device path on CPU", args.rate / rates["device"], "cores"),
    ]
    if torch.cuda.is_available():
        rate = cuda_rate(aug, images, masks, reps=20 if args.quick else 100)
        rows.append((f"device: DeviceAugment, batch {args.batch}", torch.cuda.get_device_name(0), 1000 / rate, rate))
        figures.append(Figure("device path augmentation at 896x640 (CUDA)", rate, "slices/s", f">= {args.rate:g}",
                              f"batch {args.batch}, {torch.cuda.get_device_name(0)}"))  # fmt: skip

    print(f"\naugmentation of {H}x{W} slices, default AugmentConfig; {reps} interleaved rounds of {args.batch} slices")
    print(
        f"{'path':44s} {'hardware':24s} {'ms/slice':>9s} {'slices/s':>9s} {'cores for ' + f'{args.rate:,.0f}/s':>16s}"
    )
    for name, hw, per, rate in rows:
        cores = "-" if hw not in ("CPU, 1 thread",) else f"{math.ceil(args.rate / rate):,d}"
        print(f"{name:44s} {hw[:24]:24s} {per:9.2f} {rate:9.1f} {cores:>16s}")
    print(f"device / loader per core (CPU, paired rounds): {ratio:.2f}x")
    write_figures(args.json, "bench_data_scale", figures)


if __name__ == "__main__":
    main()
