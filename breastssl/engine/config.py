"""The training section of a run config: optimiser, schedule, precision, intervals, output.

Floats are finite (``Section``); counts are positive and bounded, so a typo such as ``steps: 1e20`` or ``seed: -1``
is a config error naming the key instead of an overflow or a generator error once training has started.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PositiveInt

from ..config import Section, Seed

MAX_STEPS = 10**9  # far beyond any run; a bigger value is a typo (and overflows schedules and progress bars)
MAX_BATCH = 1 << 16
Beta = Annotated[float, Field(ge=0.0, lt=1.0)]  # Adam's running-average factors: 1 or more would never forget


class OptimConfig(Section):
    """Optimiser and its per-group learning-rate multipliers."""

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.012, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD only")
    nesterov: bool = Field(False, description="SGD only")
    weight_decay: float = Field(1e-4, ge=0.0)
    betas: tuple[Beta, Beta] = Field((0.9, 0.999), description="Adam/AdamW only; each in [0, 1)")
    eps: float = Field(1e-8, gt=0.0, description="Adam/AdamW only")
    lr_mult: dict[str, Annotated[float, Field(ge=0.0)]] = Field(
        default_factory=dict, description="learning-rate multiplier per parameter group, e.g. {cls_head: 10}"
    )


class ScheduleConfig(Section):
    """Learning-rate schedule: linear warm-up, then constant, cosine or step decay (per optimiser step)."""

    name: Literal["constant", "cosine", "step"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    warmup_start_factor: float = Field(0.1, gt=0.0, le=1.0, description="lr factor at step 0 of the warm-up")
    min_lr_factor: float = Field(0.0, ge=0.0, le=1.0, description="cosine: lr factor reached at the last step")
    step_size: PositiveInt = Field(1000, description="step: multiply the lr by gamma every step_size steps")
    gamma: float = Field(0.1, gt=0.0)


class TrainConfig(Section):
    """Everything the training loop needs; the model and strategy have their own sections."""

    steps: PositiveInt = Field(1000, le=MAX_STEPS, description="optimiser steps in total (the schedule's length)")
    batch_size: PositiveInt = Field(
        16, le=MAX_BATCH, description="global batch: split evenly over the distributed ranks"
    )
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    amp: Literal["off", "bf16", "fp16"] = Field("off", description="fp16 needs CUDA (it uses a GradScaler)")
    channels_last: bool = Field(
        False, description="channels-last memory format for the student, the strategy's modules and 4-D batch tensors"
    )
    compile: bool = Field(False, description="torch.compile the student for the run (compiles on the first steps)")
    clip_grad_norm: float | None = Field(None, gt=0.0, description="max global gradient norm; None = no clipping")
    ema_decay: float | None = Field(None, ge=0.0, le=1.0, description="keep an EMA of the model; None = none")
    seed: Seed = Field(0, description="seed of weights, sampling and augmentation, 0 to 2**32 - 1")
    deterministic: bool = Field(False, description="deterministic kernels (slower); needed for bit-exact resume")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: int = Field(0, ge=0)
    augment_on: Literal["auto", "loader", "device"] = Field(
        "auto",
        description="where training augmentation runs: per sample in the DataLoader (loader), or batched on the "
        "training device once the batch is there (device: every recipe); auto = device on CUDA, else loader",
    )
    round_steps: PositiveInt | None = Field(None, description="call strategy.before_round every round_steps steps")
    log_every: PositiveInt = 10
    ckpt_every: PositiveInt = 500
    keep_last: PositiveInt = Field(3, description="checkpoints kept on disk (the newest ones)")
    resume: bool = Field(True, description="continue from the newest checkpoint in out_dir if there is one")
    out_dir: str = "runs/train"
    tensorboard: bool = True
    progress: bool = True
