"""One run config for every method (``breastssl train -c RECIPE``): its sections are chosen by the strategy.

``strategy.name`` picks a registered strategy; the registry says which method family (run recipe) trains it,
and the recipe declares the typed run config of that family (:class:`RunConfigBase` with its own ``data``,
``model``, ``strategy`` and ``eval`` sections). So a DBT recipe's ``data.neg_stride`` and a mammography recipe's
``data.labels`` are both checked, with suggestions for typos, and a key of another family is an unknown key.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import Field

from ..config import Section, apply_overrides, build_config, model_defaults, read_yaml
from ..engine.config import TrainConfig
from ..errors import ConfigError

DEFAULT_STRATEGY = "supervised"


class RunConfigBase(Section):
    """What every family's run config has; each recipe subclasses it with typed data/model/strategy/eval."""

    train: TrainConfig = Field(default_factory=TrainConfig)

    @property
    def family(self) -> str:
        from ..strategies.registry import strategy_entry

        return strategy_entry(self.strategy.name).family  # type: ignore[attr-defined]


def strategy_name(data: dict[str, Any], source: str) -> str:
    """``strategy.name`` of a raw config mapping (the default strategy when absent)."""
    section = data.get("strategy", {})
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ConfigError(f"invalid config ({source}): strategy must be a section (a mapping), not {section!r}")
    return str(section.get("name", DEFAULT_STRATEGY))


def config_class(name: str) -> type[RunConfigBase]:
    """The run config class of the family that trains strategy ``name``."""
    from ..strategies.registry import strategy_entry
    from .recipes import recipe

    return recipe(strategy_entry(name).family).config


def load_run_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> RunConfigBase:
    """A run config from an optional YAML file plus ``key.path=value`` overrides, typed by its strategy."""
    overrides = list(overrides)
    data = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "defaults"
    if overrides:
        source += " + --set " + " ".join(overrides)
    data = apply_overrides(data, [o for o in overrides if o.split("=", 1)[0].strip() == "strategy.name"])
    cls = config_class(strategy_name(data, source))
    data = apply_overrides(data, overrides, model_defaults(cls))
    if "name" not in (data.get("strategy") or {}):  # the default strategy, spelled out in config.yaml
        data["strategy"] = {**(data.get("strategy") or {}), "name": DEFAULT_STRATEGY}
    return build_config(cls, data, source)


def run_config_of(run_dir: str | Path) -> RunConfigBase:
    """The resolved run config saved in a run folder (``config.yaml``)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"run {run_dir}: no config.yaml (not a run folder of breastssl train)")
    return load_run_config(path)
