"""The timm-backed classifier-segmenter: any backbone, one input channel, channels-last."""

from __future__ import annotations

import pytest
import torch

from breastssl.errors import ConfigError
from breastssl.models import ModelConfig, build_model, create_model


@pytest.mark.parametrize("backbone", ["resnet18", "resnet10t", "mobilenetv3_small_050"])
def test_timm_backbones_give_the_contract(backbone):
    torch.manual_seed(0)
    model = create_model("classifier_segmenter", backbone=backbone, decoder_width=16)
    out = model(torch.randn(2, 1, 32, 48))
    assert out["logits"].shape == (2,) and out["mask_logits"].shape == (2, 1, 32, 48)
    assert [f.shape[1] for f in out["features"]] == model.encoder.channels
    assert [32 // f.shape[2] for f in out["features"]] == model.encoder.reductions


def test_default_is_a_one_channel_resnet34_without_download():
    model = build_model(ModelConfig())  # pretrained=False by default: nothing is downloaded
    assert model.encoder.body.conv1.in_channels == 1
    assert model.encoder.channels == [64, 64, 128, 256, 512]
    assert sum(p.numel() for p in model.encoder.parameters()) == pytest.approx(21.3e6, rel=0.01)


def test_channels_last_changes_layout_not_results():
    torch.manual_seed(0)
    plain = create_model("classifier_segmenter", backbone="resnet10t", decoder_width=16).eval()
    fast = create_model("classifier_segmenter", backbone="resnet10t", decoder_width=16, channels_last=True).eval()
    fast.load_state_dict(plain.state_dict())
    assert fast.encoder.body.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        a, b = plain(x), fast(x)
    torch.testing.assert_close(a["logits"], b["logits"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a["mask_logits"], b["mask_logits"], rtol=1e-4, atol=1e-5)


def test_unknown_backbone_is_a_config_error():
    with pytest.raises(ConfigError, match="cannot build timm backbone 'resnet9000'"):
        create_model("classifier_segmenter", backbone="resnet9000")
