"""Pixel value transforms of DICOM images (PS3.3 C.11): bits-stored masking, Modality LUT, VOI LUT.

All functions are pure numpy. Windowed outputs lie in [0, 1]; MONOCHROME1 inversion is applied by the
caller after windowing (1 − y), so that bright always means dense tissue.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mask_bits(arr: np.ndarray, bits_stored: int, signed: bool) -> np.ndarray:
    """Keep the low ``bits_stored`` bits (sign-extended when ``signed``); bits above may hold overlays or junk."""
    if arr.dtype.kind not in "iu" or bits_stored >= arr.dtype.itemsize * 8 or bits_stored < 1:
        return arr
    out = arr.astype(np.int64) & ((1 << bits_stored) - 1)
    if signed:
        out = np.where(out >= 1 << (bits_stored - 1), out - (1 << bits_stored), out)
    return out


def apply_lut(values: np.ndarray, first_mapped: int, lut: np.ndarray) -> np.ndarray:
    """Look values up in a LUT whose entry 0 maps input ``first_mapped``; outside inputs clamp to the ends."""
    idx = np.clip(np.rint(values).astype(np.int64) - int(first_mapped), 0, len(lut) - 1)
    return lut[idx]


def modality_lut(arr: np.ndarray, slope: float = 1.0, intercept: float = 0.0) -> np.ndarray:
    """Rescale stored values to modality values: ``slope · x + intercept`` (float32)."""
    out = arr.astype(np.float32)
    if slope != 1.0:
        out *= np.float32(slope)
    if intercept != 0.0:
        out += np.float32(intercept)
    return out


def window(x: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """Apply a VOI window to modality values; returns float32 in [0, 1].

    LINEAR and LINEAR_EXACT follow PS3.3 C.11.2.1.2 (LINEAR needs width ≥ 1, the ``−0.5`` and ``w−1``
    terms included); SIGMOID is ``1 / (1 + exp(−4 (x − c) / w))``.
    """
    function = (function or "LINEAR").upper().replace(" ", "_")
    x = x.astype(np.float32, copy=False)
    c, w = float(center), float(width)
    if function == "SIGMOID":
        if w <= 0:
            raise ValueError(f"window width must be > 0 for SIGMOID, got {w}")
        return (1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))).astype(np.float32)
    if function == "LINEAR_EXACT":
        if w <= 0:
            raise ValueError(f"window width must be > 0 for LINEAR_EXACT, got {w}")
        return np.clip((x - c) / w + 0.5, 0.0, 1.0).astype(np.float32)
    if function != "LINEAR":
        raise ValueError(f"unknown VOI LUT function {function!r} (LINEAR, LINEAR_EXACT or SIGMOID)")
    if w < 1:
        raise ValueError(f"window width must be ≥ 1 for LINEAR, got {w}")
    if w == 1:  # degenerate: a threshold at c − 0.5
        return (x > c - 0.5).astype(np.float32)
    return np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0.0, 1.0).astype(np.float32)


def voi_lut_table(x: np.ndarray, descriptor: Sequence[int], data: np.ndarray) -> np.ndarray:
    """Apply a VOI LUT (LUTDescriptor = [entries, first mapped value, bits]); returns float32 in [0, 1]."""
    bits = int(descriptor[2]) if len(descriptor) > 2 and int(descriptor[2]) > 0 else 16
    top = float(2**bits - 1)
    lut = np.asarray(data, dtype=np.float32)
    return (apply_lut(x, int(descriptor[1]), lut) / top).clip(0.0, 1.0).astype(np.float32)


def minmax(x: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the array's own range (used when a file carries no window)."""
    x = x.astype(np.float32, copy=False)
    lo, hi = float(np.min(x)), float(np.max(x))
    if hi <= lo:
        return np.zeros_like(x, dtype=np.float32)
    return ((x - lo) / (hi - lo)).astype(np.float32)
