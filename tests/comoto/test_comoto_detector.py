"""The RetinaNet detector: one C5 level (the paper) or an FPN; a training step and inference on tiny images."""

from __future__ import annotations

import math

import pytest
import torch
from comoto_fixtures import det_batch, tiny_detector

from breastssl.data.detection_slices import targets_of
from breastssl.errors import ConfigError
from breastssl.models import create_model


def test_single_c5_level_forward_training_step_and_inference():
    model = tiny_detector(0)
    batch = det_batch()
    out = model(batch["image"], targets_of(batch))
    assert out["stride"] == 8 and out["c5"].shape == (3, 16, 6, 5)  # 48×40 input, width 4 → C5 = 4·4 channels
    assert out["cls_logits"].shape == (3, 6 * 5 * 9, 1) and out["bbox_regression"].shape == (3, 270, 4)
    assert out["logits"].shape == (3,) and "mask_logits" not in out
    losses = out["losses"]
    assert set(losses) == {"classification", "bbox_regression"}
    assert all(math.isfinite(v.item()) for v in losses.values())
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    sum(losses.values()).backward()
    head_grad = sum(p.grad.abs().sum() for p in model.det.head.parameters() if p.grad is not None)
    assert head_grad > 0
    opt.step()
    model.eval()
    dets = model(batch["image"])["detections"]
    assert len(dets) == 3 and dets[0]["boxes"].shape[1] == 4


def test_fpn_variant_heatmap_and_resnet_options():
    model = tiny_detector(0, fpn=True, stages=4, seg_decoder=True)
    batch = det_batch()
    out = model(batch["image"], targets_of(batch))
    assert len(model.anchor_generator.sizes) == 3 and "neck" in model.parameter_groups()
    assert out["mask_logits"].shape == (3, 1, 48, 40)
    assert math.isfinite(sum(out["losses"].values()).item())
    r18 = create_model("retinanet", backbone="resnet18")
    assert r18.stride == 32 and r18.encoder.channels[-1] == 512
    with pytest.raises(ConfigError, match="backbone"):
        create_model("retinanet", backbone="vgg")


def test_dilated_c5_halves_the_stride_and_keeps_the_parameters():
    plain, dilated = tiny_detector(0), tiny_detector(0, dilate_c5=True)
    assert (plain.stride, dilated.stride) == (8, 4)
    dilated.load_state_dict(plain.state_dict())  # same parameters: only the last stage's stride and dilation differ
    batch = det_batch()
    out = dilated(batch["image"], targets_of(batch))
    assert out["c5"].shape == (3, 16, 12, 10) and out["cls_logits"].shape == (3, 12 * 10 * 9, 1)
    assert math.isfinite(sum(out["losses"].values()).item())
    r50 = create_model("retinanet", backbone="resnet50", dilate_c5=True).eval()
    with torch.no_grad():
        assert r50.stride == 16 and r50.forward_features(torch.rand(1, 1, 64, 64))[-1].shape[-2:] == (4, 4)
    with pytest.raises(ConfigError, match="dilate_c5"):
        create_model("retinanet", backbone="resnet18", dilate_c5=True)
