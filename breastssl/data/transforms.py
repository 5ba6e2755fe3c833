"""Augmentations of a slice and its mask together (SelectiveKD paper §3.2).

Geometric transforms (flips, small rotations) move image and mask together; photometric ones
(brightness/contrast, Gaussian noise, sharpen, CLAHE, solarize) touch the image only. Every draw
comes from the ``numpy.random.Generator`` the caller passes, which the slice dataset seeds from
(seed, epoch, sample index): the same sample in the same epoch always gets the same augmentation,
whatever the worker, rank or resume point.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field
from scipy import ndimage

from ..config import Section


class AugmentConfig(Section):
    """Which augmentations run and how strongly; each one fires with its own probability."""

    enabled: bool = True
    hflip: float = Field(0.5, ge=0, le=1, description="probability of a left-right flip")
    vflip: float = Field(0.5, ge=0, le=1, description="probability of an up-down flip")
    rotate: float = Field(0.5, ge=0, le=1, description="probability of a rotation")
    max_degrees: float = Field(10.0, ge=0, description="rotation angle drawn from ±max_degrees")
    brightness_contrast: float = Field(0.5, ge=0, le=1)
    brightness: float = Field(0.1, ge=0, description="additive shift drawn from ±brightness")
    contrast: float = Field(0.2, ge=0, description="multiplicative factor drawn from 1 ± contrast")
    noise: float = Field(0.3, ge=0, le=1)
    noise_std: float = Field(0.02, ge=0)
    sharpen: float = Field(0.2, ge=0, le=1)
    clahe: float = Field(0.1, ge=0, le=1)
    solarize: float = Field(0.05, ge=0, le=1)
    solarize_threshold: float = Field(0.8, ge=0, le=1)


def flip(image: np.ndarray, mask: np.ndarray | None, axis: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Flip (H, W) image and mask (or None) along ``axis`` (1 = left-right, 0 = up-down)."""
    return np.flip(image, axis), (None if mask is None else np.flip(mask, axis))


def rotate(image: np.ndarray, mask: np.ndarray | None, degrees: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Rotate about the centre, same shape; the mask (or None) by nearest neighbour so it stays binary."""
    img = ndimage.rotate(image, degrees, reshape=False, order=1, mode="constant", cval=0.0)
    msk = None if mask is None else ndimage.rotate(mask, degrees, reshape=False, order=0, mode="constant", cval=0.0)
    return img, msk


def sharpen(image: np.ndarray, amount: float) -> np.ndarray:
    """Unsharp mask: image + amount·(image − blur(image))."""
    return image + amount * (image - ndimage.gaussian_filter(image, 1.0))


def clahe(image: np.ndarray, clip_limit: float = 0.01) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of an image in [0, 1]."""
    from skimage.exposure import equalize_adapthist

    h, w = image.shape
    kernel = (max(h // 4, 2), max(w // 4, 2))  # tiles scale with the slice: small demo slices get 4×4 tiles
    return equalize_adapthist(np.clip(image, 0, 1), kernel_size=kernel, clip_limit=clip_limit).astype(np.float32)


def augment(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[np.ndarray, np.ndarray]:
    """One random augmentation of a (H, W) image in [0, 1] and its (H, W) mask; returns float32 arrays.

    The decisions and parameters are drawn up front, so one transform's probability does not shift
    the random numbers of the next.
    """
    image, out, _ = _augment(image, mask, rng, cfg)
    assert out is not None
    return image, out


def augment_detection(
    image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`augment` of a (H, W) image with (N, 4) xyxy boxes (pixel edges) instead of a mask.

    Returns the float32 image, the boxes that stay visible (flipped, rotated: the box enclosing the rotated box,
    clipped; ``box_geometry``) and the (N,) bool mask of which input boxes they are. Same draws as :func:`augment`.
    """
    import torch

    from .box_geometry import transform_boxes

    image, _, (hflip, vflip, degrees) = _augment(image, None, rng, cfg)
    out, keep = transform_boxes(torch.from_numpy(np.asarray(boxes, np.float32)), image.shape[:2], hflip, vflip, degrees)
    return image, out.numpy(), keep.numpy()


def _augment(
    image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[np.ndarray, np.ndarray | None, tuple[bool, bool, float | None]]:
    """:func:`augment`, the mask optional, plus its geometry (hflip, vflip, rotation degrees or None) for boxes."""
    u = rng.random(8)
    angle, shift, factor, amount = rng.uniform(-1, 1, 4)
    hflip, vflip = bool(u[0] < cfg.hflip), bool(u[1] < cfg.vflip)
    degrees = float(angle * cfg.max_degrees) if u[2] < cfg.rotate and cfg.max_degrees > 0 else None
    if hflip:
        image, mask = flip(image, mask, 1)
    if vflip:
        image, mask = flip(image, mask, 0)
    if degrees is not None:
        image, mask = rotate(image, mask, degrees)
    if u[3] < cfg.brightness_contrast:
        mean = float(image.mean())
        image = (image - mean) * (1.0 + factor * cfg.contrast) + mean + shift * cfg.brightness
    if u[4] < cfg.clahe:
        image = clahe(image)
    if u[5] < cfg.sharpen:
        image = sharpen(image, 0.5 + 0.5 * abs(amount))
    if u[6] < cfg.noise and cfg.noise_std > 0:
        image = image + rng.normal(0.0, cfg.noise_std, image.shape)  # the last draw: nothing after it shifts
    image = np.clip(image, 0.0, 1.0)
    if u[7] < cfg.solarize:
        image = np.where(image > cfg.solarize_threshold, 1.0 - image, image)
    out = None if mask is None else mask.astype(np.float32)
    return image.astype(np.float32), out, (hflip, vflip, degrees)
