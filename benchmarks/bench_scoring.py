"""Scoring benchmark: teacher/pool scoring throughput, its memory as the pool grows, DBT stack inference latency.

(a) ``breastssl.data.dbt_slices.score_slices`` over a bare ``model(x)`` loop on the same preloaded stacks and
    the same batches (one stack at a time, ``batch_size`` slices per forward), round-robin in one run; the
    ratio is the result (issue 9: ≥ 0.9). Two more bare loops show what the scoring could gain: batches
    filled across stacks, and the classification head alone (``classify``: no segmentation decoder).
(b) Peak memory of scoring pools of 10^3, 10^4, 10^5 slices (tiny_cnn, small slices), each in a fresh
    subprocess; the figure is the peak RSS while scoring (the kernel's high-water mark, reset just before
    ``score_slices``) over the 10^3 pool's (issue 9: ≤ +10%), with the growth during scoring beside it: the
    ratio includes the process's baseline (torch alone is hundreds of MB), the growth does not. Why RSS
    and not tracemalloc: tracemalloc sees only allocations made
    through Python's allocator (Python objects, NumPy buffers); torch's CPU allocator bypasses it, so batch
    tensors and activations would be invisible. A process's RSS high-water mark sees everything. The store
    is an in-memory fake that hands out the same preloaded stack for every image id, so what grows is
    what ``score_slices`` itself keeps, not a disk cache.
(c) DBT stack inference latency in slices/s at demo size (80×64, tiny_cnn) and at paper size (896×640,
    ResNet-34 classifier_segmenter, pretrained=False): inference_mode (the default) against no_grad,
    channels-last and bf16 autocast, and the classification head alone. Paper size on a CPU is slow: a few
    slices, and no bf16 with ``--quick`` (CPUs without native bf16 emulate it, an order of magnitude slower).

    python benchmarks/bench_scoring.py [--quick] [--json F]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from _common import Figure, hardware_line, interleaved, interleaved_ms, paired_ratio, verdict, write_figures
from torch import Tensor, nn

from breastssl.data import dbt_slices
from breastssl.models import create_model

SCORE_FN = dbt_slices.score_slices  # --score-fn swaps in another implementation, to time a change before/after


def load_score_fn(spec: str | None) -> None:
    """``module:function`` (importable, e.g. from PYTHONPATH) replaces ``score_slices`` for this run."""
    global SCORE_FN
    if spec:
        import importlib

        module, _, name = spec.partition(":")
        SCORE_FN = getattr(importlib.import_module(module), name or "score_slices")


class MemoryStore:
    """A StackStore stand-in: ``rows[image_id]["n_slices"]`` and ``stack(image_id)`` → (D, H, W) float32.

    ``stacks`` maps ids to preloaded arrays; with ``template`` every id in ``depths`` gets the same array
    (so a pool of 10^5 slices needs one stack in memory).
    """

    def __init__(self, stacks: dict[str, np.ndarray] | None = None, template: np.ndarray | None = None,
                 n_ids: int = 0) -> None:  # fmt: skip
        self.stacks = stacks or {}
        self.template = template
        if template is not None:
            self.stacks = {}
            self.rows = {f"s{i:06d}": {"n_slices": template.shape[0]} for i in range(n_ids)}
        else:
            self.rows = {k: {"n_slices": v.shape[0]} for k, v in self.stacks.items()}

    def stack(self, image_id: str) -> np.ndarray:
        return self.template if self.template is not None else self.stacks[image_id]


def demo_model(**kw) -> nn.Module:
    torch.manual_seed(0)
    return create_model("tiny_cnn", decoder_width=32, pool="max", **kw).eval()


def classify(model: nn.Module, x: Tensor) -> Tensor:
    """Logits only: the model's ``classify`` when it has one, else its full forward."""
    fn = getattr(model, "classify", None)
    return fn(x) if fn is not None else model(x)["logits"]


