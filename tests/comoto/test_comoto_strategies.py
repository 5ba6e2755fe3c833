"""Where LsKD and ImPA send gradient: LsKD to the student's encoder and the Linear(9, 9), never the teacher or the
detection head; ImPA to the encoder of the teacher being trained; a frozen teacher stays unchanged."""

from __future__ import annotations

import copy

import pytest
import torch
from comoto_fixtures import paired_batch, tiny_detector

from breastssl.errors import ConfigError
from breastssl.strategies import create_strategy
from breastssl.strategies.comoto_common import ComotoConfig, student_from_teacher


def grad_norm(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> float:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return sum(float(g.abs().sum()) for g in grads if g is not None)


def test_lskd_reaches_student_encoder_and_projection_only():
    teacher = tiny_detector(1)
    student = student_from_teacher(teacher)
    before = copy.deepcopy(teacher.state_dict())
    strategy = create_strategy("comoto", student, teacher)
    assert torch.equal(student.det.head.classification_head.cls_logits.weight,
                       teacher.det.head.classification_head.cls_logits.weight)  # fmt: skip
    parts = strategy.loss(paired_batch(), 0)
    lskd = parts["loss_lskd"]
    assert lskd.item() > 0
    assert grad_norm(lskd, list(student.encoder.parameters())) > 0
    assert grad_norm(lskd, list(strategy.trainable_parameters()["lskd_proj"])) > 0
    assert grad_norm(lskd, list(student.det.head.parameters())) == 0  # lesion points live on C5, before the head
    parts["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())  # BN buffers too
    assert not teacher.training


def test_lskd_state_and_config():
    teacher = tiny_detector(1)
    cfg = ComotoConfig(name="comoto", temperature=2.0, alpha=1.0, proj_init="default")
    s = create_strategy("comoto", student_from_teacher(teacher), teacher, cfg)
    assert s.cfg.temperature == 2.0 and not torch.equal(s.proj.weight, torch.eye(9))
    other = create_strategy("comoto", student_from_teacher(teacher), teacher)
    other.load_state_dict(s.state_dict())
    assert torch.equal(other.proj.weight, s.proj.weight)
    with pytest.raises(ConfigError, match="teacher"):
        create_strategy("image_kd", tiny_detector(0), None)


def test_impa_trains_the_teacher_encoder():
    teacher = tiny_detector(1)
    strategy = create_strategy("comoto_teacher", teacher, None, ComotoConfig(name="comoto_teacher", impa=True))
    parts = strategy.loss(paired_batch(), 0)
    assert {"loss_cls", "loss_box", "loss_impa"} <= set(parts) and parts["loss_impa"].item() > 0
    assert grad_norm(parts["loss_impa"], list(teacher.encoder.parameters())) > 0
    assert grad_norm(parts["loss_impa"], list(teacher.det.head.parameters())) == 0
    plain = create_strategy("comoto_teacher", tiny_detector(1), None).loss(paired_batch(), 0)
    assert "loss_impa" not in plain


def test_image_kd_and_pretraining_parts():
    teacher = tiny_detector(1)
    kd = create_strategy("image_kd", student_from_teacher(teacher), teacher).loss(paired_batch(), 0)
    assert kd["loss_kd"].requires_grad and kd["loss_kd"].item() >= 0
    pre = create_strategy("pretraining", student_from_teacher(teacher), None).loss(paired_batch(), 0)
    assert set(pre) == {"loss", "loss_cls", "loss_box"}
