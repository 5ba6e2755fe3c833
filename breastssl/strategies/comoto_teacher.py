"""CoMoTo's mammography teacher, with ImPA as an option (seed 003; DESIGN §5.4).

Paper: "CoMoTo: Unpaired Cross-Modal Lesion Distillation Improves Breast Lesion Detection in Tomosynthesis"
(arXiv, July 2024), Intra-modal Point Alignment, with the details of the authors' public code.

The teacher is a RetinaNet (C5) trained on mammograms with boxes. With ImPA, the lesion point vectors of the
batch (9 per GT box, bilinear on C5) are pulled together and pushed away from C5 vectors at random cells
outside every box, so that the lesion features LsKD later distils are consistent across lesions::

    L = L_focal + L_box
      + β · [ mean_{i≠j} relu(1 − cos(pos_i, pos_j)) + mean_{i,j} relu(cos(pos_i, neg_j)) ]   (if impa)

Defaults from the paper: β = 2 (``strategy.impa_beta``); ImPA off unless ``strategy.impa`` is set.
``neg_per_image`` = 16 negatives per image (the paper does not state a number).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..losses.comoto import impa_loss, impa_vectors
from .comoto_common import ComotoConfig, DetectionStrategy
from .registry import register_strategy


@register_strategy("comoto_teacher", ComotoConfig, batch="detection", family="comoto")
class CoMoToTeacher(DetectionStrategy):
    uses_teacher = False

    def loss(self, batch: dict[str, Any], step: int) -> dict[str, Tensor]:
        mammo = self.own_batch(batch, "mammo")
        out, parts = self.detect(mammo)
        if self.cfg.impa:
            pos, neg = impa_vectors(out["c5"], mammo["boxes"], out["stride"], self.cfg.neg_per_image)
            parts["loss_impa"] = impa_loss(pos, neg, self.cfg.impa_beta) + out["c5"].sum() * 0.0
        return self.total(parts)
