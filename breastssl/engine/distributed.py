"""Distributed setup for ``torchrun`` and the few collectives the loop and the strategies need.

Single-process when ``WORLD_SIZE`` is unset or 1: every helper here is then a no-op or the identity.

The student's gradients are averaged by ``DistributedDataParallel`` (the loop wraps it; strategies
call the student once per step on one concatenated batch, which is what DDP's reducer expects).
:func:`sync_gradients` (one flat all-reduce after ``backward``) averages what DDP does not own: a
strategy's trainable parameters outside the model (e.g. CoMoTo's Linear(9, 9)), and the student of
a strategy that does not hold it as an attribute. Either way every rank steps with the mean
gradient over all ranks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..errors import ConfigError
from ..parallel import DistContext, gather_variable, shard_range  # noqa: F401  (they live in the bottom layer)


def init_distributed(device: str = "auto") -> DistContext:
    """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (set by torchrun) and join the process group.

    NCCL on CUDA, gloo on CPU. Ranks share the visible GPUs round-robin (``LOCAL_RANK`` modulo their count).
    NCCL refuses two ranks on one GPU ("Duplicate GPU detected"), so when a node runs more ranks than it has
    GPUs the group uses gloo, which reduces CUDA tensors too (slower; for checks, not for training at scale).
    ``BREASTSSL_DIST_BACKEND`` (nccl | gloo) overrides the choice. Calling it again returns the same context.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    dev = torch.device("cuda", local_rank % torch.cuda.device_count()) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend=_backend(use_cuda), rank=rank, world_size=world)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def _backend(use_cuda: bool) -> str:
    """nccl on CUDA when every local rank has a GPU of its own, else gloo (or ``BREASTSSL_DIST_BACKEND``)."""
    forced = os.environ.get("BREASTSSL_DIST_BACKEND", "").strip().lower()
    if forced:
        if forced not in ("nccl", "gloo"):
            raise ConfigError(f"BREASTSSL_DIST_BACKEND must be nccl or gloo, not {forced!r}")
        return forced
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return "nccl" if use_cuda and local_ranks <= torch.cuda.device_count() else "gloo"


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op when single-process)."""
    if ctx.distributed:
        dist.barrier()


def all_reduce_mean(t: Tensor, ctx: DistContext) -> Tensor:
    """Mean of ``t`` over ranks (a new tensor; ``t`` is not modified)."""
    if not ctx.distributed:
        return t.clone()
    out = t.detach().to(ctx.device, copy=True)
    dist.all_reduce(out)
    return (out / ctx.world_size).to(t.device)


def sync_gradients(params: Iterable[nn.Parameter], ctx: DistContext) -> None:
    """Replace each gradient by its mean over ranks, with one all-reduce.

    A parameter without a gradient on some rank counts as zero there; one without a gradient on
    every rank keeps ``grad=None`` so the optimiser skips it exactly as in a single process.
    """
    if not ctx.distributed:
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    grads = [p.grad.reshape(-1).float() if p.grad is not None else p.new_zeros(p.numel()).float() for p in params]
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=ctx.device)
    flat = torch.cat([g.to(ctx.device) for g in grads] + [present])
    dist.all_reduce(flat)
    flat /= ctx.world_size
    anywhere = flat[-len(params) :].tolist()  # one device sync, not one per parameter
    offset = 0
    for p, has_grad in zip(params, anywhere, strict=True):
        n = p.numel()
        if has_grad > 0:
            p.grad = flat[offset : offset + n].view_as(p).to(device=p.device, dtype=p.dtype)
        offset += n


@torch.no_grad()
def broadcast_tensors(tensors: Iterable[Tensor], ctx: DistContext) -> None:
    """Overwrite ``tensors`` in place with rank 0's values, one broadcast per dtype.

    The loop uses it at the start (every rank begins from rank 0's weights) and after every step on
    the model's buffers: ranks see different data, so their batch-norm statistics drift apart;
    DDP broadcasts them too, which keeps every rank's model identical to the one rank 0 saves.
    """
    if not ctx.distributed:
        return
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1).to(ctx.device) for t in group])
        dist.broadcast(flat, src=0)
        offset = 0
        for t in group:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj`` (picklable; in memory only), in rank order, on every rank."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def cleanup_distributed() -> None:
    """Leave the process group (call once at the very end of a distributed run)."""
    if dist.is_initialized():
        dist.destroy_process_group()
