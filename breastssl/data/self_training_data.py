"""The data the self-training method trains on (seed 002): full and weak images with their mining roles, and
the 1:5 positive : negative batches (:class:`PosNegSampler`). The mining that assigns the roles is
``strategies/self_training_mining.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset

from .mammo_pairs import PairArrays
from .sparse_maps import SparseMaps

# roles of a training item; FULL marks the fully annotated images
TN, TP, FP, FN, UNSURE, FULL = 0, 1, 2, 3, 4, 5
ROLE_NAMES = {TN: "TN", TP: "TP", FP: "FP", FN: "FN", UNSURE: "unsure", FULL: "full"}


class SelfTrainingDataset(Dataset):
    """Fully and weakly labelled pairs with the current mining state.

    Items: ``image``, ``aux`` (1, H, W); ``mask`` (1, H, W) — the GT mask of a full image, the stage-2.1
    probability map (soft) or CRF mask (hard) of a weak TP, zeros otherwise; ``label`` () — the image
    label of a full image, the NLP soft label y (or y > 0.5 when hard) of a weak one; 0/1 flags ``full``,
    ``weak_seg`` (TP), ``weak_cls`` (TP, FP, FN); ``index``. The strategy updates ``roles``/``pseudo``/``crf``.

    ``compact`` (pairs read from a float16 cache, ``mammo_cache.py``): ``image``, ``aux`` and ``mask`` float16 —
    the cache's values and masks that float16 holds exactly — 5.1 instead of 10.2 MB per pair at 1024 × 832 to
    move; the recipe's batch transform makes them float32 on the training device.
    """

    def __init__(self, pairs: PairArrays, is_full: np.ndarray, soft_label: np.ndarray, compact: bool = False) -> None:
        self.pairs, self.compact = pairs, compact
        self.is_full = np.asarray(is_full, dtype=bool)
        self.y = np.nan_to_num(np.asarray(soft_label, dtype=np.float32), nan=0.5)
        n, h, w = len(pairs), *pairs.images.shape[-2:]
        self.roles = np.where(self.is_full, FULL, UNSURE).astype(np.int64)  # weak images wait for mining
        # the mining's masks, stored only for the TP candidates (CRF mask non-empty): sparse_maps.py
        self.pseudo = SparseMaps(n, (h, w), np.float16)
        self.crf = SparseMaps(n, (h, w), bool)
        self.soft_mask = True
        self.soft_nlp = True

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def weak_index(self) -> np.ndarray:
        return np.flatnonzero(~self.is_full)

    def positives(self) -> np.ndarray:
        """Indices trained as mass-positive images: full images with a lesion, weak TP and FN."""
        full_pos = self.is_full & self.pairs.table["has_lesion"].to_numpy(bool)
        return np.flatnonzero(full_pos | np.isin(self.roles, (TP, FN)))

    def negatives(self) -> np.ndarray:
        """Indices trained as negatives: full images without a lesion, weak FP."""
        full_neg = self.is_full & ~self.pairs.table["has_lesion"].to_numpy(bool)
        return np.flatnonzero(full_neg | (self.roles == FP))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        role = int(self.roles[i])
        kind = np.float16 if self.compact else np.float32
        if role == FULL:
            mask = self.pairs.masks[i].astype(kind)
            label = float(self.pairs.table["has_lesion"].iat[i])
        else:
            label = float(self.y[i]) if self.soft_nlp else float(self.y[i] > 0.5)
            if role == TP:
                mask = (self.pseudo[i] if self.soft_mask else self.crf[i]).astype(kind)[None]
            else:
                mask = np.zeros((1, *self.pseudo.item_shape), kind)
        if self.compact and hasattr(self.pairs.images, "raw"):  # the float16 values a cache stores
            image, aux = self.pairs.images.raw(i), self.pairs.aux.raw(i)
        else:
            image, aux = self.pairs.images[i], self.pairs.aux[i]
        return {
            "image": torch.from_numpy(image),
            "aux": torch.from_numpy(aux),
            "mask": torch.from_numpy(mask),
            "label": torch.tensor(label, dtype=torch.float32),
            "full": torch.tensor(float(role == FULL)),
            "weak_seg": torch.tensor(float(role == TP)),
            "weak_cls": torch.tensor(float(role in (TP, FP, FN))),
            "index": torch.tensor(i),
        }


class PosNegSampler:
    """Batches of a fixed positive : negative ratio (paper 1:5) over the current mining state.

    Batch b of epoch e draws (with replacement) from the pools as they are when it is drawn, seeded by
    (seed, e, b): mining between rounds changes the pools, and a resumed run (same mining state,
    restored from the strategy's checkpoint) draws the same batches. Under ``torchrun`` every rank draws the
    same global batch and keeps its ``rank``-th slice of it (``batch_size`` must split evenly over the ranks).
    """

    def __init__(
        self,
        data: SelfTrainingDataset,
        batch_size: int,
        batches_per_epoch: int,
        pos_fraction: float = 1 / 6,
        seed: int = 0,
        full_share: float | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size % world_size:
            raise ValueError(f"global batch size {batch_size} does not split evenly over {world_size} ranks")
        self.data, self.batch_size, self.batches = data, batch_size, batches_per_epoch
        self.n_pos = max(1, round(batch_size * pos_fraction))
        self.seed, self.epoch, self.full_share = seed, 0, full_share
        self.rank, self.world_size = rank, world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches

    def _draw(self, pool: np.ndarray, n: int, g: torch.Generator) -> list[int]:
        """n indices of ``pool`` with replacement; with ``full_share``, round(share·n) of them from its full images."""
        if n == 0 or len(pool) == 0:
            return []
        if self.full_share is not None:
            full, weak = pool[self.data.is_full[pool]], pool[~self.data.is_full[pool]]
            if len(full) and len(weak):
                n_full = round(self.full_share * n)
                return self._uniform(full, n_full, g) + self._uniform(weak, n - n_full, g)
        return self._uniform(pool, n, g)

    @staticmethod
    def _uniform(pool: np.ndarray, n: int, g: torch.Generator) -> list[int]:
        return pool[torch.randint(len(pool), (n,), generator=g).numpy()].tolist() if n else []

    def __iter__(self) -> Iterator[list[int]]:
        for b in range(self.batches):
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 100_003 + b)
            pos, neg = self.data.positives(), self.data.negatives()
            n_pos = self.n_pos if len(neg) else self.batch_size
            n_pos = n_pos if len(pos) else 0
            batch = self._draw(pos, n_pos, g) + self._draw(neg, self.batch_size - n_pos, g)
            # positives first, then negatives: a strided slice gives every rank its share of both
            yield batch[self.rank :: self.world_size] if self.world_size > 1 else batch
