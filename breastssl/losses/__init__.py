"""Losses shared by the strategies (DESIGN §5): per-sample terms and the SelectiveKD slice loss.

Every per-sample function returns a (B,) tensor so that a strategy can switch terms on and off per
slice with 0/1 flags. Sums over flagged samples divided by the batch size (``flagged_mean``, eq. 1's
per-slice mean) or by the flagged count (``set_mean``, a per-set mean) keep the graph when no sample
is flagged (a zero with a gradient path), which the loop requires (see ``engine/strategy.py``).

The SelectiveKD loss (seed 000, eq. 1), per slice x with augmented view x̃, student f(·;θ) and frozen
teacher f(·;θt), both for the classification logit and the segmentation map::

    L(x) = s_cls·BCE(y, σ(f_cls(x̃;θ)))              supervised classification (annotated, weak selected)
         + s_seg·mean_pixels BCE(m, σ(f_seg(x̃;θ)))  supervised segmentation (annotated slices only)
         + k·α_clf·(σ(f_cls(x̃;θt)) − σ(f_cls(x̃;θ)))²
         + k·α_seg·mean_pixels (σ(f_seg(x̃;θt)) − σ(f_seg(x̃;θ)))²

with per-slice flags s_cls, s_seg, k ∈ {0, 1}; the batch loss is the mean of L over the B slices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def bce_per_sample(logits: Tensor, target: Tensor) -> Tensor:
    """Binary cross-entropy of logits (B,) or (B, ...) against targets in [0, 1]; mean over non-batch dims → (B,)."""
    loss = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    return loss.reshape(loss.shape[0], -1).mean(dim=1)


def kd_mse_per_sample(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """MSE between student and teacher *probabilities* (sigmoid), mean over non-batch dims → (B,).

    The teacher side is detached: it is a target, never trained through.
    """
    diff = torch.sigmoid(student_logits.float()) - torch.sigmoid(teacher_logits.detach().float())
    return diff.pow(2).reshape(diff.shape[0], -1).mean(dim=1)


def flagged_mean(values: Tensor, flags: Tensor) -> Tensor:
    """Σ flags·values / B for per-sample ``values`` (B,) and 0/1 ``flags`` (B,): a scalar.

    Dividing by the whole batch (not by the flagged count) makes the batch loss the mean of the
    per-slice loss of eq. 1, and keeps ranks of equal batch size exactly additive under DDP.
    """
    return (values * flags.to(values.dtype)).sum() / max(values.shape[0], 1)


def set_mean(values: Tensor, flags: Tensor) -> Tensor:
    """Σ flags·values / Σ flags for per-sample ``values`` (B,) and 0/1 ``flags`` (B,): a scalar.

    The mean over the flagged items only (seed 002, eq. 4: each term averages over its own set), so a
    term's weight does not shrink with its set's share of the batch. A batch with no flagged item gives
    an exact 0 that still depends on ``values`` (the graph stays connected, no 0/0). Under DDP the loop
    averages the ranks' values: a mean of per-rank set means, not the set mean of the global batch.
    """
    flags = flags.to(values.dtype)
    return (values * flags).sum() / flags.sum().clamp(min=1.0)


def selectivekd_loss(
    student: dict[str, Tensor],
    teacher: dict[str, Tensor] | None,
    batch: dict[str, Tensor],
    alpha_clf: float = 1.0,
    alpha_seg: float = 25.0,
) -> dict[str, Tensor]:
    """The loss of eq. 1 over one batch of slices, as named parts that sum to ``loss``.

    student / teacher: model outputs with ``logits`` (B,) and optionally ``mask_logits`` (B, 1, H, W);
    ``teacher=None`` turns the KD terms off. batch: ``label`` (B,), ``mask`` (B, 1, H, W) and the 0/1 flags
    ``sup_cls``, ``sup_seg``, ``kd`` (B,). Parts are already weighted by α.
    """
    logits = student["logits"]
    mask_logits = student.get("mask_logits")
    # a zero that keeps the graph through both heads, for parts with no sample in this batch
    zero = logits.float().sum() * 0.0
    if mask_logits is not None:
        zero = zero + mask_logits.float().sum() * 0.0
    parts: dict[str, Tensor] = {}
    parts["loss_sup_cls"] = flagged_mean(bce_per_sample(logits, batch["label"]), batch["sup_cls"]) + zero
    if mask_logits is not None:
        parts["loss_sup_seg"] = flagged_mean(bce_per_sample(mask_logits, batch["mask"]), batch["sup_seg"]) + zero
    if teacher is not None:
        kd = batch["kd"]
        parts["loss_kd_cls"] = alpha_clf * flagged_mean(kd_mse_per_sample(logits, teacher["logits"]), kd) + zero
        if mask_logits is not None and teacher.get("mask_logits") is not None:
            kd_seg = kd_mse_per_sample(mask_logits, teacher["mask_logits"])
            parts["loss_kd_seg"] = alpha_seg * flagged_mean(kd_seg, kd) + zero
    parts = {"loss": torch.stack(list(parts.values())).sum(), **parts}
    return parts
