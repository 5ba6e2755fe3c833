"""Classifier + segmenter over a shared encoder: the student/teacher model of SelectiveKD (DESIGN §5.1).

One encoder (any timm backbone with ``features_only=True``, or the tiny CNN) feeds a classification
head and a light U-Net decoder. ``forward`` returns a dict (DESIGN §4), so every strategy can reach
the logits, the mask logits and the feature pyramid (for feature distillation) the same way.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .heads import ClassificationHead, UNetDecoder
from .registry import register_model

DEFAULT_BACKBONE = "resnet34"  # the SelectiveKD paper's backbone (seed 000, §3.2)


class TimmEncoder(nn.Module):
    """A timm backbone as a feature pyramid: (B, in_chans, H, W) → [(B, C_i, H/s_i, W/s_i)], finest first."""

    def __init__(self, backbone: str, in_chans: int = 1, pretrained: bool = False) -> None:
        super().__init__()
        import timm  # imported here: timm takes seconds to import and only this encoder needs it

        try:
            self.body = timm.create_model(backbone, pretrained=pretrained, features_only=True, in_chans=in_chans)
        except RuntimeError as exc:  # timm's error for unknown names is a RuntimeError
            raise ConfigError(f"cannot build timm backbone {backbone!r}: {exc}") from None
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.reductions: list[int] = list(self.body.feature_info.reduction())

    def forward(self, x: Tensor) -> list[Tensor]:
        return list(self.body(x))


class ClassifierSegmenter(nn.Module):
    """Encoder + classification head + optional U-Net segmentation decoder.

    ``forward(x)`` with x (B, in_chans, H, W) returns a dict:
      - ``logits``: (B,) for one class (binary), else (B, K)
      - ``mask_logits``: (B, 1, H, W), only when the decoder is on
      - ``features``: the encoder pyramid, a list of (B, C_i, H_i, W_i), finest first
    """

    def __init__(
        self,
        encoder: nn.Module,
        num_classes: int = 1,
        seg_decoder: bool = True,
        decoder_width: int = 128,
        dropout: float = 0.0,
        channels_last: bool = False,
        pool: str = "avg",
    ) -> None:
        super().__init__()
        self.encoder = encoder
        channels: list[int] = list(encoder.channels)
        self.cls_head = ClassificationHead(channels[-1], num_classes, dropout, pool)
        self.seg_decoder = UNetDecoder(channels, decoder_width) if seg_decoder else None
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """The encoder pyramid: a list of (B, C_i, H_i, W_i), finest first."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.encoder(x)

    def forward(self, x: Tensor) -> dict[str, Any]:
        features = self.forward_features(x)
        out: dict[str, Any] = {"logits": self.cls_head(features[-1]), "features": features}
        if self.seg_decoder is not None:
            out["mask_logits"] = self.seg_decoder(features, x.shape[-2:])
        return out

    def classify(self, x: Tensor) -> Tensor:
        """Classification logits only, (B,) or (B, K), for x (B, in_chans, H, W): the encoder and the head,
        without the segmentation decoder (scoring and stack-level inference need no mask)."""
        return self.cls_head(self.forward_features(x)[-1])

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named parameter groups, for per-group learning-rate multipliers (e.g. ×10 on ``cls_head``)."""
        groups = {"encoder": list(self.encoder.parameters()), "cls_head": list(self.cls_head.parameters())}
        if self.seg_decoder is not None:
            groups["seg_decoder"] = list(self.seg_decoder.parameters())
        return groups


@register_model("classifier_segmenter", tiny={"backbone": "mobilenetv3_small_050", "decoder_width": 16})
def classifier_segmenter(
    backbone: str | None = None,
    pretrained: bool = False,
    in_chans: int = 1,
    num_classes: int = 1,
    seg_decoder: bool = True,
    decoder_width: int = 128,
    dropout: float = 0.0,
    channels_last: bool = False,
    pool: str = "avg",
) -> ClassifierSegmenter:
    """Any timm backbone (default ResNet-34) + classification head + U-Net decoder.

    ``pretrained=True`` downloads ImageNet weights through timm (the only network access); with
    ``in_chans=1`` timm sums the first convolution's RGB weights into one channel.
    """
    encoder = TimmEncoder(backbone or DEFAULT_BACKBONE, in_chans=in_chans, pretrained=pretrained)
    return ClassifierSegmenter(encoder, num_classes, seg_decoder, decoder_width, dropout, channels_last, pool)
