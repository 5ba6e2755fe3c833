"""Detector (Faster R-CNN) training through the engine loop, the freeze schedule, inference and crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from breastssl.data.us_crops import box_iou, crop, detect, expand_box, make_crops
from breastssl.data.us_dataset import DetectionDataset, gt_boxes, gt_labels, to_grey
from breastssl.errors import ConfigError
from breastssl.models.detection import create_detector, list_detectors
from breastssl.strategies.detection import DetectionConfig, DetectionStrategy, detection_collate


def easy_frames(n: int = 4, size: int = 48) -> tuple[dict, dict]:
    """Dark frames with one bright square each: the trivially easy detection fixture."""
    rng = np.random.default_rng(0)
    frames, boxes = {}, {}
    for i in range(n):
        f = 0.05 * rng.random((size, size), dtype=np.float32)
        x, y = rng.integers(4, size - 20, 2)
        f[y : y + 14, x : x + 14] = 0.9
        frames[f"im{i}"], boxes[f"im{i}"] = f, np.array([[x, y, x + 14, y + 14]], dtype=np.float32)
    return frames, boxes


def tiny_detector(seed: int = 0):
    torch.manual_seed(seed)
    return create_detector("tiny", min_size=48, max_size=64, anchor_sizes=(8, 16, 32), representation=32)


def test_registry_names_the_paper_and_cpu_backbones():
    assert {"vgg16", "resnet50_fpn", "mobilenet_v3", "tiny"} <= set(list_detectors())
    with pytest.raises(ConfigError, match="did you mean 'vgg16'"):
        create_detector("vgg61")


def test_detector_trains_through_the_engine_loop_with_the_freeze_schedule(tmp_path):
    from breastssl.engine import TrainConfig, fit

    frames, boxes = easy_frames()
    det = tiny_detector()
    strategy = DetectionStrategy(det, cfg=DetectionConfig(freeze_steps=2))
    ds = DetectionDataset(list(frames), frames, boxes, flip=False)
    batch = detection_collate([ds[0], ds[1]])
    parts = strategy.loss(batch, step=0)  # frozen: no gradient reaches the backbone
    assert {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"} <= set(parts)
    parts["loss"].backward()
    assert all(p.grad is None for p in det.backbone.parameters())
    assert any(p.grad is not None for p in det.parameter_groups()["heads"])
    det.zero_grad(set_to_none=True)
    strategy.loss(batch, step=2)["loss"].backward()  # released
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in det.backbone.parameters())

    def total(model) -> float:
        model.train()
        with torch.no_grad():
            torch.manual_seed(1)  # the same proposal sampling before and after
            return float(sum(model(batch["images"], batch["targets"]).values()))

    before = total(det)
    optim, schedule = {"name": "sgd", "lr": 0.01}, {"name": "constant"}
    cfg = TrainConfig(steps=30, batch_size=2, optim=optim, schedule=schedule, out_dir=str(tmp_path), progress=False,
                      tensorboard=False, device="cpu", clip_grad_norm=10.0)  # fmt: skip
    result = fit(det, strategy, ds, cfg, collate_fn=detection_collate)
    assert all(np.isfinite(v) for v in result.metrics.values())
    assert total(det) < before


def test_inference_returns_boxes_scores_and_a_top_box_per_frame():
    frames, _ = easy_frames(3)
    det = tiny_detector().eval()
    out = det([torch.from_numpy(f)[None] for f in frames.values()])
    assert len(out["boxes"]) == 3 and all(b.shape[-1] == 4 for b in out["boxes"])
    table = detect(det, frames, list(frames))
    assert list(table["image_id"]) == list(frames) and table[["x0", "y0", "x1", "y1", "score"]].notna().all().all()
    assert det.training is False


def test_flip_moves_the_boxes_with_the_pixels():
    frames, boxes = easy_frames(1)
    torch.manual_seed(0)
    ds = DetectionDataset(["im0"], frames, boxes, flip=True)
    for _ in range(4):
        it = ds[0]
        x0, y0, x1, y1 = it["boxes"][0].long().tolist()
        assert float(it["image"][0, y0:y1, x0:x1].mean()) == pytest.approx(0.9)


def test_crop_margins_clipping_and_standardisation():
    np.testing.assert_array_equal(expand_box([10, 10, 30, 20], (50, 60), margin=0.1, min_margin=4), [6, 6, 34, 24])
    np.testing.assert_array_equal(expand_box([0, 2, 30, 48], (50, 40), margin=0.5, min_margin=0), [0, 0, 40, 50])
    frame = np.zeros((40, 40), np.float32)
    frame[10:20, 10:20] = 1.0
    c = crop(frame, [10, 10, 20, 20], 16, margin=0.5)
    assert c.shape == (16, 16) and abs(c.mean()) < 1e-5 and c.std() == pytest.approx(1.0, abs=1e-3)
    assert c[8, 8] > 0 > c[0, 0]  # the box centre is bright, the margin dark
    import pandas as pd

    t = pd.DataFrame({"image_id": ["a"], "x0": [10], "y0": [10], "x1": [20], "y1": [20]})
    assert make_crops({"a": frame}, t, 16).shape == (1, 1, 16, 16)
    assert box_iou(np.array([0, 0, 10, 10]), np.array([5, 0, 15, 10])) == pytest.approx(1 / 3)


def test_boxes_labels_and_grey_from_tables():
    import pandas as pd

    les = pd.DataFrame({"image_id": ["a", "b"], "x": [1, 2], "y": [3, 4], "w": [5, 6], "h": [7, 8],
                        "lesion_class": ["malignant", "benign"]})  # fmt: skip
    np.testing.assert_array_equal(gt_boxes(les)["a"], [[1, 3, 6, 10]])
    assert gt_labels(les) == {"a": 1, "b": 0}
    assert to_grey(np.ones((4, 5, 3), np.float32)).shape == (4, 5)
