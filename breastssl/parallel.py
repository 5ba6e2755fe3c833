"""Where a process sits among the ranks of a run, and the two collectives data code needs to shard work.

The bottom layer of the package (it imports nothing from breastssl), so that data code (e.g. scoring a DBT
pool in ``data/dbt_slices.py``) can shard over ranks without importing the engine; the engine's
``init_distributed`` builds the :class:`DistContext` (``breastssl.engine.distributed``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: rank among world_size processes, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that logs and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def shard_range(n: int, ctx: DistContext) -> range:
    """This rank's contiguous share of ``range(n)``; shares differ in size by at most one, none repeats.

    For scoring an unlabelled pool: concatenating the shards in rank order (see :func:`gather_variable`)
    restores the original order.
    """
    base, extra = divmod(n, ctx.world_size)
    start = ctx.rank * base + min(ctx.rank, extra)
    return range(start, start + base + (ctx.rank < extra))


def gather_variable(t: Tensor, ctx: DistContext) -> Tensor:
    """Concatenate every rank's ``t`` along dim 0, in rank order, on every rank.

    Ranks may hold different lengths (N_r, ...); the trailing dimensions must match. Returns
    (ΣN_r, ...) on ``t``'s device.
    """
    if not ctx.distributed:
        return t
    # gloo (CPU runs, or several ranks sharing one GPU) gathers CPU tensors only
    where = torch.device("cpu") if dist.get_backend() == "gloo" else ctx.device
    local = t.detach().to(where)
    sizes = [torch.zeros(1, dtype=torch.long, device=where) for _ in range(ctx.world_size)]
    dist.all_gather(sizes, torch.tensor([local.shape[0]], dtype=torch.long, device=where))
    lengths = [int(s.item()) for s in sizes]
    longest = max(lengths)
    # all_gather needs equal shapes: pad to the longest, then cut each piece back to its length
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[: local.shape[0]] = local
    pieces = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(pieces, padded)
    return torch.cat([piece[:n] for piece, n in zip(pieces, lengths, strict=True)]).to(t.device)
