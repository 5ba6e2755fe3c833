"""Stage 2.1 of the self-training method (seed 002, §3.3): scoring, the p0 schedule, the tentative
TP/FP/FN/TN table (the data and batches it feeds: ``data/self_training_data.py``).

Mining table (paper Table 1), per weakly labelled image with NLP soft label y and CRF mask M_b::

                      NLP + (y > p0)    NLP − (y < 1 − p0)    neither
    mask + (M_b ≠ ∅)       TP                 FP               unsure
    mask − (M_b = ∅)       FN                 TN               unsure

TN is dropped (easy negatives); "unsure" (the NLP model is not confident at this p0) is not trained
on either. p0 starts at 0.95 and drops by 0.1 every 5 epochs within a round, letting in less
confident reports as the image model gets more robust; it is kept ≥ 0.5 so the two NLP sets never
overlap.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.mammo_pairs import PairArrays
from ..data.self_training_data import FN, FP, ROLE_NAMES, TN, TP, UNSURE
from ..postprocess.crf import CRFParams
from ..postprocess.crf_batch import crf_masks as batch_crf_masks


def p0_at(epoch_in_round: int, start: float = 0.95, step: float = 0.1, every: int = 5, floor: float = 0.5) -> float:
    """The NLP confidence threshold p0 after ``epoch_in_round`` epochs of a round (paper: 0.95, −0.1 / 5 epochs)."""
    return max(floor, start - step * (epoch_in_round // every))


def mine(y: np.ndarray, mask_positive: np.ndarray, p0: float) -> np.ndarray:
    """Tentative roles (N,) int of weak images from soft labels y (N,) and mask positivity (N,) bool."""
    y = np.asarray(y, dtype=float)
    pos_mask = np.asarray(mask_positive, dtype=bool)
    if y.shape != pos_mask.shape:
        raise ValueError(f"soft labels {y.shape} and mask flags {pos_mask.shape} differ in shape")
    nlp_pos, nlp_neg = y > p0, y < 1.0 - p0
    roles = np.full(y.shape, UNSURE, dtype=np.int64)
    roles[nlp_pos & pos_mask] = TP
    roles[nlp_neg & pos_mask] = FP
    roles[nlp_pos & ~pos_mask] = FN
    roles[nlp_neg & ~pos_mask] = TN
    return roles


def role_counts(roles: np.ndarray) -> dict[str, int]:
    """Counts of the weak roles: ``{"TP": .., "FP": .., "FN": .., "TN": .., "unsure": ..}``."""
    return {ROLE_NAMES[r]: int((roles == r).sum()) for r in (TP, FP, FN, TN, UNSURE)}


@torch.no_grad()
def score_maps(
    model: nn.Module, pairs: PairArrays, batch_size: int = 32, device: str | torch.device | None = None
) -> np.ndarray:
    """Lesion probability maps (N, H, W) float32 of every pair, model in eval mode (restored after).

    ``device``: where the batches go; None = the model's own device.
    """
    device = device if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    for s in range(0, len(pairs), batch_size):
        x = torch.from_numpy(pairs.images[s : s + batch_size]).to(device)
        aux = torch.from_numpy(pairs.aux[s : s + batch_size]).to(device)
        res = model(x, aux) if _takes_aux(model) else model(x)
        out.append(torch.sigmoid(res["mask_logits"].float())[:, 0].cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, *pairs.images.shape[-2:]), np.float32)


def _takes_aux(model: nn.Module) -> bool:
    import inspect

    inner = getattr(model, "module", model)  # DDP
    return "aux" in inspect.signature(inner.forward).parameters


def crf_masks(maps: np.ndarray, images: np.ndarray, params: CRFParams, min_area: int = 1) -> np.ndarray:
    """CRF binary masks (N, H, W) bool of maps (N, H, W) over images (N, H, W); regions < min_area px removed.

    Over ``params.workers`` processes (0: one per core), on a grid coarsened by ``params.scale``/``max_side``
    (see ``postprocess.crf``); the masks are in input order whatever the number of workers.
    """
    return batch_crf_masks(maps, images, params, min_area)
