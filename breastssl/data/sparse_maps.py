"""An (N, *item) array that is zero for most items, stored only where an item is non-zero (issue 18).

At the self-training paper's scale (134,520 mammograms at 1024 × 832) dense per-image mask arrays do not fit in
memory: lesion masks (uint8) 114 GB, the mining's pseudo masks (float16) 229 GB and CRF masks (bool) 114 GB, and
a checkpoint would copy the last two. Only a few images hold a lesion mask, and only the mined TP candidates (CRF
mask non-empty) need a pseudo or CRF mask, so :class:`SparseMaps` keeps a dict of the non-zero items and answers
every read as the dense array would (zeros elsewhere).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class SparseMaps:
    """(N, *item_shape) of ``dtype``: ``m[i]`` an item (read-only; zeros if not stored), ``m[idx]`` / ``m[a:b]`` /
    ``m[:, 0]`` dense copies of a selection, ``m.set(idx, values)`` to write; ``len``, ``shape``, ``dtype`` as an
    array's."""

    def __init__(self, n: int, item_shape: tuple[int, ...], dtype: Any) -> None:
        self.n, self.item_shape, self.dtype = int(n), tuple(int(s) for s in item_shape), np.dtype(dtype)
        self.items: dict[int, np.ndarray] = {}

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.n, *self.item_shape)

    def __len__(self) -> int:
        return self.n

    def _zeros(self) -> np.ndarray:
        return np.zeros(self.item_shape, self.dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):  # e.g. m[:, 0]: the rows first, then the rest on the dense copy
            return self[key[0]][(slice(None), *key[1:])]
        if isinstance(key, (int, np.integer)):
            i = int(key) + (self.n if key < 0 else 0)
            if not 0 <= i < self.n:
                raise IndexError(f"index {key} out of range for {self.n} items")
            item = self.items.get(i)
            return item if item is not None else self._zeros()  # stored items are read-only: no copy per read
        rows = np.arange(self.n)[key]
        out = np.zeros((len(rows), *self.item_shape), self.dtype)
        for j, i in enumerate(rows):
            item = self.items.get(int(i))
            if item is not None:
                out[j] = item
        return out

    def set(self, idx: Any, values: np.ndarray, keep: np.ndarray | None = None) -> None:
        """Write items ``idx`` (K,) from ``values`` (K, *item_shape); store those with ``keep`` (K,) bool set
        (default: the non-zero ones) and drop the others (they read as zeros)."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        values = np.asarray(values)
        if values.shape != (len(idx), *self.item_shape):
            raise ValueError(f"values {values.shape} do not match {len(idx)} items of shape {self.item_shape}")
        if keep is None:
            keep = values.reshape(len(idx), -1).any(axis=1)
        for i, v, k in zip(idx.tolist(), values, np.asarray(keep, bool), strict=True):
            if k:
                item = np.array(v, dtype=self.dtype)
                item.flags.writeable = False
                self.items[i] = item
            else:
                self.items.pop(i, None)

    def stored(self, idx: Any) -> np.ndarray:
        """(K,) bool: whether items ``idx`` are stored (non-zero when written with the default ``keep``)."""
        return np.array([int(i) in self.items for i in np.asarray(idx).reshape(-1)], dtype=bool)

    def subset(self, idx: Any) -> SparseMaps:
        """The items at positions ``idx`` (K,), renumbered 0..K-1 (the arrays are shared, not copied)."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        out = SparseMaps(len(idx), self.item_shape, self.dtype)
        out.items = {j: self.items[int(i)] for j, i in enumerate(idx) if int(i) in self.items}
        return out

    def state(self) -> dict[str, torch.Tensor]:
        """For a checkpoint: ``index`` (K,) int64 and ``values`` (K, *item_shape) of the stored items only."""
        keys = sorted(self.items)
        values = np.stack([self.items[k] for k in keys]) if keys else np.zeros((0, *self.item_shape), self.dtype)
        return {"index": torch.tensor(keys, dtype=torch.int64), "values": torch.from_numpy(values)}

    def load_state(self, state: Any) -> None:
        """Restore from :meth:`state`, or from a dense (N, *item_shape) tensor (checkpoints before sparse maps)."""
        self.items = {}
        if isinstance(state, dict):
            self.set(state["index"].numpy(), state["values"].numpy(), keep=np.ones(len(state["index"]), bool))
        else:
            self.set(np.arange(self.n), state.numpy())


__all__ = ["SparseMaps"]
