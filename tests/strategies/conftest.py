"""Strategy tests: route strategies with another batch contract to their own contract test."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config, items):
    """Strategies with another batch contract (class attribute ``contract``, e.g. "detection") skip the slice-batch
    contract of test_strategies_contract.py; the registry-generated test of their own contract runs instead
    (test_strategies_detection_contract.py)."""
    from breastssl.strategies import list_strategies, strategy_class

    other = {n for n in list_strategies() if getattr(strategy_class(n), "contract", "slice") != "slice"}
    for item in items:
        name = getattr(getattr(item, "callspec", None), "params", {}).get("name")
        if item.path.name == "test_strategies_contract.py" and name in other:
            kind = strategy_class(name).contract
            item.add_marker(pytest.mark.skip(reason=f"{kind} strategy: its contract test feeds {kind} batches"))
