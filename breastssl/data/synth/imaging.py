"""The acquisition model shared by synthetic mammography and DBT: blur, noise, tone curve, storage."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .vendors import VendorModel


def correlated_noise(shape: tuple[int, ...], grain: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-std Gaussian noise, correlated in-plane over ``grain`` px (per slice for 3D shapes)."""
    n = rng.standard_normal(shape).astype(np.float32)
    if grain > 0:
        sig = (0.0, grain, grain) if len(shape) == 3 else grain
        n = ndimage.gaussian_filter(n, sig)
        n /= n.std() + 1e-8
    return n


def tone_curve(x: np.ndarray, vendor: VendorModel) -> np.ndarray:
    """Map relative attenuation in [0, 1] to display-ready values in [0, 1] with the vendor's curve."""
    x = np.clip(x, 0.0, 1.0)
    k = vendor.tone_param
    if vendor.tone == "log":
        y = np.log1p(k * x) / np.log1p(k)
    elif vendor.tone == "gamma":
        y = x**k
    else:  # sigmoid, rescaled so that 0 -> 0 and 1 -> 1
        lo, hi = 1 / (1 + np.exp(k * 0.45)), 1 / (1 + np.exp(-k * 0.55))
        y = (1 / (1 + np.exp(-k * (x - 0.45))) - lo) / (hi - lo)
    return y + vendor.brightness * (x > 0.02)


def acquire(
    att: np.ndarray, body: np.ndarray, vendor: VendorModel, rng: np.random.Generator, full_scale: float = 1.4
) -> tuple[np.ndarray, tuple[float, float]]:
    """Image ``att`` (relative attenuation, (H, W) or (D, H, W)) as the vendor would store it.

    ``body`` is the breast mask (same shape or broadcastable); air stays near zero. Returns the stored
    uint16 array and a (window centre, window width) covering the breast.
    """
    x = ndimage.gaussian_filter(att, (0.0, vendor.psf_sigma, vendor.psf_sigma) if att.ndim == 3 else vendor.psf_sigma)
    x = x / full_scale
    noise = correlated_noise(att.shape, vendor.noise_grain, rng)
    x = x + vendor.noise_sigma * np.sqrt(0.15 + np.clip(x, 0, 1)) * noise * (0.3 + 0.7 * body)
    y = np.clip(tone_curve(x, vendor), 0.0, 1.0)
    top = 2**vendor.bits_stored - 1
    stored = np.round(y * top).astype(np.uint16)
    inside = stored[np.broadcast_to(body > 0.5, stored.shape)]
    if inside.size:
        lo, hi = np.percentile(inside, [1, 99])
    else:
        lo, hi = 0.0, float(top)
    width = max(float(hi - lo) * 1.3, 1.0)
    return stored, (round(float(lo + hi) / 2, 1), round(width, 1))
