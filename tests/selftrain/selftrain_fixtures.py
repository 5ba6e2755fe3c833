"""Shared hand-built data of the self-training tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from breastssl.data.mammo_pairs import PairArrays


def lesion_pairs(n: int, size: int = 16) -> PairArrays:
    """n pairs of (1, size, size) images, a bright 5×5 lesion (and its mask) on every other one."""
    rng = np.random.default_rng(0)
    images = rng.random((n, 1, size, size), np.float32) * 0.3
    masks = np.zeros((n, 1, size, size), np.uint8)
    masks[::2, :, 5:10, 5:10] = 1
    images[masks.astype(bool)] += 0.6
    table = pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "has_lesion": masks.reshape(n, -1).any(1)})
    return PairArrays(images, images[::-1].copy(), masks, table)
