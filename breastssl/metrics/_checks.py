"""Input checks shared by the metric functions (DESIGN §4: malformed input raises ``ValueError``)."""

from __future__ import annotations

import warnings

import numpy as np

MAX_LISTED = 5


def rows_listing(mask: np.ndarray) -> str:
    """'rows 3, 7, ... (n in all)' for the True entries of ``mask`` (0-based array positions)."""
    idx = np.flatnonzero(mask)
    shown = ", ".join(str(i) for i in idx[:MAX_LISTED])
    return f"{shown}{' ...' if idx.size > MAX_LISTED else ''} ({idx.size} in all)"


def as_labels(y: object, name: str = "y") -> np.ndarray:
    """A 1-D int array of 0/1 labels; anything else raises ``ValueError`` naming the offending rows."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    try:
        num = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must hold binary labels 0/1, got dtype {arr.dtype}") from None
    bad = ~np.isin(num, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"{name} must hold binary labels 0/1; bad values at rows {rows_listing(bad)}")
    return num.astype(np.int64)


def as_scores(score: object, n: int | None = None, name: str = "score") -> np.ndarray:
    """A 1-D finite float array of length ``n`` (if given)."""
    arr = np.asarray(score, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has shape {arr.shape} but the labels have shape ({n},)")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{name} must be finite; NaN/inf at rows {rows_listing(bad)}")
    return arr


def degenerate(y: np.ndarray, what: str) -> bool:
    """True (with a warning) when ``y`` holds a single class, so ``what`` is undefined."""
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        warnings.warn(
            f"{what} is undefined with a single class ({n_pos} positives of {y.size}); returning NaN",
            RuntimeWarning,
            stacklevel=3,
        )
        return True
    return False
