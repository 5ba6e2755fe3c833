"""Device augmentation of detection batches (boxes) and ultrasound crops (issue 18), against their loader paths."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from breastssl.data.box_geometry import rotate_boxes, transform_boxes
from breastssl.data.detection_slices import DetectionDataset
from breastssl.data.device_augment import DetectionBatchAugment, DeviceAugment
from breastssl.data.transforms import AugmentConfig, augment_detection
from breastssl.data.us_crops import CropAugment, CropBatchAugment
from breastssl.run.recipe import augments_on_device
from breastssl.run.recipes.comoto import DataConfig

PHOTO_OFF = {"brightness_contrast": 0.0, "noise": 0.0, "sharpen": 0.0, "clahe": 0.0, "solarize": 0.0}
H, W = 60, 44
SQUARE = (26, 8, 38, 20)  # x0, y0, x1, y1: off-centre, so a wrong flip axis or rotation sense moves it away


def square_image() -> np.ndarray:
    img = np.zeros((H, W), np.float32)
    x0, y0, x1, y1 = SQUARE
    img[y0:y1, x0:x1] = 1.0
    return img


def assert_box_hugs_bright(image: np.ndarray, box: np.ndarray, what: str) -> None:
    """Every bright pixel lies in the box (half a pixel of bilinear blur allowed), and the box is tight to a pixel."""
    ys, xs = np.nonzero(image > 0.5)
    x0, y0, x1, y1 = (float(v) for v in box)
    assert ((xs >= x0 - 0.5) & (xs + 1 <= x1 + 0.5) & (ys >= y0 - 0.5) & (ys + 1 <= y1 + 0.5)).all(), what
    extent = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    assert np.abs(extent - np.array([x0, y0, x1, y1])).max() <= 1.5, (what, extent, box)


@pytest.mark.parametrize("degrees", [None, 10.0, -10.0, 30.0])
def test_loader_path_boxes_stay_around_the_square(degrees):
    cfg = AugmentConfig(rotate=1.0 if degrees else 0.0, max_degrees=abs(degrees or 0.0), **PHOTO_OFF)
    for i in range(40):
        out, boxes, keep = augment_detection(square_image(), np.array([SQUARE], np.float32), np.random.default_rng(i),
                                             cfg)  # fmt: skip
        assert keep.tolist() == [True] and boxes.shape == (1, 4)
        assert_box_hugs_bright(out, boxes[0], f"draw {i}")


def test_device_path_boxes_stay_around_the_square_in_a_paired_batch():
    n = 48
    aug = DetectionBatchAugment(AugmentConfig(rotate=1.0, max_degrees=25.0, **PHOTO_OFF), seed=7)

    def part() -> dict:
        return {"image": torch.from_numpy(square_image()).expand(n, 1, H, W).clone(),
                "boxes": [torch.tensor([SQUARE], dtype=torch.float32)] * n,
                "labels": [torch.zeros(1, dtype=torch.int64)] * n, "index": torch.arange(n)}  # fmt: skip

    out = aug({"dbt": part(), "mammo": part()}, step=3)
    for key in ("dbt", "mammo"):
        for b in range(n):
            assert len(out[key]["labels"][b]) == 1
            assert_box_hugs_bright(out[key]["image"][b, 0].numpy(), out[key]["boxes"][b][0].numpy(), f"{key} {b}")
    assert not torch.equal(out["dbt"]["image"], out["mammo"]["image"])  # each part its own draws
    again = aug({"dbt": part(), "mammo": part()}, step=3)
    other = aug({"dbt": part(), "mammo": part()}, step=4)
    assert torch.equal(again["dbt"]["image"], out["dbt"]["image"])
    assert all(torch.equal(a, b) for a, b in zip(again["mammo"]["boxes"], out["mammo"]["boxes"], strict=True))
    assert not torch.equal(other["dbt"]["image"], out["dbt"]["image"])


def test_both_paths_move_boxes_identically_for_the_same_draws():
    """The reference's numpy draws fed to the device path: the same geometry gives the same boxes (float32)."""
    cfg = AugmentConfig(rotate=0.7, max_degrees=15.0, **PHOTO_OFF)
    device = DetectionBatchAugment(cfg, seed=0)
    boxes = np.array([SQUARE, (2, 30, 12, 50)], np.float32)
    for i in range(30):
        _, ref, keep = augment_detection(square_image(), boxes, np.random.default_rng(i), cfg)
        rng = np.random.default_rng(i)
        u, v = torch.from_numpy(rng.random((1, 8))), torch.from_numpy(rng.uniform(-1, 1, (1, 4)))
        params = device.augment.params_from_uniforms(u, v)
        batch = {"image": torch.from_numpy(square_image())[None, None], "boxes": [torch.from_numpy(boxes)],
                 "labels": [torch.tensor([0, 1])], "index": torch.tensor([0])}  # fmt: skip
        out = device.apply(batch, params)
        torch.testing.assert_close(out["boxes"][0], torch.from_numpy(ref), rtol=0, atol=1e-4)
        assert out["labels"][0].tolist() == [j for j, k in enumerate(keep) if k]


