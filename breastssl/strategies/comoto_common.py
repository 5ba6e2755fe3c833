"""What the CoMoTo-family detection strategies share (seed 003; DESIGN §5.4): config, batches, detection loss.

Batches (``breastssl.data.detection_slices``): a plain detection batch ``{"image" (B, 1, H, W), "boxes" [(N_b, 4)
xyxy], "labels" [(N_b,)], "index" (B,)}``, or a paired one ``{"dbt": <batch>, "mammo": <batch>}`` where each
DBT batch comes with an unpaired mammography batch. The student is a ``retinanet`` detector whose forward
returns ``c5``, ``stride`` and torchvision's ``losses`` (DESIGN §4: models return dicts).

Every strategy here trains on ``loss_cls`` (sigmoid focal loss) + ``loss_box`` (L1 box regression), RetinaNet's
own losses, plus its distillation term. Teachers are separate frozen modules in eval mode (never their weights
swapped into the student); a student that "starts from the teacher" is a copy made by
:func:`student_from_teacher`.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from pydantic import Field
from torch import Tensor, nn

from ..config import Section
from ..data.detection_slices import targets_of
from ..errors import ConfigError


class ComotoConfig(Section):
    """The strategy section of a CoMoTo-family run."""

    name: str = Field("comoto", description="comoto | image_kd | pretraining | comoto_teacher")
    temperature: float = Field(4.0, gt=0, description="KD temperature T (paper: 4)")
    alpha: float = Field(2.0, ge=0, description="KD weight α (paper: 2)")
    impa: bool = Field(False, description="comoto_teacher: add intra-modal point alignment (ImPA)")
    impa_beta: float = Field(2.0, ge=0, description="ImPA weight β (paper: 2)")
    neg_per_image: int = Field(16, ge=1, description="ImPA negatives: random C5 cells outside the boxes per image")
    proj_init: str = Field("identity", pattern="^(identity|default)$", description="init of LsKD's Linear(9, 9)")


def student_from_teacher(teacher: nn.Module) -> nn.Module:
    """A trainable copy of the teacher: the CoMoTo student's initialisation (the teacher itself stays frozen)."""
    student = copy.deepcopy(teacher)
    return student.train().requires_grad_(True)


class DetectionStrategy:
    """Base of the CoMoTo family: detection loss on the student's batch; subclasses add a distillation term."""

    name = "detection_base"
    uses_teacher = False

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None, cfg: Any = None) -> None:
        self.cfg = cfg if cfg is not None else ComotoConfig(name=self.name)
        self.student = student
        self.teacher: nn.Module | None = None
        if self.uses_teacher:
            if teacher is None:
                raise ConfigError(f"strategy {self.name!r} distils from a mammography teacher: give it one")
            if teacher is student:
                raise ConfigError("the teacher must be a separate module, not the student itself")
            self.teacher = teacher.eval().requires_grad_(False)

    @staticmethod
    def own_batch(batch: dict[str, Any], key: str = "dbt") -> dict[str, Any]:
        """The student's part of a paired batch (``key``), or the batch itself when it is not paired."""
        return batch.get(key, batch)

    def detect(self, batch: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Tensor]]:
        """Student forward with targets → (output dict, {"loss_cls", "loss_box"})."""
        out = self.student(batch["image"], targets_of(batch))
        losses = out["losses"]
        return out, {"loss_cls": losses["classification"], "loss_box": losses["bbox_regression"]}

    def teacher_features(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The frozen teacher's output on (the mammography part of) a batch, without gradient."""
        assert self.teacher is not None
        self.teacher.eval()  # batch-norm statistics of the frozen teacher never move
        with torch.no_grad():
            features = getattr(self.teacher, "forward_features", None)
            if features is None:
                return self.teacher(batch["image"])
            # LsKD and image KD read only C5: skip the head, anchors and post-processing (comoto step 1.2–1.4×)
            feats = features(batch["image"])
            return {"features": feats, "c5": feats[-1], "stride": self.teacher.stride}

    def to(self, device: torch.device) -> None:
        if self.teacher is not None:
            self.teacher.to(device)

    @staticmethod
    def total(parts: dict[str, Tensor]) -> dict[str, Tensor]:
        """``{"loss": Σ loss_* parts, **parts}``."""
        return {"loss": sum(v for k, v in parts.items() if k.startswith("loss_")), **parts}

    def describe(self) -> dict[str, Any]:
        """The settings a results table should state."""
        return {"strategy": self.name, "teacher": self.uses_teacher, **self.cfg.model_dump(exclude={"name"})}
