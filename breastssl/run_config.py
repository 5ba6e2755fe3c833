"""The top-level config of a training run (``breastssl train --config C``): data, model, strategy, train.

It is loaded with :func:`breastssl.config.load_config` (YAML with ``_base_`` and ``--set`` overrides)
and saved, fully resolved, as ``config.yaml`` in the run directory.
"""

from __future__ import annotations

from pydantic import Field

from .config import Section
from .data.transforms import AugmentConfig
from .engine.config import TrainConfig
from .models.config import ModelConfig
from .strategies.distill import StrategyConfig


class DataConfig(Section):
    """Where the DBT data is and how slices are made from it."""

    manifest: str = Field("data/manifest.csv", description="manifest CSV/Parquet; paths relative to its folder")
    lesions: str | None = Field(None, description="lesions table; None = lesions.csv next to the manifest")
    image_size: tuple[int, int] = Field((896, 640), description="(height, width) slices are resized to")
    neg_stride: int = Field(2, ge=1, description="stride of slices taken from cancer-negative stacks (paper: 2)")
    pos_halfwidth: int = Field(1, ge=0, description="annotated positives: key slice ± this (paper: 1)")
    train_split: str = "train"
    test_split: str = "test"
    cache_mb: float = Field(2048.0, gt=0, description="memory for loaded stacks (least recently used evicted)")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)


class EvalConfig(Section):
    """How the test split is scored after training."""

    aggregation: str = Field("max", pattern="^(max|mean|topk)$", description="slice → stack → breast → exam")
    topk: int = Field(3, ge=1)
    level: str = Field("breast", pattern="^(stack|breast|exam)$", description="the level metrics.json leads with")


class RunConfig(Section):
    """Everything ``breastssl train`` needs."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
