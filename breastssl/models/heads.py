"""Heads shared by the image models: a classification head and a light U-Net decoder."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Lesion pixels are rare, so the mask head starts by predicting "background" with probability
# 1 - MASK_PRIOR: the first steps are then not spent un-learning a 50 % foreground guess.
MASK_PRIOR = 0.01


POOLS = ("avg", "max", "avgmax")


def global_pool(x: Tensor, pool: str) -> Tensor:
    """(B, C, h, w) → (B, C) by average, max, or the mean of both ("avgmax")."""
    if pool == "avg":
        return x.mean(dim=(2, 3))
    if pool == "max":
        return x.amax(dim=(2, 3))
    if pool == "avgmax":
        return 0.5 * (x.mean(dim=(2, 3)) + x.amax(dim=(2, 3)))
    raise ValueError(f"pool must be one of {POOLS}, not {pool!r}")


class ClassificationHead(nn.Module):
    """Global pool → dropout → linear.

    Input (B, C, h, w); output (B,) when ``num_classes == 1`` (one binary logit), else (B, K). Average
    pooling is ImageNet's default; a small lesion covers one or two cells of a low-resolution feature map
    and averaging dilutes it, so ``pool="max"`` (a lesion anywhere makes the image positive) suits small
    images and small data.
    """

    def __init__(self, in_channels: int, num_classes: int = 1, dropout: float = 0.0, pool: str = "avg") -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, not {pool!r}")
        self.num_classes = num_classes
        self.pool = pool
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.dropout(global_pool(x, self.pool))
        logits = self.fc(x)
        return logits[:, 0] if self.num_classes == 1 else logits


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3×3 convolution (no bias: the norm has one) → batch norm → ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def decoder_widths(num_blocks: int, width: int, minimum: int = 16) -> list[int]:
    """Widths of the decoder blocks, deepest first: ``width`` halved at each finer level, floored."""
    return [max(width >> i, minimum) for i in range(num_blocks)]


class UNetDecoder(nn.Module):
    """Light U-Net decoder over an encoder's feature pyramid.

    Starting from the deepest map, each block upsamples to the next finer map, concatenates it and
    applies two 3×3 conv-BN-ReLU. The widths halve towards fine levels, which keeps the cost of the
    high-resolution blocks small. Any input size works: upsampling goes to the skip's exact size.

    ``forward(features, size)``: features are (B, C_i, H_i, W_i), finest first; returns mask logits
    (B, 1, *size).
    """

    def __init__(self, in_channels: Sequence[int], width: int = 128) -> None:
        super().__init__()
        if len(in_channels) < 2:
            raise ValueError(f"a U-Net decoder needs at least two feature levels, got channels {list(in_channels)}")
        skips = list(in_channels[:-1])[::-1]  # deepest skip first
        widths = decoder_widths(len(skips), width)
        blocks = []
        prev = in_channels[-1]
        for skip, out in zip(skips, widths, strict=True):
            blocks.append(nn.Sequential(conv_bn_relu(prev + skip, out), conv_bn_relu(out, out)))
            prev = out
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(prev, 1, 1)
        nn.init.constant_(self.head.bias, -math.log((1 - MASK_PRIOR) / MASK_PRIOR))

    def forward(self, features: Sequence[Tensor], size: tuple[int, int]) -> Tensor:
        x = features[-1]
        for block, skip in zip(self.blocks, reversed(features[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        # The finest encoder level is usually at stride 2: the last step is a plain bilinear upsample.
        return F.interpolate(self.head(x), size=size, mode="bilinear", align_corners=False)
