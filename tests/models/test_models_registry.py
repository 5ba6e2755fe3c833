"""Contract tests generated from the model registry: every registered model is checked here."""

from __future__ import annotations

import pytest
import torch

from breastssl.config import build_config
from breastssl.errors import ConfigError
from breastssl.models import ModelConfig, build_model, create_model, list_models, model_entry, register_model

SHAPE = (2, 1, 40, 24)  # not square and not a multiple of 32: the decoder must still return (H, W)


def tiny(name: str, **kw):
    torch.manual_seed(0)
    return create_model(name, **{**model_entry(name).tiny, **kw})


def weighted_sum(out: dict, key: str, g: torch.Generator) -> torch.Tensor:
    """A loss on one output with random weights (a plain sum through batch norm has zero gradient)."""
    values = out[key] if key == "features" else [out[key]]
    return sum((v * torch.randn(v.shape, generator=g)).sum() for v in values)


@pytest.mark.parametrize("name", list_models())
def test_forward_returns_the_output_dict(name):
    model = tiny(name)
    out = model(torch.randn(SHAPE))
    assert out["logits"].shape == (2,)
    assert out["mask_logits"].shape == (2, 1, 40, 24)
    assert len(out["features"]) >= 2
    for f in out["features"]:
        assert f.ndim == 4 and f.shape[0] == 2
    assert all(torch.isfinite(v).all() for v in (out["logits"], out["mask_logits"]))


@pytest.mark.parametrize("name", list_models())
def test_every_output_sends_finite_nonzero_gradient_to_every_group(name):
    model = tiny(name, dropout=0.1)
    out = model(torch.randn(SHAPE))
    g = torch.Generator().manual_seed(0)
    sum(weighted_sum(out, k, g) for k in ("logits", "mask_logits", "features")).backward()
    for group, params in model.parameter_groups().items():
        for p in params:
            assert p.grad is not None and torch.isfinite(p.grad).all(), group
        assert sum(p.grad.abs().sum() for p in params) > 0, group
    # each output alone reaches the shared encoder (distillation on any output trains the backbone)
    for key in ("logits", "mask_logits", "features"):
        model.zero_grad(set_to_none=True)
        weighted_sum(model(torch.randn(SHAPE)), key, g).backward()
        assert sum(p.grad.abs().sum() for p in model.parameter_groups()["encoder"]) > 0, key


@pytest.mark.parametrize("name", list_models())
def test_options_without_decoder_and_with_several_classes(name):
    model = tiny(name, seg_decoder=False, num_classes=3)
    out = model(torch.randn(SHAPE))
    assert "mask_logits" not in out and "seg_decoder" not in model.parameter_groups()
    assert out["logits"].shape == (2, 3)


@pytest.mark.parametrize("name", list_models())
def test_groups_cover_every_parameter_once(name):
    model = tiny(name)
    grouped = [id(p) for params in model.parameter_groups().values() for p in params]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())


def test_unknown_names_and_duplicate_registrations_are_errors():
    with pytest.raises(ConfigError, match="did you mean 'tiny_cnn'"):
        create_model("tiny_cn")
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny_cnn")(lambda: None)


def test_model_config_builds_and_rejects_unknown_keys():
    model = build_model(ModelConfig(name="tiny_cnn", dropout=0.2, decoder_width=16))
    assert model.cls_head.dropout.p == 0.2
    with pytest.raises(ConfigError, match="unknown key 'droput'"):
        build_config(ModelConfig, {"droput": 0.1})
    with pytest.raises(ConfigError, match="no backbone"):
        build_model(ModelConfig(name="tiny_cnn", backbone="resnet18"))


def test_head_pooling_options():
    import torch

    from breastssl.models.heads import ClassificationHead, global_pool

    x = torch.zeros(2, 3, 4, 5)
    x[0, 1, 2, 3] = 8.0
    assert torch.equal(global_pool(x, "max")[0], torch.tensor([0.0, 8.0, 0.0]))
    assert torch.allclose(global_pool(x, "avg")[0], torch.tensor([0.0, 0.4, 0.0]))
    assert torch.allclose(global_pool(x, "avgmax")[0], torch.tensor([0.0, 4.2, 0.0]))
    with pytest.raises(ValueError, match="pool"):
        ClassificationHead(3, pool="median")


def test_build_model_passes_pool_and_rejects_it_where_unsupported():
    from breastssl.errors import ConfigError
    from breastssl.models import ModelConfig, build_model

    model = build_model(ModelConfig(name="tiny_cnn", pool="max"))
    assert model.cls_head.pool == "max"
    build_model(ModelConfig(name="recognition_cnn"))  # defaults of settings it does not take are dropped
    with pytest.raises(ConfigError, match="does not take the setting model.pool"):
        build_model(ModelConfig(name="recognition_cnn", pool="max"))
