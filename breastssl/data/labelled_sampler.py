"""Batches of labelled + unlabelled samples in fixed shares: the mean teacher's batches (paper: 64 + 64)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


def labelled_per_batch(batch_size: int, labelled_fraction: float, has_unlabelled: bool = True) -> int:
    """Labelled samples in a batch of ``batch_size``: ``round(f·B)``, at least 1 and leaving at least 1 unlabelled
    place (all ``batch_size`` when there is nothing unlabelled)."""
    if not has_unlabelled:
        return batch_size
    return max(1, min(batch_size - 1, round(batch_size * labelled_fraction)))


class LabelledUnlabelledBatchSampler:
    """Global batches of ``round(f·B)`` labelled + the rest unlabelled samples (paper: 64 + 64).

    An epoch is one pass over the unlabelled indices (over the labelled ones when there are none);
    the labelled indices cycle, reshuffled each pass. Orders are a pure function of (seed, epoch), so
    a resumed run sees the same batches. Rank r takes the r-th slice of each part.
    """

    def __init__(
        self,
        labelled: Sequence[int],
        unlabelled: Sequence[int],
        batch_size: int,
        labelled_fraction: float = 0.5,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.labelled, self.unlabelled = list(labelled), list(unlabelled)
        if not self.labelled:
            raise ValueError("the mean-teacher batch sampler needs at least one labelled sample")
        self.n_lab = labelled_per_batch(batch_size, labelled_fraction, bool(self.unlabelled))
        self.n_unl = batch_size - self.n_lab
        if self.n_lab % world_size or self.n_unl % world_size:
            raise ValueError(f"{self.n_lab} labelled + {self.n_unl} unlabelled do not split over {world_size} ranks")
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.unlabelled:
            return max(1, len(self.unlabelled) // self.n_unl)
        return max(1, len(self.labelled) // self.n_lab)

    def _stream(self, ids: list[int], n: int, g: torch.Generator) -> list[int]:
        out: list[int] = []
        while len(out) < n:
            out += [ids[i] for i in torch.randperm(len(ids), generator=g).tolist()]
        return out[:n]

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        lab = self._stream(self.labelled, len(self) * self.n_lab, g)
        unl = self._stream(self.unlabelled, len(self) * self.n_unl, g) if self.unlabelled else []
        pl, pu = self.n_lab // self.world_size, self.n_unl // self.world_size
        for b in range(len(self)):
            a, u = b * self.n_lab + self.rank * pl, b * self.n_unl + self.rank * pu
            yield lab[a : a + pl] + unl[u : u + pu]
