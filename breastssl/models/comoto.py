"""The CoMoTo detector (seed 003; DESIGN §5.4): one place that turns detector settings into a ``retinanet``.

Shared by ``breastssl experiment comoto`` (its flat settings), the ``comoto`` run recipe (its ``model`` section,
:class:`DetectorConfig`), the run folder's ``model.json`` and ``breastssl export``, so that a teacher, its
students and every reloaded copy are built with the same keyword arguments.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from torch import nn

from ..config import Section

SCORE_THRESH = 0.001  # keep low-scoring boxes: the FROC sweeps every operating point
DETECTIONS_PER_IMG = 20  # per slice / mammogram, before merging across slices
ARCH_KEYS = ("backbone", "width", "stages", "pretrained", "fpn", "dilate_c5", "anchor_sizes")


class DetectorConfig(Section):
    """RetinaNet settings of a CoMoTo run (the ``model`` section); defaults as the experiment's."""

    backbone: str = Field("tiny", description="resnet50 (paper), resnet18 or tiny (CPU)")
    width: int = Field(8, ge=1, description="tiny backbone: channels of its first stage")
    stages: int = Field(3, ge=1, description="tiny backbone: stride-2 stages (C5 stride 2^stages)")
    pretrained: bool = Field(False, description="ImageNet weights for resnet backbones (downloads once)")
    fpn: bool = Field(False, description="an FPN over the last three stages; the paper uses C5 alone")
    dilate_c5: bool = Field(False, description="C5 at half the stride (small images: lesions span several cells)")
    anchor_sizes: tuple[float, float, float] | None = Field(
        (10.0, 14.0, 20.0), description="anchor sizes in input pixels; None = the backbone's default"
    )
    score_thresh: float = Field(SCORE_THRESH, ge=0.0, lt=1.0, description="detections kept above this score")
    detections_per_img: int = Field(DETECTIONS_PER_IMG, ge=1, description="detections kept per image / slice")


def detector_kwargs(cfg: Any) -> dict[str, Any]:
    """``create_model("retinanet", **kwargs)`` arguments of a :class:`DetectorConfig` or of any settings object
    with the same attributes (the experiment's config: score threshold and detections per image default)."""
    kwargs = {key: getattr(cfg, key) for key in ARCH_KEYS}
    kwargs["score_thresh"] = float(getattr(cfg, "score_thresh", SCORE_THRESH))
    kwargs["detections_per_img"] = int(getattr(cfg, "detections_per_img", DETECTIONS_PER_IMG))
    return kwargs


def comoto_detector(cfg: Any) -> nn.Module:
    """The RetinaNet ``cfg`` describes (see :func:`detector_kwargs`); its initial weights follow torch's RNG."""
    from . import create_model

    return create_model("retinanet", **detector_kwargs(cfg))
