"""LsKD, ImPA and image-level KD against hand computations."""

from __future__ import annotations

import math

import torch
from torch import nn

from breastssl.losses.comoto import image_kd_loss, impa_loss, lskd_loss


def identity_proj() -> nn.Linear:
    proj = nn.Linear(9, 9)
    with torch.no_grad():
        proj.weight.copy_(torch.eye(9))
        proj.bias.zero_()
    return proj


def hand_kl(s: list[float], t: list[float], temp: float) -> float:
    """KL(softmax(t/T) ‖ softmax(s/T)) for one channel, written out."""
    zs = sum(math.exp(v / temp) for v in s)
    zt = sum(math.exp(v / temp) for v in t)
    q = [math.exp(v / temp) / zs for v in s]
    p = [math.exp(v / temp) / zt for v in t]
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True))


def test_lskd_is_alpha_t_squared_times_the_mean_channel_kl():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 9, generator=g) * 3, torch.randn(3, 9, generator=g) * 3
    for temp, alpha in ((4.0, 2.0), (1.0, 1.0), (2.5, 0.5)):
        want = alpha * temp**2 * sum(hand_kl(s[c].tolist(), t[c].tolist(), temp) for c in range(3)) / 3
        got = lskd_loss(s, t, identity_proj(), temp, alpha)
        assert math.isclose(got.item(), want, rel_tol=1e-5), (temp, got.item(), want)


def test_lskd_passes_the_student_through_the_projection_and_detaches_the_teacher():
    s = torch.randn(4, 9, requires_grad=True)
    t = torch.randn(4, 9, requires_grad=True)
    proj = nn.Linear(9, 9)
    lskd_loss(s, t, proj).backward()
    assert s.grad.abs().sum() > 0 and proj.weight.grad.abs().sum() > 0
    assert t.grad is None
    # a permutation projection permutes the points: the loss equals the KL of the permuted student
    perm = torch.randperm(9)
    p = nn.Linear(9, 9, bias=False)
    with torch.no_grad():
        p.weight.copy_(torch.eye(9)[perm])
    torch.testing.assert_close(lskd_loss(s, t, p), lskd_loss(s[:, perm], t, identity_proj()))


def test_impa_by_hand():
    pos = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    neg = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    r = 1 / math.sqrt(2)
    # off-diagonal cosines: (0, r, 0, r, r, r) → mean relu(1 - cos) = (1 + 1 + 4(1 - r)) / 6
    align = (2 + 4 * (1 - r)) / 6
    # cos(pos_i, neg_j): [1, -1], [0, 0], [r, -r] → relu mean = (1 + r) / 6
    sep = (1 + r) / 6
    torch.testing.assert_close(impa_loss(pos, neg, beta=2.0), torch.tensor(2 * (align + sep)))
    zero = impa_loss(pos[:1].requires_grad_(), neg)
    assert zero.item() == 0.0 and zero.requires_grad


def test_image_kd_by_hand():
    s = torch.zeros(2, 3, 2, 2)
    t = torch.zeros(1, 3, 4, 4)
    t[:, 0] = 4.0  # pooled teacher = (4, 0, 0), student = (0, 0, 0)
    p = torch.softmax(torch.tensor([1.0, 0.0, 0.0]), 0)  # T = 4
    want = 2 * 16 * float((p * (p.log() - math.log(1 / 3))).sum())
    assert math.isclose(image_kd_loss(s, t).item(), want, rel_tol=1e-5)
