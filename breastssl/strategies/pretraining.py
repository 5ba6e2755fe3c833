"""Pretraining baseline of CoMoTo (seed 003; DESIGN §5.4): teacher initialisation only, DBT detection loss only.

Paper: "CoMoTo: Unpaired Cross-Modal Lesion Distillation Improves Breast Lesion Detection in Tomosynthesis"
(arXiv, July 2024), baseline "pretraining".

The DBT student starts from the mammography teacher's weights (a copy, made before training by
``student_from_teacher``) and trains on DBT alone::

    L = L_focal + L_box      (RetinaNet's losses on the DBT batch; no teacher at training time)

The same strategy on a student NOT initialised from the teacher is the "DBT-only" row of the experiment.
A paired batch (``{"dbt", "mammo"}``) is accepted and its mammography half ignored, so every row of the
experiment reads the same batches. No paper defaults beyond the detector's.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .comoto_common import ComotoConfig, DetectionStrategy
from .registry import register_strategy


@register_strategy("pretraining", ComotoConfig, batch="detection", family="comoto")
class Pretraining(DetectionStrategy):
    uses_teacher = False

    def loss(self, batch: dict[str, Any], step: int) -> dict[str, Tensor]:
        _, parts = self.detect(self.own_batch(batch, "dbt"))
        return self.total(parts)
