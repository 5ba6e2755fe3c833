"""Strategy benchmark: the training step of every registered strategy over the supervised step (DESIGN §8).

For every name in ``breastssl.strategies.list_strategies()`` one optimiser step (strategy.loss → backward →
SGD step → ``after_step``) is timed against the supervised step of the same model on the same batch, both
round-robin in one run; the result is the median over rounds of the per-round ratio (issue 9: ≤ 1.4).
Models and batches follow each family's demo recipe (``configs/*_demo.yaml``):

* slice strategies (SelectiveKD family): ``tiny_cnn`` (decoder 32, max pool) on 80×64 DBT slices, a frozen
  ``tiny_cnn`` teacher; baseline ``supervised``.
* ``self_training``: ``bilateral_two_view`` (tiny) on 80×64 image + contralateral pairs, stage 2 (all four
  terms); baseline ``supervised`` on the same model and batch.
* ``mean_teacher``: ``recognition_cnn`` (width 16) on 32×32 crops, half labelled; baseline its supervised-only
  step (consistency weight 0, no EMA update).
* detection strategies (CoMoTo family): ``retinanet`` (tiny C5, width 8) on 128×96 DBT slices paired with an
  unpaired mammography batch; baseline ``pretraining`` (the plain supervised detector step) on the batch the
  strategy trains on; ``comoto_teacher`` is also timed with ImPA on.

A strategy whose contract has no batch builder here is listed as "no builder" (a visible gap, not a silent
skip). Timings use the process's CPU time with one torch thread (see ``_common.clock``). ``--fastpaths``
adds before/after figures: the engine's options (channels-last, bf16 autocast, torch.compile with
``--compile``), the teacher under inference_mode vs no_grad, CoMoTo's teacher running its backbone only
(a proposed change, patched in here), and persistent DataLoader workers (a proposed change to the engine's
data stream, against ``BatchStream`` as it is).

    python benchmarks/bench_strategies.py [--quick] [--batch 64] [--reps 25] [--channels-last] [--fastpaths]
                                          [--compile] [--json F]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from _common import Figure, hardware_line, interleaved, interleaved_ms, paired_ratio, verdict, write_figures
from torch import Tensor, nn

from breastssl.models import create_model
from breastssl.strategies import create_strategy, list_strategies, strategy_class
from breastssl.strategies.comoto_common import ComotoConfig
from breastssl.strategies.mean_teacher import MeanTeacherConfig

TARGET = "<= 1.4"


# ---- batches (the shapes of the contract tests, at demo size) ---------------------------------------------
def slice_batch(n: int, size: tuple[int, int] = (80, 64), aux: bool = False) -> dict[str, Tensor]:
    """A SelectiveKD slice batch: ``image``/``mask`` (n, 1, H, W), ``label`` and flags (n,): a quarter annotated
    with a lesion, a quarter annotated negative, a quarter weak, a quarter KD-only. ``aux`` adds the
    contralateral image and the self-training flags (``full``, ``weak_seg``, ``weak_cls``)."""
    g = torch.Generator().manual_seed(0)
    h, w = size
    q = max(n // 4, 1)
    mask = torch.zeros(n, 1, h, w)
    mask[:q, :, h // 3 : h // 3 + 8, w // 3 : w // 3 + 8] = 1.0
    role = torch.arange(n) // q  # 0 annotated +, 1 annotated −, 2 weak, 3 KD-only
    batch = {
        "image": torch.rand(n, 1, h, w, generator=g),
        "mask": mask,
        "label": ((role == 0) | (role == 2)).float(),
        "sup_cls": (role <= 2).float(),
        "sup_seg": (role <= 1).float(),
        "kd": torch.ones(n),
        "index": torch.arange(n),
    }
    if aux:
        batch |= {
            "aux": torch.rand(n, 1, h, w, generator=g),
            "full": (role <= 1).float(),
            "weak_seg": (role == 2).float(),
            "weak_cls": (role >= 2).float(),
        }
    return batch


def crop_batch(n: int, size: int = 32) -> dict[str, Tensor]:
    """Mean-teacher crops: ``image`` (n, 1, size, size), ``label`` (n,), the first half labelled (``sup_cls``)."""
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.randn(n, 1, size, size, generator=g),
        "label": (torch.arange(n) % 2).float(),
        "sup_cls": (torch.arange(n) < n // 2).float(),
    }


def detection_batch(n: int, size: tuple[int, int], seed: int) -> dict[str, Any]:
    """``image`` (n, 1, H, W), one or two boxes on half the images (xyxy), ``labels`` 0 = lesion."""
    g = torch.Generator().manual_seed(seed)
    boxes = []
    for i in range(n):
        k = (i % 2) * (1 + i % 3 // 2)  # 0, 1 or 2 boxes
        xy = torch.rand(k, 2, generator=g) * torch.tensor([size[1] - 24.0, size[0] - 24.0])
        boxes.append(torch.cat([xy, xy + 8 + 12 * torch.rand(k, 2, generator=g)], dim=1))
    return {
        "image": torch.rand(n, 1, *size, generator=g),
        "boxes": boxes,
        "labels": [torch.zeros(len(b), dtype=torch.int64) for b in boxes],
        "index": torch.arange(n),
    }


# ---- one family = one model, one batch, one baseline -------------------------------------------------------
@dataclass
class Case:
    """A strategy (or baseline) to time: how to build its model(s) and strategy, and its batch."""

    label: str
    model: str
    build: Callable[[], tuple[nn.Module, Any]]  # → (student, strategy)
    batch: Any
    after_step: bool = True


@dataclass
class Family:
    """Cases timed round-robin against ``baseline`` (the supervised step of the same model and batch)."""

    name: str
    baseline: Case
    cases: list[Case] = field(default_factory=list)


def _seeded(fn: Callable[[], nn.Module], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return fn()


def _strategy_case(name: str, model_name: str, make: Callable[[], nn.Module], batch: Any, cfg: Any = None,
                   label: str | None = None) -> Case:  # fmt: skip
    def build() -> tuple[nn.Module, Any]:
        student = _seeded(make, 0)
        teacher = _seeded(make, 1) if getattr(strategy_class(name), "uses_teacher", False) else None
        return student, create_strategy(name, student, teacher, cfg)

    return Case(label or name, model_name, build, batch)


def families(batch_size: int) -> tuple[list[Family], list[str]]:
    """The families covering every registered strategy, and the names no builder covers."""
    tiny = lambda: create_model("tiny_cnn", decoder_width=32, pool="max")  # noqa: E731
    btv = lambda: create_model("bilateral_two_view", backbone="tiny", width=8, decoder_width=32)  # noqa: E731
    rec = lambda: create_model("recognition_cnn", width=16)  # noqa: E731
    det = lambda: create_model("retinanet", backbone="tiny", width=8, stages=3, anchor_sizes=(10.0, 14.0, 20.0))  # noqa: E731
    slices, pairs, crops = slice_batch(batch_size), slice_batch(batch_size, aux=True), crop_batch(batch_size // 2)
    n_det = max(batch_size // 8, 2)
    dbt, mammo = detection_batch(n_det, (128, 96), 0), detection_batch(n_det, (128, 96), 1)
    paired = {"dbt": dbt, "mammo": mammo}

    slice_fam = Family("slice (SelectiveKD)", _strategy_case("supervised", "tiny_cnn", tiny, slices))
    btv_fam = Family("bilateral", _strategy_case("supervised", "bilateral_two_view", btv, pairs))
    mt_sup = MeanTeacherConfig(consistency_weight=0.0)
    mt_base = _strategy_case("mean_teacher", "recognition_cnn", rec, crops, mt_sup, "mean_teacher (w=0)")
    mt_fam = Family("mean teacher", replace(mt_base, after_step=False))
    det_fam = Family("detection (DBT batch)", _strategy_case("pretraining", "retinanet", det, paired))
    mam_fam = Family("detection (mammo batch)", _strategy_case("pretraining", "retinanet", det, {"dbt": mammo}))
    missing = []
    for name in list_strategies():
        contract = getattr(strategy_class(name), "contract", "slice")
        if name == "self_training":
            btv_fam.cases.append(_strategy_case(name, "bilateral_two_view", btv, pairs))
        elif name == "mean_teacher":
            mt_fam.cases.append(_strategy_case(name, "recognition_cnn", rec, crops))
        elif name == "comoto_teacher":
            mam_fam.cases.append(_strategy_case(name, "retinanet", det, paired))
            impa = ComotoConfig(name=name, impa=True)
            mam_fam.cases.append(_strategy_case(name, "retinanet", det, paired, impa, "comoto_teacher +ImPA"))
        elif contract == "detection":
            det_fam.cases.append(_strategy_case(name, "retinanet", det, paired))
        elif contract == "slice":
            slice_fam.cases.append(_strategy_case(name, "tiny_cnn", tiny, slices))
        else:
            missing.append(name)
    return [slice_fam, btv_fam, mt_fam, det_fam, mam_fam], missing


def make_step(case: Case, channels_last: bool = False, amp: bool = False) -> Callable[[], None]:
    """One training step as the engine's loop runs it (no clipping): loss → backward → step → after_step.

    ``channels_last`` / ``amp`` (bf16 autocast around the loss, as ``train.amp=bf16``) as the loop's options do.
    """
    from breastssl.engine.loop import channels_last_batch, channels_last_modules

    student, strategy = case.build()
    student.train()
    batch = case.batch
    if channels_last:
        channels_last_modules(student, strategy)
        batch = channels_last_batch(batch)
    params = [p for p in student.parameters() if p.requires_grad]
    own = getattr(strategy, "trainable_parameters", None)
    if own is not None:
        params += [p for group in own().values() for p in group]
    opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
    after = getattr(strategy, "after_step", None) if case.after_step else None
    counter = [0]

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            parts = strategy.loss(batch, counter[0])
        parts["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if after is not None:
            after(counter[0])
        counter[0] += 1

    return step


def bench_families(batch_size: int, reps: int, inner: int, channels_last: bool) -> tuple[list[tuple], list[str]]:
    """Rows (strategy, model, baseline, ms, baseline ms, ratio) for every family; and the uncovered names."""
    fams, missing = families(batch_size)
    rows = []
    for fam in fams:
        if not fam.cases:
            continue
        steps = {"__base__": make_step(fam.baseline, channels_last)}
        steps |= {c.label: make_step(c, channels_last) for c in fam.cases}
        times = interleaved(steps, reps, inner)
        for c in fam.cases:
            ms, base_ms = statistics.median(times[c.label]), statistics.median(times["__base__"])
            rows.append((c.label, c.model, fam.baseline.label, ms, base_ms, paired_ratio(times, c.label, "__base__")))
    return rows, missing


# ---- fast paths: before / after ------------------------------------------------------------------------------
class InferenceMode(nn.Module):
    """Runs ``inner`` under ``torch.inference_mode`` (the teacher's fast path being measured)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Any:
        with torch.inference_mode():
            return self.inner(x)


def _full_forward_teacher(strategy: Any) -> None:
    """The former ``DetectionStrategy.teacher_features``: the teacher's whole forward (head, anchors, NMS)."""

    def teacher_features(batch: dict[str, Any]) -> dict[str, Any]:
        strategy.teacher.eval()
        with torch.no_grad():
            return strategy.teacher(batch["image"])

    strategy.teacher_features = teacher_features


def bench_fastpaths(batch_size: int, reps: int, inner: int, compile_too: bool) -> list[tuple[str, float, float]]:
    """(fast path, ms before, ms after): the kd step on tiny_cnn 80×64 and the comoto step, each pair round-robin."""
    slices = slice_batch(batch_size)
    make = lambda: create_model("tiny_cnn", decoder_width=32, pool="max")  # noqa: E731

    def kd_step(
        channels_last: bool = False, amp: bool = False, compiled: bool = False, inference_teacher: bool = False
    ):
        student, teacher = _seeded(make, 0), _seeded(make, 1)
        strategy = create_strategy("kd", student, teacher)
        if compiled:
            strategy.student = torch.compile(student)
        if inference_teacher:
            strategy.teacher = InferenceMode(teacher)
        return make_step(Case("kd", "tiny_cnn", lambda: (student, strategy), slices), channels_last, amp)

    def comoto_step(features_only: bool = True):
        fams, _ = families(batch_size)
        case = next(c for f in fams for c in f.cases if c.label == "comoto")
        student, strategy = case.build()
        if not features_only:
            _full_forward_teacher(strategy)
        return make_step(Case("comoto", "retinanet", lambda: (student, strategy), case.batch))

    pairs: dict[str, tuple[Callable, Callable]] = {
        "kd: channels_last (train.channels_last)": (kd_step, lambda: kd_step(channels_last=True)),
        "kd: bf16 autocast (train.amp=bf16)": (kd_step, lambda: kd_step(amp=True)),
        "kd: teacher in inference_mode, not no_grad": (kd_step, lambda: kd_step(inference_teacher=True)),
        "comoto: teacher backbone only (comoto_common)": (lambda: comoto_step(False), comoto_step),
    }
    if compile_too:
        pairs["kd: torch.compile (train.compile)"] = (kd_step, lambda: kd_step(compiled=True))
    out = []
    for label, (before, after) in pairs.items():
        ms = interleaved_ms({"before": before(), "after": after()}, reps, inner, warmup=2)
        out.append((label, ms["before"], ms["after"]))
    return out


def bench_epoch_restart(n_stacks: int, workers: int, batch: int, epochs: int = 3) -> tuple[float, float]:
    """Seconds per epoch (after the first) of the engine's BatchStream, which builds a new DataLoader (new
    workers, empty stack caches) every epoch, and of one DataLoader with persistent workers, over the same
    SliceDataset of ``.npy`` stacks (160×128 stored, 80×64 trained)."""
    import tempfile
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from breastssl.data.dbt_slices import SliceDataset, StackStore
    from breastssl.engine.data import BatchStream, DataPosition, ShardedBatchSampler, epoch_batches

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for i in range(n_stacks):
            np.save(Path(tmp) / f"s{i}.npy", rng.integers(0, 4096, (24, 160, 128), dtype=np.uint16))
            rows.append({"image_id": f"s{i}", "path": f"s{i}.npy", "n_slices": 24, "modality": "DBT"})
        manifest = pd.DataFrame(rows)
        table = pd.DataFrame(
            {"image_id": np.repeat(manifest["image_id"], 24), "slice": np.tile(np.arange(24), n_stacks)}
        )
        table = table.assign(label=0.0, sup_cls=1.0, sup_seg=0.0, kd=1.0)
        dataset = SliceDataset(table, StackStore(manifest, tmp, (80, 64)))
        sampler = ShardedBatchSampler(len(dataset), batch, seed=0)
        per_epoch = len(sampler)
        times_stream = []  # before: a new DataLoader (new workers, cold stack caches) every epoch
        for epoch in range(epochs):
            t = time.perf_counter()
            for _ in epoch_batches(dataset, sampler, DataPosition(epoch, 0), num_workers=workers, seed=0):
                pass
            times_stream.append(time.perf_counter() - t)
        # after: the engine's BatchStream, one DataLoader for the run (engine/data.py run_batches)
        stream = BatchStream(dataset, sampler, DataPosition(), num_workers=workers, seed=0)
        times_loader = []
        for _ in range(epochs):
            t = time.perf_counter()
            for _ in range(per_epoch):
                stream.next()
            times_loader.append(time.perf_counter() - t)
        return statistics.median(times_stream[1:]), statistics.median(times_loader[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="batch 32, 15 rounds: about a minute")
    ap.add_argument("--batch", type=int, default=None, help="slice batch size (default 64; quick 32)")
    ap.add_argument("--reps", type=int, default=None, help="round-robin rounds (default 25; quick 15)")
    ap.add_argument("--fastpaths", action="store_true", help="also time the engine's fast-path options")
    ap.add_argument("--compile", action="store_true", help="with --fastpaths: also torch.compile (slow to compile)")
    ap.add_argument("--channels-last", action="store_true", help="time every step with train.channels_last on")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: half the cores)")
    ap.add_argument("--json", default=None, help="write the figures to this JSON file")
    args = ap.parse_args()
    batch = args.batch or (32 if args.quick else 64)
    reps = args.reps or (15 if args.quick else 25)
    inner = 1 if args.quick else 2
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // 2))
    torch.manual_seed(0)
    print(hardware_line())
    rows, missing = bench_families(batch, reps, inner, args.channels_last)
    layout = ", channels-last" if args.channels_last else ""
    print(f"\ntraining step over the supervised step (slice batch {batch}{layout}; median of {reps} rounds)")
    print(f"{'strategy':<22} {'model':<19} {'baseline':<19} {'ms/step':>8} {'base ms':>8} {'ratio':>6}  target  result")
    figures = []
    for label, model, base, ms, base_ms, ratio in rows:
        fig = Figure(f"step ratio {label}", ratio, "x", TARGET, f"{model}, {ms:.0f} ms vs {base} {base_ms:.0f} ms")
        figures.append(fig)
        cols = f"{label:<22} {model:<19} {base:<19} {ms:>8.1f} {base_ms:>8.1f} {ratio:>6.2f}"
        print(f"{cols}  {TARGET}  {verdict(fig.passed)}")
    for name in missing:
        figures.append(Figure(f"step ratio {name}", float("nan"), "x", TARGET, "no batch builder for its contract"))
        print(f"{name:<22} no batch builder for its contract ({strategy_class(name).contract!r})  FAIL")
    if args.fastpaths or args.compile:
        print("\nfast paths (before → after, each pair in the same run)")
        for label, before, after in bench_fastpaths(batch, reps, inner, args.compile):
            figures.append(
                Figure(f"fast path {label}", before / after, "x speed-up", "", f"{before:.0f} → {after:.0f} ms")
            )
            print(f"{label:<44} {before:>8.1f} ms → {after:>8.1f} ms   speed-up {before / after:.2f}x")
        before, after = bench_epoch_restart(8 if args.quick else 24, 2, batch)
        label = "data: workers kept across epochs (engine/data.py)"
        figures.append(Figure(f"fast path {label}", before / after, "x speed-up", "", f"{before:.2f} → {after:.2f} s"))
        ms_pair = f"{before * 1000:>8.1f} ms → {after * 1000:>8.1f} ms"
        print(f"{label:<44} {ms_pair}   per epoch, speed-up {before / after:.2f}x")
    write_figures(args.json, "bench_strategies", figures)


if __name__ == "__main__":
    main()
