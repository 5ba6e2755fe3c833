"""Regression tests of four self-training defects: a weak-seg term with no signal, batch-normalised loss
terms, mining and FROC at different thresholds, and the batch-composition option's reachability."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest
import torch
from selftrain_fixtures import lesion_pairs
from torch import nn

from breastssl.data.mammo_pairs import PairArrays
from breastssl.data.self_training_data import FN, TP, SelfTrainingDataset
from breastssl.losses import flagged_mean, set_mean
from breastssl.losses.soft import soft_cross_entropy, soft_focal
from breastssl.metrics.froc import regions_from_map
from breastssl.models import create_model
from breastssl.postprocess.crf import CRFParams
from breastssl.run.self_training import froc_summary
from breastssl.strategies.self_training import SelfTraining, SelfTrainingConfig
from breastssl.strategies.self_training_augment import PairAugmentConfig, augment_batch
from breastssl.strategies.self_training_lesions import (
    froc_swept,
    keep_supported,
    lesion_masks,
    lesion_peaks,
    lesions_below,
    recalibrate,
)


def _pairs(n: int = 8, size: int = 16) -> PairArrays:
    return lesion_pairs(n, size)


def _collate(data: SelfTrainingDataset, idx: np.ndarray) -> dict[str, torch.Tensor]:
    items = [data[int(i)] for i in idx]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def _stage1_model(pairs: PairArrays, steps: int = 30) -> nn.Module:
    """A tiny BTV fitted briefly to the masks: an untrained one's maps are flat, whatever the input."""
    torch.manual_seed(0)
    model = create_model("bilateral_two_view", backbone="tiny", width=4, decoder_width=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, aux, m = (torch.from_numpy(a).float() for a in (pairs.images, pairs.aux, pairs.masks))
    for _ in range(steps):
        loss = nn.functional.binary_cross_entropy_with_logits(model(x, aux)["mask_logits"], m)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def _weak_seg_grad_norm(augment: bool) -> tuple[float, SelfTraining]:
    """At the start of round 1: mine with the student, train on its own maps; the weak-seg gradient norm."""
    model = _stage1_model(_pairs())
    cfg = SelfTrainingConfig(stage1_epochs=1, rounds=1, round_epochs=1, p0_every=1)
    cfg.crf.backend = "numpy"
    cfg.augment.enabled = augment
    strategy = SelfTraining(model, None, cfg)
    data = SelfTrainingDataset(_pairs(), np.arange(8) < 2, np.full(8, 0.97))
    strategy.attach(data, steps_per_epoch=1)
    strategy.before_round(1)  # block 1 = the first period of stage 2: score + CRF + table
    weak = data.weak_index
    data.roles[weak] = TP  # whatever the untrained model's masks: every weak image trains on its own map
    # eval mode: batch-norm statistics as at scoring, so the student's output on the raw image *is* the target
    model.eval()
    torch.manual_seed(1)
    parts = strategy.loss(_collate(data, weak), step=strategy.stage1_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(parts["loss_weak_seg"], params, allow_unused=True)
    return float(torch.sqrt(sum((g**2).sum() for g in grads if g is not None))), strategy


def test_weak_seg_term_has_a_gradient_at_round_start_only_with_augmentation():
    with_aug, strategy = _weak_seg_grad_norm(augment=True)
    without, _ = _weak_seg_grad_norm(augment=False)
    assert without < 1e-5  # p = y up to the float16 storage of the maps: no signal (the defect)
    assert with_aug > 1e-3 and with_aug > 1000 * without
    # the probe logged the term and its gradient norm into the round's history entry
    entry = strategy.history[-1]
    assert entry["grad_norm_weak_seg"] == pytest.approx(with_aug, rel=1e-4)
    assert entry["loss_weak_seg"] > 0 and entry["loss_weak_seg_mean"] == pytest.approx(entry["loss_weak_seg"])


def test_augmentation_moves_image_aux_and_target_together_and_noise_spares_the_target():
    img = torch.zeros(4, 1, 24, 16)
    img[:, :, 3:9, 2:7] = 1.0  # off-centre, so every flip/rotation moves it
    soft = img * 0.6
    geo = PairAugmentConfig(hflip=1.0, vflip=0.0, affine=1.0, max_degrees=20, max_scale=0.2, noise=0.0)
    g = torch.Generator().manual_seed(0)
    a_img, a_aux, a_tgt = augment_batch(img.clone(), img.clone(), img.clone(), geo, g)
    assert not torch.equal(a_img, img)
    torch.testing.assert_close(a_aux, a_img)  # the contralateral image moves with the main one
    assert set(a_tgt.unique().tolist()) <= {0.0, 1.0}  # a binary target stays binary
    assert ((a_img > 0.5) == (a_tgt > 0.5)).float().mean() > 0.97  # ... and stays on the lesion
    _, _, a_soft = augment_batch(img.clone(), None, soft.clone(), geo, torch.Generator().manual_seed(0))
    assert a_soft.max() <= 0.6 + 1e-6 and ((a_soft > 0) & (a_soft < 0.6)).any()  # a soft one stays soft
    # photometric only: images change, the target does not; the same seed gives the same batch
    noise = PairAugmentConfig(hflip=0, vflip=0, affine=0, noise=1.0, noise_std=0.05)
    n_img, n_aux, n_tgt = augment_batch(img.clone(), img.clone(), soft.clone(), noise, torch.Generator().manual_seed(3))
    assert torch.equal(n_tgt, soft) and not torch.equal(n_img, img) and not torch.equal(n_aux, n_img)
    again = augment_batch(img.clone(), img.clone(), soft.clone(), noise, torch.Generator().manual_seed(3))
    assert torch.equal(again[0], n_img)


def test_set_mean_divides_each_set_by_its_own_count():
    values = torch.tensor([2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], requires_grad=True)
    full = torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0])
    weak = 1 - full
    assert set_mean(values, full).item() == pytest.approx(2.0)  # flagged_mean: 0.25
    assert set_mean(values, weak).item() == pytest.approx(1.0)  # flagged_mean: 0.875
    assert flagged_mean(values, full).item() == pytest.approx(0.25)  # kept for its other callers
    empty = set_mean(values, torch.zeros(8))
    assert empty.item() == 0.0 and empty.requires_grad
    empty.backward()
    assert torch.isfinite(values.grad).all()


