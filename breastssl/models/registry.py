"""Model registry: every model is a factory registered by name.

The registry is what the contract tests iterate over (DESIGN §10), so a model registered here is
tested without anyone remembering to add it. Each entry may carry ``tiny`` keyword arguments: the
smallest configuration of the model, used by the contract tests and by CPU smoke runs.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn

from ..errors import ConfigError

F = TypeVar("F", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ModelEntry:
    """A registered factory and its smallest test configuration."""

    name: str
    factory: Callable[..., nn.Module]
    tiny: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, tiny: dict[str, Any] | None = None) -> Callable[[F], F]:
    """Decorator registering a model factory under ``name``.

    ``tiny`` holds the keyword arguments of the model's smallest configuration (for tests).
    """

    def wrap(factory: F) -> F:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered (by {_REGISTRY[name].factory.__module__})")
        _REGISTRY[name] = ModelEntry(name, factory, dict(tiny or {}))
        return factory

    return wrap


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; an unknown name is a :class:`ConfigError` with a suggestion."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint}; registered models: {', '.join(list_models())}")
    return _REGISTRY[name]


def create_model(name: str, **cfg: Any) -> nn.Module:
    """Build the model registered as ``name`` with keyword arguments ``cfg``."""
    return model_entry(name).factory(**cfg)