def test_a_box_rotated_out_of_the_frame_is_dropped_with_its_label():
    corner = torch.tensor([[0.0, 0.0, 3.0, 3.0], [20.0, 20.0, 30.0, 30.0]])
    moved, keep = transform_boxes(corner, (H, W), False, False, 45.0)
    assert keep.tolist() == [False, True] and moved.shape == (1, 4)
    assert torch.equal(rotate_boxes(corner[:0], 10.0, (H, W)), corner[:0])  # no boxes: nothing to do


def test_flips_of_boxes_are_exact():
    box = torch.tensor([[26.0, 8.0, 38.0, 20.0]])
    moved, _ = transform_boxes(box, (H, W), True, True, None)
    assert moved.tolist() == [[W - 38.0, H - 20.0, W - 26.0, H - 8.0]]


def test_detection_dataset_full_augmentation_moves_its_boxes(tmp_path):
    stack = np.zeros((3, H, W), np.float32)
    stack[1] = square_image()
    np.save(tmp_path / "s.npy", stack)
    manifest = pd.DataFrame([{"image_id": "s", "path": "s.npy", "rows": H, "columns": W, "n_slices": 3,
                              "format": "npy"}])  # fmt: skip
    table = pd.DataFrame([{"image_id": "s", "patient_id": "p", "slice": 1, "boxes": np.array([SQUARE], np.float32),
                           "positive": True}])  # fmt: skip
    cfg = AugmentConfig(rotate=1.0, **PHOTO_OFF)
    ds = DetectionDataset(table, manifest, tmp_path, (H, W), seed=0, augment=cfg)
    for epoch in range(6):
        item = ds[(epoch, 0)]
        assert_box_hugs_bright(item["image"][0].numpy(), item["boxes"][0].numpy(), f"epoch {epoch}")
        assert torch.equal(item["image"], ds[(epoch, 0)]["image"])  # seeded by (seed, epoch, index)


def test_comoto_hflip_alone_is_an_augment_config_that_only_flips():
    cfg = DataConfig().augmentation()
    assert cfg.enabled and cfg.hflip == 0.5
    assert cfg.vflip == cfg.rotate == cfg.noise == cfg.clahe == cfg.sharpen == cfg.solarize == 0.0
    p = DeviceAugment(cfg).draw(2000, torch.Generator().manual_seed(0))
    assert not (p["vflip"].any() or p["rotate"].any() or p["noise"].any() or p["bc"].any())
    assert abs(p["hflip"].double().mean().item() - 0.5) < 0.05
    assert not DataConfig(hflip=False).augmentation().enabled


def test_auto_augments_on_the_device_on_cuda_only():
    def run(mode: str) -> SimpleNamespace:
        return SimpleNamespace(train=SimpleNamespace(augment_on=mode))

    cpu, cuda = SimpleNamespace(device=torch.device("cpu")), SimpleNamespace(device=torch.device("cuda"))
    assert not augments_on_device(run("auto"), cpu) and augments_on_device(run("auto"), cuda)
    assert augments_on_device(run("device"), cpu) and not augments_on_device(run("loader"), cuda)


def test_batched_crop_augment_equals_the_per_crop_reference():
    aug = CropBatchAugment(CropAugment(translate=3, contrast=0.2), views=2, seed=0)
    x = torch.randn(64, 1, 16, 16)
    params = aug.draw(64, torch.Generator().manual_seed(1))
    assert params[:, 0].bool().any() and (params[:, 1:3] != 0).any()
    ref = torch.stack([CropAugment.apply(x[i], params[i]) for i in range(64)])
    assert torch.equal(aug.apply(x, params), ref)


def test_crop_parameter_distributions_match_the_reference():
    n, t = 3000, CropAugment(translate=2, contrast=0.1)
    torch.manual_seed(0)
    ref = torch.stack([t.draw() for _ in range(n)]).numpy()
    mine = CropBatchAugment(t, 1, seed=0).draw(n, torch.Generator().manual_seed(5)).numpy()
    assert abs(ref[:, 0].mean() - mine[:, 0].mean()) < 4.5 * np.sqrt(2 * 0.25 / n)
    for col in (1, 2):  # the shifts: the same integers, uniformly
        values = np.arange(-2, 3)
        counts = np.stack([[(a[:, col] == v).sum() for v in values] for a in (ref, mine)])
        assert stats.chi2_contingency(counts).pvalue > 1e-3
    assert np.abs(mine[:, 3] - 1).max() <= 0.1 and stats.ks_2samp(ref[:, 3], mine[:, 3]).pvalue > 1e-3


def test_crop_views_are_independent_and_seeded_by_step():
    aug = CropBatchAugment(CropAugment(), views=2, seed=3)
    batch = {"image": torch.randn(32, 1, 16, 16), "label": torch.zeros(32)}
    a, b, c = aug(batch, 5), aug(batch, 5), aug(batch, 6)
    assert set(a) == {"image", "image_teacher", "label"}
    assert not torch.equal(a["image"], a["image_teacher"])
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["image_teacher"], b["image_teacher"])
    assert not torch.equal(a["image"], c["image"])
    assert set(CropBatchAugment(CropAugment(), views=1, seed=3)(batch, 5)) == {"image", "label"}
