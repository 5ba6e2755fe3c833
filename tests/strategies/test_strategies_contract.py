"""Contract tests generated from the strategy registry (DESIGN §10): one step on a tiny model.

Every registered strategy whose batch kind is ``slice`` (the other kinds have their own contract files): the
loss is finite, every named loss part sends a non-zero gradient to the
student, the teacher gets no gradient and is unchanged.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from breastssl.models import create_model
from breastssl.strategies import StrategyConfig, create_strategy, list_strategies, strategy_class


def tiny_batch(n: int = 6, size: int = 16) -> dict[str, torch.Tensor]:
    """Two annotated slices (one with a lesion mask), two weak-supervised, two KD-only."""
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(n, 1, size, size)
    mask[0, :, 4:9, 5:10] = 1.0
    return {
        "image": torch.rand(n, 1, size, size, generator=g),
        "mask": mask,
        "label": torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0]),
        "sup_cls": torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0]),
        "sup_seg": torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0]),
        "kd": torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
        "index": torch.arange(n),
    }


def tiny(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("tiny_cnn", width=4, decoder_width=8)


def test_the_five_settings_of_table_1_are_registered():
    assert {"supervised", "kd", "kd_weak", "selective_kd", "selective_kd_weak"} <= set(list_strategies())


@pytest.mark.parametrize("name", list_strategies(batch="slice"))
def test_one_step_contract(name):
    student, teacher = tiny(0), tiny(1)
    teacher_before = copy.deepcopy(teacher.state_dict())
    strategy = create_strategy(name, student, teacher, StrategyConfig(name=name))
    student.train()
    parts = strategy.loss(tiny_batch(), step=0)

    assert math.isfinite(parts["loss"].item()) and parts["loss"].requires_grad
    loss_parts = [k for k in parts if k.startswith("loss_")]
    assert {"loss_sup_cls", "loss_sup_seg"} <= set(loss_parts)
    if strategy_class(name).uses_teacher:
        assert {"loss_kd_cls", "loss_kd_seg"} <= set(loss_parts)
    torch.testing.assert_close(parts["loss"], sum(parts[k] for k in loss_parts))
    params = [p for p in student.parameters() if p.requires_grad]
    for key in loss_parts:
        grads = torch.autograd.grad(parts[key], params, retain_graph=True, allow_unused=True)
        norm = sum(float(g.abs().sum()) for g in grads if g is not None)
        assert norm > 0, f"{name}: {key} sends no gradient to the student"

    parts["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters()), "the teacher got a gradient"
    if strategy_class(name).uses_teacher:
        assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), f"{name}: teacher {k} changed"


@pytest.mark.parametrize("name", list_strategies(batch="slice"))
def test_a_batch_with_nothing_for_a_part_still_keeps_the_graph(name):
    student, teacher = tiny(0), tiny(1)
    strategy = create_strategy(name, student, teacher, StrategyConfig(name=name))
    batch = tiny_batch()
    for key in ("sup_cls", "sup_seg", "kd"):
        batch[key] = torch.zeros_like(batch[key])
    parts = strategy.loss(batch, step=0)
    assert parts["loss"].item() == 0.0 and parts["loss"].requires_grad
    parts["loss"].backward()  # a zero with a graph: the loop can always call backward


def test_kd_strategies_require_a_separate_teacher():
    from breastssl.errors import ConfigError

    student = tiny(0)
    with pytest.raises(ConfigError, match="teacher"):
        create_strategy("selective_kd", student, None)
    with pytest.raises(ConfigError, match="separate"):
        create_strategy("kd", student, student)
    with pytest.raises(ConfigError, match="did you mean"):
        create_strategy("selective_kdd", student, tiny(1))


def test_thresholds_are_per_strategy_and_configurable():
    s, t = tiny(0), tiny(1)
    assert create_strategy("selective_kd", s, t).threshold == 0.7
    assert create_strategy("selective_kd_weak", s, t).threshold == 0.1
    assert create_strategy("kd", s, t).threshold is None
    cfg = StrategyConfig(name="selective_kd", threshold=0.5)
    assert create_strategy("selective_kd", s, t, cfg).threshold == 0.5
