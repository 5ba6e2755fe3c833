"""Bilateral mammogram pairs for the self-training method (seed 002): main image + contralateral view.

Every image of an exam is paired with the other breast's image of the same view (RCC ↔ LCC, RMLO ↔
LMLO). Both are read with the manifest's reader, put in the canonical orientation (chest wall left)
so that the two breasts overlap, cropped to the breast and resized to one size, and the lesion masks
follow the main image's geometry. :func:`load_pairs` loads everything once into memory (demo-scale sets are
small); at the paper's scale the recipe's ``data.cache`` reads the images from a ``breastssl cache`` on demand
instead (``mammo_cache.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from .preprocess import prepare_row


@dataclass
class PairArrays:
    """Prepared pairs: ``images``/``aux``/``masks`` are (N, 1, H, W); ``table`` has one row per image."""

    # numpy arrays, or at paper scale arrays read on demand from a cache and sparse masks (mammo_cache.py)
    images: Any  # float32 main images in [0, 1]
    aux: Any  # float32 contralateral images of the same view
    masks: Any  # uint8 union of the main image's lesion masks (evaluation truth; training only if full)
    table: pd.DataFrame  # image_id, exam_id, laterality, view, annotation, split, has_lesion, ...

    def __len__(self) -> int:
        return len(self.table)

    def subset(self, idx: np.ndarray) -> PairArrays:
        """The pairs at positions ``idx`` (N',); lazy arrays (a cache's images, sparse masks) stay lazy."""
        idx = np.asarray(idx, dtype=int)
        images, aux, masks = (a.subset(idx) if hasattr(a, "subset") else a[idx] for a in (self.images, self.aux,
                                                                                         self.masks))  # fmt: skip
        return PairArrays(images, aux, masks, self.table.iloc[idx].reset_index(drop=True))


def _lesion_mask(root: Path, rows: pd.DataFrame, geo: object, shape: tuple[int, int]) -> np.ndarray:
    from .masks import read_mask

    out = np.zeros(shape, dtype=np.uint8)
    for path in rows["mask_path"]:
        mask = read_mask(root / str(path))
        out |= geo.mask(mask.astype(np.uint8)).astype(np.uint8)  # type: ignore[attr-defined]
    return out


def load_pairs(
    manifest: pd.DataFrame,
    lesions: pd.DataFrame | None,
    root: str | Path,
    size: tuple[int, int] = (96, 64),
    progress: bool = False,
) -> PairArrays:
    """Read and prepare every MG image of ``manifest`` with its contralateral partner.

    An image whose exam lacks the other side's view is paired with itself (no asymmetry cue) and
    marked ``paired = False``. Raises :class:`DataError` naming the row for an unreadable file.
    """
    root = Path(root)
    table = manifest.reset_index(drop=True).copy()
    table["image_id"] = table["image_id"].astype(str)
    n = len(table)
    images = np.zeros((n, 1, *size), np.float32)
    masks = np.zeros((n, 1, *size), np.uint8)
    by_image = lesions.groupby(lesions["image_id"].astype(str)) if lesions is not None and len(lesions) else None
    rows = table.to_dict("records")
    iterator = range(n)
    if progress:
        from rich.progress import track

        iterator = track(iterator, description="reading mammograms")
    for i in iterator:
        try:
            arr, geo, _ = prepare_row(rows[i], root, size)
        except DataError:
            raise
        except Exception as exc:  # a reader bug or a broken file: name the row
            raise DataError(f"manifest row {i} ({rows[i]['image_id']}, {rows[i]['path']}): {exc}") from exc
        images[i, 0] = np.clip(arr, 0.0, 1.0)
        if by_image is not None and rows[i]["image_id"] in by_image.groups:
            masks[i, 0] = _lesion_mask(root, by_image.get_group(rows[i]["image_id"]), geo, size)
    partner = pair_partners(table)
    table["has_lesion"] = masks.reshape(n, -1).any(axis=1)
    return PairArrays(images, images[partner].copy(), masks, table)


def pair_partners(table: pd.DataFrame) -> np.ndarray:
    """(N,) position of each row's contralateral partner (same exam and view, other side); the row itself where the
    exam has none. Sets ``table["paired"]``."""
    n = len(table)
    key = table["exam_id"].astype(str) + "|" + table["view"].astype(str) + "|" + table["laterality"].astype(str)
    position = pd.Series(np.arange(n), index=key)
    other = table["laterality"].map({"L": "R", "R": "L"}).fillna("")
    partner_key = table["exam_id"].astype(str) + "|" + table["view"].astype(str) + "|" + other
    partner = partner_key.map(lambda k: position.get(k, -1)).to_numpy(int)
    table["paired"] = partner >= 0
    return np.where(partner >= 0, partner, np.arange(n))


class PairDataset(Dataset):
    """Pairs as dict items: ``image``, ``aux``, ``mask`` (1, H, W) float32 and ``index``.

    Used for scoring and evaluation; training uses the self-training dataset, which adds targets.
    """

    def __init__(self, pairs: PairArrays) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "image": torch.from_numpy(self.pairs.images[i]),
            "aux": torch.from_numpy(self.pairs.aux[i]),
            "mask": torch.from_numpy(self.pairs.masks[i].astype(np.float32)),
            "index": torch.tensor(i),
        }
