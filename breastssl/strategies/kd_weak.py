"""KD* (SelectiveKD paper, seed 000, §3.3 setting 3): KD with weak (breast-level) labels.

Paper: Dillard et al., "SelectiveKD", arXiv:2409.16581 (2024).

Slices: annotated as in the baseline; a weakly labelled cancer-NEGATIVE breast counts like an annotated
negative stack (§2.1: every slice negative, stride 2); a weakly labelled cancer-POSITIVE breast gives
every one of its slices, with the KD loss only (which slice shows the lesion is unknown).

Loss per slice (x̃ augmented; teacher f(·;θt) frozen, on the same x̃; σ = sigmoid)::

    annotated / weak negative: BCE(y, f_cls) + BCE_pix(m, f_seg) + α_clf·MSE(σ f_cls) + α_seg·MSE_pix(σ f_seg)
    weak positive breast:      α_clf·MSE(σ f_cls(x̃;θt), σ f_cls(x̃;θ)) + α_seg·MSE_pix(σ f_seg(...))

Defaults from the paper (§3.2): α_clf = 1, α_seg = 25; negative stride 2.
"""

from __future__ import annotations

from .distill import SliceStrategy, StrategyConfig
from .registry import register_strategy


@register_strategy("kd_weak", StrategyConfig, batch="slice", family="dbt")
class KDWeak(SliceStrategy):
    uses_teacher = True
    weak_labels = True
    use_pool = True
