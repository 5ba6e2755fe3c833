"""Bilateral two-view network (BTV) of the self-training paper (seed 002, §3.1, §4.2).

The main image (e.g. RCC) and the contralateral image of the same view (LCC) go through one shared
encoder; at every resolution of the pyramid the two feature maps are concatenated and fused by a
1×1 convolution + BN + ReLU (the paper fuses HRNet stages 1–3 this way). A U-Net decoder turns the
fused pyramid into a lesion probability map, and an image-level classification branch (mass vs no
mass, added for stage 2 in the paper, trained at 10× the learning rate) reads the deepest fused map.

The paper's backbone is HRNet-W48 at 800×1024; here any timm backbone with ``features_only`` works
(``backbone="hrnet_w18_small"`` is the closest small one) and ``backbone="tiny"`` (the default) is the
tiny CNN for CPU runs and tests. Parameter groups: ``encoder``, ``fusion``, ``seg_decoder``,
``cls_head`` (so ``optim.lr_mult: {cls_head: 10}`` gives the paper's ×10).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .classifier_segmenter import TimmEncoder
from .heads import ClassificationHead, UNetDecoder
from .registry import register_model
from .tiny_cnn import TinyEncoder


class BilateralTwoView(nn.Module):
    """Shared encoder + per-level concat/1×1-conv fusion + U-Net decoder + classification branch.

    ``forward(x, aux=None)``: x and aux (B, in_chans, H, W), aux the contralateral image of the same view
    (canonical orientation, so the breasts overlap). Without aux the main image is its own partner (no
    asymmetry cue): the model then works on single views too. Returns a dict:
      - ``logits``: (B,) for one class, else (B, K) — the image-level classification branch
      - ``mask_logits``: (B, 1, H, W), when the decoder is on
      - ``features``: the fused pyramid, a list of (B, C_i, H_i, W_i), finest first
    """

    def __init__(
        self,
        encoder: nn.Module,
        num_classes: int = 1,
        seg_decoder: bool = True,
        decoder_width: int = 32,
        dropout: float = 0.0,
        fuse_levels: int | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        channels: list[int] = list(encoder.channels)
        n = len(channels)
        self.fuse_levels = n if fuse_levels is None else min(max(fuse_levels, 1), n)
        # levels not fused keep the main image's features only (the paper fuses 3 of HRNet's 4 stages)
        self.fusion = nn.ModuleList(
            nn.Sequential(nn.Conv2d(2 * c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
            for c in channels[: self.fuse_levels]
        )
        self.cls_head = ClassificationHead(channels[-1], num_classes, dropout)
        self.seg_decoder = UNetDecoder(channels, decoder_width) if seg_decoder else None

    def forward_features(self, x: Tensor, aux: Tensor | None = None) -> list[Tensor]:
        """The fused pyramid: a list of (B, C_i, H_i, W_i), finest first."""
        b = x.shape[0]
        both = self.encoder(torch.cat([x, x if aux is None else aux], dim=0))  # one pass, shared weights
        fused = []
        for i, f in enumerate(both):
            main, other = f[:b], f[b:]
            fused.append(self.fusion[i](torch.cat([main, other], dim=1)) if i < self.fuse_levels else main)
        return fused

    def forward(self, x: Tensor, aux: Tensor | None = None) -> dict[str, Any]:
        features = self.forward_features(x, aux)
        out: dict[str, Any] = {"logits": self.cls_head(features[-1]), "features": features}
        if self.seg_decoder is not None:
            out["mask_logits"] = self.seg_decoder(features, x.shape[-2:])
        return out

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``encoder``, ``fusion``, ``cls_head`` (paper: lr ×10) and ``seg_decoder``."""
        groups = {
            "encoder": list(self.encoder.parameters()),
            "fusion": list(self.fusion.parameters()),
            "cls_head": list(self.cls_head.parameters()),
        }
        if self.seg_decoder is not None:
            groups["seg_decoder"] = list(self.seg_decoder.parameters())
        return groups


@register_model("bilateral_two_view", tiny={"backbone": "tiny", "width": 4, "decoder_width": 16})
def bilateral_two_view(
    backbone: str | None = "tiny",
    pretrained: bool = False,
    in_chans: int = 1,
    num_classes: int = 1,
    seg_decoder: bool = True,
    decoder_width: int = 32,
    dropout: float = 0.0,
    channels_last: bool = False,
    width: int = 8,
    fuse_levels: int | None = None,
) -> BilateralTwoView:
    """The BTV network over ``backbone`` (``"tiny"``/None: the tiny CNN; else a timm name, e.g. hrnet_w18_small).

    ``pretrained`` loads ImageNet weights through timm (timm backbones only). ``channels_last`` is
    accepted for config compatibility and ignored here (channels-last training: ``train.channels_last``).
    """
    if backbone in (None, "tiny"):
        encoder: nn.Module = TinyEncoder(in_chans, width)
    else:
        encoder = TimmEncoder(backbone, in_chans=in_chans, pretrained=pretrained)
    return BilateralTwoView(encoder, num_classes, seg_decoder, decoder_width, dropout, fuse_levels)
