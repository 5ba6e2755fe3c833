"""Shared building blocks of the synthetic generator: seeding, texture, breast shape, lesion shapes.

Geometry convention for rendering: the chest wall is on the left (column 0) and the nipple points
right; the writer mirrors right breasts so that stored images follow the DICOM display convention
(right breast: chest wall on the right). Everything is float32 and seeded from one integer per item
through :func:`rng_for`, so an item is identical whatever the number of worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """A generator for item ``keys`` of a dataset seeded with ``seed``, independent of order."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=tuple(int(k) for k in keys)))


def draw_exam_labels(
    rng: np.random.Generator,
    vendors: list[str],
    vendor_weights: list[float],
    exam_mix: dict[str, float],
    p_benign_beside_cancer: float,
    p_bilateral_benign: float,
) -> tuple[str, str, dict[str, str]]:
    """(vendor, exam class, per-breast labels {"L", "R"}) of one exam, drawn in a fixed order.

    A cancer exam has one cancer breast, the other benign with ``p_benign_beside_cancer``; a benign exam
    has one benign breast, both with ``p_bilateral_benign``; a normal exam has two normal breasts.
    """
    weights = np.asarray(vendor_weights, dtype=float)
    vendor = vendors[int(rng.choice(len(vendors), p=weights / weights.sum()))]
    classes = list(exam_mix)
    probs = np.array([exam_mix[c] for c in classes], dtype=float)
    exam_class = classes[int(rng.choice(len(classes), p=probs / probs.sum()))]
    side = "L" if rng.random() < 0.5 else "R"
    other = "R" if side == "L" else "L"
    labels = {"L": "normal", "R": "normal"}
    if exam_class == "cancer":
        labels[side] = "cancer"
        labels[other] = "benign" if rng.random() < p_benign_beside_cancer else "normal"
    elif exam_class == "benign":
        labels[side] = "benign"
        if rng.random() < p_bilateral_benign:
            labels[other] = "benign"
    return vendor, exam_class, labels


def power_law_field(
    shape: tuple[int, ...], beta: float, rng: np.random.Generator, anisotropy: tuple[float, ...] | None = None
) -> np.ndarray:
    """Gaussian random field with power spectrum ∝ 1/|f|^beta, zero mean and unit std.

    Mammographic parenchyma has beta ≈ 2.5–3.5 (Burgess 2001). ``anisotropy`` scales the frequency
    axis of each dimension (a value > 1 makes the field smoother along that axis), which is how the
    z-correlation of DBT tissue is set per vendor. Returns float32 of ``shape``.
    """
    freqs = np.meshgrid(*[np.fft.fftfreq(n) for n in shape[:-1]], np.fft.rfftfreq(shape[-1]), indexing="ij")
    scales = anisotropy or (1.0,) * len(shape)
    f2 = sum((f * s) ** 2 for f, s in zip(freqs, scales, strict=True))
    f2.flat[0] = np.inf  # no DC
    amp = f2 ** (-beta / 4.0)
    noise = rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape)
    field = np.fft.irfftn(noise * amp, s=shape, axes=tuple(range(len(shape))))
    field -= field.mean()
    field /= field.std() + 1e-12
    return field.astype(np.float32)


@dataclass
class BreastShape:
    """A breast outline on an (h, w) grid: chest wall at column 0, nipple to the right."""

    mask: np.ndarray  # (h, w) float32 in [0, 1], soft edge
    thickness: np.ndarray  # (h, w) float32, relative path length through tissue (1 inside, falls to 0 at skin)
    pectoral: np.ndarray  # (h, w) float32 in [0, 1]; non-zero only for MLO views
    center_row: float
    depth: float  # nipple distance from the chest wall, pixels


def breast_shape(h: int, w: int, view: str, rng: np.random.Generator) -> BreastShape:
    """A half-ellipse breast with a soft skin edge, plus a pectoral triangle on MLO views."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    depth = w * rng.uniform(0.72, 0.92)
    half_height = h * rng.uniform(0.36, 0.46)
    cy = h * (0.5 + rng.uniform(-0.04, 0.04)) + (h * 0.06 if view == "MLO" else 0.0)
    # A slightly flattened ellipse: power 2.2 on the x term squares the nipple region off a little.
    r = np.sqrt((np.abs(xx / depth) ** 2.2) + ((yy - cy) / half_height) ** 2)
    edge = max(1.0, 0.015 * w)
    mask = 1.0 / (1.0 + np.exp((r - 1.0) * depth / edge))
    thickness = np.clip(np.sqrt(np.clip(1.0 - r**2, 0.0, 1.0)) * 1.6, 0.0, 1.0)
    pectoral = np.zeros((h, w), np.float32)
    if view == "MLO":
        # The pectoral muscle: a triangle with its base along the top edge and its height along the chest
        # wall. On an MLO the breast (with the axillary tail) reaches the top edge there, so the triangle is
        # part of the body rather than clipped by the ellipse.
        pw, ph = w * rng.uniform(0.25, 0.42), h * rng.uniform(0.5, 0.8)
        line = 1.0 - xx / pw - yy / ph
        pectoral = np.clip(line * 8.0, 0.0, 1.0).astype(np.float32)
        mask = np.maximum(mask, pectoral)
        thickness = np.maximum(thickness, pectoral)
    return BreastShape(mask.astype(np.float32), thickness.astype(np.float32), pectoral, float(cy), float(depth))


def fibroglandular(field: np.ndarray, density: float, softness: float = 0.6) -> np.ndarray:
    """Turn a unit Gaussian field into a fibroglandular fraction in [0, 1] with mean ≈ ``density``.

    A soft threshold of the field at its ``1 - density`` quantile gives clumped dense tissue with
    fatty gaps, the structure that masks lesions in dense breasts.
    """
    from scipy.stats import norm

    thr = float(norm.ppf(1.0 - np.clip(density, 0.02, 0.98)))
    return (1.0 / (1.0 + np.exp(-(field - thr) / softness))).astype(np.float32)


@dataclass
class LesionShape:
    """A lesion's in-plane density profile on a local grid."""

    profile: np.ndarray  # (h, w) float32 in [0, 1]: relative density
    mask: np.ndarray  # (h, w) bool: the annotated contour (mass body, spicules excluded)


