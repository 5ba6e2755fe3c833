"""The model section of a run config, and building a model from it."""

from __future__ import annotations

import inspect
from typing import Literal

from pydantic import Field
from torch import nn

from ..config import Section
from ..errors import ConfigError
from .registry import create_model, model_entry


class ModelConfig(Section):
    """Which registered model to build and how."""

    name: str = "classifier_segmenter"
    backbone: str | None = Field(None, description="timm backbone name; None = the model's default (resnet34)")
    pretrained: bool = Field(False, description="load ImageNet weights through timm (downloads once)")
    in_chans: int = Field(1, ge=1, le=64)
    num_classes: int = Field(1, ge=1, le=10_000, description="1 = one binary logit per image")
    seg_decoder: bool = True
    decoder_width: int = Field(
        128, ge=8, le=4096, description="channels of the deepest decoder block; halved per level"
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    channels_last: bool = False
    pool: Literal["avg", "max", "avgmax"] = Field(
        "avg", description="global pooling of the classification head (max suits small lesions on small images)"
    )


def build_model(cfg: ModelConfig) -> nn.Module:
    """Build the model a :class:`ModelConfig` describes.

    Settings the model's factory does not take are dropped while at their defaults; a changed one is an
    error naming it (e.g. ``model.pool`` on a model without a pooled classification head).
    """
    factory = model_entry(cfg.name).factory
    params = inspect.signature(factory).parameters
    takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
    kwargs = {}
    for key, value in cfg.model_dump(exclude={"name"}).items():
        if takes_all or key in params:
            kwargs[key] = value
        elif value != ModelConfig.model_fields[key].default:
            raise ConfigError(f"model {cfg.name!r} does not take the setting model.{key} (= {value!r})")
    return create_model(cfg.name, **kwargs)
