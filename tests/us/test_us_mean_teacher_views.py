"""Mean teacher on ultrasound crops: two independently augmented views, equal labelled exposure across arms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from breastssl.data.us_crops import CropAugment, CropDataset
from breastssl.experiments._us_mean_teacher_impl import USExperimentConfig, USRecognitionConfig, arm_batch
from breastssl.models import create_model
from breastssl.run.recipes.us_stages import arm_indices, crop_training_data
from breastssl.strategies.mean_teacher import MeanTeacher, MeanTeacherConfig

S = 8


def ramp_crops(n: int) -> np.ndarray:
    """(n, 1, S, S) crops whose every row increases left to right: a flipped view's rows decrease."""
    return np.broadcast_to(np.arange(1.0, S + 1, dtype=np.float32), (n, 1, S, S)).copy()


def dataset(n: int, transform: CropAugment, views: int = 2) -> CropDataset:
    return CropDataset(ramp_crops(n), np.zeros(n), np.ones(n, dtype=bool), True, views, transform)


def is_flipped(x: torch.Tensor) -> bool:
    return bool(x[0, 0, 0] > x[0, 0, -1])


def test_student_and_teacher_views_are_flipped_independently():
    torch.manual_seed(0)
    ds = dataset(40, CropAugment(flip=True, translate=0, contrast=0.0))
    pairs = [(is_flipped(it["image"]), is_flipped(it["image_teacher"])) for it in (ds[i] for i in range(len(ds)))]
    # independent fair coins: over 40 items both agreeing and disagreeing pairs occur (one draw per crop: never differ)
    assert any(a != b for a, b in pairs) and any(a == b for a, b in pairs)
    assert 5 < sum(a for a, _ in pairs) < 35


def test_student_and_teacher_views_get_their_own_contrast():
    torch.manual_seed(0)
    ds = dataset(10, CropAugment(flip=False, translate=0, contrast=0.1))
    for i in range(len(ds)):
        it = ds[i]
        gains = [float((it[k] / ds.crops[i]).mean()) for k in ("image", "image_teacher")]
        assert all(0.9 <= g <= 1.1 for g in gains)
        assert gains[0] != pytest.approx(gains[1], abs=1e-6)  # one contrast per view, not one per crop


def test_views_expose_their_draws_and_apply_them():
    torch.manual_seed(1)
    ds = dataset(30, CropAugment(flip=True, translate=2, contrast=0.1))
    params = []
    for i in range(len(ds)):
        images, p = ds.views(i)
        assert p.shape == (2, 4) and len(images) == 2
        for x, q in zip(images, p, strict=True):
            torch.testing.assert_close(x, CropAugment.apply(ds.crops[i], q))
        params.append(p)
    p = torch.stack(params)  # (N, 2, 4): flip, dy, dx, gain per view
    assert (p[:, 0, 0] != p[:, 1, 0]).any()  # geometric: flip
    assert (p[:, 0, 1:3] != p[:, 1, 1:3]).any(dim=1).float().mean() > 0.5  # geometric: shift
    assert (p[:, 0, 3] != p[:, 1, 3]).all()  # photometric: contrast
    assert p[:, :, 1:3].abs().max() <= 2 and (p[:, :, 1:3] != 0).any()


def test_shift_moves_the_content_by_the_drawn_offset():
    x = torch.zeros(1, S, S)
    x[0, 3, 4] = 1.0
    y = CropAugment.apply(x, torch.tensor([0.0, 1.0, -2.0, 1.0]))
    assert y.shape == x.shape and y[0, 4, 2] == 1.0 and y.sum() == 1.0


def test_views_are_reproducible_from_the_torch_seed_and_one_view_has_no_teacher_image():
    ds = dataset(6, CropAugment())
    torch.manual_seed(7)
    first = [ds[i]["image_teacher"] for i in range(6)]
    torch.manual_seed(7)
    assert all(torch.equal(a, ds[i]["image_teacher"]) for i, a in enumerate(first))
    assert "image_teacher" not in dataset(2, CropAugment(), views=1)[0]
    plain = CropDataset(ramp_crops(2), np.zeros(2), np.ones(2, dtype=bool), augment=False, views=2)
    assert torch.equal(plain[0]["image"], plain[0]["image_teacher"])


