"""The one training loop and what it is made of: optimisers, schedules, EMA, checkpoints, ranks.

A training method plugs in as a strategy (``loss(batch, step) -> dict``, see ``strategy.py``) and
:func:`fit` does everything else.
"""

from __future__ import annotations

from ..models.ema import EMA
from .checkpoint import checkpoint_path, latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from .config import OptimConfig, ScheduleConfig, TrainConfig
from .data import BatchSampler, BatchStream, DataPosition, ShardedBatchSampler, epoch_batches, to_device
from .distributed import (
    DistContext,
    all_gather_objects,
    all_reduce_mean,
    barrier,
    broadcast_tensors,
    cleanup_distributed,
    gather_variable,
    init_distributed,
    shard_range,
    sync_gradients,
)
from .logger import RunLogger
from .loop import FitResult, NonFiniteLossError, fit
from .optim import LrFactor, build_optimizer, build_scheduler, group_lrs, named_groups
from .seed import capture_rng, restore_rng, seed_everything
from .strategy import Strategy

__all__ = [
    "EMA",
    "BatchSampler",
    "BatchStream",
    "DataPosition",
    "DistContext",
    "FitResult",
    "LrFactor",
    "NonFiniteLossError",
    "OptimConfig",
    "RunLogger",
    "ScheduleConfig",
    "ShardedBatchSampler",
    "Strategy",
    "TrainConfig",
    "all_gather_objects",
    "all_reduce_mean",
    "barrier",
    "broadcast_tensors",
    "build_optimizer",
    "build_scheduler",
    "capture_rng",
    "checkpoint_path",
    "cleanup_distributed",
    "epoch_batches",
    "fit",
    "gather_variable",
    "group_lrs",
    "init_distributed",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "named_groups",
    "restore_rng",
    "save_checkpoint",
    "seed_everything",
    "shard_range",
    "sync_gradients",
    "to_device",
]
