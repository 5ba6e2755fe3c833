"""CRF masks of many maps at once, over a process pool (seed 002, stage 2.1: mining every weak image).

Each image's CRF is independent, so mining parallelises over images. Workers are forked where the platform
allows (Linux): the maps and images reach them through the fork, not a pipe, and only index ranges go out
and bit-packed masks come back. The CRF paths a worker runs (pydensecrf, the NumPy filter, the resampling)
use no torch and no BLAS threads, which is what makes forking a process that has run torch safe here; the
``dense`` reference backend uses torch, so it always runs in-process. Output order is the input order
whatever the number of workers, and each mask is computed the same way, so the result does not depend on it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from scipy import ndimage

from .crf import CRFParams, crf_mask

_STATE: dict = {}  # the worker's inputs, set by _init (inherited through fork, pickled once under spawn)


def usable_cores() -> int:
    """CPU cores this process may run on (affinity-aware where the platform says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def drop_small(mask: np.ndarray, min_area: int) -> np.ndarray:
    """The mask (H, W) bool without its connected regions smaller than ``min_area`` pixels."""
    if min_area <= 1 or not mask.any():
        return mask
    lab, n = ndimage.label(mask)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    return (sizes >= min_area)[lab] & mask


def _masks(maps: np.ndarray, images: np.ndarray, params: CRFParams, min_area: int, lo: int, hi: int) -> np.ndarray:
    """Masks (hi − lo, H, W) bool of maps[lo:hi]."""
    return np.stack([drop_small(crf_mask(maps[i], images[i], params), min_area) for i in range(lo, hi)])


def _init(maps: np.ndarray, images: np.ndarray, params: CRFParams, min_area: int) -> None:
    _STATE.update(maps=maps, images=images, params=params, min_area=min_area)


def _work(span: tuple[int, int]) -> np.ndarray:
    """Bit-packed masks of one chunk (8× less to send back than bools)."""
    s = _STATE
    return np.packbits(_masks(s["maps"], s["images"], s["params"], s["min_area"], *span), axis=-1)


def _context() -> mp.context.BaseContext:
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def crf_masks(
    maps: np.ndarray, images: np.ndarray, params: CRFParams | None = None, min_area: int = 1, workers: int | None = None
) -> np.ndarray:
    """CRF binary masks (N, H, W) bool of maps (N, H, W) over images (N, H, W); regions < min_area px removed.

    workers: processes (None: ``params.workers``; 0 there: one per usable core), at most one per image;
    1 runs in this process.
    """
    prm = params or CRFParams()
    maps, images = np.asarray(maps, np.float32), np.asarray(images, np.float32)
    if maps.shape != images.shape or maps.ndim != 3:
        raise ValueError(f"crf_masks: maps {maps.shape} and images {images.shape} must both be (N, H, W)")
    n = len(maps)
    want = prm.workers if workers is None else workers
    k = min(want if want > 0 else usable_cores(), n)
    if k <= 1 or prm.backend == "dense":
        return _masks(maps, images, prm, min_area, 0, n) if n else np.zeros(maps.shape, bool)
    # ~4 chunks per worker: balances images that skip inference against ones that do not
    bounds = np.linspace(0, n, min(n, 4 * k) + 1).astype(int)
    spans = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    with ProcessPoolExecutor(k, mp_context=_context(), initializer=_init, initargs=(maps, images, prm, min_area)) as ex:
        packed = list(ex.map(_work, spans))
    w = maps.shape[2]
    return np.concatenate([np.unpackbits(p, axis=-1, count=w).astype(bool) for p in packed])
