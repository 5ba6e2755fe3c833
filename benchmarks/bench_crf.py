"""Dense-CRF mining cost and agreement (seed 002, stage 2.1): backend × coarse factor × workers.

    python benchmarks/bench_crf.py [--quick] [--json F] [--n-demo 48] [--n-paper 4] [--cores 16]

Inputs are synthetic mammograms with decoder-like lesion maps (``postprocess/crf_scenes.py``) at demo size
(96×64, the self-training experiment's) and the paper's size (1024×832: 800×1024 rounded to a multiple of
32). At paper size the CRF's kernel widths are scaled with the image (×1024/96), so the CRF does there what
it does at demo size. For each path the benchmark reports the mining time per image (``crf_masks``, the
function mining calls: resampling, CRF, small-region removal) as process CPU time with one worker, and wall
time with the pool; and its agreement with the exact path (pydensecrf at full resolution; the NumPy one
when pydensecrf is absent): pooled IoU of the masks, mean Dice per image, and the share of images whose
mining decision (mask empty or not) is the same.

Mining / one training epoch at paper size is an estimate, not a measurement (no GPU here): per image,
(scoring + CRF CPU time / cores) / training time, with the paper's own figures as defaults: training 15 h
for 50 epochs over 25% of its ~15.5k labelled training images on 4 GPUs (0.279 s per image), scoring
0.1 s per image on one GPU (÷4 GPUs), and ``--cores`` CPU cores for the CRF pool.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
from _common import Figure, hardware_line, write_figures

from breastssl.postprocess import CRFParams, crf_masks, have_pydensecrf
from breastssl.postprocess.crf_scenes import mammo_scenes

DEMO, PAPER = (96, 64), (1024, 832)
PAPER_TRAIN_S = 15 * 3600 / 50 / (0.25 * 17012 * 10 / 11)  # s per image: 15 h, 50 epochs, 25% of the train split
PAPER_SCORE_S = 0.1 / 4  # s per image: the paper's 0.1 s per image on one GPU, over its 4 GPUs


@dataclass
class Result:
    size: str
    backend: str
    factor: float
    workers: int
    cpu_ms: float  # per image, all processes
    wall_ms: float  # per image
    iou: float = float("nan")  # pooled, vs the exact path
    dice: float = float("nan")  # mean per image
    decision: float = float("nan")  # share of images with the same empty / non-empty mask
    iou_gt: float = float("nan")  # pooled, vs the ground-truth lesions


def timed_masks(maps: np.ndarray, images: np.ndarray, prm: CRFParams, workers: int) -> tuple[np.ndarray, float, float]:
    """Masks, CPU seconds (this process + finished children) and wall seconds of one ``crf_masks`` call."""
    t0, c0, w0 = os.times(), time.process_time(), time.perf_counter()
    masks = crf_masks(maps, images, prm, min_area=4, workers=workers)
    t1, c1, w1 = os.times(), time.process_time(), time.perf_counter()
    children = (t1.children_user + t1.children_system) - (t0.children_user + t0.children_system)
    return masks, (c1 - c0) + children, w1 - w0


def agreement(masks: np.ndarray, ref: np.ndarray) -> tuple[float, float, float]:
    """Pooled IoU, mean per-image Dice (1 when both are empty) and decision agreement of (N, H, W) masks."""
    inter = (masks & ref).sum(axis=(1, 2))
    union = (masks | ref).sum(axis=(1, 2))
    sizes = masks.sum(axis=(1, 2)) + ref.sum(axis=(1, 2))
    dice = np.where(sizes > 0, 2 * inter / np.maximum(sizes, 1), 1.0)
    same = (masks.any(axis=(1, 2)) == ref.any(axis=(1, 2))).mean()
    return float(inter.sum() / max(union.sum(), 1)), float(dice.mean()), float(same)


def params(size: tuple[int, int], backend: str, factor: float) -> CRFParams:
    """The CRF's defaults, kernel widths scaled with the image height; ``factor`` set explicitly."""
    k = size[0] / DEMO[0]
    base = CRFParams()
    return base.with_(
        sxy_gaussian=base.sxy_gaussian * k, sxy_bilateral=base.sxy_bilateral * k, backend=backend,
        scale=factor, max_side=0,
    )  # fmt: skip


