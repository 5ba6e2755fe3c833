"""Percentile bootstrap confidence intervals for any metric, stratified by class label (DESIGN §6)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np

from ._checks import as_labels


def bootstrap_ci(
    metric: Callable[..., float],
    *arrays: object,
    n: int = 2000,
    level: float = 0.95,
    stratified: bool = True,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(estimate, low, high)``: ``metric(*arrays)`` and its percentile bootstrap interval.

    arrays: parallel ``(N, ...)`` arrays, cases along the first axis; the first is the 0/1 label used
    for stratification (each resample keeps the number of positives and of negatives), so a stratified
    resample always holds both classes. Resamples where the metric is NaN are dropped (with a warning
    if more than 1% are). Unstratified resampling draws cases freely and works for any first array.
    """
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array (the labels first)")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    arrs = [np.asarray(a) for a in arrays]
    size = arrs[0].shape[0] if arrs[0].ndim else 0
    bad = [a.shape for a in arrs if a.ndim == 0 or a.shape[0] != size]
    if bad:
        raise ValueError(f"arrays must share their first dimension; got shapes {[a.shape for a in arrs]}")
    estimate = float(metric(*arrs))
    if size == 0:
        return estimate, math.nan, math.nan
    rng = np.random.default_rng(seed)
    if stratified:
        y = as_labels(arrs[0], "the first array (labels)")
        groups = [np.flatnonzero(y == c) for c in (0, 1) if (y == c).any()]
        idx = np.concatenate([g[rng.integers(0, g.size, size=(n, g.size))] for g in groups], axis=1)
    else:
        idx = rng.integers(0, size, size=(n, size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # degenerate resamples are counted below
        values = np.array([float(metric(*(a[i] for a in arrs))) for i in idx])
    ok = ~np.isnan(values)
    if ok.sum() < 0.99 * n:
        warnings.warn(f"bootstrap: metric undefined in {n - ok.sum()} of {n} resamples; they are dropped", stacklevel=2)
    if not ok.any():
        return estimate, math.nan, math.nan
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(values[ok], [alpha, 1.0 - alpha])
    return estimate, float(low), float(high)
