"""A very small CNN with the classifier-segmenter contract: for tests, the demo and CPU experiments."""

from __future__ import annotations

from torch import Tensor, nn

from ..errors import ConfigError
from .classifier_segmenter import ClassifierSegmenter
from .heads import conv_bn_relu
from .registry import register_model


class TinyEncoder(nn.Module):
    """Three stride-2 stages of conv-BN-ReLU (width w, 2w, 4w).

    (B, in_chans, H, W) → [(B, w, H/2, W/2), (B, 2w, H/4, W/4), (B, 4w, H/8, W/8)] (sizes rounded up).
    """

    def __init__(self, in_chans: int = 1, width: int = 8) -> None:
        super().__init__()
        self.channels = [width, 2 * width, 4 * width]
        ins = [in_chans, *self.channels[:-1]]
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(i, o, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))
            if k == 0
            else nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), conv_bn_relu(i, o))
            for k, (i, o) in enumerate(zip(ins, self.channels, strict=True))
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


@register_model("tiny_cnn", tiny={"width": 4})
def tiny_cnn(
    backbone: str | None = None,
    pretrained: bool = False,
    in_chans: int = 1,
    num_classes: int = 1,
    seg_decoder: bool = True,
    decoder_width: int = 32,
    dropout: float = 0.0,
    channels_last: bool = False,
    width: int = 8,
    pool: str = "avg",
) -> ClassifierSegmenter:
    """The tiny encoder + the same heads as ``classifier_segmenter``; it has no backbone and no weights to load."""
    if backbone is not None or pretrained:
        raise ConfigError("model 'tiny_cnn' has no backbone and no pretrained weights: leave model.backbone unset")
    encoder = TinyEncoder(in_chans, width)
    return ClassifierSegmenter(encoder, num_classes, seg_decoder, decoder_width, dropout, channels_last, pool)