def run_size(label: str, size: tuple[int, int], n: int, paths: list[tuple[str, float, list[int]]]) -> list[Result]:
    images, maps, gt = mammo_scenes(n, *size, seed=0)
    exact_backend = "pydensecrf" if have_pydensecrf() else "numpy"
    results, ref = [], None
    for backend, factor, workers_list in [(exact_backend, 1.0, [1])] + paths:
        if backend == "pydensecrf" and not have_pydensecrf():
            continue
        for workers in workers_list:
            if (backend, factor, workers) == (exact_backend, 1.0, 1) and ref is not None:
                continue
            masks, cpu, wall = timed_masks(maps, images, params(size, backend, factor), workers)
            r = Result(label, backend, factor, workers, 1e3 * cpu / n, 1e3 * wall / n)
            ref = masks if ref is None else ref
            r.iou, r.dice, r.decision = agreement(masks, ref)
            r.iou_gt = agreement(masks, gt)[0]
            results.append(r)
            print(f"  {label:5} {backend:10} f={factor:<3g} workers={workers}: {r.cpu_ms:9.1f} ms CPU/image, "
                  f"{r.wall_ms:9.1f} ms wall/image; vs exact IoU {r.iou:.3f} Dice {r.dice:.3f} "
                  f"decision {r.decision:.3f}; vs GT IoU {r.iou_gt:.3f}", flush=True)  # fmt: skip
    return results


def figures(results: list[Result], cores: int, train_s: float, score_s: float) -> list[Figure]:
    figs = []
    for r in results:
        tag = f"{r.size} {r.backend} f={r.factor:g} workers={r.workers}"
        if r.workers == 1:
            figs.append(Figure(f"CRF mining CPU time per image, {tag}", r.cpu_ms, "ms"))
        else:
            figs.append(Figure(f"CRF mining wall time per image, {tag}", r.wall_ms, "ms", note="shared machine"))
        if r.workers == 1 and not (r.factor == 1 and r.iou == 1.0):
            figs.append(Figure(f"mask IoU vs exact, {tag}", r.iou, "", note=f"decision agreement {r.decision:.3f}"))
        if r.size == "paper" and r.workers == 1:
            ratio = (score_s + r.cpu_ms / 1e3 / cores) / train_s
            target = "<= 1" if r.factor == 4 else ""
            figs.append(Figure(f"mining / training epoch (estimate), {tag}", ratio, "x", target,
                               f"{cores} cores; paper's train/score times"))  # fmt: skip
    return figs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few images, fewer paths (about a minute or two)")
    ap.add_argument("--json", default=None, help="write the figures to this JSON file")
    ap.add_argument("--n-demo", type=int, default=48)
    ap.add_argument("--n-paper", type=int, default=4)
    ap.add_argument("--cores", type=int, default=16, help="CPU cores of the mining machine, for the epoch ratio")
    ap.add_argument("--train-s", type=float, default=PAPER_TRAIN_S, help="training seconds per image (paper)")
    ap.add_argument("--score-s", type=float, default=PAPER_SCORE_S, help="scoring seconds per image (paper)")
    args = ap.parse_args()
    n_demo, n_paper = (16, 2) if args.quick else (args.n_demo, args.n_paper)
    pool = [1, 2] if (os.cpu_count() or 1) > 1 else [1]
    print(hardware_line())
    print(f"pydensecrf: {'installed' if have_pydensecrf() else 'absent (exact = NumPy at full resolution)'}")
    demo = [("pydensecrf", 1.0, [2]), ("pydensecrf", 2.0, pool), ("numpy", 1.0, pool), ("numpy", 2.0, pool)]
    demo += [("dense", 1.0, [1])]  # the NumPy backend before this change: the N² kernel
    paper = [("pydensecrf", f, [1]) for f in (2.0, 4.0, 8.0)] + [("numpy", f, [1]) for f in (4.0, 8.0)]
    paper += [("pydensecrf", 4.0, pool[1:]), ("numpy", 4.0, pool[1:])]
    if not args.quick:
        paper += [("numpy", 1.0, [1]), ("numpy", 2.0, [1])]
    print(f"demo {DEMO[0]}x{DEMO[1]}, {n_demo} images:")
    results = run_size("demo", DEMO, n_demo, demo)
    print(f"paper {PAPER[0]}x{PAPER[1]}, {n_paper} images (kernel widths x{PAPER[0] / DEMO[0]:.1f}):")
    results += run_size("paper", PAPER, n_paper, paper)
    figs = figures(results, args.cores, args.train_s, args.score_s)
    print(f"\nmining / epoch estimate: train {args.train_s:.3f} s/image, score {args.score_s:.3f} s/image, "
          f"{args.cores} cores")  # fmt: skip
    for f in figs:
        print(f"{f.name:70} {f.value:10.3f} {f.unit:3} {f.target}")
    write_figures(args.json, "bench_crf", figs)


if __name__ == "__main__":
    sys.exit(main())
