"""Optimisers with named parameter groups, and learning-rate schedules with linear warm-up."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from ..errors import ConfigError
from .config import OptimConfig, ScheduleConfig

ParamGroups = Mapping[str, Iterable[nn.Parameter]]


def named_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The model's named parameter groups (``model.parameter_groups()``), or one group ``"model"``."""
    if hasattr(model, "parameter_groups"):
        return {name: list(params) for name, params in model.parameter_groups().items()}
    return {"model": list(model.parameters())}


def build_optimizer(groups: ParamGroups, cfg: OptimConfig) -> torch.optim.Optimizer:
    """One optimiser group per named group, with lr = ``cfg.lr × cfg.lr_mult.get(name, 1)``.

    Frozen parameters (``requires_grad=False``) and empty groups are left out. Each torch group keeps
    its ``name`` so logs and tests can find it.
    """
    unknown = set(cfg.lr_mult) - set(groups)
    if unknown:
        raise ConfigError(
            f"optim.lr_mult names unknown parameter groups {sorted(unknown)}; the groups are {sorted(groups)}"
        )
    torch_groups = []
    for name, params in groups.items():
        trainable = [p for p in params if p.requires_grad]
        if trainable:
            torch_groups.append({"params": trainable, "name": name, "lr": cfg.lr * cfg.lr_mult.get(name, 1.0)})
    if not torch_groups:
        raise ConfigError("nothing to train: every parameter is frozen")
    if cfg.name == "sgd":
        return torch.optim.SGD(
            torch_groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return cls(torch_groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)


class LrFactor:
    """The lr factor at each step: linear warm-up, then constant / cosine / step decay.

    A callable object rather than a closure so that ``LambdaLR.state_dict()`` stores its fields (all
    plain numbers), and a checkpoint says exactly which schedule it was made with.
    """

    def __init__(self, cfg: ScheduleConfig, total_steps: int) -> None:
        self.name = cfg.name
        self.total_steps = total_steps
        self.warmup_steps = cfg.warmup_steps
        self.warmup_start_factor = cfg.warmup_start_factor
        self.min_lr_factor = cfg.min_lr_factor
        self.step_size = cfg.step_size
        self.gamma = cfg.gamma

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_start_factor + (1.0 - self.warmup_start_factor) * step / self.warmup_steps
        if self.name == "constant":
            return 1.0
        if self.name == "step":
            return self.gamma ** (step // self.step_size)
        # cosine from 1 at the end of the warm-up to min_lr_factor at total_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        t = min((step - self.warmup_steps) / span, 1.0)
        return self.min_lr_factor + (1.0 - self.min_lr_factor) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int) -> LambdaLR:
    """A ``LambdaLR`` stepped once per optimiser step: step ``s`` runs at ``lr × LrFactor(s)``.

    Per-group multipliers survive because ``LambdaLR`` scales each group's own initial lr.
    """
    return LambdaLR(optimizer, LrFactor(cfg, total_steps))


def group_lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """Current lr of each named group."""
    return {str(g.get("name", i)): float(g["lr"]) for i, g in enumerate(optimizer.param_groups)}
