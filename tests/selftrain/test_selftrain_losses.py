"""The soft-label losses (seed 002, eqs. 4–5) against hand computation."""

from __future__ import annotations

import math

import pytest
import torch

from breastssl.losses.soft import soft_cross_entropy, soft_focal


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_soft_cross_entropy_by_hand():
    # y = 0.8, ŷ = 0.6: −0.8·log 0.6 − 0.2·log 0.4
    logits = torch.tensor([_logit(0.6), _logit(0.3)])
    target = torch.tensor([0.8, 0.0])
    expected = torch.tensor([-0.8 * math.log(0.6) - 0.2 * math.log(0.4), -math.log(0.7)])
    torch.testing.assert_close(soft_cross_entropy(logits, target), expected)


def test_soft_focal_by_hand_and_per_sample_mean():
    # one sample, two pixels: (y, ŷ) = (0.9, 0.6) and (0.0, 0.2)
    logits = torch.tensor([[[[_logit(0.6), _logit(0.2)]]]])
    target = torch.tensor([[[[0.9, 0.0]]]])
    ce1 = -0.9 * math.log(0.6) - 0.1 * math.log(0.4)
    a1 = 0.25 * 0.9 + 0.75 * 0.1
    px1 = a1 * 0.3**2 * ce1
    px2 = 0.75 * 0.2**2 * -math.log(0.8)
    got = soft_focal(logits, target)
    assert got.shape == (1,)
    assert got.item() == pytest.approx((px1 + px2) / 2, rel=1e-5)
    # constant α_t variant: α·|y − ŷ|^γ·CE
    flat = soft_focal(logits, target, class_balanced=False)
    assert flat.item() == pytest.approx(0.25 * (0.3**2 * ce1 + 0.2**2 * -math.log(0.8)) / 2, rel=1e-5)


def test_soft_focal_is_the_focal_loss_for_hard_labels_and_has_gradient():
    logits = torch.tensor([1.2, -0.4, 0.3], requires_grad=True)
    y = torch.tensor([1.0, 0.0, 1.0])
    p = torch.sigmoid(logits)
    p_t = torch.where(y > 0, p, 1 - p)
    alpha_t = torch.where(y > 0, torch.tensor(0.25), torch.tensor(0.75))
    lin = -alpha_t * (1 - p_t) ** 2 * torch.log(p_t)  # Lin et al., eq. 5 of the focal-loss paper
    got = soft_focal(logits.reshape(3, 1), y.reshape(3, 1))
    torch.testing.assert_close(got, lin.detach().reshape(3), rtol=1e-5, atol=1e-7)
    got.sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        soft_focal(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 3))


def test_soft_focal_positives_norm_divides_the_sum_by_the_lesion_mass():
    import pytest
    import torch

    from breastssl.losses.soft import soft_focal

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1, 8, 6, generator=g)
    target = torch.zeros(3, 1, 8, 6)
    target[0, 0, 2:4, 1:3] = 1.0  # 4 px of lesion
    target[1, 0, 5, 5] = 0.4  # a soft pixel: mass 0.4 < 1, so the sum is divided by 1
    per_elem = soft_focal(logits, target, norm="mean") * 48  # the mean's sum over the 48 pixels
    pos = soft_focal(logits, target, norm="positives")
    assert torch.allclose(pos, per_elem / torch.tensor([4.0, 1.0, 1.0]), rtol=1e-5)
    # a lesion covering a smaller share of a larger map keeps its loss under "positives", not under "mean"
    big_l, big_t = torch.full((1, 1, 16, 12), -12.0), torch.zeros(1, 1, 16, 12)  # background: an easy negative
    big_t[0, 0, :2, :2], big_l[0, 0, :2, :2] = 1.0, -3.0  # a missed 4-px lesion
    small_l, small_t = big_l[..., :8, :6], big_t[..., :8, :6]
    big_pos, small_pos = soft_focal(big_l, big_t, norm="positives"), soft_focal(small_l, small_t, norm="positives")
    assert torch.allclose(big_pos, small_pos, rtol=1e-4)
    assert soft_focal(big_l, big_t).item() < soft_focal(small_l, small_t).item()
    with pytest.raises(ValueError, match="norm"):
        soft_focal(logits, target, norm="sum")
