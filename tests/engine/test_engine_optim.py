"""Optimisers, per-group lr multipliers and schedules give the expected learning rates."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from breastssl.engine import LrFactor, OptimConfig, ScheduleConfig, build_optimizer, build_scheduler, group_lrs
from breastssl.errors import ConfigError


def two_groups() -> dict[str, list[nn.Parameter]]:
    return {"encoder": [nn.Parameter(torch.zeros(3))], "cls_head": [nn.Parameter(torch.zeros(2))]}


def lrs_at(cfg: ScheduleConfig, total: int, steps: list[int], lr_mult: dict[str, float] | None = None):
    opt = build_optimizer(two_groups(), OptimConfig(lr=0.1, lr_mult=lr_mult or {}))
    sched = build_scheduler(opt, cfg, total)
    out = {}
    for s in range(max(steps) + 1):
        if s in steps:
            out[s] = group_lrs(opt)
        opt.step()
        sched.step()
    return out


def test_lr_multiplier_per_group_survives_the_schedule():
    lrs = lrs_at(ScheduleConfig(name="cosine", warmup_steps=2), 10, [0, 5], lr_mult={"cls_head": 10.0})
    for s in (0, 5):
        assert lrs[s]["cls_head"] == pytest.approx(10 * lrs[s]["encoder"])
    assert lrs[0]["encoder"] == pytest.approx(0.1 * 0.1)


def test_warmup_then_cosine_to_the_end_value():
    cfg = ScheduleConfig(name="cosine", warmup_steps=10, warmup_start_factor=0.1, min_lr_factor=0.01)
    lrs = {s: v["encoder"] for s, v in lrs_at(cfg, 110, [0, 5, 10, 60, 110]).items()}
    assert lrs[0] == pytest.approx(0.1 * 0.1)  # warm-up starts at start_factor × lr
    assert lrs[5] == pytest.approx(0.1 * 0.55)  # linear half-way
    assert lrs[10] == pytest.approx(0.1)  # full lr when the warm-up ends
    assert lrs[60] == pytest.approx(0.1 * (0.01 + 0.99 * 0.5))  # cosine half-way
    assert lrs[110] == pytest.approx(0.1 * 0.01)  # the end value at total steps


def test_step_schedule_divides_every_step_size():
    f = LrFactor(ScheduleConfig(name="step", step_size=10, gamma=0.2), total_steps=100)
    assert [f(s) for s in (0, 9, 10, 25)] == pytest.approx([1.0, 1.0, 0.2, 0.04])
    assert LrFactor(ScheduleConfig(name="constant", warmup_steps=4), 100)(2) == pytest.approx(0.55)


def test_optimizer_kinds_and_hyperparameters():
    sgd = build_optimizer(two_groups(), OptimConfig(name="sgd", nesterov=True, momentum=0.9, weight_decay=1e-4))
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["nesterov"] and sgd.param_groups[0]["weight_decay"] == 1e-4
    adamw = build_optimizer(two_groups(), OptimConfig(name="adamw", lr=3e-3, betas=(0.8, 0.99)))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[1]["betas"] == (0.8, 0.99)
    assert isinstance(build_optimizer(two_groups(), OptimConfig(name="adam")), torch.optim.Adam)


def test_frozen_parameters_are_left_out_and_unknown_groups_rejected():
    groups = two_groups()
    groups["cls_head"][0].requires_grad_(False)
    opt = build_optimizer(groups, OptimConfig())
    assert [g["name"] for g in opt.param_groups] == ["encoder"]
    with pytest.raises(ConfigError, match=r"unknown parameter groups \['cls_haed'\]"):
        build_optimizer(two_groups(), OptimConfig(lr_mult={"cls_haed": 10}))


def test_scheduler_state_round_trips_through_a_weights_only_load():
    opt = build_optimizer(two_groups(), OptimConfig())
    sched = build_scheduler(opt, ScheduleConfig(warmup_steps=3), 20)
    for _ in range(5):
        opt.step()
        sched.step()
    buf = io.BytesIO()
    torch.save({"sched": sched.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    opt2 = build_optimizer(two_groups(), OptimConfig())
    sched2 = build_scheduler(opt2, ScheduleConfig(), 999)  # a different schedule: the state must win
    opt2.load_state_dict(state["opt"])
    sched2.load_state_dict(state["sched"])
    opt.step(), opt2.step(), sched.step(), sched2.step()
    assert group_lrs(opt2) == group_lrs(opt)
    assert not math.isclose(group_lrs(opt2)["encoder"], 0.012)