class _Fixed(nn.Module):
    """A student with fixed, distinct outputs per item: logits (B,), mask_logits (B, 1, H, W)."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, aux: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        b = x.shape[0]
        ramp = torch.linspace(-2, 2, b)
        return {"logits": ramp + self.bias, "mask_logits": x * 3 - 1 + ramp[:, None, None, None] + self.bias}


def test_strategy_terms_are_means_over_their_own_sets():
    torch.manual_seed(0)
    n, size = 8, 8
    batch = {
        "image": torch.rand(n, 1, size, size),
        "aux": torch.rand(n, 1, size, size),
        "mask": torch.rand(n, 1, size, size),
        "label": torch.rand(n),
        "full": torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0]),  # 1 full item, 7 weak ones
        "weak_seg": torch.tensor([0.0, 1, 1, 0, 0, 0, 0, 0]),  # 2 TP
        "weak_cls": torch.tensor([0.0, 1, 1, 1, 1, 1, 1, 1]),  # TP + FP + FN
    }
    cfg = SelfTrainingConfig()
    cfg.augment.enabled = False
    strategy = SelfTraining(_Fixed(), None, cfg)  # unattached: stage 1 has 0 steps
    parts = strategy.loss(batch, step=0)
    out = _Fixed()(batch["image"])
    seg = soft_focal(out["mask_logits"], batch["mask"]).detach()
    cls = soft_cross_entropy(out["logits"], batch["label"]).detach()
    torch.testing.assert_close(parts["loss_sup_seg"].detach(), seg[0])
    torch.testing.assert_close(parts["loss_sup_cls"].detach(), 0.3 * cls[0])
    torch.testing.assert_close(parts["loss_weak_seg"].detach(), 0.6 * seg[1:3].mean())
    torch.testing.assert_close(parts["loss_weak_cls"].detach(), 0.2 * cls[1:].mean())


def _blob(size: int = 24, peak: float = 0.35) -> np.ndarray:
    """A map (H, W) with a Gaussian lesion peaking at ``peak`` on a 0.01 background."""
    yy, xx = np.mgrid[:size, :size]
    return (0.01 + (peak - 0.01) * np.exp(-((yy - 12) ** 2 + (xx - 10) ** 2) / (2 * 2.5**2))).astype(np.float32)


def _disc(size: int = 32, peak: float = 0.4, radius: float = 4.0) -> np.ndarray:
    """A focal-loss-like map (H, W): a soft-edged disc at ``peak`` (< 0.5) on a 0.01 background."""
    yy, xx = np.mgrid[:size, :size]
    d = np.sqrt((yy - 16) ** 2 + (xx - 14) ** 2)
    return (0.01 + (peak - 0.01) / (1 + np.exp((d - radius) / 0.8))).astype(np.float32)


def test_mining_and_froc_share_the_lesion_threshold():
    prob = _disc()
    image = np.clip(0.2 + prob, 0, 1)
    prm = CRFParams().with_(backend="numpy")
    assert recalibrate(np.array([0.25, 0.1, 0.6]), 0.25)[0] == pytest.approx(0.5)
    at_025 = lesion_masks(prob[None], image[None], prm, min_area=4, threshold=0.25)[0]
    _, regions = regions_from_map(prob, 0.25)
    assert at_025.any() and len(regions) == 1  # the CRF mask and the FROC agree the model found it
    assert prob[at_025].max() >= 0.25
    # at 0.5 (the CRF's old fixed boundary) neither finds this lesion
    assert not lesion_masks(prob[None], image[None], prm, min_area=4, threshold=0.5)[0].any()
    assert len(regions_from_map(prob, 0.5)[1]) == 0
    # a CRF region the map does not support at t is dropped
    mask = np.zeros((32, 32), bool)
    mask[14:19, 12:17] = mask[0:3, 0:3] = True
    kept = keep_supported(mask, prob, 0.25)
    assert kept[16, 14] and not kept[1, 1]


class _MapModel(nn.Module):
    """Scores every image with the same fixed map (the bilateral signature: forward(x, aux))."""

    def __init__(self, prob: np.ndarray) -> None:
        super().__init__()
        self.logit = nn.Parameter(torch.logit(torch.from_numpy(prob))[None, None], requires_grad=False)

    def forward(self, x: torch.Tensor, aux: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"logits": torch.zeros(x.shape[0]), "mask_logits": self.logit.expand(x.shape[0], -1, -1, -1)}


@pytest.mark.parametrize(("threshold", "role"), [(0.25, TP), (0.5, FN)])
def test_before_round_mines_at_the_configured_lesion_threshold(threshold, role):
    prob = _disc()
    n = 3
    images = np.repeat(np.clip(0.2 + prob, 0, 1)[None, None], n, axis=0)
    table = pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "has_lesion": [False] * n})
    pairs = PairArrays(images, images.copy(), np.zeros(images.shape, np.uint8), table)
    cfg = SelfTrainingConfig(stage1_epochs=1, rounds=1, round_epochs=1, p0_every=1, lesion_threshold=threshold)
    cfg.crf.backend = "numpy"
    strategy = SelfTraining(_MapModel(prob), None, cfg)
    data = SelfTrainingDataset(pairs, np.zeros(n, bool), np.full(n, 0.99))
    strategy.attach(data, steps_per_epoch=1)
    strategy.before_round(1)
    assert (data.roles == role).all()


def test_froc_sweeps_region_thresholds_and_reports_lesions_below():
    # four images: two lesions at peak 0.35, one at 0.15 (below t = 0.25), and a false blob at 0.3
    maps = np.full((4, 24, 24), 0.01, np.float32)
    masks = np.zeros((4, 24, 24), np.uint8)
    for i, peak in enumerate((0.35, 0.35, 0.15)):
        maps[i] = _blob(peak=peak)
        masks[i, 9:16, 7:14] = 1
    maps[3] = _blob(peak=0.3)
    assert lesion_peaks(maps, masks) == pytest.approx([0.35, 0.35, 0.15], abs=1e-6)
    assert lesions_below(maps, masks, 0.25) == pytest.approx(1 / 3)
    res = froc_swept(maps, masks, 0.25, grid=(0.3, 0.2, 0.1, 0.05))
    assert [p["threshold"] for p in res["sweep"]] == [0.25, 0.2, 0.1, 0.05]  # t first, then the grid below t
    # at t: 2 of 3 lesions, 1 FP over 4 images; lowering the threshold finds the third lesion
    assert res["sweep"][0]["sensitivity"] == pytest.approx(2 / 3) and res["sweep"][0]["fppi"] == pytest.approx(0.25)
    assert res["sweep"][1]["sensitivity"] == pytest.approx(2 / 3) and res["sweep"][2]["sensitivity"] == 1.0
    assert res["sens"]["1"] == pytest.approx(1.0)  # a single threshold's curve would plateau at 2/3
    curve = res["curve"]
    assert (np.diff(curve["fppi"]) >= 0).all() and (np.diff(curve["sensitivity"]) >= 0).all()
    # merged, oversized regions at low thresholds lose the IoU: the envelope keeps the best point within budget
    low = froc_swept(maps, masks, 0.25, grid=(0.1, 0.01001))
    assert low["sweep"][-1]["sensitivity"] < 1.0 and low["sens"]["1"] == pytest.approx(1.0)
    summary = froc_summary(maps, masks, 0.25, (0.2, 0.1))
    assert summary["lesions_below_threshold"] == pytest.approx(1 / 3) and summary["lesion_threshold"] == 0.25
    assert set(summary["sens"]) == {"0.1", "0.2", "0.5", "1"} and len(summary["sweep"]) == 3


def test_full_share_is_reachable_from_config_and_cli():
    from breastssl.experiments import mammo_self_training as exp

    assert SelfTrainingConfig().full_share is None  # the default stays the pooled draw
    assert SelfTrainingConfig(full_share=0.5).full_share == 0.5
    assert "full_share" in inspect.signature(exp.run_experiment).parameters
    assert "--full-share" in inspect.getsource(exp.register)
