"""Run recipes, one per method family: what builds the model, strategy, datasets, sampler and collate of a run.

A recipe is registered under the family name the strategy registry gives its strategies
(``register_strategy(..., family=...)``). Imported lazily, so the config and registry stay light.
"""

from __future__ import annotations

import importlib

from ...errors import ConfigError
from ..recipe import Recipe

_MODULES = {"dbt": "dbt", "mammo": "mammo", "us": "us", "comoto": "comoto"}


def recipe(family: str) -> Recipe:
    """The recipe of ``family`` (one module per family in this package)."""
    if family not in _MODULES:
        raise ConfigError(f"no run recipe for the method family {family!r}; families: {', '.join(_MODULES)}")
    return importlib.import_module(f"{__name__}.{_MODULES[family]}").RECIPE


def families() -> list[str]:
    """Every family with a recipe."""
    return list(_MODULES)
