"""Contract tests of the ``pair`` (mammography self-training) and ``crop`` (ultrasound mean teacher) strategies,
generated from the registry (DESIGN §10): one step on a tiny model of the kind the strategy's family trains, fed
the batch its kind declares — no slice-format stand-ins. The loss is finite and the sum of its ``loss_*`` parts,
every part sends a non-zero gradient to the student, and a batch with nothing to learn from keeps the graph.
Also: every batch kind in the registry has a contract test, and a section of the wrong type is a config error.
"""

from __future__ import annotations

import math

import pytest
import torch

from breastssl.errors import ConfigError
from breastssl.models import create_model
from breastssl.strategies import StrategyConfig, create_strategy, list_strategies
from breastssl.strategies.registry import _REGISTRY, strategy_config, strategy_entry

TESTED_KINDS = {"slice", "detection", "pair", "crop"}  # each has a contract file in tests/strategies


def pair_batch(n: int = 4, size: tuple[int, int] = (32, 24), nothing: bool = False) -> dict[str, torch.Tensor]:
    """Two fully annotated images (one with a lesion), one TP weak image (soft map target), one FN weak image."""
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(n, 1, *size)
    mask[0, :, 8:16, 6:14] = 1.0
    mask[2, :, 10:18, 8:16] = 0.7  # a soft pseudo-mask
    flags = {"full": [1, 1, 0, 0], "weak_seg": [0, 0, 1, 0], "weak_cls": [0, 0, 1, 1]}
    return {
        "image": torch.rand(n, 1, *size, generator=g),
        "aux": torch.rand(n, 1, *size, generator=g),
        "mask": mask,
        "label": torch.tensor([1.0, 0.0, 0.8, 0.6]),
        **{k: torch.tensor(v, dtype=torch.float32) * (0 if nothing else 1) for k, v in flags.items()},
        "index": torch.arange(n),
    }


def crop_batch(n: int = 6, size: int = 16, nothing: bool = False) -> dict[str, torch.Tensor]:
    """Half labelled crops, half unlabelled, with a second (teacher) view."""
    g = torch.Generator().manual_seed(1)
    labelled = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0]) * (0 if nothing else 1)
    return {
        "image": torch.rand(n, 1, size, size, generator=g),
        "image_teacher": torch.rand(n, 1, size, size, generator=g),
        "label": torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0]),
        "sup_cls": labelled,
        "kd": torch.zeros(n) if nothing else torch.ones(n) - labelled,
        "index": torch.arange(n),
    }


MODELS = {
    "pair": lambda: create_model("bilateral_two_view", backbone="tiny", width=4, decoder_width=8),
    "crop": lambda: create_model("recognition_cnn", width=4),
}
BATCHES = {"pair": pair_batch, "crop": crop_batch}
NAMES = [n for kind in BATCHES for n in list_strategies(batch=kind)]


def test_every_batch_kind_has_a_contract_test():
    assert {e.batch for e in _REGISTRY.values()} <= TESTED_KINDS
    assert {"self_training", "mean_teacher"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_one_step_contract(name):
    kind = strategy_entry(name).batch
    torch.manual_seed(0)
    student = MODELS[kind]()
    strategy = create_strategy(name, student)
    student.train()
    parts = strategy.loss(BATCHES[kind](), step=10_000)  # past any warm-up or stage 1: every term is on
    assert math.isfinite(float(parts["loss"].detach())) and parts["loss"].requires_grad
    loss_parts = [k for k in parts if k.startswith("loss_")]
    assert loss_parts
    torch.testing.assert_close(parts["loss"], sum(parts[k] for k in loss_parts))
    params = [p for p in student.parameters() if p.requires_grad]
    for key in loss_parts:
        grads = torch.autograd.grad(parts[key], params, retain_graph=True, allow_unused=True)
        assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0, f"{name}: {key} sends no gradient"


@pytest.mark.parametrize("name", NAMES)
def test_a_batch_with_nothing_to_learn_keeps_the_graph(name):
    kind = strategy_entry(name).batch
    strategy = create_strategy(name, MODELS[kind]())
    parts = strategy.loss(BATCHES[kind](nothing=True), step=10_000)
    assert math.isfinite(float(parts["loss"].detach())) and parts["loss"].requires_grad
    parts["loss"].backward()


@pytest.mark.parametrize("name", list_strategies())
def test_a_section_of_another_type_is_a_config_error(name):
    entry = strategy_entry(name)
    assert isinstance(strategy_config(name), entry.config)
    other = next(e for e in _REGISTRY.values() if e.config is not entry.config)
    with pytest.raises(ConfigError, match=entry.config.__name__):
        strategy_config(name, other.config(name=other.name))
    if entry.config is StrategyConfig:  # same type, another strategy's section: also refused
        wrong = next(n for n in list_strategies(batch="slice") if n != name)
        with pytest.raises(ConfigError, match="section of strategy"):
            strategy_config(name, StrategyConfig(name=wrong))
