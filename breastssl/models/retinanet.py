"""RetinaNet lesion detector with a single C5 feature level (CoMoTo, seed 003) or an FPN, for distillation.

The CoMoTo paper and its public code use torchvision's RetinaNet on ResNet-50 with ONE feature level, the
last stage C5 (no FPN), so that the lesion points distilled by LsKD/ImPA live on the map the head sees. We
build the same from torchvision pieces (``RetinaNetHead``, ``AnchorGenerator``, ``RetinaNet.compute_loss``
and ``postprocess_detections``) around our own backbone, because the stock ``RetinaNet.forward`` returns
either losses or detections and never the feature map that distillation needs.

``forward(images, targets=None)`` returns a dict (DESIGN §4):

- ``features``: list of the backbone's stage maps, the last is C5 (B, C, H/s, W/s); ``c5`` is that map and
  ``stride`` its stride s in input pixels (8 for the ``tiny`` backbone, 32 for ResNets; halved by ``dilate_c5``)
- ``logits``: (B,) image-level lesion logit, the max over all anchors ((B, K) for K > 1 classes)
- ``mask_logits`` (when ``seg_decoder``): (B, 1, H, W) detection heatmap logit: per pixel, the max over anchors
  of sigmoid(score) × soft inside-the-decoded-box, rendered on the C5 grid and upsampled (for viewing and
  for the model contract: every head parameter, regression included, reaches it)
- ``cls_logits`` (B, A, K), ``bbox_regression`` (B, A, 4), A = anchors over all levels
- ``losses`` when targets are given: torchvision's {``classification``, ``bbox_regression``}
- ``detections`` in eval mode: per image {``boxes`` (N, 4) xyxy in input pixels, ``scores`` (N,), ``labels``}

Targets: per image {``boxes`` (N, 4) float xyxy in input pixels, ``labels`` (N,) int64 in [0, K)}; lesion vs
background is K = 1 (label 0 = lesion; background is "no class", the sigmoid focal loss convention).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet18, resnet50
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import FeaturePyramidNetwork

from ..errors import ConfigError
from .registry import register_model

BACKBONES = ("resnet50", "resnet18", "tiny")


class TinyC5(nn.Module):
    """A small CPU backbone: ``stages`` stride-2 conv-BN-ReLU stages of width w·2^k (capped at 8w).

    (B, in_chans, H, W) → list of (B, C_k, H/2^(k+1), W/2^(k+1)); the last map plays C5 (stride 2^stages).
    ``dilate_c5``: the last stage keeps its input's resolution (stride 1) and dilates its second conv by 2, so
    C5 has stride 2^(stages−1) with the same backbone receptive field (DeepLab's output stride; torchvision's
    ``replace_stride_with_dilation``) and the same parameters; the head's 3×3 convs then see half the context.
    """

    def __init__(self, in_chans: int = 1, width: int = 16, stages: int = 3, dilate_c5: bool = False) -> None:
        super().__init__()
        chans = [min(width * 2**k, 8 * width) for k in range(stages)]
        self.channels = chans
        self.stride = 2 ** (stages - 1 if dilate_c5 else stages)
        self.stages = nn.ModuleList()
        for k, (c_in, c_out) in enumerate(zip([in_chans, *chans[:-1]], chans, strict=True)):
            dilate = dilate_c5 and k == stages - 1
            self.stages.append(
                nn.Sequential(
                    nn.Conv2d(c_in, c_out, 3, stride=1 if dilate else 2, padding=1, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(c_out, c_out, 3, padding=2 if dilate else 1, dilation=2 if dilate else 1, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True),
                )
            )

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


class ResNetStages(nn.Module):
    """A torchvision ResNet cut into stem + C2..C5; ``in_chans`` ≠ 3 sums the pretrained RGB filters.

    (B, in_chans, H, W) → [C2 (s 4), C3 (s 8), C4 (s 16), C5 (s 32)]; ``dilate_c5`` (ResNet-50 only: torchvision
    dilates Bottleneck blocks, not BasicBlocks) replaces C5's stride by dilation → C5 at stride 16.
    """

    def __init__(self, name: str, in_chans: int = 1, pretrained: bool = False, dilate_c5: bool = False) -> None:
        super().__init__()
        if dilate_c5 and name != "resnet50":
            raise ConfigError(f"retinanet dilate_c5 needs the resnet50 or tiny backbone, not {name!r}")
        # ImageNet weights download once through torchvision when asked for (DESIGN §9: only then)
        weights = "IMAGENET1K_V1" if pretrained else None
        if name == "resnet50":
            net = resnet50(weights=weights, replace_stride_with_dilation=[False, False, dilate_c5])
        else:
            net = resnet18(weights=weights)
        self.stride = 16 if dilate_c5 else 32
        if in_chans != 3:
            w = net.conv1.weight.detach()
            net.conv1 = nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False)
            with torch.no_grad():
                net.conv1.weight.copy_(w.sum(1, keepdim=True).repeat(1, in_chans, 1, 1) / in_chans)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.channels = [
            m[-1].conv3.out_channels if name == "resnet50" else m[-1].conv2.out_channels for m in self.layers
        ]

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        out = []
        for layer in self.layers:
            x = layer(x)
            out.append(x)
        return out


class RetinaNetDetector(nn.Module):
    """RetinaNet over one level (C5, the paper) or an FPN over the last three stages. See the module doc."""

    def __init__(
        self,
        encoder: nn.Module,
        num_classes: int = 1,
        fpn: bool = False,
        anchor_sizes: Sequence[float] = (32.0, 40.3, 50.8),
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        fpn_channels: int = 64,
        heatmap: bool = True,
        dropout: float = 0.0,
        score_thresh: float = 0.05,
        detections_per_img: int = 100,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.num_classes = num_classes
        self.heatmap = heatmap
        chans = list(encoder.channels)
        self.stride = int(encoder.stride)  # C5's stride in input pixels: where the lesion points are sampled
        self.neck = FeaturePyramidNetwork(chans[-3:], fpn_channels) if fpn else None
        levels = 3 if fpn else 1
        # one anchor size set per level; an FPN doubles the sizes per level as RetinaNet does
        sizes = tuple(tuple(float(s) * 2 ** (k - levels + 1) for s in anchor_sizes) for k in range(levels))
        self.anchor_generator = AnchorGenerator(sizes, (tuple(aspect_ratios),) * levels)
        head_in = fpn_channels if fpn else chans[-1]
        head = RetinaNetHead(head_in, self.anchor_generator.num_anchors_per_location()[0], num_classes)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        # torchvision's RetinaNet supplies the matcher, box coder, focal/L1 loss and post-processing
        self.det = RetinaNet(
            _NullBackbone(head_in),
            num_classes,
            anchor_generator=self.anchor_generator,
            head=head,
            score_thresh=score_thresh,
            detections_per_img=detections_per_img,
        )

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``encoder`` (backbone), ``neck`` (FPN, if any), ``head`` (classification + regression)."""
        groups = {"encoder": list(self.encoder.parameters()), "head": list(self.det.head.parameters())}
        if self.neck is not None:
            groups["neck"] = list(self.neck.parameters())
        return groups

    def forward_features(self, images: Tensor) -> list[Tensor]:
        """The backbone's stage maps of images (B, C, H, W) in [0, 1], finest first; the last is C5 (stride
        ``self.stride``). All a frozen distillation teacher needs: no head, anchors or post-processing."""
        return self.encoder((images - 0.5) / 0.25)

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None) -> dict:
        """images (B, C, H, W) in [0, 1]; targets as in the module doc. Returns the output dict."""
        feats = self.forward_features(images)
        if self.neck is not None:
            levels = list(self.neck(OrderedDict((str(k), f) for k, f in enumerate(feats[-3:]))).values())
        else:
            levels = [feats[-1]]
        levels = [self.dropout(f) for f in levels]
        head = self.det.head(levels)
        sizes = [tuple(images.shape[-2:])] * images.shape[0]
        anchors = self.anchor_generator(ImageList(images, sizes), levels)
        cls = head["cls_logits"]  # (B, A, K)
        logits = cls.amax(dim=1)
        out: dict = {
            "features": feats,
            "c5": feats[-1],
            "stride": self.stride,
            "logits": logits[:, 0] if self.num_classes == 1 else logits,
            "cls_logits": cls,
            "bbox_regression": head["bbox_regression"],
        }
        if self.heatmap:
            out["mask_logits"] = self._heatmap(head, anchors, levels[-1].shape[-2:], images.shape[-2:])
        if targets is not None:
            out["losses"] = self.det.compute_loss(targets, head, anchors)
        if not self.training:
            per_level = [
                f.shape[-2] * f.shape[-1] * self.anchor_generator.num_anchors_per_location()[0] for f in levels
            ]
            split_head = {k: list(v.split(per_level, dim=1)) for k, v in head.items()}
            split_anchors = [list(a.split(per_level)) for a in anchors]
            out["detections"] = self.det.postprocess_detections(split_head, split_anchors, sizes)
        return out

    def _heatmap(
        self, head: dict[str, Tensor], anchors: list[Tensor], grid: Sequence[int], size: Sequence[int]
    ) -> Tensor:
        """(B, 1, H, W) logit of max_a sigmoid(score_a) · soft-inside(decoded box_a), on the coarsest grid."""
        gh, gw = int(grid[0]), int(grid[1])
        sy, sx = size[0] / gh, size[1] / gw
        ys = (torch.arange(gh, device=anchors[0].device) + 0.5) * sy
        xs = (torch.arange(gw, device=anchors[0].device) + 0.5) * sx
        py, px = torch.meshgrid(ys, xs, indexing="ij")
        px, py = px.reshape(1, 1, -1), py.reshape(1, 1, -1)  # (1, 1, P)
        maps = []
        for b, anc in enumerate(anchors):
            box = self.det.box_coder.decode_single(head["bbox_regression"][b], anc)  # (A, 4)
            tau = 0.25 * max(sx, sy)  # edge softness: a quarter of a grid cell
            x1, y1, x2, y2 = (box[:, k].reshape(-1, 1) for k in range(4))
            inside = (
                torch.sigmoid((px[0] - x1) / tau)
                * torch.sigmoid((x2 - px[0]) / tau)
                * torch.sigmoid((py[0] - y1) / tau)
                * torch.sigmoid((y2 - py[0]) / tau)
            )  # (A, P)
            score = torch.sigmoid(head["cls_logits"][b].amax(dim=-1, keepdim=True))  # (A, 1)
            maps.append((score * inside).amax(dim=0).reshape(1, gh, gw))
        prob = torch.stack(maps).clamp(1e-6, 1 - 1e-6)
        return F.interpolate(torch.logit(prob), size=tuple(size), mode="bilinear", align_corners=False)


