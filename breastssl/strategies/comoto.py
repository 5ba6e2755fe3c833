"""CoMoTo with LsKD (seed 003; DESIGN §5.4): lesion-specific distillation from a mammography teacher to DBT.

Paper: "CoMoTo: Unpaired Cross-Modal Lesion Distillation Improves Breast Lesion Detection in Tomosynthesis"
(arXiv, July 2024), with the details of the authors' public code.

The DBT student (a copy of the teacher at the start, :func:`student_from_teacher`) trains on a DBT batch;
the frozen mammography teacher sees an UNPAIRED mammography batch. Lesion points (``losses.comoto``): the 9
C5 locations of every GT box, averaged over boxes and images → (C, 9) per side. Loss::

    L = L_focal + L_box                                                 (RetinaNet, DBT batch)
      + α·T² · mean_c KL( softmax(t_c / T) ‖ softmax(P(s)_c / T) )     (LsKD, over the 9 points)

s = student points (DBT), t = teacher points (mammography), P = a learnable Linear(9, 9) owned by this
strategy (optimised with the student through ``trainable_parameters``; identity at the start by default so
the first steps distil the raw points). Background features are never distilled.

Defaults from the paper: T = 4, α = 2. A DBT batch without boxes (all negative slices) or a mammography batch
without boxes gives LsKD = 0 for that step (with the graph kept).

Logged with the loss parts (``metrics.jsonl``): ``loss_lskd``, ``lskd_teacher_entropy`` (mean over channels of
the entropy of softmax(t_c / T) over the 9 points; a step whose mammography batch has no box repeats the last
value, so every rank logs the same keys) and
``lskd_entropy_max`` = log 9, its value when the 9 points are indistinguishable.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..losses.comoto import N_POINTS, lesion_points, lskd_loss, point_entropy
from .comoto_common import ComotoConfig, DetectionStrategy
from .registry import register_strategy


@register_strategy("comoto", ComotoConfig, batch="detection", family="comoto")
class CoMoToLsKD(DetectionStrategy):
    uses_teacher = True

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None, cfg: Any = None) -> None:
        super().__init__(student, teacher, cfg)
        self.proj = nn.Linear(N_POINTS, N_POINTS)
        if self.cfg.proj_init == "identity":
            with torch.no_grad():
                self.proj.weight.copy_(torch.eye(N_POINTS))
                self.proj.bias.zero_()

    def trainable_parameters(self) -> dict[str, list[nn.Parameter]]:
        return {"lskd_proj": list(self.proj.parameters())}

    def to(self, device: torch.device) -> None:
        super().to(device)
        self.proj.to(device)

    def state_dict(self) -> dict[str, Any]:
        return {"proj": self.proj.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.proj.load_state_dict(state["proj"])

    def loss(self, batch: dict[str, Any], step: int) -> dict[str, Tensor]:
        dbt, mammo = self.own_batch(batch, "dbt"), batch["mammo"]
        out, parts = self.detect(dbt)
        t_out = self.teacher_features(mammo)
        s_pts = lesion_points(out["c5"], dbt["boxes"], out["stride"])
        t_pts = lesion_points(t_out["c5"], mammo["boxes"], t_out["stride"])
        if s_pts is None or t_pts is None:
            lskd = out["c5"].sum() * 0.0 + sum(p.sum() for p in self.proj.parameters()) * 0.0
        else:
            lskd = lskd_loss(s_pts, t_pts, self.proj, self.cfg.temperature, self.cfg.alpha)
        parts["loss_lskd"] = lskd
        if t_pts is not None:
            self._entropy = point_entropy(t_pts, self.cfg.temperature)
        # every step logs the same keys: under DDP the parts are all-reduced as one vector, so a key missing on
        # one rank would misalign it; a step without teacher points repeats the last entropy (log 9 before any)
        parts["lskd_teacher_entropy"] = getattr(self, "_entropy", math.log(N_POINTS))
        parts["lskd_entropy_max"] = math.log(N_POINTS)
        return self.total(parts)
