"""Where LsKD and ImPA send gradient: LsKD to the student's encoder and the Linear(9, 9), never the teacher or the
detection head; ImPA to the encoder of the teacher being trained; a frozen teacher stays unchanged."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from comoto_fixtures import paired_batch, tiny_detector

from breastssl.errors import ConfigError
from breastssl.losses.comoto import lesion_points, point_entropy
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


def test_lskd_logs_the_teacher_point_entropy_and_its_maximum():
    teacher = tiny_detector(1)
    strategy = create_strategy("comoto", student_from_teacher(teacher), teacher)
    batch = paired_batch()
    parts = strategy.loss(batch, 0)
    with torch.no_grad():
        c5 = teacher.forward_features(batch["mammo"]["image"])[-1]
    want = point_entropy(lesion_points(c5, batch["mammo"]["boxes"], teacher.stride), 4.0)
    torch.testing.assert_close(parts["lskd_teacher_entropy"], want)
    assert 0 < parts["lskd_teacher_entropy"].item() <= math.log(9) + 1e-6
    assert parts["lskd_entropy_max"] == math.log(9) and not parts["lskd_teacher_entropy"].requires_grad
    torch.testing.assert_close(parts["loss"], parts["loss_cls"] + parts["loss_box"] + parts["loss_lskd"])
    # a mammography batch without boxes: LsKD = 0, and the entropy repeats the last one (the same keys every
    # step: DDP all-reduces the parts as one vector)
    empty = paired_batch(empty=True)
    before = parts["lskd_teacher_entropy"]
    parts = strategy.loss({"dbt": batch["dbt"], "mammo": empty["mammo"]}, 1)
    assert parts["loss_lskd"].item() == 0.0
    torch.testing.assert_close(parts["lskd_teacher_entropy"], before)
