"""The model section of a run config, and building a model from it."""

from __future__ import annotations

from pydantic import Field
from torch import nn

from ..config import Section
from .registry import create_model


class ModelConfig(Section):
    """Which registered model to build and how."""

    name: str = "classifier_segmenter"
    backbone: str | None = Field(None, description="timm backbone name; None = the model's default (resnet34)")
    pretrained: bool = Field(False, description="load ImageNet weights through timm (downloads once)")
    in_chans: int = Field(1, ge=1)
    num_classes: int = Field(1, ge=1, description="1 = one binary logit per image")
    seg_decoder: bool = True
    decoder_width: int = Field(128, ge=8, description="channels of the deepest decoder block; halved per level")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    channels_last: bool = False


def build_model(cfg: ModelConfig) -> nn.Module:
    """Build the model a :class:`ModelConfig` describes."""
    return create_model(cfg.name, **cfg.model_dump(exclude={"name"}))
