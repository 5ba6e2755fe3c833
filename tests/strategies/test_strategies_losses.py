"""The SelectiveKD loss (eq. 1) against a hand computation on fixed tensors."""

from __future__ import annotations

import math

import torch

from breastssl.losses import selectivekd_loss


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def bce(y: float, logit: float) -> float:
    p = sig(logit)
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_selectivekd_loss_matches_a_hand_computation():
    # three slices: annotated positive, weak selected (y_breast = 1, no mask), KD-only
    s_logits = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    t_logits = torch.tensor([1.0, 0.0, -0.5])
    s_mask = torch.tensor([[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]]).reshape(3, 1, 1, 2)
    t_mask = torch.tensor([[1.0, 1.0], [0.0, 0.0], [-1.0, 2.0]]).reshape(3, 1, 1, 2)
    mask = torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]).reshape(3, 1, 1, 2)
    batch = {
        "label": torch.tensor([1.0, 1.0, 0.0]),
        "mask": mask,
        "sup_cls": torch.tensor([1.0, 1.0, 0.0]),
        "sup_seg": torch.tensor([1.0, 0.0, 0.0]),
        "kd": torch.tensor([1.0, 1.0, 1.0]),
    }
    parts = selectivekd_loss(
        {"logits": s_logits, "mask_logits": s_mask}, {"logits": t_logits, "mask_logits": t_mask}, batch, 1.0, 25.0
    )
    sl, tl = [0.5, -1.0, 2.0], [1.0, 0.0, -0.5]
    sm, tm = [[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]], [[1.0, 1.0], [0.0, 0.0], [-1.0, 2.0]]
    sup_cls = (bce(1, 0.5) + bce(1, -1.0)) / 3
    sup_seg = ((bce(0, 0.0) + bce(1, 1.0)) / 2) / 3
    kd_cls = 1.0 * sum((sig(a) - sig(b)) ** 2 for a, b in zip(sl, tl, strict=True)) / 3
    kd_seg = (
        25.0
        * sum(
            sum((sig(a) - sig(b)) ** 2 for a, b in zip(ra, rb, strict=True)) / 2 for ra, rb in zip(sm, tm, strict=True)
        )
        / 3
    )
    expected = {"loss_sup_cls": sup_cls, "loss_sup_seg": sup_seg, "loss_kd_cls": kd_cls, "loss_kd_seg": kd_seg}
    for key, value in expected.items():
        assert abs(parts[key].item() - value) < 1e-6, key
    assert abs(parts["loss"].item() - sum(expected.values())) < 1e-6
    # the teacher side is a target: no gradient flows into it even if it had requires_grad
    parts["loss"].backward()
    assert s_logits.grad is not None and s_logits.grad.abs().sum() > 0


def test_without_a_teacher_there_are_no_kd_terms():
    out = {"logits": torch.zeros(2, requires_grad=True)}
    batch = {"label": torch.ones(2), "sup_cls": torch.ones(2), "sup_seg": torch.ones(2), "kd": torch.ones(2)}
    parts = selectivekd_loss(out, None, batch)
    assert set(parts) == {"loss", "loss_sup_cls"}
    assert abs(parts["loss"].item() - math.log(2)) < 1e-6
