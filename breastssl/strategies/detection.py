"""Detector training (ultrasound two-stage method, seed 004, stage 1): Faster R-CNN on the basic set's boxes.

Paper: "Semi-supervised deep learning for ultrasound breast nodule detection and classification"
(medRxiv 2020.04.24.20078816), Methods, Network training (1).

Loss: torchvision's Faster R-CNN losses, summed::

    L = L_objectness + L_rpn_box_reg + L_classifier + L_box_reg

Schedule from the paper: the feature extractor (VGG16, ImageNet weights) is frozen while the region
proposal and box layers train, for the first 5 000 iterations; then everything is fine-tuned (70 000
iterations, momentum SGD lr 0.001 decaying exponentially, momentum 0.9, batch 128). ``freeze_steps``
takes the paper's 5 000 by default; demo configs scale it with the run length.

The strategy plugs into the engine's loop like every other (``loss(batch, step) -> dict``). It is not
in the strategy registry: the registry's contract tests feed classification batches, which a detector
cannot take; ``tests/us`` holds its contract tests (a few steps, finite losses, the freeze schedule).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor, nn

from ..config import Section


class DetectionConfig(Section):
    """The detector's training settings."""

    freeze_steps: int = Field(5000, ge=0, description="steps with a frozen backbone before fine-tuning (paper: 5000)")


class DetectionStrategy:
    """Stage 1 of the two-stage method: detector losses, backbone frozen for the first ``freeze_steps`` steps.

    batch: ``images`` a list of (1, H_i, W_i) tensors in [0, 1]; ``targets`` a list of ``{"boxes": (N_i, 4)
    x0 y0 x1 y1, "labels": (N_i,) int64}`` (N_i = 0 for images without a nodule).
    """

    name = "detection"
    uses_teacher = False

    def __init__(self, detector: nn.Module, teacher: Any = None, cfg: DetectionConfig | None = None) -> None:
        self.cfg = cfg if isinstance(cfg, DetectionConfig) else DetectionConfig()
        self.detector = detector

    def _set_frozen(self, frozen: bool) -> None:
        model = getattr(self.detector, "module", self.detector)  # the plain detector under DDP
        model.set_backbone_frozen(frozen)

    def loss(self, batch: dict[str, Any], step: int) -> dict[str, Tensor]:
        self._set_frozen(step < self.cfg.freeze_steps)
        parts = self.detector(batch["images"], batch["targets"])
        total = torch.stack([v for v in parts.values()]).sum()
        return {"loss": total, **parts}

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.name, "freeze_steps": self.cfg.freeze_steps}


def detection_collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Samples ``{"image": (1, H, W), "boxes": (N, 4), ...}`` → ``{"images": [...], "targets": [...], "index"}``."""
    return {
        "images": [it["image"] for it in items],
        "targets": [
            {"boxes": it["boxes"].float(), "labels": torch.ones(len(it["boxes"]), dtype=torch.int64)} for it in items
        ],  # fmt: skip
        "index": torch.tensor([int(it["index"]) for it in items]),
    }
