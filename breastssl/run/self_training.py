"""One self-training run end to end, as a library call: data → BTV model → ``fit`` → test FROC.

Used by ``breastssl experiment mammo-self-training`` (one call per table cell) and by the tests. The
run directory holds the loop's checkpoints (a killed run resumes), ``mining.json`` (the TP/FP/FN/TN
counts of every table rebuild, with the weak-seg term's value and gradient norm), ``test_maps.npz``,
``test_detections.npz`` (per-image regions and lesion hits, what a bootstrap of the FROC re-weighs; see
``self_training_detections``) and ``metrics.json``. The FROC takes regions at the strategy's
``lesion_threshold`` (the threshold the mining uses) and extends the curve over lower region thresholds
(``self_training_lesions.froc_swept``). ``test`` is whichever split the caller evaluates on (the experiment's
tune stage passes its validation split).

The pieces (:func:`self_training_data`, :func:`build_student`, :func:`pos_neg_sampler`, :func:`evaluate_maps`)
are shared with the run recipe of ``breastssl train`` (``breastssl.run.recipes.mammo``), so both train and
score the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.mammo_pairs import PairArrays
from ..data.self_training_data import PosNegSampler, SelfTrainingDataset
from ..engine import OptimConfig, ScheduleConfig, TrainConfig, fit
from ..models import create_model
from ..strategies.self_training import SelfTraining, SelfTrainingConfig
from ..strategies.self_training_detections import Detections, image_detections
from ..strategies.self_training_lesions import FROC_GRID, froc_swept, lesions_below
from ..strategies.self_training_mining import score_maps

MODEL_NAME = "bilateral_two_view"
IOU_THRESHOLD = 0.2  # the paper's hit criterion: IoU(region, GT mask) > 0.2


@dataclass
class RunSpec:
    """What one table cell trains: which full/weak images, which strategy settings, how long."""

    name: str
    full_idx: np.ndarray  # positions in the train pairs trained with masks
    weak_idx: np.ndarray  # positions in the train pairs used with report soft labels
    strategy: SelfTrainingConfig = field(default_factory=SelfTrainingConfig)
    steps_per_epoch: int = 20
    batch_size: int = 12
    lr: float = 1e-3
    cls_lr_mult: float = 10.0
    model: dict[str, Any] = field(default_factory=lambda: {"backbone": "tiny", "width": 8, "decoder_width": 32})
    seed: int = 0
    froc_grid: tuple[float, ...] = FROC_GRID  # region thresholds below the lesion threshold that extend the FROC
    device: str = "auto"  # train.device: auto = CUDA when available, else the CPU


def froc_summary(
    maps: np.ndarray,
    masks: np.ndarray,
    lesion_threshold: float,
    grid: Sequence[float] = FROC_GRID,
    iou_threshold: float = IOU_THRESHOLD,
) -> dict[str, Any]:
    """FROC of maps (N, H, W) against masks (N, H, W), IoU > 0.2: sensitivity at 0.1/0.2/0.5/1 FPPI + mean.

    Regions at ``lesion_threshold``, the curve extended over ``grid``; ``lesions_below_threshold``: the share
    of lesions whose maximum probability stays below ``lesion_threshold`` (found by no region there).
    """
    res = froc_swept(maps, masks, lesion_threshold, tuple(grid), iou_threshold=iou_threshold)
    res.update(lesion_threshold=lesion_threshold, lesions_below_threshold=lesions_below(maps, masks, lesion_threshold))
    return res


def self_training_data(
    pairs: PairArrays, full_idx: np.ndarray, weak_idx: np.ndarray, soft_label: np.ndarray, compact: bool = False
) -> SelfTrainingDataset:
    """The training items: the pairs at ``full_idx`` (trained with masks), then those at ``weak_idx`` (mined).

    soft_label: (N_pairs,) NLP soft label of every pair (NaN where unknown; only the weak ones' are read).
    ``compact``: float16 items (pairs read from a float16 cache; see ``SelfTrainingDataset``).
    """
    keep = np.concatenate([full_idx, weak_idx]).astype(int)
    is_full = np.r_[np.ones(len(full_idx), bool), np.zeros(len(weak_idx), bool)]
    return SelfTrainingDataset(pairs.subset(keep), is_full, np.asarray(soft_label, float)[keep], compact)


def build_student(
    model_name: str,
    model_kwargs: dict[str, Any],
    strategy_cfg: SelfTrainingConfig,
    data: SelfTrainingDataset,
    steps_per_epoch: int,
    seed: int,
) -> tuple[nn.Module, SelfTraining]:
    """The student (initial weights drawn from ``seed``) and its strategy, attached to ``data``.

    After this, ``strategy.total_steps()`` and ``strategy.round_steps()`` are train.steps and train.round_steps.
    """
    torch.manual_seed(seed)  # the model's initial weights follow the seed alone, in every fresh process
    model = create_model(model_name, **model_kwargs)
    strategy = SelfTraining(model, None, strategy_cfg)
    strategy.attach(data, steps_per_epoch)
    return model, strategy


def pos_neg_sampler(
    data: SelfTrainingDataset,
    strategy_cfg: SelfTrainingConfig,
    batch_size: int,
    steps_per_epoch: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
) -> PosNegSampler:
    """The 1:5 positive : negative batches of the strategy's settings (``pos_fraction``, ``full_share``)."""
    return PosNegSampler(data, batch_size, steps_per_epoch, strategy_cfg.pos_fraction, seed, strategy_cfg.full_share,
                         rank=rank, world_size=world_size)  # fmt: skip


def evaluate_maps(
    model: nn.Module,
    test: PairArrays,
    lesion_threshold: float,
    grid: Sequence[float] = FROC_GRID,
    iou_threshold: float = IOU_THRESHOLD,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, dict[str, Any], Detections]:
    """Score ``test`` and measure it: (maps (N, H, W) float32, :func:`froc_summary`'s dict, per-image detections)."""
    maps = score_maps(model, test, batch_size, device)
    masks = test.masks[:, 0]
    metrics = froc_summary(maps, masks, lesion_threshold, grid, iou_threshold)
    det = image_detections(maps, masks, lesion_threshold, test.table["image_id"], grid, iou_threshold)
    return maps, metrics, det


def run_self_training(
    spec: RunSpec,
    train: PairArrays,
    soft_label: np.ndarray,
    test: PairArrays,
    out_dir: str | Path,
    progress: bool = False,
) -> dict[str, Any]:
    """Train one configuration and evaluate it on ``test``; returns (and writes) ``metrics.json``'s dict.

    soft_label: (N_train,) NLP soft label of every train pair (NaN where unknown; used for weak ones).
    A finished run (``metrics.json`` present) is read back instead of retrained.
    """
    out = Path(out_dir)
    done = out / "metrics.json"
    if done.is_file():
        return json.loads(done.read_text())
    data = self_training_data(train, spec.full_idx, spec.weak_idx, soft_label)
    model, strategy = build_student(MODEL_NAME, spec.model, spec.strategy, data, spec.steps_per_epoch, spec.seed)
    cfg = TrainConfig(
        steps=strategy.total_steps(),
        batch_size=spec.batch_size,
        optim=OptimConfig(name="adam", lr=spec.lr, weight_decay=0.0, lr_mult={"cls_head": spec.cls_lr_mult}),
        schedule=ScheduleConfig(name="constant"),
        seed=spec.seed,
        device=spec.device,
        round_steps=strategy.round_steps(),
        log_every=spec.steps_per_epoch,
        ckpt_every=strategy.round_steps(),
        keep_last=1,
        out_dir=str(out),
        tensorboard=False,
        progress=progress,
    )
    sampler = pos_neg_sampler(data, spec.strategy, spec.batch_size, spec.steps_per_epoch, spec.seed)
    out.mkdir(parents=True, exist_ok=True)
    size = list(train.images.shape[-2:])
    model_spec = {
        "name": MODEL_NAME,
        "kwargs": spec.model,
        "size": size,
        "lesion_threshold": spec.strategy.lesion_threshold,
    }  # predict's masks and regions use the same t
    (out / "model.json").write_text(json.dumps(model_spec))
    fit(model, strategy, data, cfg, batch_sampler=sampler)
    device = next(model.parameters()).device  # where fit left the model (train.device)
    maps, metrics, det = evaluate_maps(model, test, spec.strategy.lesion_threshold, spec.froc_grid, device=device)
    metrics.update(
        name=spec.name,
        n_full=int(len(spec.full_idx)),
        n_weak=int(len(spec.weak_idx)),
        soft_mask=spec.strategy.soft_mask,
        soft_nlp=spec.strategy.soft_nlp,
        full_share=spec.strategy.full_share,
        steps=cfg.steps,
        mining=strategy.history,
    )
    np.savez_compressed(out / "test_maps.npz", maps=maps.astype(np.float16))
    det.save(out / "test_detections.npz")
    (out / "mining.json").write_text(json.dumps(strategy.history, indent=1))
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=1))
    tmp.replace(done)
    return metrics