def test_the_teacher_sees_the_image_teacher_view():
    torch.manual_seed(0)
    student = create_model("recognition_cnn", width=4, dropout=0.0)
    s = MeanTeacher(student, cfg=MeanTeacherConfig(rampup_steps=0, input_noise=0.0))
    x = torch.randn(6, 1, 16, 16)
    batch = {"image": x, "label": torch.zeros(6), "sup_cls": torch.zeros(6)}
    # same weights, no noise, no dropout, both in train mode: identical inputs give no consistency error ...
    assert s.loss({**batch, "image_teacher": x.clone()}, 0)["loss_consistency"].item() == pytest.approx(0, abs=1e-7)
    # ... and the teacher's own view gives one
    assert s.loss({**batch, "image_teacher": x.flip(-1)}, 0)["loss_consistency"].item() > 1e-6


# ---- equal labelled exposure -----------------------------------------------------------------------------------


def tiny_crops(n_basic: int = 6, n_ext: int = 10, n_val: int = 4) -> dict:
    rng = np.random.default_rng(0)
    n = n_basic + n_ext
    train = pd.DataFrame({"label": np.arange(n) % 2, "set": ["basic"] * n_basic + ["extended"] * n_ext,
                          "score": np.ones(n)})  # fmt: skip
    return {"train": train, "train_x": rng.normal(size=(n, 1, 16, 16)).astype(np.float32),
            "val": pd.DataFrame({"label": np.arange(n_val) % 2}),
            "val_x": rng.normal(size=(n_val, 1, 16, 16)).astype(np.float32)}  # fmt: skip


def exposure_cfg(equal: bool) -> USExperimentConfig:
    mt = MeanTeacherConfig(rampup_steps=0)
    rec = USRecognitionConfig(width=4, crop_size=16, batch_size=8, max_steps=4, eval_every=2,
                              equal_labelled_exposure=equal, mean_teacher=mt)  # fmt: skip
    return USExperimentConfig(recognition=rec)


def test_arm_batch_shares():
    tr = tiny_crops()["train"]
    eq, full = exposure_cfg(True).recognition, exposure_cfg(False).recognition
    assert arm_batch("semi", eq, tr) == (4, 4)
    assert arm_batch("sup_basic", eq, tr) == arm_batch("sup_all", eq, tr) == (4, 0)
    assert arm_batch("sup_basic", full, tr) == (8, 0)


@pytest.mark.parametrize("equal", [True, False])
def test_labelled_crops_per_batch_match_across_arms(equal):
    """Each arm's batches (as the us recipe builds them from arm_indices / arm_batch): the labelled crops in every
    batch are the same count for all arms under equal exposure; the semi arm's other crops are unlabelled."""
    cfg, crops = exposure_cfg(equal), tiny_crops()
    r, tr = cfg.recognition, crops["train"]
    per_arm = {}
    for arm in ("semi", "sup_basic", "sup_all"):
        lab_idx, unl_idx = arm_indices(arm, r, tr)
        n_lab, n_unl = arm_batch(arm, r, tr)
        ds, sampler, _ = crop_training_data(crops["train_x"], tr, lab_idx, unl_idx, n_lab, n_unl, r,
                                            2 if arm == "semi" else 1, 0)  # fmt: skip
        batches = [b for _, b in zip(range(4), iter(sampler), strict=False)]
        per_arm[arm] = {(int(sum(ds[i]["sup_cls"] for i in b)), len(b)) for b in batches}
        assert all(set(b) <= set(lab_idx) | set(unl_idx) for b in batches)
    assert per_arm["semi"] == {(4, 8)}  # 4 labelled + 4 unlabelled
    expected = {(4, 4)} if equal else {(8, 8)}
    assert per_arm["sup_basic"] == per_arm["sup_all"] == expected
