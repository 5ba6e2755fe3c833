"""Fast NumPy mean field of the two-label dense CRF: filtering instead of an N² kernel (seed 002, stage 2.1).

The model and the update are those of ``crf.py`` (Potts, symmetric normalisation, ``iterations`` mean-field
steps); only the message Σ_j k(i, j)·x_j is computed differently:

- smoothness kernel exp(−|p_i − p_j|² / 2θ_γ²): a separable Gaussian blur (``scipy.ndimage``), exact up to
  the 4σ truncation;
- appearance kernel exp(−|p_i − p_j|² / 2θ_α² − |I_i − I_j|² / 2θ_β²): piecewise-linear in the intensity
  (a bilateral grid that keeps full spatial resolution): for intensity levels c_l spaced ``range_step``·θ_β
  apart, blur exp(−|c_l − I_j|² / 2θ_β²)·x_j spatially, then read each pixel between the two levels that
  bracket its own intensity. A grey-level image makes the range one-dimensional, so this costs
  L spatial blurs (L ≈ intensity span / step) where pydensecrf's permutohedral lattice works in 5-D (x, y, r, g, b).

With two labels Q(background) = 1 − Q(lesion), so each kernel is applied once per iteration (to Q(lesion));
its message to the background is K·1 − K·Q(lesion), and K·1 is computed once. Cost per image: (iterations + 2)
applications of each filter, O(H·W·(L + 1)·taps); memory O(L·H·W). Pure NumPy/SciPy (no torch), so it runs
safely in forked worker processes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
from scipy import ndimage, sparse

EPS = 1e-5
TRUNCATE = 4.0  # Gaussian support in σ: the dropped tail weighs exp(−8) ≈ 3e-4 of the peak


@functools.lru_cache(maxsize=64)
def _resample_matrix(n_in: int, n_out: int) -> sparse.csr_matrix:
    """(n_out, n_in) linear resampling along one axis: area averaging when shrinking (no aliasing of the
    noisy map), bilinear with half-pixel centres (torch's align_corners=False) when enlarging."""
    if n_out < n_in:
        r = n_in / n_out
        rows, cols, vals = [], [], []
        for k in range(n_out):
            a, b = k * r, (k + 1) * r
            for j in range(int(math.floor(a)), min(n_in, int(math.ceil(b)))):
                overlap = min(b, j + 1) - max(a, j)
                if overlap > 1e-12:
                    rows.append(k), cols.append(j), vals.append(overlap / r)
        return sparse.csr_matrix((vals, (rows, cols)), shape=(n_out, n_in))
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    t = src - i0
    k = np.arange(n_out)
    m = sparse.csr_matrix((1 - t, (k, i0)), shape=(n_out, n_in)) + sparse.csr_matrix((t, (k, i1)), shape=(n_out, n_in))
    return m.tocsr()


def resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., H, W) → (..., *size) float32, separably (sparse products: no BLAS threads, safe in forked workers)."""
    *lead, h, w = arr.shape
    if (h, w) == tuple(size):
        return arr.astype(np.float32)
    ry, rx = _resample_matrix(h, size[0]), _resample_matrix(w, size[1])
    x = np.moveaxis(arr.astype(np.float64), -2, 0).reshape(h, -1)  # (H, …·W): one product for the whole stack
    x = np.asarray(ry @ x).reshape(size[0], *lead, w)
    x = np.moveaxis(x, -1, 0).reshape(w, -1)  # (W, h'·…)
    x = np.asarray(rx @ x).reshape(size[1], size[0], *lead)
    return np.moveaxis(x, (0, 1), (-1, -2)).astype(np.float32)


def logit(prob: np.ndarray) -> np.ndarray:
    """log P(lesion) − log P(background), the unary difference U_bg − U_lesion: (H, W) float64."""
    p = np.clip(prob.astype(np.float64), EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p)


def gaussian_filter(sigma: float) -> Callable[[np.ndarray], np.ndarray]:
    """x (H, W) ↦ Σ_j exp(−|p_i − p_j|² / 2σ²)·x_j up to a constant factor (which the normalisation cancels);
    pixels outside the image contribute nothing, as in the dense sum."""

    def apply(x: np.ndarray) -> np.ndarray:  # (..., H, W): the last two axes
        if sigma <= 0:
            return x.copy()
        sig = (0.0,) * (x.ndim - 2) + (sigma, sigma)
        return ndimage.gaussian_filter(x, sig, mode="constant", cval=0.0, truncate=TRUNCATE)

    return apply


def bilateral_filter(
    intensity: np.ndarray, sxy: float, srgb: float, range_step: float = 0.5
) -> Callable[[np.ndarray], np.ndarray]:
    """x (H, W) ↦ Σ_j exp(−|p_i − p_j|² / 2sxy² − |I_i − I_j|² / 2srgb²)·x_j, up to a constant factor.

    intensity: (H, W) on the 0–255 scale. Levels are ``range_step``·srgb apart (0.5: the linear interpolation
    of the range Gaussian errs by ≤ ~3% of its peak); each pixel reads the two levels around its intensity.
    """
    # the bilateral grid's spatial subsampling: the blur of σ = sxy is done on cells of d ≈ sxy/2 pixels
    # (σ = 2 cells there), so its cost stops growing with sxy; the area-down, bilinear-up round trip of a
    # signal blurred that much loses little
    d = max(1, int(sxy / 2))
    shape = intensity.shape
    small = (max(1, round(shape[0] / d)), max(1, round(shape[1] / d)))
    blur = gaussian_filter(sxy * math.sqrt(small[0] * small[1] / (shape[0] * shape[1])))

    def spatial(x: np.ndarray) -> np.ndarray:
        return resize(blur(resize(x, small)), shape) if d > 1 else blur(x)

    lo, hi = float(intensity.min()), float(intensity.max())
    step = max(range_step * srgb, 1e-6)
    n_levels = max(2, math.ceil((hi - lo) / step) + 1)
    levels = lo + step * np.arange(n_levels)
    # range weights of every level at every pixel: (L, H, W), computed once per image
    weights = np.exp(-((intensity[None] - levels[:, None, None]) ** 2) / (2 * srgb**2))
    pos = np.clip((intensity - lo) / step, 0, n_levels - 1 - 1e-9)
    lower = pos.astype(np.intp)
    frac = pos - lower
    rows, cols = np.indices(intensity.shape)

    def apply(x: np.ndarray) -> np.ndarray:
        blurred = spatial(weights * x)  # (L, H, W)
        below = blurred[lower, rows, cols]
        above = blurred[lower + 1, rows, cols]
        return (1.0 - frac) * below + frac * above

    return apply


def _normalised(filt: Callable[[np.ndarray], np.ndarray], shape: tuple[int, int]):
    """D^{-1/2} K D^{-1/2} (pydensecrf's NORMALIZE_SYMMETRIC) as a function, and its image of ones (H, W)."""
    norm = 1.0 / np.sqrt(np.maximum(filt(np.ones(shape)), 1e-20))

    def apply(x: np.ndarray) -> np.ndarray:
        return norm * filt(norm * x)

    return apply, apply(np.ones(shape))


def mean_field(
    prob: np.ndarray,
    image: np.ndarray,
    sxy_gaussian: float,
    compat_gaussian: float,
    sxy_bilateral: float,
    srgb: float,
    compat_bilateral: float,
    iterations: int,
    range_step: float = 0.5,
) -> np.ndarray:
    """Q(lesion) (H, W) float32 after ``iterations`` mean-field steps; prob (H, W) in [0, 1], image (H, W) in [0, 1].

    Kernel widths are in pixels of the arrays given (the caller scales them when it works on a coarser grid).
    """
    shape = prob.shape
    intensity = np.clip(image.astype(np.float64), 0, 1) * 255
    kernels = []
    if compat_gaussian:
        kernels.append((compat_gaussian, *_normalised(gaussian_filter(sxy_gaussian), shape)))
    if compat_bilateral:
        bilateral = bilateral_filter(intensity, sxy_bilateral, srgb, range_step)
        kernels.append((compat_bilateral, *_normalised(bilateral, shape)))
    base = logit(prob)
    q = 1.0 / (1.0 + np.exp(-base))
    for _ in range(iterations if kernels else 0):
        # softmax over two labels = sigmoid of the difference; the lesion label gets w·K̃Q, the background
        # w·K̃(1 − Q) = w·(K̃1 − K̃Q), hence the difference w·(2K̃Q − K̃1)
        act = base.copy()
        for w, filt, ones in kernels:
            act += w * (2.0 * filt(q) - ones)
        q = 1.0 / (1.0 + np.exp(-act))
    return q.astype(np.float32)
