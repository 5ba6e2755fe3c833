"""Self-training with report-derived soft labels and iterative TP/FP/FN mining (mammography, seed 002).

Paper: Tang et al., "Leveraging Large-Scale Weakly Labeled Data for Semi-Supervised Mass Detection in
Mammograms", CVPR 2021.

Stage 1 (the first ``stage1_epochs``): supervised on fully labelled images, ``L = L_seg^F`` (pixel focal).
Stage 2, ``rounds`` (Q) rounds of ``round_epochs``: at the start of a round every weak image is scored
(probability map), the map goes through a dense CRF (binary mask), and every ``p0_every`` epochs the
tentative TP/FP/FN/TN table is rebuilt with p0 = 0.95, 0.85, ... (``self_training_mining``); TN and
unsure images are dropped. Then, per batch::

    L = L_seg^F + λ1·L_cls^F + λ2·L_seg^W + λ3·L_cls^W          λ = (0.3, 0.6, 0.2)

    L_seg^F  focal on the GT mask (full images)          L_cls^F  BCE on the image label (full images)
    L_seg^W  soft focal on the stage-2.1 probability map (TP)
    L_cls^W  soft CE on the NLP soft label y (TP, FP, FN)

soft focal = α_t·|y − ŷ|^γ·CE(y, ŷ), α = 0.25, γ = 2 (``losses.soft``). Batches are 1:5 positive :
negative. Every batch, full and weak items alike, is augmented before the forward (``augment``: flips,
rotation + scaling moving image, contralateral image and pixel target together, Gaussian noise on the
images; ``self_training_augment``): without it a TP's soft target is the student's own map at the start
of a round, and L_seg^W has zero gradient there. ``soft_mask=False`` / ``soft_nlp=False`` give the
hard-label ablation (CRF masks, y > 0.5).
Paper recipe: HRNet-W48 BTV, 800×1024, Adam 1e-4 (÷5 every 10 epochs), 50 epochs stage 1, Q = 2 rounds
of 15 epochs, batch 24, classification branch lr ×10 (``optim.lr_mult: {cls_head: 10}``).

Each term of eq. 6 is the mean over its own set, as eq. 4's 1/N says (``losses.set_mean``): L_seg^F and
L_cls^F over the full items of the batch, L_seg^W over its TP items, L_cls^W over its TP/FP/FN items, so
the λ weights are not rescaled by each set's share of the batch; a batch with no item of a set gives a
zero that keeps the graph. Mask positivity uses ``lesion_threshold`` t, the threshold at which the FROC
takes regions (``self_training_lesions``). The TP/FP/FN/TN counts of the current table are returned with
the losses (logged by the loop) and kept in ``history``, one entry per table rebuild, with the weak-seg
term's value at the period's first step with a TP item (``loss_weak_seg``, λ2-weighted), the norm of its
gradient over the student's parameters there (``grad_norm_weak_seg``) and its mean over the period's
steps with a TP (``loss_weak_seg_mean``).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from ..config import Section
from ..data.self_training_data import FULL, SelfTrainingDataset
from ..errors import ConfigError
from ..losses import set_mean
from ..losses.soft import soft_cross_entropy, soft_focal
from ..postprocess.crf import CRFParams
from .registry import register_strategy
from .self_training_augment import PairAugmentConfig, augment_batch
from .self_training_lesions import lesion_masks
from .self_training_mining import mine, p0_at, role_counts, score_maps

# score batches per mining chunk: at 1024 × 832 and batch 32, 256 images' maps, images and partners (~3 GB float32)
MINING_CHUNK = 8


class CRFConfig(Section):
    """Dense CRF parameters (see ``postprocess.crf.CRFParams``)."""

    sxy_gaussian: float = 1.5
    compat_gaussian: float = 3.0
    sxy_bilateral: float = 6.0
    srgb: float = 20.0
    compat_bilateral: float = 4.0
    iterations: int = Field(5, ge=1)
    backend: str = Field("auto", pattern="^(auto|pydensecrf|numpy|dense)$", description="dense: the exact reference")
    min_area: int = Field(4, ge=1, description="CRF regions smaller than this (pixels) do not make a mask positive")
    scale: float = Field(1.0, ge=1, description="coarse inference: downsampling factor (kernel widths scaled)")
    max_side: int = Field(256, ge=0, description="the CRF grid's longer side at most (0: full resolution)")
    workers: int = Field(0, ge=0, description="processes mining the CRF masks (0: one per usable core)")

    def params(self, **override: float | int | str) -> CRFParams:
        """The :class:`CRFParams` of these settings (``override``: fields replaced, e.g. ``workers=1``)."""
        prm = CRFParams(self.sxy_gaussian, self.compat_gaussian, self.sxy_bilateral, self.srgb, self.compat_bilateral,
                        self.iterations, backend=self.backend, scale=self.scale, max_side=self.max_side,
                        workers=self.workers)  # fmt: skip
        return prm.with_(**override) if override else prm


class SelfTrainingConfig(Section):
    """The strategy section for ``self_training`` (defaults: the paper's)."""

    name: str = "self_training"
    lambda_cls_full: float = Field(0.3, ge=0, description="λ1")
    lambda_seg_weak: float = Field(0.6, ge=0, description="λ2")
    lambda_cls_weak: float = Field(0.2, ge=0, description="λ3")
    focal_alpha: float = Field(0.25, ge=0, le=1)
    focal_gamma: float = Field(2.0, ge=0)
    focal_norm: Literal["mean", "positives"] = Field(
        "mean", description="pixel focal loss per image: mean over pixels, or sum / lesion mass Σy (Lin et al.)"
    )
    stage1_epochs: int = Field(50, ge=0)
    rounds: int = Field(2, ge=0, description="Q")
    round_epochs: int = Field(15, ge=1)
    p0_start: float = Field(0.95, gt=0.5, le=1)
    p0_step: float = Field(0.1, ge=0)
    p0_every: int = Field(5, ge=1, description="epochs between p0 decreases (and table rebuilds)")
    pos_fraction: float = Field(1 / 6, gt=0, lt=1, description="positives per batch (1:5)")
    full_share: float | None = Field(
        None, gt=0, le=1, description="share of each batch's positives and of its negatives drawn from the fully "
        "labelled images; None: drawn uniformly from the pooled full + mined weak images (the paper is silent)",
    )  # fmt: skip
    soft_mask: bool = Field(True, description="False: CRF binary masks as L_seg^W targets (hard-label ablation)")
    soft_nlp: bool = Field(True, description="False: NLP labels thresholded at 0.5 (hard-label ablation)")
    lesion_threshold: float = Field(
        0.25, gt=0, lt=1, description="map probability at which the model 'found a lesion': the CRF mask's "
        "boundary in mining and the FROC's region threshold (focal-loss maps stay below 0.5)",
    )  # fmt: skip
    augment: PairAugmentConfig = Field(default_factory=PairAugmentConfig)
    score_batch_size: int = Field(32, ge=1)
    crf: CRFConfig = Field(default_factory=CRFConfig)


@register_strategy("self_training", SelfTrainingConfig, batch="pair", family="mammo")
class SelfTraining:
    """Stage 1 + Q rounds of mining and mixed training; ``attach(data, steps_per_epoch)`` before ``fit``.

    batch: ``image``, ``aux`` (B, 1, H, W), ``mask`` (B, 1, H, W), ``label`` (B,), flags ``full``, ``weak_seg``,
    ``weak_cls`` (B,) (``aux`` may be absent for a single-view model).
    """

    uses_teacher = False
    ddp_find_unused_parameters = False

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None, cfg: Any = None) -> None:
        self.cfg = cfg if cfg is not None else SelfTrainingConfig()
        if self.cfg.p0_every > self.cfg.round_epochs or self.cfg.round_epochs % self.cfg.p0_every:
            raise ConfigError("strategy.round_epochs must be a multiple of strategy.p0_every")
        if self.cfg.stage1_epochs % self.cfg.p0_every:
            raise ConfigError("strategy.stage1_epochs must be a multiple of strategy.p0_every (round boundaries)")
        self.student = student
        self.data: SelfTrainingDataset | None = None
        self.steps_per_epoch = 0
        self.p0 = self.cfg.p0_start
        self.history: list[dict[str, Any]] = []
        self._counts = {"TP": 0, "FP": 0, "FN": 0, "TN": 0}
        # per table rebuild: measure the weak-seg term's gradient once, average its value over the period
        self._probe_pending, self._weak_seg_sum, self._weak_seg_steps = False, 0.0, 0

    # ---- wiring --------------------------------------------------------------------------------------
    def attach(self, data: SelfTrainingDataset, steps_per_epoch: int) -> None:
        """The training data whose weak part is mined; ``train.round_steps`` must be ``round_steps()``."""
        self.data, self.steps_per_epoch = data, steps_per_epoch
        data.soft_mask, data.soft_nlp = self.cfg.soft_mask, self.cfg.soft_nlp

    def round_steps(self) -> int:
        """Steps between ``before_round`` calls: one p0 period."""
        return self.cfg.p0_every * self.steps_per_epoch

    def total_steps(self) -> int:
        return (self.cfg.stage1_epochs + self.cfg.rounds * self.cfg.round_epochs) * self.steps_per_epoch

    @property
    def stage1_steps(self) -> int:
        return self.cfg.stage1_epochs * self.steps_per_epoch

    # ---- stage 2.1 -------------------------------------------------------------------------------------
    def before_round(self, block: int) -> None:
        """Called every p0 period: start of a round → re-score + CRF; every period → new p0, new table."""
        if self.data is None:
            return
        k = block - self.cfg.stage1_epochs // self.cfg.p0_every  # p0 periods since stage 2 began
        per_round = self.cfg.round_epochs // self.cfg.p0_every
        if k < 0 or k >= self.cfg.rounds * per_round or not self.data.weak_index.size:
            return
        weak = self.data.weak_index
        if k % per_round == 0:
            self._mine_masks(weak)
        self.p0 = p0_at((k % per_round) * self.cfg.p0_every, self.cfg.p0_start, self.cfg.p0_step, self.cfg.p0_every)
        mask_pos = self.data.crf.stored(weak)  # a CRF mask is stored exactly where it is non-empty
        self.data.roles[weak] = mine(self.data.y[weak], mask_pos, self.p0)
        counts = role_counts(self.data.roles[weak])
        self._counts = {key: counts[key] for key in ("TP", "FP", "FN", "TN")}
        self.history.append({"round": k // per_round, "period": k % per_round, "p0": round(self.p0, 4), **counts})
        self._probe_pending, self._weak_seg_sum, self._weak_seg_steps = True, 0.0, 0

    def _mine_masks(self, weak: np.ndarray) -> None:
        """Score the weak images and CRF-refine their maps, ``MINING_CHUNK`` score batches at a time: at the paper's
        scale (10⁵ images) the maps and images of all weak images at once would need hundreds of GB. The CRF mask
        is kept where non-empty, the probability map (the soft pseudo mask) only there too: only those images can
        be TP, the one role trained on a pseudo mask. Batches are those of one pass over all weak images (chunks
        are whole multiples of the score batch), so the scores do not depend on the chunking."""
        device = next(self.student.parameters()).device
        c, t, bs = self.cfg.crf, self.cfg.lesion_threshold, self.cfg.score_batch_size
        for start in range(0, len(weak), bs * MINING_CHUNK):
            ids = weak[start : start + bs * MINING_CHUNK]
            sub = self.data.pairs.subset(ids)
            maps = score_maps(self.student, sub, bs, device)
            masks = lesion_masks(maps, sub.images[:, 0], c.params(), c.min_area, t)
            found = masks.reshape(len(ids), -1).any(axis=1)
            self.data.crf.set(ids, masks, keep=found)
            self.data.pseudo.set(ids, maps.astype(np.float16), keep=found)

    # ---- stage 2.2 -------------------------------------------------------------------------------------
    def loss(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor | float]:
        full, weak_seg, weak_cls = batch["full"], batch["weak_seg"], batch["weak_cls"]
        image, aux, target = batch["image"], batch.get("aux"), batch["mask"]
        if self.cfg.augment.enabled:
            image, aux, target = augment_batch(image, aux, target, self.cfg.augment)
        out = self.student(image, aux) if aux is not None else self.student(image)
        logits, mask_logits = out["logits"], out["mask_logits"]
        zero = logits.float().sum() * 0.0 + mask_logits.float().sum() * 0.0
        seg = soft_focal(mask_logits, target, self.cfg.focal_alpha, self.cfg.focal_gamma, norm=self.cfg.focal_norm)
        parts: dict[str, Tensor] = {"loss_sup_seg": set_mean(seg, full) + zero}
        if step >= self.stage1_steps:
            cls = soft_cross_entropy(logits, batch["label"])
            parts["loss_sup_cls"] = self.cfg.lambda_cls_full * set_mean(cls, full) + zero
            parts["loss_weak_seg"] = self.cfg.lambda_seg_weak * set_mean(seg, weak_seg) + zero
            parts["loss_weak_cls"] = self.cfg.lambda_cls_weak * set_mean(cls, weak_cls) + zero
            self._track_weak_seg(parts["loss_weak_seg"], weak_seg)
        else:  # stage 1: the classification branch does not exist yet in the paper; its parts are zero
            parts.update(loss_sup_cls=zero, loss_weak_seg=zero, loss_weak_cls=zero)
        result: dict[str, Tensor | float] = {"loss": torch.stack(list(parts.values())).sum(), **parts}
        result.update({f"n_{k.lower()}": float(v) for k, v in self._counts.items()})
        result["p0"] = float(self.p0)
        return result

    def _track_weak_seg(self, loss_weak_seg: Tensor, weak_seg: Tensor) -> None:
        """Into the current ``history`` entry: the term's mean over the period's steps with a TP item, and at the
        first such step its value and gradient norm over the student's parameters (one extra backward of
        that term per table rebuild; skipped under DDP, whose reducer expects one backward per forward)."""
        if not self.history or not torch.is_grad_enabled() or float(weak_seg.sum()) == 0:
            return
        entry, value = self.history[-1], float(loss_weak_seg.detach())
        self._weak_seg_sum, self._weak_seg_steps = self._weak_seg_sum + value, self._weak_seg_steps + 1
        entry["loss_weak_seg_mean"] = self._weak_seg_sum / self._weak_seg_steps
        if self._probe_pending and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            params = [p for p in self.student.parameters() if p.requires_grad]
            grads = torch.autograd.grad(loss_weak_seg, params, retain_graph=True, allow_unused=True)
            norm = torch.sqrt(sum(((g.float() ** 2).sum() for g in grads if g is not None), torch.zeros(())))
            entry.update(loss_weak_seg=value, grad_norm_weak_seg=float(norm))
            self._probe_pending = False

    # ---- checkpoint ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"p0": self.p0, "history": list(self.history), "counts": dict(self._counts)}
        if self.data is not None:
            state.update(
                roles=torch.from_numpy(self.data.roles.copy()), pseudo=self.data.pseudo.state(),
                crf=self.data.crf.state(),
            )  # fmt: skip
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.p0, self.history, self._counts = float(state["p0"]), list(state["history"]), dict(state["counts"])
        if self.data is not None and "roles" in state:
            self.data.roles[:] = state["roles"].numpy()
            self.data.pseudo.load_state(state["pseudo"])  # sparse, or dense from an older checkpoint
            self.data.crf.load_state(state["crf"])

    def describe(self) -> dict[str, Any]:
        """The settings a results table should state."""
        c = self.cfg
        return {"strategy": "self_training", "lambdas": (c.lambda_cls_full, c.lambda_seg_weak, c.lambda_cls_weak),
                "soft_mask": c.soft_mask, "soft_nlp": c.soft_nlp, "rounds": c.rounds, "full_role": FULL,
                "lesion_threshold": c.lesion_threshold, "augment": c.augment.enabled}  # fmt: skip
