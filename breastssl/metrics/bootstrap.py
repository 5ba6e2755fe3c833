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


# -- two-level bootstrap over training seeds × test cases (DESIGN §11) ---------------------------------------
# A method's effect is measured over several training seeds on one test set. Its CI must hold both sources of
# variance: each replicate resamples the test cases (as counts per case, within strata) and, independently,
# the seeds; the replicated mean over seeds then widens with either. A metric that can take case weights
# (weighted AUC, weighted FROC) scores every replicate from one sort.


def case_weights(strata: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Resampling counts (n_boot, N) float: each stratum of ``strata`` (N,) resampled with replacement apart.

    Strata are visited in sorted order; with labels as strata every replicate keeps both classes.
    """
    strata = np.asarray(strata)
    weights = np.zeros((n_boot, len(strata)))
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        weights[:, members] = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), n_boot)
    return weights


def seed_draws(n_boot: int, rng: np.random.Generator, max_seeds: int = 64) -> np.ndarray:
    """Uniform draws (n_boot, max_seeds) that ``resampled_seed_means`` turns into seed resamples.

    Drawn once and shared by every comparison of a table, so all of them see the same seed resamples.
    """
    return rng.random((n_boot, max_seeds))


def resampled_seed_means(per_seed: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Means (B,) over seeds resampled with replacement of replicated values per_seed (B, S)."""
    s = per_seed.shape[1]
    if s > draws.shape[1]:
        raise ValueError(f"{s} seeds but seed draws for at most {draws.shape[1]}")
    pick = (draws[:, :s] * s).astype(int)
    return np.take_along_axis(per_seed, pick, axis=1).mean(axis=1)


def seeds_cases_summary(point: np.ndarray, boot: np.ndarray, draws: np.ndarray, level: float = 0.95) -> dict:
    """Mean over seeds of point (S,), its CI from boot (B, S) case replicates and ``draws`` of the seeds.

    Returns {seeds, mean, ci_low, ci_high, seeds_positive (point > 0), sd (over seeds; NaN for one seed)}.
    """
    point = np.asarray(point, float)
    lo, hi = np.nanpercentile(resampled_seed_means(boot, draws), [50 * (1 - level), 50 * (1 + level)])
    return {"seeds": len(point), "mean": float(point.mean()), "ci_low": float(lo), "ci_high": float(hi),
            "seeds_positive": int((point > 0).sum()),
            "sd": float(point.std(ddof=1)) if len(point) > 1 else float("nan")}  # fmt: skip
