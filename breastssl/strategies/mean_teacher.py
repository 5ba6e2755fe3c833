"""Mean teacher (Tarvainen & Valpola 2017) as used by the ultrasound two-stage method (seed 004, stage 2).

Paper: "Semi-supervised deep learning for ultrasound breast nodule detection and classification"
(medRxiv 2020.04.24.20078816), Methods, Network training (2). Generic over classification models:
nodule crops here, but mammography or DBT patches work the same way.

Per batch (half labelled L, half unlabelled U; x̃ = a(x) + N(0, σ²), x̂ = a'(x) + N(0, σ²) two views with
independent augmentations a, a' (the dataset's ``image`` and ``image_teacher``; x itself twice if the dataset
gives one view) and independent noise, as in the mean-teacher reference)::

    L = mean_{i∈L} CE(y_i, f(x̃_i; θ)) + w(t) · mean_{i∈C} mean_k (softmax f(x̃_i; θ)_k − softmax f(x̂_i; θ')_k)²

θ' = EMA of θ's parameters (a separate module without gradients, updated after every optimiser step; its
batch-norm statistics are its own, from its train-mode forward passes, as in the mean-teacher reference
code); C = the unlabelled samples (paper: "the consistency error, which is used for the unlabeled breast
nodules"; ``consistency_on=all`` adds the labelled ones, as in the original mean teacher).
w(t) = w_max · exp(−5 (1 − t/T)²) for t < T (sigmoid ramp-up). A one-logit model is read as two classes
(1 − σ, σ). With a classifier-segmenter student and annotated masks in the batch (``mask``, ``sup_seg``)
the supervised pixel BCE is added as ``loss_sup_seg``, as in the other strategies.

Defaults from the paper: batch half labelled / half unlabelled (64 + 64), Gaussian input noise 0.15,
dropout 0.5 (a model setting), Adam lr 3e-3 (a train setting), early stopping after 5 epochs without
validation-accuracy gain, evaluation with the teacher ("the results predicted by the teacher are more
likely to be correct"). Not in the paper, from the mean-teacher paper: EMA decay 0.99 (with the
1 − 1/(n+1) warm-up), ramp-up, w_max (a free choice: 10 here).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ..config import Section
from ..losses import bce_per_sample, set_mean
from ..models.ema import EMA
from .registry import register_strategy


class MeanTeacherConfig(Section):
    """The mean-teacher section of a run config."""

    name: str = "mean_teacher"
    ema_decay: float = Field(0.99, ge=0.0, le=1.0, description="teacher EMA decay (mean-teacher paper: 0.99)")
    consistency_weight: float = Field(10.0, ge=0.0, description="w_max; 0 = supervised only")
    rampup_steps: int = Field(500, ge=0, description="T of the sigmoid ramp-up of the consistency weight")
    input_noise: float = Field(0.15, ge=0.0, description="std of the Gaussian input noise (paper: 0.15)")
    consistency_on: Literal["unlabelled", "all"] = "unlabelled"
    labelled_fraction: float = Field(0.5, gt=0.0, le=1.0, description="labelled share of a batch (paper: 1/2)")
    evaluate_with: Literal["teacher", "student"] = "teacher"
    teacher_bn: Literal["own", "student"] = Field(
        "own", description="own: the teacher's forward runs in train mode (its own batch statistics, dropout, and "
        "running statistics it evaluates with), as in the mean-teacher reference code; student: the teacher runs in "
        "eval mode with the student's batch-norm statistics copied each step",
    )  # fmt: skip
    patience: int = Field(5, ge=1, description="evaluations without validation-accuracy gain before stopping")
    min_steps: int | None = Field(
        None, ge=0, description="evaluations before this step neither stop the run nor pick the kept weights; "
        "None = rampup_steps (a checkpoint from before the consistency ramp-up is a supervised model)",
    )  # fmt: skip

    @property
    def first_counted_step(self) -> int:
        """The first step whose evaluation counts for early stopping and for the kept weights."""
        return self.rampup_steps if self.min_steps is None else self.min_steps


def rampup(step: int, length: int) -> float:
    """exp(−5 (1 − t/T)²) for t < T, else 1 (the mean-teacher sigmoid ramp-up)."""
    if length <= 0 or step >= length:
        return 1.0
    t = 1.0 - step / length
    return math.exp(-5.0 * t * t)


def class_probs(logits: Tensor) -> Tensor:
    """(B,) one logit → (B, 2) [1 − σ, σ]; (B, K) → softmax."""
    if logits.ndim == 1:
        p = torch.sigmoid(logits.float())
        return torch.stack([1.0 - p, p], dim=1)
    return torch.softmax(logits.float(), dim=1)


def malignancy(logits: Tensor) -> Tensor:
    """(B,) probability of the positive (last) class."""
    return class_probs(logits)[:, -1]


@register_strategy("mean_teacher", MeanTeacherConfig, batch="crop", family="us")
class MeanTeacher:
    """Student + EMA teacher; see the module doc. batch: ``image`` (B, C, H, W), ``label`` (B,), ``sup_cls`` (B,)
    labelled flags; optional ``image_teacher`` (B, C, H, W) the teacher's own augmented view (else ``image``),
    ``kd`` (B,) consistency flags (else from ``consistency_on``), ``mask``/``sup_seg``.
    """

    uses_teacher = False  # it needs no external teacher: its teacher is the EMA of the student
    ddp_find_unused_parameters = True

    def __init__(self, student: nn.Module, teacher: Any = None, cfg: Any = None) -> None:
        self.cfg = cfg if cfg is not None else MeanTeacherConfig()
        self.student = student
        # a separate module without gradients; its batch-norm statistics are its own unless teacher_bn="student"
        self.ema = EMA(student, self.cfg.ema_decay, warmup=True, copy_buffers=self.cfg.teacher_bn == "student")
        self.early = EarlyStopping(self.cfg.patience)

    @property
    def teacher(self) -> nn.Module:
        return self.ema.module

    def to(self, device: torch.device) -> None:
        self.ema.module.to(device)

    def _noisy(self, x: Tensor) -> Tensor:
        return x + self.cfg.input_noise * torch.randn_like(x) if self.cfg.input_noise > 0 else x

    def loss(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        x = batch["image"]
        labelled = batch["sup_cls"].float()
        if "kd" in batch:
            cons = batch["kd"].float()
        else:
            cons = torch.ones_like(labelled) if self.cfg.consistency_on == "all" else 1.0 - labelled
        out = self.student(self._noisy(x))  # the student and the teacher see different noise
        logits = out["logits"]
        if logits.ndim == 1:
            ce = bce_per_sample(logits, batch["label"].float())
        else:
            ce = F.cross_entropy(logits.float(), batch["label"].long().clamp(min=0), reduction="none")
        parts: dict[str, Tensor] = {"loss_sup_cls": set_mean(ce, labelled)}
        if "mask_logits" in out and "mask" in batch and "sup_seg" in batch:
            # each supervised term is the mean over the items it applies to, as the classification one is
            parts["loss_sup_seg"] = set_mean(bce_per_sample(out["mask_logits"], batch["mask"]), batch["sup_seg"])
        weight = self.cfg.consistency_weight * rampup(step, self.cfg.rampup_steps)
        # a teacher with its own statistics needs its forward even without the loss, or it evaluates with none
        own_stats = self.cfg.teacher_bn == "own" and self.cfg.evaluate_with == "teacher"
        if weight > 0 or own_stats:
            # "own": train mode, as the reference code runs its EMA model: batch statistics of the teacher's own
            # weights (the student's running statistics do not fit the averaged weights: measured on synthetic
            # ultrasound, that mismatch shifted every teacher probability below 0.5) and dropout noise
            self.teacher.train(self.cfg.teacher_bn == "own")
            with torch.no_grad():
                target = class_probs(self.teacher(self._noisy(batch.get("image_teacher", x)))["logits"])
            self.teacher.eval()
        if weight > 0:
            mse = (class_probs(logits) - target).pow(2).mean(dim=1)
            parts["loss_consistency"] = weight * (mse * cons).sum() / cons.sum().clamp(min=1.0)
        loss = torch.stack(list(parts.values())).sum()
        return {
            "loss": loss,
            **parts,
            "consistency_weight": torch.tensor(weight),
            "labelled_fraction": labelled.mean().detach(),
        }

    def after_step(self, step: int) -> None:
        """θ' ← d·θ' + (1 − d)·θ after every optimiser step."""
        self.ema.update(getattr(self.student, "module", self.student))

    def eval_model(self) -> nn.Module:
        """The network used for predictions: the teacher by default (paper), or the student."""
        return self.teacher if self.cfg.evaluate_with == "teacher" else self.student

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema.state_dict(), "early": self.early.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema.load_state_dict(state["ema"])
        # fit_early_stopping evaluates after each chunk's checkpoint: within one process the live record is
        # newer than the checkpoint's; a restarted process (empty record) takes the checkpoint's
        if len(state["early"]["history"]) >= len(self.early.history):
            self.early.load_state_dict(state["early"])

    def describe(self) -> dict[str, Any]:
        return {"strategy": "mean_teacher", **self.cfg.model_dump(exclude={"name"})}


class EarlyStopping:
    """Stop after ``patience`` evaluations without a strict gain of the monitored value (higher is better)."""

    def __init__(self, patience: int = 5) -> None:
        self.patience = patience
        self.best = -math.inf
        self.best_step = -1
        self.bad = 0
        self.history: list[tuple[int, float]] = []

    def update(self, value: float, step: int) -> bool:
        """Record ``value`` at ``step``; True when it is a new best."""
        self.history.append((int(step), float(value)))
        if value > self.best:
            self.best, self.best_step, self.bad = float(value), int(step), 0
            return True
        self.bad += 1
        return False

    @property
    def stop(self) -> bool:
        return self.bad >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"patience": self.patience, "best": self.best, "best_step": self.best_step, "bad": self.bad,
                "history": [list(h) for h in self.history]}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.patience, self.best, self.best_step = int(state["patience"]), float(state["best"]), int(state["best_step"])
        self.bad, self.history = int(state["bad"]), [(int(s), float(v)) for s, v in state["history"]]
