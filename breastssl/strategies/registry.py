"""Strategy registry: every training method is a class registered by name, with its config type and batch kind.

The contract tests iterate over :func:`list_strategies` (DESIGN §10), so a strategy registered here is
tested without anyone remembering to add it. Each entry declares

- ``config``: the pydantic section the strategy reads (``strategy:`` of a run config is validated into it);
- ``batch``: the batch format its ``loss`` takes — ``slice`` (DBT slices with loss flags), ``pair`` (a mammogram
  with its contralateral image and self-training flags), ``crop`` (ultrasound crops with labelled flags),
  ``detection`` (boxes; CoMoTo's paired DBT + mammography batches);
- ``family``: the run recipe that builds its model, datasets and sampler (``breastssl.run.recipes``).

Handing a strategy a config of another type is a :class:`ConfigError`, never a silent fall-back to defaults.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from ..errors import ConfigError

C = TypeVar("C", bound=type)
BatchKind = Literal["slice", "pair", "crop", "detection"]


@dataclass(frozen=True)
class StrategyEntry:
    """What the registry knows about one strategy."""

    name: str
    cls: type
    config: type
    batch: BatchKind
    family: str


_REGISTRY: dict[str, StrategyEntry] = {}


def register_strategy(name: str, config: type, batch: BatchKind, family: str) -> Callable[[C], C]:
    """Class decorator registering a strategy under ``name`` (also stored as ``cls.name``)."""

    def wrap(cls: C) -> C:
        if name in _REGISTRY:
            raise ValueError(f"strategy {name!r} is already registered (by {_REGISTRY[name].cls.__module__})")
        cls.name = name
        _REGISTRY[name] = StrategyEntry(name, cls, config, batch, family)
        return cls

    return wrap


def list_strategies(batch: str | None = None, family: str | None = None) -> list[str]:
    """Names of the registered strategies (those of one batch kind or family, if given), sorted."""

    def wanted(e: StrategyEntry) -> bool:
        return (batch is None or e.batch == batch) and (family is None or e.family == family)

    return sorted(n for n, e in _REGISTRY.items() if wanted(e))


def strategy_entry(name: str) -> StrategyEntry:
    """The registry entry of ``name``; an unknown name is a :class:`ConfigError` with a suggestion."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown strategy {name!r}{hint}; registered strategies: {', '.join(list_strategies())}")
    return _REGISTRY[name]


def strategy_class(name: str) -> type:
    """The class registered as ``name``; an unknown name is a :class:`ConfigError` with a suggestion."""
    return strategy_entry(name).cls


def strategy_config(name: str, cfg: Any = None) -> Any:
    """``cfg`` checked against the config type ``name`` declares (None: its defaults, named ``name``)."""
    entry = strategy_entry(name)
    if cfg is None:
        return entry.config(name=name)
    if not isinstance(cfg, entry.config):
        raise ConfigError(
            f"strategy {name!r} takes a {entry.config.__name__} section, got a {type(cfg).__name__}; "
            f"build it with strategy_config({name!r}, ...) or a run config whose strategy.name is {name!r}"
        )
    if getattr(cfg, "name", name) != name:
        raise ConfigError(f"strategy {name!r} was handed the section of strategy {cfg.name!r}")
    return cfg


def create_strategy(name: str, student: Any, teacher: Any = None, cfg: Any = None) -> Any:
    """Build the strategy ``name`` around ``student`` (and a frozen ``teacher`` when it distils)."""
    return strategy_class(name)(student, teacher, strategy_config(name, cfg))
