"""The one training loop (DESIGN §4): the only place with backward, optimiser steps, AMP, gradient
clipping, the stop on a non-finite loss, checkpointing and distributed setup.

It knows nothing about any method: a strategy turns a batch into named losses (see ``strategy.py``)
and the loop does the rest. Read :func:`fit` top to bottom: setup, resume, then one block per step.

Exact resume: a checkpoint holds the model, optimiser, scheduler, scaler, EMA, strategy state, the
RNG states of every rank and the data position (epoch, batch index) of a deterministic sampler, so
a killed run restarted with the same command continues with the same batches and random numbers.
Random augmentation inside DataLoader workers is the exception: workers are re-seeded per epoch, so
transforms that must resume exactly should seed from the sample index and epoch.

Distributed: with more than one rank the student is wrapped in ``DistributedDataParallel`` and
every attribute of the strategy that holds the student is pointed at the wrapper for the run (the
strategy contract: it holds the student and calls it in ``loss``), so the strategy's one forward
per step goes through DDP and ``backward`` averages the gradients, overlapped with the backward
pass. A strategy sets ``ddp_find_unused_parameters = False`` when every step uses all of the
student's outputs (the default, True, is the safe one). The strategy's own trainable parameters
stay outside DDP and are averaged with :func:`sync_gradients`.

Fast paths, all off by default (``benchmarks/bench_strategies.py --fastpaths`` measures each):
``train.amp`` (bf16/fp16 autocast around the strategy's forward), ``train.channels_last`` (NHWC weights and
batches: :func:`channels_last_modules`) and ``train.compile`` (``torch.compile`` of the student, rebound on
the strategy like the DDP wrapper: :func:`compile_student`).

Batch transform: ``fit(..., batch_transform=fn)`` calls ``fn(batch, step)`` on every batch once it is on the
device, before channels-last and the strategy's loss: augmentation on the training device
(``train.augment_on=device``, ``data/device_augment.py``). It must draw its random numbers from a generator seeded
by the step (not from the global RNG), so a resumed run transforms step s exactly as the uninterrupted run did.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from ..config import save_config
from ..errors import ConfigError, UserError
from ..models.ema import EMA
from .checkpoint import checkpoint_path, latest_checkpoint, load_checkpoint, prune_checkpoints, save_checkpoint
from .config import TrainConfig
from .data import BatchSampler, BatchStream, DataPosition, ShardedBatchSampler, to_device
from .distributed import (
    DistContext,
    all_gather_objects,
    all_reduce_mean,
    barrier,
    broadcast_tensors,
    init_distributed,
    sync_gradients,
)
from .logger import RunLogger, progress_bar
from .optim import LrFactor, build_optimizer, build_scheduler, group_lrs, named_groups
from .seed import capture_rng, restore_rng, seed_everything
from .strategy import check_parts, optional_hook, strategy_groups

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
COMPILE_OPTIONS: dict[str, Any] = {}  # keyword arguments of torch.compile for train.compile (tests: backend="eager")
CHECKPOINT_FORMAT = 1


class NonFiniteLossError(UserError):
    """Training stopped because a loss became NaN or infinite."""


@dataclass
class TrainState:
    """Everything that changes while training and goes into a checkpoint."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: EMA | None
    strategy: Any
    step: int = 0
    position: DataPosition = field(default_factory=DataPosition)


@dataclass
class FitResult:
    """What :func:`fit` returns: the final step, the last step's metrics, the last checkpoint, the EMA."""

    step: int
    metrics: dict[str, float]
    checkpoint: Path | None
    ema: EMA | None = None


