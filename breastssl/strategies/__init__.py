"""Training strategies, one file per method, each registered by name (DESIGN §4).

A strategy turns a batch into named losses (``loss(batch, step) -> dict``); the engine's loop does
the rest. ``create_strategy(name, student, teacher, cfg)`` builds one; ``list_strategies()`` names them.
"""

from __future__ import annotations

from . import comoto as _comoto  # noqa: F401  (registers the strategy)
from . import comoto_teacher as _comoto_teacher  # noqa: F401  (registers the strategy)
from . import image_kd as _image_kd  # noqa: F401  (registers the strategy)
from . import kd, kd_weak, selective_kd, selective_kd_weak, supervised  # noqa: F401  (register the strategies)
from . import mean_teacher as _mean_teacher  # noqa: F401  (registers the strategy)
from . import pretraining as _pretraining  # noqa: F401  (registers the strategy)
from . import self_training as _self_training  # noqa: F401  (registers the strategy)
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
