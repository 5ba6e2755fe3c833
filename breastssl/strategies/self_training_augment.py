"""Batch augmentation of the self-training method (seed 002, §4.2): flips, affine, Gaussian noise.

The paper trains with "random horizontal and vertical flipping, Gaussian noise, affine transformation
(rotation, scaling)". Geometric transforms move the main image, the contralateral image and the pixel
target together (the two views stay aligned, the target stays on the lesion); photometric ones (noise,
contrast) touch the images only. Without augmentation a weak TP image's soft target is the map the
same model produced when the round was mined, so at the start of a round the soft focal term sits at
its minimum (p = y) with zero gradient; augmentation makes the student match its own map under a
transformed input, a consistency signal.

Augmentation runs on whole batches inside the strategy's ``loss`` (so mining and evaluation, which score
the raw arrays, never see it). Every random number comes from torch's global CPU generator, drawn in the
main process: the training loop saves and restores that generator with each checkpoint, so a resumed run
draws the same transforms as the uninterrupted one (augmentation inside DataLoader workers would not).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from ..config import Section


class PairAugmentConfig(Section):
    """Which transforms run and how strongly; each fires per item with its own probability."""

    enabled: bool = True
    hflip: float = Field(0.5, ge=0, le=1, description="probability of a left-right flip")
    vflip: float = Field(0.5, ge=0, le=1, description="probability of an up-down flip")
    affine: float = Field(0.5, ge=0, le=1, description="probability of a rotation + scaling (+ translation)")
    max_degrees: float = Field(10.0, ge=0, description="rotation drawn from ±max_degrees")
    max_scale: float = Field(0.1, ge=0, lt=1, description="zoom factor drawn from 1 ± max_scale")
    max_translate: float = Field(0.0, ge=0, le=0.5, description="shift drawn from ±this fraction of the size")
    noise: float = Field(0.5, ge=0, le=1, description="probability of additive Gaussian noise")
    noise_std: float = Field(0.02, ge=0)
    contrast: float = Field(0.0, ge=0, le=1, description="probability of a contrast change (not in the paper)")
    max_contrast: float = Field(0.1, ge=0, lt=1, description="contrast factor drawn from 1 ± max_contrast")


def _theta(u: Tensor, v: Tensor, cfg: PairAugmentConfig, h: int, w: int) -> tuple[Tensor, Tensor]:
    """Affine matrices (B, 2, 3) for ``F.affine_grid`` and the items (B,) bool they move.

    u: (B, 3) uniforms in [0, 1) deciding hflip, vflip, affine; v: (B, 4) in [−1, 1) giving angle, scale,
    tx, ty. Rotation and scaling are built in pixel space and conjugated into the normalised coordinates
    of ``affine_grid`` (x over W, y over H), so a non-square image rotates without shearing.
    """
    b = u.shape[0]
    hf, vf, af = u[:, 0] < cfg.hflip, u[:, 1] < cfg.vflip, u[:, 2] < cfg.affine
    angle = torch.where(af, v[:, 0] * math.radians(cfg.max_degrees), torch.zeros(b))
    zoom = torch.where(af, 1.0 + v[:, 1] * cfg.max_scale, torch.ones(b))
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom  # output → input: a zoom-in samples less
    fx = torch.where(hf, -1.0, 1.0)
    fy = torch.where(vf, -1.0, 1.0)
    a = torch.zeros(b, 2, 3)
    # pixel-space rotation R conjugated by D = diag(w/2, h/2): D⁻¹ R D, then the flips on the output side
    a[:, 0, 0], a[:, 0, 1] = cos * fx, -sin * (h / w) * fy
    a[:, 1, 0], a[:, 1, 1] = sin * (w / h) * fx, cos * fy
    a[:, 0, 2] = torch.where(af, 2 * v[:, 2] * cfg.max_translate, torch.zeros(b))
    a[:, 1, 2] = torch.where(af, 2 * v[:, 3] * cfg.max_translate, torch.zeros(b))
    return a, hf | vf | af


def _warp(x: Tensor, theta: Tensor) -> Tensor:
    """Resample x (B, C, H, W) by theta (B, 2, 3); outside the image is 0 (the mammogram background)."""
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _warp_target(target: Tensor, theta: Tensor) -> Tensor:
    """Warp a target (B, 1, H, W); a binary one (GT or CRF mask) is re-binarised so it stays hard."""
    hard = ((target == 0) | (target == 1)).flatten(1).all(dim=1)
    warped = _warp(target, theta)
    return torch.where(hard[:, None, None, None], (warped > 0.5).to(warped.dtype), warped)


def _photometric(x: Tensor, factor: Tensor, noisy: Tensor, std: float, generator: torch.Generator | None) -> Tensor:
    """Contrast factor (B,) about each image's mean, then Gaussian noise on the items ``noisy`` (B,) bool; clamp."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factor.to(x.device, x.dtype)[:, None, None, None] + mean
    if bool(noisy.any()) and std > 0:
        idx = noisy.nonzero()[:, 0].to(x.device)
        # the noise is drawn on x's device (no full-size host→device copy) from a seed the CPU stream gives
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        g = torch.Generator(device=x.device).manual_seed(seed)
        noise = torch.randn((len(idx), *x.shape[1:]), generator=g, device=x.device, dtype=x.dtype) * std
        x = x.index_add(0, idx, noise)
    return x.clamp(0.0, 1.0)


def augment_batch(
    image: Tensor, aux: Tensor | None, target: Tensor, cfg: PairAugmentConfig, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor | None, Tensor]:
    """One random augmentation per item of image, aux (B, C, H, W) in [0, 1] and target (B, 1, H, W).

    Returns the three with the same shapes. The same flip/affine is applied to the three tensors of an
    item; contrast (same factor for both views) and noise (independent draws) to image and aux only.
    The decisions and parameters are drawn up front, noise last (only for the items it fires on).
    ``generator``: a CPU generator (default: torch's global one, which the loop checkpoints).
    """
    b, _, h, w = image.shape
    u = torch.rand(b, 5, generator=generator)  # hflip, vflip, affine, noise, contrast
    v = torch.rand(b, 5, generator=generator) * 2 - 1  # angle, scale, tx, ty, contrast factor
    theta, moved = _theta(u[:, :3], v[:, :4], cfg, h, w)
    if bool(moved.any()):  # warping is exact at identity, but needless work
        idx = moved.nonzero()[:, 0].to(image.device)
        image = image.index_copy(0, idx, _warp(image[idx], theta[moved]))
        target = target.index_copy(0, idx, _warp_target(target[idx], theta[moved]))
        if aux is not None:
            aux = aux.index_copy(0, idx, _warp(aux[idx], theta[moved]))
    noisy = u[:, 3] < cfg.noise
    factor = torch.where(u[:, 4] < cfg.contrast, 1.0 + v[:, 4] * cfg.max_contrast, torch.ones(b))
    image = _photometric(image, factor, noisy, cfg.noise_std, generator)
    if aux is not None:  # its own noise draw: the two views are two exposures
        aux = _photometric(aux, factor, noisy, cfg.noise_std, generator)
    return image, aux, target
