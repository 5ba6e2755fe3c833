"""The nodule recognition CNN of the ultrasound two-stage method (seed 004, DESIGN §5.3).

Paper: "three modules, and each module includes three convolution layers, a maximum pooling and dropout
layer. Finally, two convolution layer, one average pooling and fully [connected] layer". It is the
mean-teacher ConvNet (Tarvainen & Valpola 2017) with one more convolution block; here each convolution
is conv 3×3 → batch norm → LeakyReLU(0.1), as in the mean-teacher ConvNet. The paper's widths are not
given; ``width`` (default 32; the mean-teacher ConvNet used 128) sets the first block's channels, the
second and third blocks use 2× and 4×.

The model follows the classifier-segmenter contract of the registry (``forward`` → dict with ``logits``
and ``features``; ``mask_logits`` only with ``seg_decoder=True``) so any strategy and the registry's
contract tests treat it like every other model. Any timm backbone is the alternative: the registered
``classifier_segmenter`` model with ``seg_decoder=False`` and ``backbone=<timm name>``.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..errors import ConfigError
from .classifier_segmenter import ClassifierSegmenter
from .registry import register_model


def conv_bn_lrelu(in_channels: int, out_channels: int, kernel: int = 3) -> nn.Sequential:
    """Conv (k×k, same padding, no bias) → batch norm → LeakyReLU(0.1)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(0.1, inplace=True),
    )


class RecognitionEncoder(nn.Module):
    """3 × (3 conv + max-pool 2 + dropout), then conv 3×3 and conv 1×1.

    (B, in_chans, H, W) → [(B, w, H/2, W/2), (B, 2w, H/4, W/4), (B, 2w, H/8, W/8)], finest first
    (sizes rounded down by the pooling). The last level feeds the classification head (average pool + FC).
    """

    def __init__(self, in_chans: int = 1, width: int = 32, dropout: float = 0.5) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width]
        ins = [in_chans, *widths[:-1]]
        self.blocks = nn.ModuleList(
            nn.Sequential(
                conv_bn_lrelu(i, o), conv_bn_lrelu(o, o), conv_bn_lrelu(o, o), nn.MaxPool2d(2), nn.Dropout(dropout)
            )
            for i, o in zip(ins, widths, strict=True)
        )
        # the last block's pooling is followed by the paper's two convolutions (3×3, then 1×1 to 2w)
        self.tail = nn.Sequential(conv_bn_lrelu(widths[2], widths[2]), conv_bn_lrelu(widths[2], widths[1], kernel=1))
        self.channels = [widths[0], widths[1], widths[1]]

    def forward(self, x: Tensor) -> list[Tensor]:
        f1 = self.blocks[0](x)
        f2 = self.blocks[1](f1)
        f3 = self.tail(self.blocks[2](f2))
        return [f1, f2, f3]


@register_model("recognition_cnn", tiny={"width": 4, "seg_decoder": True, "decoder_width": 8})
def recognition_cnn(
    backbone: str | None = None,
    pretrained: bool = False,
    in_chans: int = 1,
    num_classes: int = 1,
    seg_decoder: bool = False,
    decoder_width: int = 32,
    dropout: float = 0.5,
    channels_last: bool = False,
    width: int = 32,
) -> ClassifierSegmenter:
    """The paper's recognition CNN; ``dropout`` (paper: 0.5) is the rate after each of the three blocks.

    ``num_classes=1`` gives one malignancy logit per crop (B,); 2 gives benign/malignant logits (B, 2).
    """
    if backbone is not None or pretrained:
        raise ConfigError(
            "model 'recognition_cnn' has no backbone and no pretrained weights; for a timm backbone use "
            "model 'classifier_segmenter' with seg_decoder=false"
        )
    encoder = RecognitionEncoder(in_chans, width, dropout)
    return ClassifierSegmenter(encoder, num_classes, seg_decoder, decoder_width, 0.0, channels_last)
