"""What the five SelectiveKD-family strategies share: their config section and the slice loss step.

The five settings of the paper's Table 1 (seed 000) differ only in *which slices* train with
*which terms*; the per-slice loss is the same formula (``breastssl.losses.selectivekd_loss``). So a
strategy here is a few class attributes (does it distil? use weak labels? select by the teacher's
score, with which threshold?) on top of :class:`SliceStrategy`, and :meth:`SliceStrategy.plan`
turns the slice roles of ``data.sampling`` into per-slice loss flags.
"""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd
import torch
from pydantic import Field
from torch import Tensor, nn

from ..config import Section
from ..data.sampling import CompositionConfig, select_by_threshold, training_table
from ..errors import ConfigError
from ..losses import selectivekd_loss


class StrategyConfig(Section):
    """The strategy section of a run config."""

    name: str = Field("supervised", description="a registered strategy: see list_strategies()")
    alpha_clf: float = Field(1.0, ge=0, description="weight of the classification KD term (paper: 1)")
    alpha_seg: float = Field(25.0, ge=0, description="weight of the segmentation KD term (paper: 25)")
    threshold: float | None = Field(
        None, ge=0, le=1, description="selection threshold T on teacher scores; None = the strategy's default"
    )
    composition: CompositionConfig = Field(default_factory=CompositionConfig)
    student_init: Literal["model", "teacher"] = Field(
        "model",
        description="model = as model.* builds it (the paper: ImageNet weights); teacher = the teacher's weights",
    )
    teacher_checkpoint: str | None = Field(None, description="teacher run dir or checkpoint .pt (KD strategies)")
    weak_negatives: Literal["negative", "kd"] = Field(
        "negative",
        description="* settings: a weakly labelled cancer-negative breast is an annotated negative stack "
        "(negative, the paper §2.1) or gives pool slices trained by KD only / when selected (kd, an ablation)",
    )
    calibrate: bool = Field(
        True,
        description="shift the teacher's classification logit by its run's prior correction (calibration.json) "
        "before selection, so T is a probability on the natural slice prior (data/prior.py); false = T "
        "thresholds the raw scores of a teacher trained on oversampled positives. KD targets are raw either way",
    )
    score_batch_size: int = Field(64, ge=1, description="slices per forward pass when scoring stacks")


class SliceStrategy:
    """A SelectiveKD-family strategy: one student forward per step on the whole batch, one teacher forward.

    batch: ``image`` (B, 1, H, W), ``mask`` (B, 1, H, W), ``label`` (B,), flags ``sup_cls``, ``sup_seg``,
    ``kd`` (B,). The teacher (when used) is frozen, in eval mode, and runs under ``no_grad`` on the same
    augmented batch the student sees.
    """

    name = "base"
    uses_teacher = True
    weak_labels = False  # the * settings
    use_pool = True  # train on slices without slice labels (KD, and selected ones)
    selective = False  # keep only pool slices whose teacher score is > T
    supervise_weak = False  # selected weak slices also get BCE with y_breast
    default_threshold: float | None = None
    # every step uses both heads of the one student call, so DDP needs no unused-parameter search
    ddp_find_unused_parameters = False
    # added to the teacher's classification logit before selection (prior correction, data/prior.py); set by the run
    teacher_logit_shift = 0.0

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None, cfg: StrategyConfig | None = None) -> None:
        self.cfg = cfg or StrategyConfig(name=self.name)
        self.student = student
        self.teacher: nn.Module | None = None
        if self.uses_teacher:
            if teacher is None:
                raise ConfigError(f"strategy {self.name!r} distils from a teacher: set strategy.teacher_checkpoint")
            if teacher is student:
                raise ConfigError("the teacher must be a separate module, not the student itself")
            self.teacher = teacher.eval().requires_grad_(False)

    @property
    def threshold(self) -> float | None:
        """T: the configured value, else this strategy's paper default (None when it does not select)."""
        if not self.selective:
            return None
        return self.cfg.threshold if self.cfg.threshold is not None else self.default_threshold

    def plan(self, table: pd.DataFrame, scores: pd.DataFrame | None = None) -> pd.DataFrame:
        """The training slices of ``table`` (from ``slice_table(weak_labels=self.weak_labels)``) with loss flags.

        scores (image_id, slice, score): the teacher's scores on non-augmented slices; needed when selective.
        """
        selected = None
        if self.selective:
            if scores is None:
                raise ValueError(f"strategy {self.name!r} selects slices: pass the teacher's slice scores")
            selected = select_by_threshold(table, scores, float(self.threshold))
        return training_table(
            table, kd=self.uses_teacher, use_pool=self.use_pool, selected=selected, supervise_weak=self.supervise_weak
        )

    def to(self, device: torch.device) -> None:
        if self.teacher is not None:
            self.teacher.to(device)

    def teacher_forward(self, x: Tensor) -> dict[str, Tensor]:
        """The frozen teacher's output dict on x (B, 1, H, W), through a BN-folded channels-last copy.

        The copy is made on first use (after the loop has moved and converted the teacher) and again when the
        device changes; ``self.teacher`` itself stays the module that scoring and checkpoints see.
        """
        assert self.teacher is not None
        key = (x.device, id(self.teacher))
        if getattr(self, "_fast_key", None) != key:
            from ..models.frozen import fast_frozen_copy

            self._fast_teacher, self._fast_key = fast_frozen_copy(self.teacher).to(x.device), key
        out = self._fast_teacher(x.contiguous(memory_format=torch.channels_last))
        # KD targets stay the teacher's raw probabilities: the student's supervised slots are drawn with the
        # same positive share as the teacher's were, so targets and labels share one prior; shifting only the
        # targets to the natural prior set the two terms against each other (students compressed to ~0.04,
        # KD* at val AUC 0.50; README, SelectiveKD)
        return {k: v.contiguous() if isinstance(v, Tensor) else v for k, v in out.items()}

    def loss(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        out = self.student(batch["image"])
        target = None
        if self.teacher is not None:
            self.teacher.eval()  # never let batch-norm statistics of the frozen teacher move
            # no_grad, not inference_mode: inference tensors cannot be saved for backward, so a KD loss that
            # multiplied by the target would fail; and inference_mode measured no faster here (bench_strategies)
            with torch.no_grad():
                target = self.teacher_forward(batch["image"])
        parts = selectivekd_loss(out, target, batch, self.cfg.alpha_clf, self.cfg.alpha_seg)
        # pool slices (no slice label) carry no mask supervision: their share of the batch
        parts["selected_fraction"] = (1.0 - batch["sup_seg"].float()).mean().detach()
        parts["weak_fraction"] = (batch["sup_cls"].float() * (1.0 - batch["sup_seg"].float())).mean().detach()
        return parts

    def describe(self) -> dict[str, Any]:
        """The settings a results table should state."""
        return {
            "strategy": self.name,
            "teacher": self.uses_teacher,
            "weak_labels": self.weak_labels,
            "threshold": self.threshold,
            "alpha_clf": self.cfg.alpha_clf,
            "alpha_seg": self.cfg.alpha_seg,
            "teacher_logit_shift": self.teacher_logit_shift,
        }
