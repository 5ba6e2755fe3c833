"""Training strategies, one file per method, each registered by name (DESIGN §4).

A strategy turns a batch into named losses (``loss(batch, step) -> dict``); the engine's loop does
the rest. ``create_strategy(name, student, teacher, cfg)`` builds one; ``list_strategies()`` names them.
"""

from __future__ import annotations

from . import kd, kd_weak, selective_kd, selective_kd_weak, supervised  # noqa: F401  (register the strategies)
from .distill import SliceStrategy, StrategyConfig
from .registry import create_strategy, list_strategies, register_strategy, strategy_class

__all__ = [
    "SliceStrategy",
    "StrategyConfig",
    "create_strategy",
    "list_strategies",
    "register_strategy",
    "strategy_class",
]
