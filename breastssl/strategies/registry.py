"""Strategy registry: every training method is a class registered by name.

The contract tests iterate over :func:`list_strategies` (DESIGN §10), so a strategy registered here is
tested without anyone remembering to add it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import ConfigError

C = TypeVar("C", bound=type)

_REGISTRY: dict[str, type] = {}


def register_strategy(name: str) -> Callable[[C], C]:
    """Class decorator registering a strategy under ``name`` (also stored as ``cls.name``)."""

    def wrap(cls: C) -> C:
        if name in _REGISTRY:
            raise ValueError(f"strategy {name!r} is already registered (by {_REGISTRY[name].__module__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def list_strategies() -> list[str]:
    """Names of all registered strategies, sorted."""
    return sorted(_REGISTRY)


def strategy_class(name: str) -> type:
    """The class registered as ``name``; an unknown name is a :class:`ConfigError` with a suggestion."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown strategy {name!r}{hint}; registered strategies: {', '.join(list_strategies())}")
    return _REGISTRY[name]


def create_strategy(name: str, student: Any, teacher: Any = None, cfg: Any = None) -> Any:
    """Build the strategy ``name`` around ``student`` (and a frozen ``teacher`` when it distils)."""
    return strategy_class(name)(student, teacher, cfg)
