"""Synthetic mammograms with decoder-like lesion maps: inputs for measuring CRF speed and agreement.

The images come from the mammography generator (``data/synth/mammo.py``, one vendor at the reference pitch
so a view is exactly height × width, lesion radii scaled with the height). The maps imitate a segmentation
network's output: a lesion response of random strength (some lesions half-missed, as a stage-1 model does),
smooth noise and false-positive blobs, produced on a grid ``stride``× coarser than the image (the decoder's
resolution) and upsampled bilinearly, as a network's logits are.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..data.synth.mammo import MammoSynthConfig, generate_exam
from .crf import resize

DEMO_HEIGHT = 128  # the generator's default height, for which its lesion radii are set


def _config(height: int, width: int) -> MammoSynthConfig:
    zoom = height / DEMO_HEIGHT
    return MammoSynthConfig(
        height=height,
        width=width,
        vendors=["Siemens"],  # its pitch is the reference pitch: no resampling of the matrix
        vendor_weights=[1.0],
        exam_mix={"cancer": 0.5, "benign": 0.5, "normal": 0.0},
        lesion_radius_px={"malignant": (3.0 * zoom, 7.0 * zoom), "benign": (2.8 * zoom, 6.0 * zoom)},
    )


def _windowed(pixels: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    centre, width = window
    return np.clip((pixels.astype(np.float32) - (centre - width / 2)) / width, 0, 1)


def decoder_map(gt: np.ndarray, stride: int, rng: np.random.Generator) -> np.ndarray:
    """A network-like lesion probability map (H, W) float32 for a ground-truth mask (H, W) bool."""
    h, w = gt.shape
    gh, gw = max(1, h // stride), max(1, w // stride)
    g = resize(gt.astype(np.float32), (gh, gw))
    strength = rng.uniform(6.0, 16.0)  # weak responses half-miss the lesion
    noise = ndimage.gaussian_filter(rng.normal(0, 1, (gh, gw)), 1.5)
    noise *= 1.6 / max(noise.std(), 1e-6)
    logit = strength * (ndimage.gaussian_filter(g, 0.8) - 0.35) - 1.5 + noise
    for _ in range(rng.integers(0, 3)):  # false-positive blobs
        cy, cx = rng.uniform(0, gh), rng.uniform(0, gw)
        yy, xx = np.mgrid[:gh, :gw]
        logit += rng.uniform(1.0, 4.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.02 * gh) ** 2 + 1))
    prob = 1.0 / (1.0 + np.exp(-logit))
    return resize(prob.astype(np.float32), (h, w))


def mammo_scenes(
    n: int, height: int, width: int, seed: int = 0, stride: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` lesion-bearing views: images (n, H, W) in [0, 1], maps (n, H, W), ground truth (n, H, W) bool.

    stride: the decoder's, default max(1, height // 256) (full resolution at demo size, ¼ at 1024 rows).
    """
    cfg = _config(height, width)
    stride = stride or max(1, height // 256)
    rng = np.random.default_rng(seed)
    images, maps, gts = [], [], []
    index = 0
    while len(images) < n:
        _, views, _ = generate_exam(cfg, seed, index)
        index += 1
        for v in views:
            if v.lesions and len(images) < n:
                gt = np.any([les.mask > 0 for les in v.lesions], axis=0)
                images.append(_windowed(v.pixels, v.window))
                maps.append(decoder_map(gt, stride, rng))
                gts.append(gt)
    return np.stack(images), np.stack(maps), np.stack(gts)
