"""The two stages of the ultrasound method (seed 004, DESIGN §5.3), shared by the run recipe and the experiment.

``breastssl train`` (the ``us`` recipe, :mod:`.us`) and ``breastssl experiment us-mean-teacher``
(:mod:`breastssl.experiments._us_mean_teacher_impl`) both call these, so one run of the recipe and the
experiment's semi arm are made the same way from the same settings:

1. sets: the basic set (train rows annotated in full, or a random ``basic_fraction`` of them) and the
   extended set (the other train rows); a patient-level draw where the manifest has no held-out split;
2. the detector (Faster R-CNN, nodule vs background) trained on the basic set's boxes through the engine's loop;
3. its top box per image (:func:`detection_table`), cut into crops by the caller (``data.us_crops.make_crops``);
4. the recognition network, its crop dataset and labelled + unlabelled batch sampler, and the validation
   accuracy that early stopping monitors.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn

from ...config import Section, Side
from ...engine import TrainConfig


class USDetectorConfig(Section):
    """Stage 1: the nodule detector and its training (momentum SGD, cosine schedule, backbone frozen first)."""

    backbone: str = Field("tiny", description="tiny | mobilenet_v3 | vgg16 (paper) | resnet50_fpn")
    pretrained: bool = False
    min_size: Side = 128
    max_size: Side = 256
    steps: int = Field(500, ge=1)
    freeze_steps: int = Field(50, ge=0, description="paper: 5000 of 70000")
    batch_size: int = Field(4, ge=1, le=1 << 16)
    lr: float = Field(0.01, gt=0)


class USCropConfig(Section):
    """Stage 2's inputs: crops around the detector's top box, and their augmentation."""

    crop_size: Side = 32
    margin: float = Field(0.15, ge=0)
    min_score: float = Field(0.3, ge=0, le=1, description="extended-set crops need this detector score")
    flip: bool = Field(True, description="augmentation: random left-right flip")
    translate: int = Field(2, ge=0, description="augmentation: random shift, pixels per axis (mean-teacher ref.: 2)")
    contrast: float = Field(0.1, ge=0, lt=1, description="augmentation: contrast gain drawn from U(1 ± contrast)")


# ---- sets ---------------------------------------------------------------------------------------------------


def patient_uniform(patients: pd.Series, seed: int) -> pd.Series:
    """One U(0, 1) draw per patient, mapped onto the rows (so a patient's images fall on one side of a cut)."""
    rng = np.random.default_rng(seed)
    ids = patients.astype(str)
    pats = ids.unique()
    return ids.map(dict(zip(pats, rng.random(len(pats)), strict=True)))


def basic_mask(manifest: pd.DataFrame, basic_fraction: float | None, seed: int) -> pd.Series:
    """(N,) bool: rows of the basic (annotated) set: ``annotation == "full"``, or a random ``basic_fraction``."""
    if basic_fraction is None:
        return manifest["annotation"].astype(str) == "full"
    rng = np.random.default_rng(seed + 1)
    return pd.Series(rng.random(len(manifest)) < basic_fraction, index=manifest.index)


# ---- stage 1: the detector --------------------------------------------------------------------------------------


def detector_train_config(
    d: USDetectorConfig, out_dir: str | Path, seed: int, device: str, **extra: Any
) -> TrainConfig:
    """The detector's loop settings (paper: momentum SGD; cosine decay with a short warm-up); ``extra`` overrides."""
    kw: dict[str, Any] = {
        "steps": d.steps, "batch_size": d.batch_size, "seed": seed, "device": device, "out_dir": str(out_dir),
        "optim": {"name": "sgd", "lr": d.lr, "momentum": 0.9, "weight_decay": 1e-4},
        "schedule": {"name": "cosine", "warmup_steps": min(20, d.steps // 10)}, "clip_grad_norm": 10.0,
        "resume": True, "progress": False, "tensorboard": False, "log_every": 50, "ckpt_every": 10**9, "keep_last": 1,
    }  # fmt: skip
    return TrainConfig(**{**kw, **extra})


def train_detector(
    d: USDetectorConfig,
    ids: Sequence[str],
    frames: Mapping[str, np.ndarray],
    boxes: Mapping[str, np.ndarray],
    tcfg: TrainConfig,
    dist_ctx: Any = None,
) -> nn.Module:
    """Faster R-CNN trained on the frames ``ids`` (nodule boxes (N, 4) from ``boxes``; a frame without one is a
    negative) in ``tcfg.out_dir``, resuming a checkpoint there; returns the detector in eval mode."""
    from ...data.us_dataset import DetectionDataset
    from ...engine import fit
    from ...models.detection import create_detector
    from ...strategies.detection import DetectionConfig, DetectionStrategy, detection_collate

    torch.manual_seed(tcfg.seed)  # the detector's initial weights follow the seed
    det = create_detector(d.backbone, pretrained=d.pretrained, min_size=d.min_size, max_size=d.max_size)
    strategy = DetectionStrategy(det, cfg=DetectionConfig(freeze_steps=d.freeze_steps))
    dataset = DetectionDataset(list(ids), frames, boxes)
    fit(det, strategy, dataset, tcfg, collate_fn=detection_collate, dist_ctx=dist_ctx)
    return det.eval()


def detection_table(
    det: nn.Module,
    manifest: pd.DataFrame,
    frames: Mapping[str, np.ndarray],
    boxes: Mapping[str, np.ndarray],
    labels: Mapping[str, int],
) -> pd.DataFrame:
    """Top box per image (image_id, x0, y0, x1, y1, score) with the manifest's set and site (where it has them),
    label (−1 if none) and IoU with the first GT box (NaN if none)."""
    from ...data.us_crops import detect

    return _with_truth(detect(det, frames, manifest["image_id"].tolist()), manifest, boxes, labels)


def truth_table(
    manifest: pd.DataFrame, frames: Mapping[str, np.ndarray], boxes: Mapping[str, np.ndarray], labels: Mapping[str, int]
) -> pd.DataFrame:
    """:func:`detection_table` without a detector: the first GT box (the whole frame where none), score 1.

    What a dry run plans with: every image counts as detected, so its counts are upper bounds.
    """
    rows = []
    for image_id in manifest["image_id"].astype(str):
        h, w = frames[image_id].shape
        b = boxes[image_id][0] if image_id in boxes and len(boxes[image_id]) else np.array([0.0, 0.0, w, h])
        rows.append({"image_id": image_id, "x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3], "score": 1.0})
    table = pd.DataFrame(rows, columns=["image_id", "x0", "y0", "x1", "y1", "score"])
    return _with_truth(table, manifest, boxes, labels)


def _with_truth(d: pd.DataFrame, manifest: pd.DataFrame, boxes: Mapping, labels: Mapping) -> pd.DataFrame:
    from ...data.us_crops import box_iou

    d = d.merge(manifest[["image_id", *[c for c in ("set", "site") if c in manifest]]], on="image_id")
    d["label"] = d["image_id"].map(labels).fillna(-1).astype(int)
    d["iou"] = [box_iou(np.array([r.x0, r.y0, r.x1, r.y1]), boxes[r.image_id][0]) if r.image_id in boxes else math.nan
                for r in d.itertuples()]  # fmt: skip
    return d


# ---- stage 2: recognition ----------------------------------------------------------------------------------------


def recognition_kwargs(name: str, width: int, dropout: float, backbone: str | None = None) -> dict[str, Any]:
    """Keyword arguments of ``create_model(name, ...)`` for a one-logit recognition network."""
    kw: dict[str, Any] = {"dropout": dropout, "num_classes": 1}
    kw.update({"width": width} if name == "recognition_cnn" else {"backbone": backbone, "seg_decoder": False})
    return kw


def recognition_model(name: str, width: int, dropout: float, backbone: str | None = None, **extra: Any) -> nn.Module:
    """The recognition network (crops (B, 1, S, S) → ``logits`` (B,)), freshly initialised from torch's RNG."""
    from ...models import create_model

    return create_model(name, **recognition_kwargs(name, width, dropout, backbone), **extra)


def arm_indices(arm: str, r: USCropConfig, tr: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(labelled, unlabelled) row indices of the training crops ``tr`` (set, label, score) that ``arm`` trains on.

    semi (the mean teacher): labelled basic crops + extended crops whose detector score reaches ``min_score``;
    sup_basic: the labelled basic crops; sup_all: every labelled crop; an ``_ema`` control arm (e.g.
    ``sup_basic_ema``) the crops of the arm it controls.
    """
    arm = arm.removesuffix("_ema")
    has_label = tr["label"] >= 0
    labelled = has_label if arm == "sup_all" else (tr["set"] == "basic") & has_label
    semi_unlabelled = (tr["set"] == "extended") & (tr["score"] >= r.min_score)
    unlabelled = semi_unlabelled if arm == "semi" else pd.Series(False, index=tr.index)
    return np.flatnonzero(labelled.to_numpy()), np.flatnonzero(unlabelled.to_numpy())


def arm_batch(arm: str, batch_size: int, labelled_fraction: float, equal_exposure: bool, r: USCropConfig,
              tr: pd.DataFrame) -> tuple[int, int]:  # fmt: skip
    """(labelled, unlabelled) crops per step of ``arm`` (see :func:`arm_indices`) over the training crops ``tr``.

    The semi arm: ``round(f·B)`` labelled + the rest unlabelled. A supervised arm: B labelled, or, with
    ``equal_exposure``, the semi arm's labelled count, so that at every step each arm has seen as many labelled
    crops as the others (the semi arm's extra input is then only its unlabelled crops).
    """
    from ...data.labelled_sampler import labelled_per_batch

    _, semi_unl = arm_indices("semi", r, tr)
    semi_lab = labelled_per_batch(batch_size, labelled_fraction, len(semi_unl) > 0)
    if arm.removesuffix("_ema") == "semi":
        return semi_lab, batch_size - semi_lab
    return (semi_lab if equal_exposure else batch_size), 0


def crop_training_data(
    crops: np.ndarray,
    tr: pd.DataFrame,
    lab_idx: np.ndarray,
    unl_idx: np.ndarray,
    n_lab: int,
    n_unl: int,
    r: USCropConfig,
    views: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    on_device: bool = False,
) -> tuple[Any, Any, Any]:
    """(dataset, batch sampler, batch transform) of the training crops (N, 1, S, S): ``n_lab`` labelled +
    ``n_unl`` unlabelled per step.

    ``views=2`` gives the student and the teacher two independently augmented views (the mean teacher); a
    supervised run needs one. ``on_device`` (``train.augment_on``): the dataset yields plain crops and the batch
    transform (else None) makes the views on the training device (``us_crops.CropBatchAugment``).
    """
    from ...data.labelled_sampler import LabelledUnlabelledBatchSampler
    from ...data.us_crops import CropAugment, CropBatchAugment, CropDataset

    labelled = np.zeros(len(tr), dtype=bool)
    labelled[lab_idx] = True
    aug = CropAugment(flip=r.flip, translate=r.translate, contrast=r.contrast)
    ds = CropDataset(crops, tr["label"].clip(lower=0).to_numpy(), labelled, not on_device,
                     1 if on_device else views, aug)  # fmt: skip
    transform = CropBatchAugment(aug, views, seed, rank) if on_device else None
    sampler = LabelledUnlabelledBatchSampler(lab_idx, unl_idx, n_lab + n_unl, n_lab / (n_lab + n_unl), seed=seed,
                                             rank=rank, world_size=world_size)  # fmt: skip
    return ds, sampler, transform


def val_accuracy(crops: np.ndarray, labels: np.ndarray, threshold: float) -> Callable[[nn.Module], float]:
    """The early-stopping monitor: a model's accuracy on the validation crops (N, 1, S, S) with labels (N,) 0/1."""
    from ..early_stopping import predict_proba

    x, y = torch.from_numpy(crops), np.asarray(labels)

    def accuracy(model: nn.Module) -> float:
        return float(((predict_proba(model, x) >= threshold) == (y == 1)).mean())

    return accuracy


def classification_metrics(y: np.ndarray, s: np.ndarray, thr: float) -> dict[str, float]:
    """n, malignant count, sensitivity, specificity and accuracy at ``thr``, AUC with its DeLong 95% CI."""
    from ...metrics import accuracy, delong_ci, sensitivity, specificity

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one class only: NaN AUC and rates, stated as such
        auc, lo, hi = delong_ci(y, s)
        return {"n": int(len(y)), "n_malignant": int(y.sum()), "sensitivity": sensitivity(y, s, thr),
                "specificity": specificity(y, s, thr), "accuracy": accuracy(y, s, thr), "auc": auc,
                "auc_low": lo, "auc_high": hi}  # fmt: skip
