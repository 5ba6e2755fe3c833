"""KD (SelectiveKD paper, seed 000, §3.3 setting 2): distillation on every slice, weak labels ignored.

Paper: Dillard et al., "SelectiveKD", arXiv:2409.16581 (2024), eq. 1 without the selection.

Loss per slice (x̃ augmented; f(·;θt) frozen teacher on the same x̃; σ = sigmoid)::

    annotated:   BCE(y, f_cls) + BCE_pix(m, f_seg) + α_clf (σ f_cls(x̃;θt) − σ f_cls(x̃;θ))²
                 + α_seg mean_pix (σ f_seg(x̃;θt) − σ f_seg(x̃;θ))²
    unannotated: the two KD terms only (every slice of the weak stacks, treated as unannotated, and
                 the non-key slices of annotated cancer stacks)

Defaults from the paper (§3.2): α_clf = 1, α_seg = 25; negative stride 2.
"""

from __future__ import annotations

from .distill import SliceStrategy, StrategyConfig
from .registry import register_strategy


@register_strategy("kd", StrategyConfig, batch="slice", family="dbt")
class KD(SliceStrategy):
    uses_teacher = True
    use_pool = True
