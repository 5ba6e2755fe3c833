"""EMA: the update is exactly ema = d·ema + (1 − d)·param; buffers are copied."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from breastssl.engine import EMA


def net() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))


def test_update_arithmetic_is_exact():
    model = net()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    ema = EMA(model, decay=0.75)
    expected = 1.0
    for value in (3.0, -5.0, 0.5):  # dyadic numbers: every step is exact in float32
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(value)
        ema.update(model)
        expected = 0.75 * expected + 0.25 * value
        for p in ema.module.parameters():
            assert torch.equal(p, torch.full_like(p, expected))
    assert expected == 0.03125


def test_update_matches_the_formula_on_random_weights():
    torch.manual_seed(0)
    model = net()
    ema = EMA(model, decay=0.9)
    old = [p.detach().clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    ema.update(model)
    for e, o, p in zip(ema.module.parameters(), old, model.parameters(), strict=True):
        assert torch.equal(e, 0.9 * o + (1 - 0.9) * p.detach())


def test_buffers_are_copied_and_the_copy_is_frozen():
    model = net()
    model.train()
    model(torch.randn(8, 2))  # moves the batch-norm running statistics
    ema = EMA(model, decay=0.99)
    model(torch.randn(8, 2) + 3)
    ema.update(model)
    for e, b in zip(ema.module.buffers(), model.buffers(), strict=True):
        assert torch.equal(e, b)
    assert not any(p.requires_grad for p in ema.module.parameters())
    assert not ema.module.training


def test_warmup_decay_and_state_round_trip():
    ema = EMA(net(), decay=0.99, warmup=True)
    decays = []
    for _ in range(3):
        decays.append(ema.current_decay())
        ema.update(net())
    assert decays == pytest.approx([0.5, 2 / 3, 0.75])  # 1 − 1/(n + 2), the mean-teacher ramp
    other = EMA(net(), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 3 and other.decay == 0.99 and other.warmup
    for a, b in zip(other.module.state_dict().values(), ema.module.state_dict().values(), strict=True):
        assert torch.equal(a, b)
