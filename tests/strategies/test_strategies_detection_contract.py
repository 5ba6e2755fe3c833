"""Contract tests of the detection strategies, generated from the registry (DESIGN §10): one step on a tiny detector.

Every registered strategy whose batch kind is ``detection`` gets a paired batch (a DBT detection batch
and an unpaired mammography batch, ``breastssl.data.detection_slices``): the loss is finite and the sum of its
``loss_*`` parts, every part sends a non-zero gradient to the student (or to the strategy's own trainable
parameters), the teacher gets no gradient and is unchanged, and a batch without boxes still keeps the graph.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from breastssl.models import create_model
from breastssl.strategies import create_strategy, list_strategies, strategy_class

DETECTION = list_strategies(batch="detection")


def detection_batch(n: int, size: tuple[int, int], seed: int, empty: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    boxes = [torch.zeros(0, 4) for _ in range(n)]
    if not empty:
        boxes[0] = torch.tensor([[8.0, 10.0, 20.0, 22.0]])
        boxes[1] = torch.tensor([[4.0, 4.0, 14.0, 12.0], [24.0, 26.0, 36.0, 40.0]])
    return {
        "image": torch.rand(n, 1, *size, generator=g),
        "boxes": boxes,
        "labels": [torch.zeros(len(b), dtype=torch.int64) for b in boxes],
        "index": torch.arange(n),
    }


def paired(empty: bool = False) -> dict:
    return {"dbt": detection_batch(3, (48, 40), 0, empty), "mammo": detection_batch(2, (56, 48), 1, empty)}


def tiny(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("retinanet", backbone="tiny", width=4)


def own_parameters(strategy) -> list[torch.nn.Parameter]:
    hook = getattr(strategy, "trainable_parameters", None)
    if hook is None:
        return []
    params = hook()
    return [p for group in (params.values() if isinstance(params, dict) else [params]) for p in group]


def test_the_comoto_family_is_registered():
    assert {"comoto", "comoto_teacher", "image_kd", "pretraining"} <= set(DETECTION)


@pytest.mark.parametrize("name", DETECTION)
def test_one_step_detection_contract(name):
    student, teacher = tiny(0), tiny(1)
    teacher_before = copy.deepcopy(teacher.state_dict())
    strategy = create_strategy(name, student, teacher if strategy_class(name).uses_teacher else None)
    student.train()
    parts = strategy.loss(paired(), step=0)

    assert math.isfinite(parts["loss"].item()) and parts["loss"].requires_grad
    loss_parts = [k for k in parts if k.startswith("loss_")]
    assert {"loss_cls", "loss_box"} <= set(loss_parts)
    torch.testing.assert_close(parts["loss"], sum(parts[k] for k in loss_parts))
    params = [p for p in student.parameters() if p.requires_grad] + own_parameters(strategy)
    for key in loss_parts:
        grads = torch.autograd.grad(parts[key], params, retain_graph=True, allow_unused=True)
        assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0, f"{name}: {key} sends no gradient"
    parts["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters()), "the teacher got a gradient"
    if strategy_class(name).uses_teacher:
        assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), f"{name}: teacher {k} changed"


@pytest.mark.parametrize("name", DETECTION)
def test_a_batch_without_boxes_still_keeps_the_graph(name):
    student, teacher = tiny(0), tiny(1)
    strategy = create_strategy(name, student, teacher if strategy_class(name).uses_teacher else None)
    parts = strategy.loss(paired(empty=True), step=0)
    assert math.isfinite(parts["loss"].item()) and parts["loss"].requires_grad
    parts["loss"].backward()
