"""Deterministic, resumable, sharded batches.

The order of every epoch is a pure function of (seed, epoch), so a run resumed at (epoch, index)
sees exactly the batches the uninterrupted run would have seen. Global batch b of an epoch is the
same set of samples whatever the number of ranks; rank r takes the r-th slice of it, so a run on
2 ranks with batch 8 computes the same mean gradient as one process with batch 8.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader, Dataset


class BatchSampler(Protocol):
    """What the loop needs from a batch sampler: a deterministic order per epoch and a length.

    ``__iter__`` yields this rank's sample indices of each global batch; ``__len__`` counts batches.
    A strategy that composes batches (annotated : selected : KD-only, labelled : unlabelled) can
    provide its own sampler with this interface and keep the exact resume.
    """

    def set_epoch(self, epoch: int) -> None: ...

    def __iter__(self) -> Iterator[list[int]]: ...

    def __len__(self) -> int: ...


@dataclass
class DataPosition:
    """Where the data stream is: the epoch and the index of the next global batch within it."""

    epoch: int = 0
    index: int = 0


class ShardedBatchSampler:
    """Shuffled (or sequential) global batches of ``batch_size`` samples, each split over the ranks.

    Incomplete last batches are dropped: every step sees a full global batch, split evenly.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size % world_size:
            raise ValueError(f"global batch size {batch_size} does not split evenly over {world_size} ranks")
        if num_samples < batch_size:
            raise ValueError(f"{num_samples} samples cannot fill one batch of {batch_size}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples // self.batch_size

    def global_order(self) -> list[int]:
        """The epoch's sample order before sharding: a permutation seeded by (seed, epoch)."""
        if not self.shuffle:
            return list(range(self.num_samples))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.num_samples, generator=g).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        order = self.global_order()
        per_rank = self.batch_size // self.world_size
        for b in range(len(self)):
            start = b * self.batch_size + self.rank * per_rank
            yield order[start : start + per_rank]


class _SkipBatches:
    """The batches of ``sampler`` from index ``start`` on (indices only: skipping loads no data)."""

    def __init__(self, sampler: BatchSampler, start: int) -> None:
        self.sampler = sampler
        self.start = start

    def __iter__(self) -> Iterator[list[int]]:
        return islice(iter(self.sampler), self.start, None)

    def __len__(self) -> int:
        return max(len(self.sampler) - self.start, 0)


def epoch_batches(
    dataset: Dataset,
    sampler: BatchSampler,
    pos: DataPosition,
    *,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    num_workers: int = 0,
    seed: int = 0,
    pin_memory: bool = False,
) -> Iterator[Any]:
    """Iterate the batches of epoch ``pos.epoch`` from batch ``pos.index`` on.

    The loader gets its own generator, seeded by (seed, epoch): creating it then draws nothing from
    the global torch RNG, which would otherwise differ between a resumed and an uninterrupted run.
    """
    sampler.set_epoch(pos.epoch)
    return _loader(dataset, _SkipBatches(sampler, pos.index), pos, collate_fn, num_workers, seed, pin_memory)


def _loader(
    dataset: Dataset,
    batch_sampler: Any,
    pos: DataPosition,
    collate_fn: Callable[[list[Any]], Any] | None,
    num_workers: int,
    seed: int,
    pin_memory: bool,
) -> Iterator[Any]:
    """An iterator over a DataLoader with its own generator, seeded by (seed, epoch of ``pos``)."""
    loader = DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        collate_fn=collate_fn,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed * 1_000_003 + pos.epoch),
    )
    return iter(loader)


class _RunningBatches:
    """The sampler's batches from ``position`` on, epoch after epoch, for ONE DataLoader over the whole run.

    With worker processes, a new DataLoader per epoch restarts the workers, and with them every per-worker
    cache (the slice dataset's stack cache): each epoch re-read every stack from disk (4–8× slower epochs
    with 2 workers). The sampler still runs in the main process, so the batch order, and with it the
    exact resume, is unchanged.
    """

    def __init__(self, sampler: BatchSampler, position: DataPosition) -> None:
        self.sampler, self.position = sampler, position

    def __iter__(self) -> Iterator[list[int]]:
        epoch, start = self.position.epoch, self.position.index
        while True:
            self.sampler.set_epoch(epoch)
            yield from islice(iter(self.sampler), start, None)
            epoch, start = epoch + 1, 0


def run_batches(
    dataset: Dataset,
    sampler: BatchSampler,
    pos: DataPosition,
    *,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    num_workers: int = 0,
    seed: int = 0,
    pin_memory: bool = False,
) -> Iterator[Any]:
    """Every batch from ``pos`` on, across epochs, from one DataLoader whose workers live for the whole run."""
    return _loader(dataset, _RunningBatches(sampler, pos), pos, collate_fn, num_workers, seed, pin_memory)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) dict / list / tuple batch to ``device``; other values pass through."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return tuple(to_device(v, device) for v in batch)
    if isinstance(batch, list):
        return [to_device(v, device) for v in batch]
    return batch


class BatchStream:
    """An endless stream of batches over epochs, which knows its :class:`DataPosition`.

    ``position`` is the next batch to be drawn: save it with a checkpoint, pass it back to resume.
    """

    def __init__(self, dataset: Dataset, sampler: BatchSampler, position: DataPosition, **loader_kwargs: Any) -> None:
        if len(sampler) == 0:
            raise ValueError("the batch sampler yields no batches: the dataset is smaller than one batch")
        self.dataset = dataset
        self.sampler = sampler
        self.position = DataPosition(position.epoch, position.index)
        self.loader_kwargs = loader_kwargs
        self._it: Iterator[Any] | None = None

    def next(self) -> Any:
        """The next batch; crosses into the next epoch when this one is exhausted."""
        workers = self.loader_kwargs.get("num_workers", 0) > 0
        if self.position.index >= len(self.sampler):
            self.position = DataPosition(self.position.epoch + 1, 0)
            if not workers:  # in-process loading: a fresh loader per epoch costs nothing
                self._it = None
        if self._it is None:
            make = run_batches if workers else epoch_batches
            self._it = make(self.dataset, self.sampler, self.position, **self.loader_kwargs)
        batch = next(self._it)
        self.position = DataPosition(self.position.epoch, self.position.index + 1)
        return batch
