"""SelectiveKD (SelectiveKD paper, seed 000, §2.2 and §3.3 setting 4): KD on teacher-selected slices.

Paper: Dillard et al., "SelectiveKD", arXiv:2409.16581 (2024), eq. 1.

Like KD (weak labels ignored), but an unannotated slice x trains only if the teacher's score on the
NON-augmented slice passes the threshold, f(x;θt) > T (scores computed once, before training)::

    annotated:                      L_sup(y, f(x̃;θ)) + α·L_KD(f(x̃;θt), f(x̃;θ))
    unannotated, f(x;θt) > T:       α·L_KD(f(x̃;θt), f(x̃;θ))
    unannotated, not selected:      not trained on

L_sup = BCE (cls and per-pixel seg), L_KD = MSE between probabilities; α_clf = 1, α_seg = 25.

Threshold. The paper contradicts itself: §3.2 says T is "fixed to 0.7 when using weak annotations and
0.1 without", while §3.4 says the optimum "when using weak annotations was found to be lower than that
without using weak annotations (0.1 and 0.7, respectively)" and explains why: without weak labels the
teacher's scores are thresholded over the whole unannotated pool, cancer-negative breasts included, so a
high T is needed to keep false-positive slices out. DESIGN §5.1 agrees with §3.4. Default here: T = 0.7
(``strategy.threshold`` overrides it).
"""

from __future__ import annotations

from .distill import SliceStrategy, StrategyConfig
from .registry import register_strategy


@register_strategy("selective_kd", StrategyConfig, batch="slice", family="dbt")
class SelectiveKD(SliceStrategy):
    uses_teacher = True
    use_pool = True
    selective = True
    default_threshold = 0.7
