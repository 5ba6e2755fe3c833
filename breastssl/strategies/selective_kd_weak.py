"""SelectiveKD* (SelectiveKD paper, seed 000, §3.3 setting 5): selection inside cancer-positive breasts.

Paper: Dillard et al., "SelectiveKD", arXiv:2409.16581 (2024), eq. 1 with weak annotations.

Slices: annotated as in the baseline; weakly labelled cancer-negative breasts as annotated negative stacks
(stride 2); inside a cancer-POSITIVE breast (weak, or the non-key slices of an annotated cancer stack) a
slice trains only if the teacher's score on the non-augmented slice f(x;θt) > T, and then with both losses::

    annotated / weak negative:       L_sup(y, f(x̃;θ)) + α·L_KD(f(x̃;θt), f(x̃;θ))        (cls and seg)
    weak positive, f(x;θt) > T:      BCE(y_breast = 1, f_cls(x̃;θ)) + α_clf·L_KD,cls + α_seg·L_KD,seg
                                     (no mask exists, so the segmentation head gets the KD term only)
    weak positive, not selected:     not trained on

Threshold. Paper §3.2 says "0.7 when using weak annotations and 0.1 without"; §3.4 says the weak-label
optimum is the lower one, "0.1 and 0.7, respectively", and explains it: with weak labels selection runs
only inside cancer-positive breasts, where a low T admits more (mostly true-positive) slices. DESIGN §5.1
follows §3.4. Default here: T = 0.1. Other defaults from the paper: α_clf = 1, α_seg = 25, stride 2.
"""

from __future__ import annotations

from .distill import SliceStrategy, StrategyConfig
from .registry import register_strategy


@register_strategy("selective_kd_weak", StrategyConfig, batch="slice", family="dbt")
class SelectiveKDWeak(SliceStrategy):
    uses_teacher = True
    weak_labels = True
    use_pool = True
    selective = True
    supervise_weak = True
    default_threshold = 0.1
