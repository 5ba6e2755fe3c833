"""Evaluation metrics as pure functions over arrays (DESIGN §4, §6).

Degenerate input (one class only) gives NaN with a warning; malformed input raises ``ValueError``
naming the shapes or the offending rows.
"""

from .aggregate import aggregate_scores, describe, to_level, truth_at_level
from .bootstrap import bootstrap_ci
from .froc import (
    FPPI_TARGETS,
    FrocResult,
    box_iou,
    froc_2d,
    froc_2d_maps,
    froc_from_hits,
    match_2d,
    regions_from_map,
)
from .froc_dbt import dbt_volume_counts, froc_dbt, froc_dbt_curves, match_dbt, weighted_froc_dbt
from .roc import DelongTest, delong_ci, delong_test, delong_variance, roc_auc, roc_curve_points
from .threshold import (
    accuracy,
    classification_report_metrics,
    sensitivity,
    sensitivity_at_specificity,
    specificity,
    youden_threshold,
)

__all__ = [
    "FPPI_TARGETS",
    "DelongTest",
    "FrocResult",
    "accuracy",
    "aggregate_scores",
    "bootstrap_ci",
    "box_iou",
    "classification_report_metrics",
    "delong_ci",
    "delong_test",
    "delong_variance",
    "dbt_volume_counts",
    "describe",
    "froc_2d",
    "froc_2d_maps",
    "froc_dbt",
    "froc_dbt_curves",
    "froc_from_hits",
    "match_2d",
    "match_dbt",
    "regions_from_map",
    "roc_auc",
    "roc_curve_points",
    "sensitivity",
    "sensitivity_at_specificity",
    "specificity",
    "to_level",
    "truth_at_level",
    "weighted_froc_dbt",
    "youden_threshold",
]