def _polar(h: int, w: int, cy: float, cx: float, angle: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    return u, v, np.hypot(dx, dy), np.arctan2(dy, dx)


def benign_lesion(
    h: int,
    w: int,
    cy: float,
    cx: float,
    radius: float,
    rng: np.random.Generator,
    aspect: float | None = None,
    angle: float | None = None,
) -> LesionShape:
    """Circumscribed oval mass: smooth ellipse with a sharp margin and a dome profile."""
    aspect = aspect if aspect is not None else rng.uniform(1.1, 1.7)
    angle = angle if angle is not None else rng.uniform(0, np.pi)
    u, v, _, _ = _polar(h, w, cy, cx, angle)
    a, b = radius * np.sqrt(aspect), radius / np.sqrt(aspect)
    r = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    profile = np.clip(1.0 - r**2, 0.0, 1.0) ** 0.35
    # Sharp margin: a narrow transition, about half a pixel wide.
    edge = 1.0 / (1.0 + np.exp((r - 1.0) * radius / 0.5))
    profile = (profile * 0.6 + 0.4) * edge
    return LesionShape(profile.astype(np.float32), r <= 1.0)


def malignant_lesion(
    h: int, w: int, cy: float, cx: float, radius: float, rng: np.random.Generator, n_spicules: int | None = None
) -> LesionShape:
    """Irregular spiculated mass: a lobulated, ill-defined body with thin radiating spicules."""
    u, v, dist, theta = _polar(h, w, cy, cx, 0.0)
    del u, v
    r_theta = np.ones_like(theta)
    for k in range(2, 8):  # irregular outline: random low-order harmonics
        r_theta += rng.uniform(0.04, 0.16) / k**0.3 * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    r_theta *= radius
    rel = dist / np.maximum(r_theta, 1e-3)
    body = np.clip(1.0 - rel**2, 0.0, 1.0) ** 0.5
    # Ill-defined margin: a wide transition (about 1.5 px) instead of the benign half pixel.
    # np.clip keeps exp finite far from the lesion (the sigmoid is 0 there anyway).
    body = np.maximum(body, 1.0 / (1.0 + np.exp(np.clip((rel - 1.0) * radius / 1.5, -50, 50))) * 0.5)
    spic = np.zeros_like(body)
    n = n_spicules if n_spicules is not None else int(rng.integers(7, 16))
    for _ in range(n):
        phi = rng.uniform(0, 2 * np.pi)
        length = radius * rng.uniform(1.6, 3.2)
        width = max(0.45, radius * rng.uniform(0.05, 0.10))
        along = np.cos(phi) * (dist * np.cos(theta)) + np.sin(phi) * (dist * np.sin(theta))
        across = np.abs(-np.sin(phi) * (dist * np.cos(theta)) + np.cos(phi) * (dist * np.sin(theta)))
        ray = np.exp(-0.5 * (across / width) ** 2) * (along > 0) * np.clip(1.0 - along / length, 0.0, 1.0)
        spic = np.maximum(spic, ray * rng.uniform(0.45, 0.8))
    profile = np.maximum(body, spic)
    return LesionShape(profile.astype(np.float32), rel <= 1.0)


def lesion_shape(
    kind: str, h: int, w: int, cy: float, cx: float, radius: float, rng: np.random.Generator
) -> LesionShape:
    """Dispatch on ``kind`` ('malignant' | 'benign')."""
    if kind == "malignant":
        return malignant_lesion(h, w, cy, cx, radius, rng)
    if kind == "benign":
        return benign_lesion(h, w, cy, cx, radius, rng)
    raise ValueError(f"unknown lesion kind {kind!r}")


def place_in_breast(
    shape: BreastShape, radius: float, rng: np.random.Generator, margin: float = 1.5
) -> tuple[float, float]:
    """A lesion centre (row, col) well inside the breast and off the pectoral muscle."""
    h, w = shape.mask.shape
    inside = (shape.mask > 0.98) & (shape.pectoral < 0.05)
    inside = ndimage.binary_erosion(inside, iterations=max(1, int(radius * margin)))
    rows, cols = np.nonzero(inside)
    if rows.size == 0:
        return h / 2.0, shape.depth / 2.0
    i = int(rng.integers(rows.size))
    return float(rows[i] + rng.uniform(-0.5, 0.5)), float(cols[i] + rng.uniform(-0.5, 0.5))


def mask_bbox(mask: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, w, h) of a boolean mask's bounding box, in pixels."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return 0.0, 0.0, 0.0, 0.0
    return float(cols.min()), float(rows.min()), float(cols.max() - cols.min() + 1), float(rows.max() - rows.min() + 1)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """In-plane Gaussian blur of a 2D image, or of each slice of a (D, H, W) stack."""
    if sigma <= 0:
        return img
    sig = (0.0, sigma, sigma) if img.ndim == 3 else sigma
    return ndimage.gaussian_filter(img, sig, mode="nearest")
