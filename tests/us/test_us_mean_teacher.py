"""Mean teacher: the contract (gradients, frozen EMA teacher, exact EMA), batches, ramp-up, early stopping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from breastssl.data.labelled_sampler import LabelledUnlabelledBatchSampler
from breastssl.data.us_crops import CropDataset
from breastssl.models import create_model
from breastssl.run.early_stopping import fit_early_stopping, predict_proba
from breastssl.strategies import create_strategy
from breastssl.strategies.mean_teacher import EarlyStopping, MeanTeacher, MeanTeacherConfig, rampup


def recognition(seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("recognition_cnn", width=4, **kw)


def crop_batch(n: int = 8, labelled: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    flags = torch.zeros(n)
    flags[:labelled] = 1
    return {"image": torch.randn(n, 1, 16, 16, generator=g), "label": (torch.arange(n) % 2).float(), "sup_cls": flags}


def grad_norm(loss: torch.Tensor, model: torch.nn.Module) -> float:
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return sum(float(g.abs().sum()) for g in grads if g is not None)


def test_registered_and_recognition_cnn_shapes():
    model = recognition()
    out = model(torch.randn(3, 1, 32, 32))
    assert out["logits"].shape == (3,) and "mask_logits" not in out
    assert [f.shape[1:] for f in out["features"]] == [(4, 16, 16), (8, 8, 8), (8, 4, 4)]
    s = create_strategy("mean_teacher", model)
    assert isinstance(s, MeanTeacher) and s.teacher is not model


def test_unsupervised_loss_sends_gradient_to_student_and_none_to_teacher():
    student = recognition(dropout=0.0)
    s = MeanTeacher(student, cfg=MeanTeacherConfig(rampup_steps=0))
    parts = s.loss(crop_batch(labelled=0), step=0)  # an all-unlabelled batch: only the consistency term
    assert parts["loss_sup_cls"].item() == 0.0
    assert parts["loss_consistency"].item() > 0  # different noise for student and teacher, same weights
    assert grad_norm(parts["loss_consistency"], student) > 0
    parts["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in s.teacher.parameters())
    assert not s.teacher.training


def test_every_part_reaches_the_student_and_two_class_models_work():
    student = recognition(num_classes=2)
    s = MeanTeacher(student, cfg=MeanTeacherConfig(rampup_steps=0, consistency_on="all"))
    parts = s.loss(crop_batch(), step=0)
    for key in ("loss_sup_cls", "loss_consistency"):
        assert grad_norm(parts[key], student) > 0, key
    torch.testing.assert_close(parts["loss"], parts["loss_sup_cls"] + parts["loss_consistency"])


@pytest.mark.parametrize("teacher_bn", ["own", "student"])
def test_ema_update_is_exact_and_buffers_follow_teacher_bn(teacher_bn):
    student = recognition()
    s = MeanTeacher(student, cfg=MeanTeacherConfig(ema_decay=0.9, teacher_bn=teacher_bn))
    s.ema.updates = 100  # past the warm-up: decay 0.9
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    before = [p.clone() for p in s.teacher.parameters()]
    s.after_step(0)
    for t, old, p in zip(s.teacher.parameters(), before, student.parameters(), strict=True):
        torch.testing.assert_close(t, 0.9 * old + 0.1 * p, rtol=0, atol=1e-6)
    student.train()
    student(torch.randn(4, 1, 16, 16) * 3 + 1)  # moves the student's running statistics
    buffers = [b.clone() for b in s.teacher.buffers()]
    s.after_step(1)
    same = [torch.equal(t, b) for t, b in zip(s.teacher.buffers(), student.buffers(), strict=True)]
    if teacher_bn == "student":  # copied each step
        assert all(same)
    else:  # left to the teacher's own forward passes: the EMA step does not touch them ...
        assert all(torch.equal(a, b) for a, b in zip(s.teacher.buffers(), buffers, strict=True)) and not all(same)
        s.loss(crop_batch(), step=0)  # ... the teacher's train-mode forward in the loss moves them
        assert not all(torch.equal(a, b) for a, b in zip(s.teacher.buffers(), buffers, strict=True))
        assert not s.teacher.training


def test_rampup_and_supervised_mode():
    assert rampup(0, 100) == pytest.approx(math.exp(-5)) and rampup(100, 100) == 1.0 and rampup(5, 0) == 1.0
    s = MeanTeacher(recognition(), cfg=MeanTeacherConfig(consistency_weight=0.0, evaluate_with="student"))
    parts = s.loss(crop_batch(), step=10)
    assert "loss_consistency" not in parts and s.eval_model() is s.student


def test_batch_sampler_composition_and_determinism():
    lab, unl = list(range(10)), list(range(10, 50))
    sm = LabelledUnlabelledBatchSampler(lab, unl, 8, 0.5, seed=3)
    batches = list(sm)
    assert len(batches) == len(sm) == 10
    for b in batches:
        assert len(b) == 8 and sum(i < 10 for i in b) == 4
    assert sorted(i for b in batches for i in b[4:]) == unl  # one pass over the unlabelled set per epoch
    assert list(sm) == batches
    sm.set_epoch(1)
    assert list(sm) != batches
    ranks = [list(LabelledUnlabelledBatchSampler(lab, unl, 8, 0.5, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    assert [sorted(a + b) for a, b in zip(*ranks, strict=True)] == [sorted(b) for b in batches]
    sup = LabelledUnlabelledBatchSampler(lab, [], 4)
    assert len(sup) == 2 and all(len(b) == 4 for b in sup)


def test_early_stopping_counts_patience():
    e = EarlyStopping(patience=2)
    assert e.update(0.5, 1) and not e.update(0.5, 2) and not e.stop
    assert not e.update(0.4, 3) and e.stop and e.best == 0.5 and e.best_step == 1


def _early_stopping_run(tmp_path, s: MeanTeacher, scores: list[float], min_steps: int = 0):
    """fit_early_stopping on 16 random crops (8 labelled), evaluations returning ``scores`` in turn;
    returns (summary, the first weight tensor of the evaluated model at each evaluation)."""
    from breastssl.engine import TrainConfig

    n = 16
    ds = CropDataset(np.random.default_rng(0).normal(size=(n, 1, 16, 16)).astype(np.float32), np.arange(n) % 2,
                     np.arange(n) < 8)  # fmt: skip
    sampler = LabelledUnlabelledBatchSampler(range(8), range(8, n), 8, seed=0)
    it, snapshots = iter(scores), []

    def evaluate(model):
        snapshots.append(next(iter(model.state_dict().values())).clone())
        return next(it)

    cfg = TrainConfig(steps=100, batch_size=8, optim={"name": "adam", "lr": 1e-3}, schedule={"name": "constant"},
                      out_dir=str(tmp_path), progress=False, tensorboard=False, device="cpu")  # fmt: skip
    out = fit_early_stopping(s, ds, cfg, sampler, evaluate, eval_every=2, max_steps=40, min_steps=min_steps)
    return out, snapshots


def test_fit_early_stopping_stops_and_restores_the_best(tmp_path):
    s = MeanTeacher(recognition(), cfg=MeanTeacherConfig(patience=2, rampup_steps=0))
    out, snapshots = _early_stopping_run(tmp_path, s, [0.6, 0.7, 0.7, 0.65, 0.9, 0.9])
    assert out["steps"] == 8 and out["best_step"] == 4 and out["best_value"] == 0.7  # 0.7 at step 4, then 2 bad
    assert [h[0] for h in out["history"]] == [2, 4, 6, 8]
    assert torch.equal(next(iter(s.teacher.state_dict().values())), snapshots[1])


def test_fit_early_stopping_ignores_evaluations_before_min_steps(tmp_path):
    s = MeanTeacher(recognition(), cfg=MeanTeacherConfig(patience=2, rampup_steps=6))
    assert s.cfg.first_counted_step == 6 and MeanTeacherConfig(min_steps=3).first_counted_step == 3
    # steps 2, 4 (before min_steps) score best but must not count; 6 → 0.7, 8 → 0.65, 10 → 0.6: stop at 10
    out, snapshots = _early_stopping_run(tmp_path, s, [0.99, 0.95, 0.7, 0.65, 0.6, 0.5], min_steps=6)
    assert out["steps"] == 10 and out["best_step"] == 6 and out["best_value"] == 0.7
    assert [h[0] for h in out["history"]] == [2, 4, 6, 8, 10]
    assert torch.equal(next(iter(s.teacher.state_dict().values())), snapshots[2])


def test_predict_proba_restores_mode():
    m = recognition()
    m.train()
    p = predict_proba(m, torch.randn(5, 1, 16, 16), batch_size=2)
    assert p.shape == (5,) and ((p >= 0) & (p <= 1)).all() and m.training
