"""Inference over whole studies: per-slice detection of DBT volumes merged into volume predictions."""

from __future__ import annotations

from .dbt_merge import PRED_COLUMNS, detect_volume, merge_slices, predict_volumes

__all__ = ["PRED_COLUMNS", "detect_volume", "merge_slices", "predict_volumes"]
