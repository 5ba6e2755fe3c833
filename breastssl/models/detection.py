"""Nodule detectors for ultrasound (seed 004, DESIGN §5.3): torchvision Faster R-CNN, nodule vs background.

The paper uses Faster R-CNN with a VGG16 feature extractor, frozen for the first 5k iterations and then
fine-tuned. Here the backbone is configurable:

- ``vgg16``: VGG16 conv layers up to conv5_3 (stride 16, 512 channels), as in the paper;
- ``resnet50_fpn``: torchvision's ResNet-50-FPN Faster R-CNN;
- ``mobilenet_v3``: MobileNetV3-Large up to stride 16 (112 channels), a light CPU option;
- ``tiny``: four small convolutions (stride 8), for tests and CPU demos.

``pretrained=True`` loads torchvision's ImageNet weights for the backbone (a download; the only network
access); the default is False. It also picks the input normalisation (ImageNet mean/std, else 0.5/0.25),
which ``imagenet_norm`` sets apart, so that a trained detector is rebuilt without a download. Detectors live
in their own small registry (``register_detector``, ``create_detector``, ``list_detectors``): they do not follow
the classifier-segmenter contract of the model registry (their forward takes targets and returns boxes), and
their contract tests are generated from this registry (``tests/us``).

``forward(images, targets=None)``: images (B, 1, H, W) in [0, 1] or a list of (1, H_i, W_i); targets a
list of ``{"boxes": (N_i, 4) x0 y0 x1 y1, "labels": (N_i,) int64}``. In training mode returns
torchvision's loss dict (``loss_classifier``, ``loss_box_reg``, ``loss_objectness``, ``loss_rpn_box_reg``);
in eval mode ``{"boxes": [(K_i, 4)], "scores": [(K_i,)], "labels": [(K_i,)]}``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError

_DETECTORS: dict[str, Callable[..., nn.Module]] = {}


def register_detector(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a detector backbone factory ``(pretrained) -> (body, out_channels, multi_level)``."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _DETECTORS:
            raise ValueError(f"detector backbone {name!r} is already registered")
        _DETECTORS[name] = factory
        return factory

    return wrap


def list_detectors() -> list[str]:
    """Names of the registered detector backbones, sorted."""
    return sorted(_DETECTORS)


class FreezableBackbone(nn.Module):
    """A feature extractor that can be frozen: while ``frozen``, it runs under ``no_grad``.

    Frozen parameters then get no gradient (the optimiser skips them) and the backward pass stops at
    the detection heads, which is also what makes the frozen phase cheap. (B, 3, H, W) → features.
    """

    def __init__(self, body: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.body = body
        self.out_channels = out_channels
        self.frozen = False

    def forward(self, x: Tensor) -> Any:
        if self.frozen:
            with torch.no_grad():
                return self.body(x)
        return self.body(x)


@register_detector("tiny")
def _tiny_backbone(pretrained: bool = False) -> tuple[nn.Module, int, bool]:
    if pretrained:
        raise ConfigError("detector backbone 'tiny' has no pretrained weights")

    def block(i: int, o: int, stride: int = 1) -> nn.Sequential:
        # group norm: detector batches are a few images, too few for batch statistics
        return nn.Sequential(nn.Conv2d(i, o, 3, stride=stride, padding=1, bias=False), nn.GroupNorm(8, o), nn.ReLU())

    body = nn.Sequential(block(3, 16, 2), block(16, 32, 2), block(32, 32), block(32, 64, 2), block(64, 64))
    return body, 64, False


@register_detector("vgg16")
def _vgg16_backbone(pretrained: bool = False) -> tuple[nn.Module, int, bool]:
    from torchvision.models import VGG16_Weights, vgg16

    features = vgg16(weights=VGG16_Weights.IMAGENET1K_V1 if pretrained else None).features
    return features[:-1], 512, False  # up to conv5_3 + ReLU: stride 16, as in the original Faster R-CNN


@register_detector("mobilenet_v3")
def _mobilenet_backbone(pretrained: bool = False) -> tuple[nn.Module, int, bool]:
    from torchvision.models import MobileNet_V3_Large_Weights, mobilenet_v3_large

    features = mobilenet_v3_large(weights=MobileNet_V3_Large_Weights.IMAGENET1K_V1 if pretrained else None).features
    return features[:13], 112, False  # stride 16: ultrasound frames are small, stride 32 would be too coarse


@register_detector("resnet50_fpn")
def _resnet50_fpn_backbone(pretrained: bool = False) -> tuple[nn.Module, int, bool]:
    from torchvision.models import ResNet50_Weights
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    weights = ResNet50_Weights.IMAGENET1K_V1 if pretrained else None
    body = resnet_fpn_backbone(backbone_name="resnet50", weights=weights, trainable_layers=5)
    return body, body.out_channels, True


class NoduleDetector(nn.Module):
    """Faster R-CNN (2 classes: background, nodule) over a :class:`FreezableBackbone`; see the module doc."""

    def __init__(
        self,
        backbone: str = "tiny",
        pretrained: bool = False,
        min_size: int = 128,
        max_size: int = 256,
        anchor_sizes: Sequence[int] = (16, 32, 64, 128),
        representation: int = 256,
        detections_per_image: int = 5,
        score_threshold: float = 0.0,
        proposals: int = 300,
        imagenet_norm: bool | None = None,
    ) -> None:
        super().__init__()
        from torchvision.models.detection import FasterRCNN
        from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
        from torchvision.models.detection.rpn import AnchorGenerator
        from torchvision.ops import MultiScaleRoIAlign

        if backbone not in _DETECTORS:
            close = difflib.get_close_matches(backbone, list(_DETECTORS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown detector backbone {backbone!r}{hint}; choose one of {list_detectors()}")
        body, channels, multi = _DETECTORS[backbone](pretrained)
        self.backbone_name = backbone
        self.backbone = FreezableBackbone(body, channels)
        levels = 5 if multi else 1  # resnet_fpn_backbone returns 4 levels + a max-pooled "pool" level
        sizes = tuple((int(s),) for s in anchor_sizes[:levels]) if multi else (tuple(int(s) for s in anchor_sizes),)
        if multi and len(sizes) < levels:
            sizes = sizes + tuple((2 * sizes[-1][0] * 2**i,) for i in range(levels - len(sizes)))
        anchors = AnchorGenerator(sizes=sizes, aspect_ratios=((0.5, 1.0, 2.0),) * levels)
        names = ["0", "1", "2", "3"] if multi else ["0"]
        pooler = MultiScaleRoIAlign(featmap_names=names, output_size=7, sampling_ratio=2)
        # the input normalisation is not in the state dict: a trained detector rebuilt without downloading its
        # ImageNet weights (pretrained=False) keeps the normalisation it was trained with through imagenet_norm
        imagenet = pretrained if imagenet_norm is None else imagenet_norm
        mean, std = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]) if imagenet else ([0.5] * 3, [0.25] * 3)
        self.rcnn = FasterRCNN(
            self.backbone,
            num_classes=None,
            min_size=min_size,
            max_size=max_size,
            image_mean=mean,
            image_std=std,
            rpn_anchor_generator=anchors,
            box_roi_pool=pooler,
            box_head=TwoMLPHead(channels * 49, representation),
            box_predictor=FastRCNNPredictor(representation, 2),
            rpn_pre_nms_top_n_train=proposals * 2,
            rpn_post_nms_top_n_train=proposals,
            rpn_pre_nms_top_n_test=proposals,
            rpn_post_nms_top_n_test=proposals // 3,
            rpn_batch_size_per_image=64,
            box_batch_size_per_image=64,
            box_score_thresh=score_threshold,
            box_detections_per_img=detections_per_image,
        )

    @staticmethod
    def _three_channels(images: Tensor | Sequence[Tensor]) -> list[Tensor]:
        return [im.expand(3, -1, -1) if im.shape[0] == 1 else im for im in images]

    def forward(self, images: Tensor | Sequence[Tensor], targets: list[dict[str, Tensor]] | None = None) -> dict:
        imgs = self._three_channels(images)
        if self.training:
            if targets is None:
                raise ValueError("NoduleDetector in training mode needs targets (boxes and labels per image)")
            return self.rcnn(imgs, targets)
        dets = self.rcnn(imgs)
        return {k: [d[k] for d in dets] for k in ("boxes", "scores", "labels")}

    def set_backbone_frozen(self, frozen: bool) -> None:
        """Freeze (no gradient, no backward through it) or release the feature extractor."""
        self.backbone.frozen = frozen

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``backbone`` (the feature extractor) and ``heads`` (RPN and box head), for per-group learning rates."""
        backbone = list(self.backbone.parameters())
        ids = {id(p) for p in backbone}
        return {"backbone": backbone, "heads": [p for p in self.parameters() if id(p) not in ids]}


def create_detector(backbone: str = "tiny", **kwargs: Any) -> NoduleDetector:
    """A :class:`NoduleDetector` with the registered ``backbone``."""
    return NoduleDetector(backbone=backbone, **kwargs)
