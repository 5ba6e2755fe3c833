"""Soft-label losses of the self-training method (seed 002, §3.4, eqs. 4–5).

Both take *probabilistic* targets y ∈ [0, 1] (an NLP soft label, a pixel probability map) and reduce
to their hard-label counterparts when y ∈ {0, 1}:

    soft CE:     CE(y, ŷ) = −y·log ŷ − (1 − y)·log(1 − ŷ)                       (eq. 4)
    soft focal:  FL(y, ŷ) = α_t · |y − ŷ|^γ · CE(y, ŷ)                           (eq. 5)

with ŷ = σ(logit). α_t follows Lin et al. (the paper's ref. [20], whose defaults α = 0.25, γ = 2 the
paper keeps): α_t = α·y + (1 − α)·(1 − y), which is α for a positive and 1 − α for a negative target,
so for a hard y the soft focal loss *is* the focal loss (|y − ŷ| = 1 − p_t). ``class_balanced=False``
uses the constant α_t = α instead. Every function returns a per-sample (B,) tensor (mean over the
non-batch dims), so a strategy can switch samples on and off with 0/1 flags (see ``losses.flagged_mean``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

FOCAL_ALPHA = 0.25  # Lin et al.'s default, kept by the paper (§4.2)
FOCAL_GAMMA = 2.0


def soft_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Eq. 4: binary cross-entropy against soft targets, mean over non-batch dims.

    logits, target: (B,) or (B, ...) of the same shape; target in [0, 1]. Returns (B,).
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
    ce = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    return ce.reshape(ce.shape[0], -1).mean(dim=1)


def soft_focal(
    logits: Tensor,
    target: Tensor,
    alpha: float = FOCAL_ALPHA,
    gamma: float = FOCAL_GAMMA,
    class_balanced: bool = True,
    norm: str = "mean",
) -> Tensor:
    """Eq. 5: α_t·|y − ŷ|^γ·CE(y, ŷ) per element, reduced over non-batch dims.

    logits, target: (B,) or (B, 1, H, W) of the same shape; target in [0, 1]. Returns (B,).
    The modulating factor is part of the gradient (as in Lin et al.), not a detached weight.
    norm: ``mean`` over the elements, or ``positives``: their sum divided by the target's mass Σy (at least 1),
    as Lin et al. normalise by the number of positive anchors (a map's loss then does not shrink with the share
    of the image a lesion covers).
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
    y = target.float()
    p = logits.float().sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits.float(), y, reduction="none")
    alpha_t = alpha * y + (1.0 - alpha) * (1.0 - y) if class_balanced else alpha
    loss = (alpha_t * (y - p).abs().pow(gamma) * ce).reshape(logits.shape[0], -1)
    if norm == "mean":
        return loss.mean(dim=1)
    if norm == "positives":
        return loss.sum(dim=1) / y.reshape(y.shape[0], -1).sum(dim=1).clamp(min=1.0)
    raise ValueError(f"norm must be 'mean' or 'positives', not {norm!r}")
