"""Boxes through the geometric augmentations (issue 18): flips and rotations of ``transforms`` / ``device_augment``.

Boxes are (N, 4) x0, y0, x1, y1 in pixel-edge coordinates of an (H, W) image (pixel column i spans [i, i + 1)),
as the detection datasets store them. One implementation serves both augmentation paths: the loader path
(``transforms.augment_detection``, numpy in and out) and the device path (``device_augment.DetectionBatchAugment``):
the same parameters move a box the same way, wherever its image was augmented.

Rotation: the image rotation of both paths (``scipy.ndimage.rotate`` and its ``grid_sample`` twin) reads output
pixel p from input position R·(p − c) + c, R = [[cos, sin], [−sin, cos]] on (y, x), c the image centre; a point
of the input therefore lands at Rᵀ·(q − c) + c. A rotated box is no longer axis-aligned: the new box is the one
enclosing its four rotated corners (it holds everything the old box held), clipped to the image. Boxes left
thinner than ``MIN_SIDE`` pixels by the clipping (a lesion rotated out of the frame) are dropped, with their labels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

MIN_SIDE = 1.0  # pixels: a box thinner than this after clipping no longer shows its lesion


def hflip_boxes(boxes: Tensor, width: int) -> Tensor:
    """(N, 4) boxes of a left-right flipped image of ``width`` pixels."""
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


def vflip_boxes(boxes: Tensor, height: int) -> Tensor:
    """(N, 4) boxes of an up-down flipped image of ``height`` pixels."""
    return torch.stack([boxes[:, 0], height - boxes[:, 3], boxes[:, 2], height - boxes[:, 1]], dim=1)


def rotate_boxes(boxes: Tensor, degrees: float, size: tuple[int, int]) -> Tensor:
    """(N, 4) boxes enclosing the rotated (N, 4) boxes of an (H, W) image rotated by ``degrees`` about its centre
    (the sense of ``device_augment.rotate``), clipped to the image; not yet filtered (see :func:`keep_visible`)."""
    if not len(boxes):
        return boxes
    h, w = size
    rad = math.radians(float(degrees))
    cos, sin = math.cos(rad), math.sin(rad)
    cx, cy = w / 2.0, h / 2.0  # the centre (W − 1) / 2 of pixel indices is W / 2 in edge coordinates
    xs = boxes[:, [0, 2, 2, 0]].double() - cx  # (N, 4) corners
    ys = boxes[:, [1, 1, 3, 3]].double() - cy
    x_out = sin * ys + cos * xs + cx  # Rᵀ·(q − c) + c, row (y) and column (x) parts
    y_out = cos * ys - sin * xs + cy
    out = torch.stack([x_out.amin(1), y_out.amin(1), x_out.amax(1), y_out.amax(1)], dim=1)
    return clip_boxes(out, size).to(boxes.dtype)


def clip_boxes(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """(N, 4) boxes clipped to an (H, W) image."""
    h, w = size
    lim = boxes.new_tensor([w, h, w, h])
    return torch.minimum(boxes.clamp_min(0.0), lim)


def keep_visible(boxes: Tensor) -> Tensor:
    """(N,) bool: the boxes at least ``MIN_SIDE`` pixels wide and high."""
    return ((boxes[:, 2] - boxes[:, 0]) >= MIN_SIDE) & ((boxes[:, 3] - boxes[:, 1]) >= MIN_SIDE)


def transform_boxes(
    boxes: Tensor, size: tuple[int, int], hflip: bool, vflip: bool, degrees: float | None
) -> tuple[Tensor, Tensor]:
    """(N, 4) boxes through hflip, vflip, then a rotation (None: none), in the augmentations' order.

    Returns the boxes that stay visible and the (N,) bool mask of which input boxes they are (to filter labels).
    """
    h, w = size
    out = boxes.to(torch.float32).reshape(-1, 4)
    if hflip:
        out = hflip_boxes(out, w)
    if vflip:
        out = vflip_boxes(out, h)
    if degrees is not None:
        out = rotate_boxes(out, degrees, size)
    keep = keep_visible(out)
    return out[keep], keep


__all__ = ["hflip_boxes", "vflip_boxes", "rotate_boxes", "clip_boxes", "keep_visible", "transform_boxes"]
