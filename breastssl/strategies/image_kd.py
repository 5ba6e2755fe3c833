"""Image-level KD baseline of CoMoTo (seed 003; DESIGN §5.4): distil the whole C5 map, not the lesion points.

Paper: "CoMoTo: Unpaired Cross-Modal Lesion Distillation Improves Breast Lesion Detection in Tomosynthesis"
(arXiv, July 2024), baseline "image-level KD".

Same setting as LsKD (student initialised from the teacher, DBT batch paired with an unpaired mammography
batch, frozen teacher on the mammography batch), but the distilled quantity is image-level: each side's C5
map is global-average-pooled and averaged over its batch → (C,), and::

    L = L_focal + L_box + α·T² · KL( softmax(t / T) ‖ softmax(s / T) )      (over the C channels)

Why this form: the data are unpaired, so there is no per-image teacher target for a DBT slice (an MSE between
the logits of two different images means nothing); a channel distribution of pooled features is the image-level
summary both modalities share, and using the same KL, T = 4 and α = 2 as LsKD leaves "lesion points vs whole
image" as the only difference between the two rows. Background dominates the pooled features: that is exactly
what the paper argues against.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..losses.comoto import image_kd_loss
from .comoto_common import ComotoConfig, DetectionStrategy
from .registry import register_strategy


@register_strategy("image_kd", ComotoConfig, batch="detection", family="comoto")
class ImageKD(DetectionStrategy):
    uses_teacher = True

    def loss(self, batch: dict[str, Any], step: int) -> dict[str, Tensor]:
        dbt, mammo = self.own_batch(batch, "dbt"), batch["mammo"]
        out, parts = self.detect(dbt)
        t_out = self.teacher_features(mammo)
        parts["loss_kd"] = image_kd_loss(out["c5"], t_out["c5"], self.cfg.temperature, self.cfg.alpha)
        return self.total(parts)