# ---- (a) throughput -------------------------------------------------------------------------------------------
def bench_throughput(n_stacks: int, size: tuple[int, int], batch: int, reps: int) -> dict[str, float]:
    """Slices/s of score_slices and of bare loops over the same preloaded stacks (14–40 slices each), and
    ``x_<name>``: each one's throughput over the bare loop's (median of per-round ratios)."""
    rng = np.random.default_rng(0)
    stacks = {f"s{i}": rng.random((int(rng.integers(14, 41)), *size), dtype=np.float32) for i in range(n_stacks)}
    store = MemoryStore(stacks)
    ids = list(stacks)
    n = sum(s.shape[0] for s in stacks.values())
    model = demo_model()
    tensors = [torch.from_numpy(stacks[i]) for i in ids]
    flat = torch.cat(tensors)

    @torch.inference_mode()
    def bare() -> None:  # what score_slices does, minus everything but the forward
        for t in tensors:
            for s in range(0, t.shape[0], batch):
                torch.sigmoid(model(t[s : s + batch, None])["logits"].float())

    @torch.inference_mode()
    def bare_full_batches() -> None:
        for s in range(0, n, batch):
            torch.sigmoid(model(flat[s : s + batch, None])["logits"].float())

    @torch.inference_mode()
    def bare_classify() -> None:
        for t in tensors:
            for s in range(0, t.shape[0], batch):
                torch.sigmoid(classify(model, t[s : s + batch, None]).float())

    fns = {
        "score_slices": lambda: SCORE_FN(model, store, ids, batch_size=batch),
        "bare": bare,
        "bare_full_batches": bare_full_batches,
        "bare_classify": bare_classify,
    }
    times = interleaved(fns, reps)
    rates = {k: n / (statistics.median(v) / 1000.0) for k, v in times.items()}
    # throughput ratios over the bare loop: bare time / variant time, paired within each round
    return rates | {f"x_{k}": paired_ratio(times, "bare", k) for k in fns} | {"slices": float(n)}


