"""Exponential moving average of a model's weights (mean-teacher teachers, evaluation weights)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class EMA:
    """A frozen copy of ``model`` whose parameters follow ``ema = d·ema + (1 − d)·param``.

    Buffers (batch-norm statistics, counters) are copied, not averaged: they are statistics of the
    data, not weights. With ``copy_buffers=False`` they are left alone, for a copy whose own forward
    passes keep its statistics (the mean teacher's teacher, see ``strategies.mean_teacher``). With ``warmup`` the
    decay used at update ``n`` (counting from 0) is ``min(decay, 1 − 1/(n + 2))``, as in the mean
    teacher, so early teachers are not dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = False, copy_buffers: bool = True) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.copy_buffers = copy_buffers  # False: the copy keeps buffers its own forward passes compute
        self.updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next :meth:`update` will use."""
        if self.warmup:
            return min(self.decay, 1.0 - 1.0 / (self.updates + 2))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards ``model`` (same architecture as the copy)."""
        d = self.current_decay()
        for ema_p, p in zip(self.module.parameters(), model.parameters(), strict=True):
            # two rounded operations, d·ema then + (1 − d)·param: the documented formula, nothing fused
            ema_p.mul_(d).add_(p.detach().to(ema_p.dtype) * (1.0 - d))
        if self.copy_buffers:
            for ema_b, b in zip(self.module.buffers(), model.buffers(), strict=True):
                ema_b.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """Tensors and numbers only, so a checkpoint holding it loads with ``weights_only=True``."""
        return {"decay": self.decay, "warmup": self.warmup, "updates": self.updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = float(state["decay"])
        self.warmup = bool(state["warmup"])
        self.updates = int(state["updates"])
        self.module.load_state_dict(state["module"])