def fit(
    model: nn.Module,
    strategy: Any,
    dataset: Dataset,
    cfg: TrainConfig,
    *,
    batch_sampler: BatchSampler | None = None,
    collate_fn: Any = None,
    run_config: BaseModel | None = None,
    dist_ctx: DistContext | None = None,
    batch_transform: Callable[[Any, int], Any] | None = None,
) -> FitResult:
    """Train ``model`` with ``strategy`` on ``dataset`` for ``cfg.steps`` optimiser steps.

    ``model`` is the student: the module the strategy calls, whose parameters (plus the strategy's
    ``trainable_parameters()``) are optimised. ``batch_sampler`` defaults to shuffled global batches
    of ``cfg.batch_size`` split over the ranks. ``run_config`` (default ``cfg``) is saved as
    ``config.yaml`` in the run directory. Resumes from the newest checkpoint there if ``cfg.resume``.
    ``batch_transform(batch, step)``, if given, transforms each batch on the device (see the module doc).
    """
    # ---- setup: ranks, device, seeds -------------------------------------------------------------
    ctx = dist_ctx or init_distributed(cfg.device)
    if cfg.amp == "fp16" and ctx.device.type != "cuda":
        raise ConfigError("train.amp=fp16 needs CUDA (it uses a GradScaler); use bf16 on CPU")
    seed_everything(cfg.seed + ctx.rank, cfg.deterministic)  # per-rank streams: dropout differs per rank
    out_dir = Path(cfg.out_dir)
    model.to(ctx.device)
    if (to := optional_hook(strategy, "to")) is not None:
        to(ctx.device)
    if cfg.channels_last:  # before the optimiser and the EMA copy are made, so their state takes the same layout
        channels_last_modules(model, strategy)

    # ---- what is trained, and how ------------------------------------------------------------------
    groups = {**named_groups(model), **strategy_groups(strategy)}
    params = [p for group in groups.values() for p in group if p.requires_grad]
    own = [p for group in strategy_groups(strategy).values() for p in group if p.requires_grad]
    broadcast_tensors([*params, *model.buffers()], ctx)  # every rank starts from rank 0's weights, as DDP does
    optimizer = build_optimizer(groups, cfg.optim)
    state = TrainState(
        model=model,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg.schedule, cfg.steps),
        scaler=torch.amp.GradScaler(ctx.device.type, enabled=cfg.amp == "fp16"),
        ema=EMA(model, cfg.ema_decay) if cfg.ema_decay is not None else None,
        strategy=strategy,
    )

    # ---- resume (RNG last: nothing after it may draw random numbers before the first step) ---------
    last_ckpt = latest_checkpoint(out_dir)
    if last_ckpt is not None and not cfg.resume:
        # a fresh run would interleave its checkpoints with the old ones and prune the wrong ones
        raise UserError(f"{out_dir} already holds checkpoints ({last_ckpt.name}): resume, or choose a new out_dir")
    if last_ckpt is not None:
        # loaded on the CPU: load_state_dict copies onto each parameter's device, and RNG states must stay there
        restore_state(state, load_checkpoint(last_ckpt, "cpu"), cfg, ctx)
    if ctx.is_main:
        save_config(run_config if run_config is not None else cfg, out_dir / "config.yaml")
    logger = RunLogger(out_dir, ctx.is_main, cfg.tensorboard, state.step)
    sampler = batch_sampler or ShardedBatchSampler(
        len(dataset), cfg.batch_size, seed=cfg.seed, rank=ctx.rank, world_size=ctx.world_size
    )
    stream = BatchStream(
        dataset, sampler, state.position, collate_fn=collate_fn, num_workers=cfg.num_workers, seed=cfg.seed,
        pin_memory=ctx.device.type == "cuda",
    )  # fmt: skip
    before_round = optional_hook(strategy, "before_round")
    after_step = optional_hook(strategy, "after_step")
    autocast_dtype = AMP_DTYPES.get(cfg.amp)
    metrics: dict[str, float] = {}
    rebound = wrap_student(model, strategy, ctx)  # after resume: DDP starts from the restored weights
    if cfg.compile:
        rebound = compile_student(model, strategy, rebound)
    manual_sync = params if ctx.distributed and not rebound else own  # DDP averages the student's gradients
    t_last, step_last = time.perf_counter(), state.step

    model.train()
    try:
        with progress_bar(disable=not (cfg.progress and ctx.is_main)) as bar:
            task = bar.add_task("train", total=cfg.steps, completed=state.step, info="")
            while state.step < cfg.steps:
                step = state.step
                # -- between rounds (self-training re-mining): at step 0 and every round_steps steps
                if before_round is not None and step % (cfg.round_steps or cfg.steps) == 0:
                    before_round(step // (cfg.round_steps or cfg.steps))

                # -- forward: the strategy computes its losses under autocast
                batch = to_device(stream.next(), ctx.device)
                if batch_transform is not None:  # e.g. augmentation on the device, seeded by (seed, step, rank)
                    batch = batch_transform(batch, step)
                if cfg.channels_last:
                    batch = channels_last_batch(batch)
                with torch.autocast(ctx.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    parts = strategy.loss(batch, step)
                check_parts(parts, step)
                values = reduce_parts(parts, ctx)  # mean over ranks; a NaN on any rank reaches all
                if not all(math.isfinite(v) for v in values.values()):
                    raise NonFiniteLossError(non_finite_message(step, stream.position, values, optimizer, out_dir))

                # -- backward, gradient averaging over ranks, unscale, clip, step
                state.scaler.scale(parts["loss"]).backward()
                sync_gradients(manual_sync, ctx)
                state.scaler.unscale_(optimizer)
                logging_now = (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps
                grad_norm = None
                if cfg.clip_grad_norm is not None or logging_now:
                    grad_norm = nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm or math.inf)
                lrs = group_lrs(optimizer)  # the lr this step used, before the scheduler moves it
                state.scaler.step(optimizer)
                state.scaler.update()
                optimizer.zero_grad(set_to_none=True)
                state.scheduler.step()
                broadcast_tensors(model.buffers(), ctx)  # batch-norm statistics: rank 0's, on every rank
                if state.ema is not None:
                    state.ema.update(model)
                if after_step is not None:
                    after_step(step)
                state.step, state.position = step + 1, stream.position

                # -- log, checkpoint
                if logging_now:
                    now = time.perf_counter()
                    metrics = {**values, "grad_norm": float(grad_norm), "epoch": state.position.epoch}
                    metrics.update({"lr": next(iter(lrs.values())), **{f"lr/{k}": v for k, v in lrs.items()}})
                    metrics["sec_per_step"] = (now - t_last) / max(state.step - step_last, 1)
                    t_last, step_last = now, state.step
                    logger.log(state.step, metrics)
                if state.step % cfg.ckpt_every == 0 or state.step == cfg.steps:
                    last_ckpt = save_state(state, cfg, ctx, out_dir)
                bar.update(task, completed=state.step, info=f"loss {values['loss']:.4f}")
    finally:
        logger.close()
        for name in rebound:  # the caller gets its strategy back holding the plain student
            setattr(strategy, name, model)
    barrier(ctx)
    return FitResult(step=state.step, metrics=metrics, checkpoint=last_ckpt, ema=state.ema)


def wrap_student(model: nn.Module, strategy: Any, ctx: DistContext) -> list[str]:
    """With several ranks: wrap ``model`` in DDP and point the strategy's attributes that hold it at the wrapper.

    Returns the names of the attributes changed (empty when single-process). A strategy that keeps the
    student elsewhere (no attribute is the model itself) is left alone, with a warning, and its
    gradients are averaged by :func:`sync_gradients` instead: the same mean, without DDP's overlap.
    """
    if not ctx.distributed:
        return []
    names = [k for k, v in getattr(strategy, "__dict__", {}).items() if v is model]
    if not names:
        warnings.warn(
            "the strategy holds no attribute that is the student: not wrapping it in DistributedDataParallel; "
            "gradients are averaged with one all-reduce after backward instead",
            stacklevel=3,
        )
        return []
    ddp = DistributedDataParallel(
        model,
        device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
        forward_sync_buffers=False,  # the loop broadcasts rank 0's buffers after every step
        find_unused_parameters=bool(getattr(strategy, "ddp_find_unused_parameters", True)),
    )
    for name in names:
        setattr(strategy, name, ddp)
    return names


def compile_student(model: nn.Module, strategy: Any, rebound: list[str]) -> list[str]:
    """``torch.compile`` the student (or its DDP wrapper) and point the strategy's attributes that hold it at it.

    Returns the names of the attributes changed, like :func:`wrap_student` (the loop puts the plain model
    back at the end). The compiled module shares the student's parameters, so the optimiser, EMA and
    checkpoints see the same tensors. Compilation happens on the first steps (and again for a new input shape).
    """
    names = rebound or [k for k, v in getattr(strategy, "__dict__", {}).items() if v is model]
    if not names:
        warnings.warn("train.compile: the strategy holds no attribute that is the student: not compiling", stacklevel=3)
        return []
    compiled = torch.compile(getattr(strategy, names[0]), **COMPILE_OPTIONS)
    for name in names:
        setattr(strategy, name, compiled)
    return names


def channels_last_modules(model: nn.Module, strategy: Any) -> None:
    """Put the student and every module the strategy holds (teacher, EMA copy, projections) in channels-last format.

    Only 4-D parameters and buffers (convolution weights) change layout, not their values. Convolutions then
    run in NHWC, which oneDNN on CPUs and cuDNN with tensor cores (AMP) prefer.
    """
    model.to(memory_format=torch.channels_last)
    for value in getattr(strategy, "__dict__", {}).values():
        module = value.module if isinstance(value, EMA) else value
        if isinstance(module, nn.Module) and module is not model:
            module.to(memory_format=torch.channels_last)


def channels_last_batch(batch: Any) -> Any:
    """Every 4-D floating tensor (B, C, H, W) of a (nested) batch in channels-last layout; the rest unchanged."""
    if isinstance(batch, torch.Tensor):
        if batch.dim() == 4 and batch.is_floating_point():
            return batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, Mapping):
        return {k: channels_last_batch(v) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return tuple(channels_last_batch(v) for v in batch)
    if isinstance(batch, list):
        return [channels_last_batch(v) for v in batch]
    return batch


def reduce_parts(parts: dict[str, Any], ctx: DistContext) -> dict[str, float]:
    """The loss parts as floats, averaged over ranks (one collective, one device sync)."""
    flat = torch.stack([torch.as_tensor(v).detach().float().reshape(()).to(ctx.device) for v in parts.values()])
    return dict(zip(parts, all_reduce_mean(flat, ctx).tolist(), strict=True))


def non_finite_message(
    step: int, pos: DataPosition, values: dict[str, float], optimizer: torch.optim.Optimizer, out_dir: Path
) -> str:
    """The error for a NaN/inf loss: which step and batch, every part, the lr, the last checkpoint."""
    parts = ", ".join(f"{k}={v:.6g}" for k, v in values.items())
    lrs = ", ".join(f"{k}={v:.3g}" for k, v in group_lrs(optimizer).items())
    last = latest_checkpoint(out_dir)
    return (
        f"training stopped: non-finite loss at step {step} (epoch {pos.epoch}, batch {pos.index - 1}): {parts}; "
        f"lr {lrs}. Last checkpoint: {last or 'none'}. Lower optim.lr, set train.clip_grad_norm, "
        "or check this batch's inputs."
    )


def save_state(state: TrainState, cfg: TrainConfig, ctx: DistContext, out_dir: Path) -> Path:
    """Write a checkpoint (rank 0) holding every rank's RNG state; keep the newest ``cfg.keep_last``."""
    rng = all_gather_objects(capture_rng(), ctx)  # a collective: every rank takes part
    path = checkpoint_path(out_dir, state.step)
    if ctx.is_main:
        strategy_state = optional_hook(state.strategy, "state_dict")
        payload = {
            "format": CHECKPOINT_FORMAT,
            "step": state.step,
            "epoch": state.position.epoch,
            "batch_index": state.position.index,
            "world_size": ctx.world_size,
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(),
            "scaler": state.scaler.state_dict(),
            "ema": state.ema.state_dict() if state.ema is not None else None,
            "strategy": strategy_state() if strategy_state is not None else None,
            "rng": rng,
            "config": cfg.model_dump(mode="json"),
        }
        save_checkpoint(payload, path)
        prune_checkpoints(out_dir, cfg.keep_last)
    return path


def restore_state(state: TrainState, ckpt: dict[str, Any], cfg: TrainConfig, ctx: DistContext) -> None:
    """Load a checkpoint into ``state`` and restore this rank's RNG streams."""
    changed = _changed_keys(ckpt.get("config", {}), cfg.model_dump(mode="json"))
    if changed:
        warnings.warn(f"resuming step {ckpt['step']} with a changed train config: {', '.join(changed)}", stacklevel=3)
    state.model.load_state_dict(ckpt["model"])
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.scheduler.load_state_dict(ckpt["scheduler"])
    reapply_schedule(state, LrFactor(cfg.schedule, cfg.steps), int(ckpt["step"]))
    state.scaler.load_state_dict(ckpt["scaler"])
    if state.ema is not None and ckpt["ema"] is not None:
        state.ema.load_state_dict(ckpt["ema"])
    if (load := optional_hook(state.strategy, "load_state_dict")) is not None and ckpt["strategy"] is not None:
        load(ckpt["strategy"])
    state.step = int(ckpt["step"])
    state.position = DataPosition(int(ckpt["epoch"]), int(ckpt["batch_index"]))
    if ckpt["world_size"] == ctx.world_size:
        restore_rng(ckpt["rng"][ctx.rank])
    else:  # a different number of ranks cannot replay the same streams: fresh, but still seeded
        warnings.warn(f"checkpoint made on {ckpt['world_size']} ranks, resuming on {ctx.world_size}", stacklevel=3)
        seed_everything(cfg.seed + ctx.rank + state.step, cfg.deterministic)


def reapply_schedule(state: TrainState, factor: LrFactor, step: int) -> None:
    """Make the config's schedule, not the checkpoint's, drive the resumed run.

    A run resumed with more ``steps`` must stretch its cosine to the new end instead of sitting at the
    old end value. With an unchanged config this recomputes exactly the restored learning rates.
    """
    scheduler = state.scheduler
    scheduler.lr_lambdas = [factor] * len(state.optimizer.param_groups)
    for group, base in zip(state.optimizer.param_groups, scheduler.base_lrs, strict=True):
        group["lr"] = base * factor(step)
    scheduler._last_lr = [group["lr"] for group in state.optimizer.param_groups]


# keys a resumed run may change without changing what it computes
_VOLATILE = {
    "resume",
    "out_dir",
    "progress",
    "tensorboard",
    "log_every",
    "ckpt_every",
    "keep_last",
    "num_workers",
    "compile",
}


def _changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k in new if k not in _VOLATILE and old.get(k) != new[k])
