"""Mammography pairs read from a ``breastssl cache`` on demand: the self-training data at the paper's scale (issue 18).

:func:`breastssl.data.mammo_pairs.load_pairs` decodes every image into memory as float32 and copies each
partner: ~7 MB per image at 1024 × 832, ~0.9 TB for the paper's 134,520 mammograms, and one JPEG 2000 decode per
image per run. :func:`load_pairs_cached` instead reads a cache built once with ``breastssl cache --size H W``
(mode ``prepare``: the same ``prepare_row`` arrays, float16 by default): images and partners are
:class:`CachedImages` — views into the memory-mapped arrays by image id, nothing loaded until read — and lesion
masks a :class:`~breastssl.data.sparse_maps.SparseMaps` holding only the images with a lesion, mapped with the
geometry the cache recorded. Values equal ``load_pairs``' to the cache's storage precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from .cache import CacheReader
from .mammo_pairs import PairArrays, _lesion_mask, pair_partners
from .preprocess import Geometry
from .sparse_maps import SparseMaps


class CachedImages:
    """(N, 1, H, W) float32 images in [0, 1] read from a cache on demand: ``x[i]``, ``x[a:b]``, ``x[idx]``,
    ``x[:, 0]`` as a numpy array's would give (clipped to [0, 1] as ``load_pairs`` does); ``raw(i)`` the stored
    (1, H, W) values themselves (float16 for a float16 cache: the compact training item)."""

    dtype = np.dtype(np.float32)

    def __init__(self, reader: CacheReader, ids: Sequence[str]) -> None:
        self.reader, self.ids = reader, [str(i) for i in ids]
        first = reader.get(self.ids[0]) if self.ids else np.zeros((1, 1), np.float32)
        self.item_shape = (1, *first.shape[-2:])
        self.stored_dtype = first.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.ids), *self.item_shape)

    def __len__(self) -> int:
        return len(self.ids)

    def raw(self, i: int) -> np.ndarray:
        """(1, H, W) as stored when float16 (unclipped: the device transform clamps), else float32 in [0, 1]."""
        arr = self.reader.get(self.ids[int(i)])
        if arr.dtype == np.float16:
            return np.array(arr).reshape(self.item_shape)  # a copy: the memory map is read-only
        return self[int(i)]

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            return self[key[0]][(slice(None), *key[1:])]
        if isinstance(key, (int, np.integer)):
            arr = self.reader.stack_f32(self.ids[int(key)]).reshape(self.item_shape)
            return np.clip(arr, 0.0, 1.0, out=arr)
        rows = np.arange(len(self.ids))[key]
        out = np.empty((len(rows), *self.item_shape), np.float32)
        for j, i in enumerate(rows):
            out[j] = self[int(i)]
        return out

    def subset(self, idx: Any) -> CachedImages:
        """The images at positions ``idx`` (the same reader; nothing read)."""
        return CachedImages(self.reader, [self.ids[int(i)] for i in np.asarray(idx).reshape(-1)])


def load_pairs_cached(
    manifest: pd.DataFrame, lesions: pd.DataFrame | None, root: Any, size: tuple[int, int], reader: CacheReader
) -> PairArrays:
    """:func:`~breastssl.data.mammo_pairs.load_pairs` over a cache: the same table, partners and lesion masks, the
    images read on demand. Every manifest row must be in ``reader`` (the recipe checks it first)."""
    table = manifest.reset_index(drop=True).copy()
    table["image_id"] = table["image_id"].astype(str)
    n, ids = len(table), table["image_id"].tolist()
    partner = pair_partners(table)
    masks = SparseMaps(n, (1, *size), np.uint8)
    if lesions is not None and len(lesions):
        by_image = lesions.groupby(lesions["image_id"].astype(str))
        for i in [k for k, image_id in enumerate(ids) if image_id in by_image.groups]:
            geo = Geometry.from_dict(reader.geometry(ids[i]))
            masks.set([i], _lesion_mask(root, by_image.get_group(ids[i]), geo, size)[None, None])
    table["has_lesion"] = masks.stored(np.arange(n))
    return PairArrays(CachedImages(reader, ids), CachedImages(reader, [ids[p] for p in partner]), masks, table)


class Float32Pairs:
    """The mammography recipe's ``batch_transform`` for compact items (float16 ``image``, ``aux``, ``mask``): float32
    on the training device, images clamped to [0, 1] as ``load_pairs`` clips them."""

    def __call__(self, batch: dict[str, Any], step: int) -> dict[str, Any]:
        out = dict(batch)
        for key in ("image", "aux"):
            if isinstance(batch.get(key), torch.Tensor):
                out[key] = batch[key].float().clamp_(0.0, 1.0)
        out["mask"] = batch["mask"].float()
        return out


__all__ = ["CachedImages", "load_pairs_cached", "Float32Pairs"]
