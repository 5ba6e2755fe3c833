"""Inference over whole studies: per-slice detection of DBT volumes merged into volume predictions, and
DBT classification with a training run (``predict_dbt``, behind ``breastssl predict --run``)."""

from __future__ import annotations

from .dbt_merge import PRED_COLUMNS, detect_volume, merge_slices, predict_volumes
from .dbt_predict import predict_dbt

__all__ = ["PRED_COLUMNS", "detect_volume", "merge_slices", "predict_dbt", "predict_volumes"]