class _NullBackbone(nn.Module):
    """Placeholder for ``RetinaNet(backbone=...)``: our detector runs its own encoder and never calls this."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - never called
        raise RuntimeError("RetinaNetDetector runs its own encoder")


def build_encoder(
    backbone: str, in_chans: int, pretrained: bool, width: int, stages: int, dilate_c5: bool = False
) -> nn.Module:
    """The backbone by name: ``resnet50`` (paper), ``resnet18``, or ``tiny`` (CPU tests and demo)."""
    if backbone not in BACKBONES:
        raise ConfigError(f"retinanet backbone {backbone!r} is not one of {', '.join(BACKBONES)}")
    if backbone == "tiny":
        if pretrained:
            raise ConfigError("the tiny retinanet backbone has no pretrained weights")
        return TinyC5(in_chans, width, stages, dilate_c5)
    return ResNetStages(backbone, in_chans, pretrained, dilate_c5)


@register_model("retinanet", tiny={"backbone": "tiny", "width": 4, "seg_decoder": True})
def retinanet(
    backbone: str | None = "resnet50",
    pretrained: bool = False,
    in_chans: int = 1,
    num_classes: int = 1,
    seg_decoder: bool = False,
    decoder_width: int = 0,
    dropout: float = 0.0,
    channels_last: bool = False,
    fpn: bool = False,
    width: int = 16,
    stages: int = 3,
    anchor_sizes: Sequence[float] | None = None,
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    score_thresh: float = 0.05,
    detections_per_img: int = 100,
    dilate_c5: bool = False,
) -> RetinaNetDetector:
    """RetinaNet, lesion vs background. Paper: ``backbone="resnet50"``, one C5 level (``fpn=False``).

    ``seg_decoder`` adds the ``mask_logits`` heatmap (off for training: it costs A × grid cells per image);
    ``decoder_width`` and ``channels_last`` are accepted for the shared model config and unused (channels-last
    training: ``train.channels_last``). ``anchor_sizes``
    (pixels, 3 scales × 3 ratios = 9 anchors per location): default 2^(k/3)·32 for ResNets at stride 32, and
    2^(k/3)·(2·stride) for the tiny backbone. ``dilate_c5`` halves C5's stride by dilating the last stage
    (tiny and resnet50): a small-image run where a lesion box must span several C5 cells for the 9 lesion points
    to differ (CoMoTo demo); the default anchor sizes stay those of the undilated stride.
    """
    encoder = build_encoder(backbone or "resnet50", in_chans, pretrained, width, stages, dilate_c5)
    if anchor_sizes is None:
        base = 32.0 if backbone != "tiny" else 2.0 ** (stages + 1)
        anchor_sizes = tuple(round(base * 2 ** (k / 3), 1) for k in range(3))
    if num_classes < 1 or not math.isfinite(dropout):
        raise ConfigError(f"retinanet: num_classes must be ≥ 1, got {num_classes}")
    return RetinaNetDetector(
        encoder, num_classes, fpn, anchor_sizes, aspect_ratios, heatmap=seg_decoder, dropout=dropout,
        score_thresh=score_thresh, detections_per_img=detections_per_img,
    )  # fmt: skip