# ---- (b) memory, one subprocess per pool size ----------------------------------------------------------------
def _status_mb(key: str) -> float:
    """A ``Vm*`` line of /proc/self/status (Linux) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    raise KeyError(key)


def memory_child(pool: int, side: int, depth: int = 64) -> None:
    """Score ``pool`` slices (stacks of ``depth``) and print {"before_mb", "peak_mb", "hwm_reset"} as JSON.

    The high-water mark is reset just before scoring (``/proc/self/clear_refs`` = 5, Linux ≥ 4.0), so
    ``peak_mb`` is the peak while scoring, not the one set by importing torch; where the reset is not
    allowed, it is the process's peak (``ru_maxrss``) and ``hwm_reset`` says so.
    """
    torch.set_num_threads(1)
    template = np.random.default_rng(0).random((depth, side, side), dtype=np.float32)
    store = MemoryStore(template=template, n_ids=max(pool // depth, 1))
    ids = list(store.rows)
    model = create_model("tiny_cnn", width=4, decoder_width=16).eval()
    SCORE_FN(model, MemoryStore(template=template, n_ids=2), ["s000000", "s000001"], batch_size=64)  # warm-up
    before = _status_mb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    table = SCORE_FN(model, store, ids, batch_size=64)
    peak = _status_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"before_mb": before, "peak_mb": peak, "hwm_reset": reset, "rows": len(table)}))


def bench_memory(pools: list[int], side: int, score_fn: str | None) -> list[dict[str, float]]:
    out = []
    for pool in pools:
        cmd = [sys.executable, __file__, "--memory-child", str(pool), "--side", str(side)]
        cmd += ["--score-fn", score_fn] if score_fn else []
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        t = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        rec = json.loads(res.stdout.strip().splitlines()[-1])
        out.append({"pool": pool, **rec, "seconds": time.perf_counter() - t})
    return out


# ---- (c) stack inference latency ----------------------------------------------------------------------------
def latency_variants(model: nn.Module, x: Tensor, bf16: bool) -> dict[str, Callable[[], object]]:
    """Forward passes of one stack chunk x (B, 1, H, W): the default and each fast path on its own."""
    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)  # the original stays contiguous
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def run(m: nn.Module, inp: Tensor, mode: Callable = torch.inference_mode, amp: bool = False) -> Callable:
        def fn() -> object:
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if amp else nullcontext()
            with mode(), ctx:
                return m(inp)["logits"]

        return fn

    variants = {
        "inference_mode (default)": run(model, x),
        "no_grad": run(model, x, torch.no_grad),
        "channels_last": run(cl_model, x_cl),
    }
    if bf16:
        variants["bf16 autocast"] = run(model, x, amp=True)

    def head_only() -> object:
        with torch.inference_mode():
            return classify(model, x)

    variants["classification head only"] = head_only
    return variants


def bench_latency(model: nn.Module, size: tuple[int, int], slices: int, reps: int, bf16: bool) -> dict[str, float]:
    """Slices/s of each variant on one chunk of ``slices`` slices."""
    x = torch.rand(slices, 1, *size, generator=torch.Generator().manual_seed(0))
    variants = latency_variants(model, x, bf16)
    with torch.inference_mode():
        model(x)  # oneDNN primitives are created on the first call
    ms = interleaved_ms(variants, reps, warmup=0 if reps <= 1 else 1)
    return {k: slices / (v / 1000.0) for k, v in ms.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small pools, one paper-size slice, no bf16 at paper size")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: half the cores)")
    ap.add_argument("--json", default=None, help="write the figures to this JSON file")
    ap.add_argument("--score-fn", default=None, help="module:function to time instead of dbt_slices.score_slices")
    ap.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--side", type=int, default=32, help=argparse.SUPPRESS)
    args = ap.parse_args()
    load_score_fn(args.score_fn)
    if args.memory_child is not None:
        memory_child(args.memory_child, args.side)
        return
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // 2))
    print(hardware_line())
    if args.score_fn:
        print(f"score_slices: {args.score_fn}")
    figures: list[Figure] = []

    # (a)
    thr = bench_throughput(12 if args.quick else 40, (80, 64), 64, 7 if args.quick else 9)
    # score_slices runs classify() (no decoder) when the model has it: the fair bare loop does the same forward
    ratio = thr["x_score_slices"] / thr["x_bare_classify"]
    note = f"{thr['slices']:.0f} slices, vs a bare classify() loop"
    figures.append(Figure("scoring throughput / bare forward", ratio, "x", ">= 0.9", note))
    print(f"\n(a) pool scoring, tiny_cnn 80×64, batch 64, {thr['slices']:.0f} slices in stacks of 14–40")
    for k in ("score_slices", "bare", "bare_full_batches", "bare_classify"):
        print(f"  {k:<20} {thr[k]:>9,.0f} slices/s  ({thr[f'x_{k}']:.2f}x bare)")
    print(f"  score_slices / bare = {ratio:.2f} (target >= 0.9)  {verdict(figures[-1].passed)}")
    figures.append(Figure("scoring: score_slices over a bare full-model loop", thr["x_score_slices"], "x", "",
                          "the classify() fast path included"))  # fmt: skip
    for k, name in (("bare_full_batches", "batches across stacks"), ("bare_classify", "classification head only")):
        figures.append(Figure(f"scoring fast path: {name}", thr[f"x_{k}"], "x speed-up", "", "bare loop"))

    # (b)
    pools = [10**3, 10**4, 10**5]
    side = 16 if args.quick else 32
    mem = bench_memory(pools, side, args.score_fn)
    print(f"\n(b) peak memory of score_slices (tiny_cnn width 4, {side}×{side} slices, fresh process per pool)")
    if not all(r["hwm_reset"] for r in mem):
        print("  (could not reset the RSS high-water mark: peaks include process start-up)")
    print(f"  {'pool':>8} {'RSS before':>11} {'peak RSS':>9} {'growth':>8} {'peak / 10^3':>12} {'seconds':>8}")
    for rec in mem:
        rel = rec["peak_mb"] / mem[0]["peak_mb"]
        growth = max(rec["peak_mb"] - rec["before_mb"], 0.0)
        print(f"  {rec['pool']:>8,} {rec['before_mb']:>9.1f}MB {rec['peak_mb']:>7.1f}MB {growth:>6.1f}MB"
              f" {rel:>11.3f}x {rec['seconds']:>8.1f}")  # fmt: skip
    rel = mem[-1]["peak_mb"] / mem[0]["peak_mb"]
    figures.append(Figure("scoring peak RSS 10^5 / 10^3 slices", rel, "x", "<= 1.1",
                          f"{mem[0]['peak_mb']:.0f} → {mem[-1]['peak_mb']:.0f} MB"))  # fmt: skip
    print(f"  peak RSS 10^5 / 10^3 = {rel:.3f} (target <= 1.1)  {verdict(figures[-1].passed)}")
    growth = max(mem[-1]["peak_mb"] - mem[-1]["before_mb"], 0.0)
    per_slice = growth * 2**20 / mem[-1]["rows"]
    figures.append(Figure("scoring memory growth at 10^5 slices", growth, "MB", "", f"{per_slice:.0f} bytes/slice"))

    # (c)
    print("\n(c) DBT stack inference latency (slices/s; one chunk per forward)")
    demo = bench_latency(demo_model(), (80, 64), 20, 3 if args.quick else 7, bf16=True)
    t = time.perf_counter()
    torch.manual_seed(0)
    paper_model = create_model("classifier_segmenter", pretrained=False).eval()
    paper = bench_latency(paper_model, (896, 640), 1 if args.quick else 4, 1 if args.quick else 3,
                          bf16=not args.quick)  # fmt: skip
    print(f"  {'variant':<28} {'demo 80×64 tiny_cnn':>20} {'paper 896×640 ResNet-34':>24}")
    for k in demo:
        p = f"{paper[k]:>24.2f}" if k in paper else f"{'(skipped: --quick)':>24}"
        print(f"  {k:<28} {demo[k]:>20,.0f} {p}")
    print(f"  (paper-size section took {time.perf_counter() - t:.0f} s)")
    for k in demo:
        figures.append(Figure(f"DBT inference demo 80x64 tiny_cnn: {k}", demo[k], "slices/s"))
    for k in paper:
        figures.append(Figure(f"DBT inference paper 896x640 resnet34: {k}", paper[k], "slices/s"))
    write_figures(args.json, "bench_scoring", figures)


if __name__ == "__main__":
    main()
