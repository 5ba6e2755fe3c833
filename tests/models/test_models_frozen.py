"""The BN-folded, channels-last frozen copy that KD strategies use for the teacher forward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from breastssl.models import create_model
from breastssl.models.frozen import fast_frozen_copy

CASES = [("tiny_cnn", {"decoder_width": 8}), ("classifier_segmenter", {"backbone": "resnet18", "pretrained": False})]


@pytest.mark.parametrize("name,kw", CASES)
def test_copy_matches_the_model_and_leaves_it_untouched(name, kw):
    torch.manual_seed(0)
    model = create_model(name, **kw)
    for m in model.modules():  # non-trivial running statistics, so folding has something to fold
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    model.eval()
    x = torch.rand(3, 1, 64, 48)
    fast = fast_frozen_copy(model)
    with torch.no_grad():
        ref, got = model(x), fast(x.contiguous(memory_format=torch.channels_last))
    for key in ("logits", "mask_logits"):
        torch.testing.assert_close(got[key], ref[key], rtol=1e-4, atol=1e-5)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())  # folded
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original keeps its layers
    assert all(p.requires_grad for p in model.parameters()) and not any(p.requires_grad for p in fast.parameters())


def test_untraceable_model_falls_back_to_a_plain_frozen_copy():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
                return {"logits": self.conv(x).mean((1, 2, 3))}
            return {"logits": -self.conv(x).mean((1, 2, 3))}

    model = Branchy()
    with pytest.warns(UserWarning, match="folding skipped"):
        fast = fast_frozen_copy(model)
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(fast(x)["logits"], model(x)["logits"])
    assert fast is not model and not any(p.requires_grad for p in fast.parameters())
