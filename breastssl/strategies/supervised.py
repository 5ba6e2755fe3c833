"""Baseline (SelectiveKD paper, seed 000, §3.3 setting 1): supervised on annotated slices only.

Paper: Dillard et al., "SelectiveKD: A semi-supervised framework for cancer detection in DBT
through Knowledge Distillation and Pseudo-labeling", arXiv:2409.16581 (2024).

Loss per annotated slice x (x̃ its augmented view, f(·;θ) the student)::

    L = BCE(y, f_cls(x̃;θ)) + mean_pixels BCE(m, f_seg(x̃;θ))

Slices: key slice ± 1 of annotated cancer stacks (label 1, lesion mask), every 2nd slice of annotated
cancer-negative stacks (label 0, empty mask). No teacher. This model is the teacher of the other four.
Defaults from the paper: negative-stack stride 2, key slice ± 1.
"""

from __future__ import annotations

from .distill import SliceStrategy, StrategyConfig
from .registry import register_strategy


@register_strategy("supervised", StrategyConfig, batch="slice", family="dbt")
class Supervised(SliceStrategy):
    uses_teacher = False
    use_pool = False
