"""Synthetic DBT exams: four views (L/R × CC/MLO), each a stack of reconstructed slices.

Tissue is a 3D power-law random field thresholded into fibroglandular tissue, correlated in depth
by the vendor's depth resolution. A lesion is a 3D body centred on its key slice: sharp on the
slices it occupies (the key slice and about one either side), then blurred in-plane and fading with
distance in depth, faster for a wide-angle system (Siemens) than a narrow one (Hologic). Benign
lesions are circumscribed ovals, malignant ones irregular and spiculated; their contrast is drawn
from a wide distribution so that some cancers are subtle and dense tissue can mask them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import Field

from ...config import Section
from .common import (
    LesionShape,
    breast_shape,
    draw_exam_labels,
    fibroglandular,
    gaussian_blur,
    lesion_shape,
    malignant_lesion,
    mask_bbox,
    place_in_breast,
    power_law_field,
    rng_for,
)
from .imaging import acquire
from .vendors import DBT_VENDORS, VendorModel

VIEWS = [("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO")]


class DBTSynthConfig(Section):
    """Parameters of the synthetic DBT generator (defaults: demo scale)."""

    height: int = Field(80, ge=32, description="rows of a slice at 0.1 mm pitch; other pitches scale it")
    width: int = Field(64, ge=24)
    depth_scale: float = Field(0.35, gt=0, le=1.0, description="slices per mm of compressed breast (1 = 1 mm slices)")
    thickness_mm: tuple[float, float] = (40.0, 70.0)
    vendors: list[str] = ["Hologic", "GE", "Siemens"]
    vendor_weights: list[float] = [0.52, 0.18, 0.30]
    annotated_vendors: list[str] = ["Hologic"]
    exam_mix: dict[str, float] = {"cancer": 0.2, "benign": 0.45, "normal": 0.35}
    density: tuple[float, float] = (0.15, 0.65)
    beta: float = Field(3.0, description="power-law exponent of the parenchymal texture")
    lesion_radius_px: dict[str, tuple[float, float]] = {"malignant": (3.0, 6.5), "benign": (2.6, 5.5)}
    lesion_contrast: dict[str, tuple[float, float]] = {"malignant": (0.28, 0.6), "benign": (0.15, 0.45)}
    spiculation: float = Field(1.0, ge=0, description="scale of malignant spicule density (0 = none)")
    lesion_depth_factor: float = Field(
        1.0,
        gt=0,
        description="scale of a lesion's depth extent (1: at ≥ half contrast over key ±1.8 slices, ~23% "
        "of the stack; 2: ±3.5, ~35%, like a 15 mm mass in 40–70 mm of compressed breast)",
    )
    splits: dict[str, float] = {"train": 0.6, "val": 0.15, "test": 0.25}
    vendor_overrides: dict[str, dict[str, float | int | str]] = {}


@dataclass
class Lesion:
    """A rendered lesion in stored-image coordinates (after mirroring)."""

    lesion_class: str
    key_slice: int
    bbox: tuple[float, float, float, float]
    mask: np.ndarray
    radius_px: float
    contrast: float
    half_depth: float = 0.0  # slices from the key slice within which the lesion keeps ≥ half its contrast


@dataclass
class Stack:
    """One DBT view of one breast, ready to write."""

    laterality: str
    view: str
    vendor: str
    breast_label: str
    stored: np.ndarray  # (D, H, W) uint16
    window: tuple[float, float]
    density: float
    lesions: list[Lesion] = field(default_factory=list)


def vendor_model(cfg: DBTSynthConfig, name: str) -> VendorModel:
    base = DBT_VENDORS[name]
    over = cfg.vendor_overrides.get(name, {})
    return base.model_copy(update=over) if over else base


def exam_plan(cfg: DBTSynthConfig, seed: int, index: int) -> dict:
    """Draw an exam's vendor, class and per-breast labels (independent of rendering)."""
    rng = rng_for(seed, index, 0)
    vendor, exam_class, labels = draw_exam_labels(rng, cfg.vendors, cfg.vendor_weights, cfg.exam_mix, 0.2, 0.25)
    return {
        "vendor": vendor,
        "exam_class": exam_class,
        "labels": labels,
        "density": float(rng.uniform(*cfg.density)),
        "thickness": float(rng.uniform(*cfg.thickness_mm)),
    }


def _slice_weights(n_slices: int, key: float, half_thickness: float, spread: float) -> np.ndarray:
    """Visibility of a lesion on each slice: 1 inside its body, Gaussian fall-off beyond."""
    dz = np.abs(np.arange(n_slices) - key)
    beyond = np.clip(dz - half_thickness, 0.0, None)
    return np.exp(-0.5 * (beyond / max(spread, 1e-3)) ** 2)


def visible_half_depth(half_t: float, spread: float) -> float:
    """Slices from the key slice within which ``_slice_weights`` stays ≥ 0.5 (the lesion's visible extent)."""
    return half_t + max(spread, 1e-3) * float(np.sqrt(2 * np.log(2)))


def _render_lesion(
    att: np.ndarray, shape: LesionShape, key: int, half_t: float, contrast: float, vendor: VendorModel, body: np.ndarray
) -> None:
    """Add a lesion to the attenuation stack in place: sharp near ``key``, blurred and faded away from it."""
    d = att.shape[0]
    weights = _slice_weights(d, key, half_t, vendor.depth_spread * max(half_t, 0.5))
    for z in range(d):
        if weights[z] < 0.02:
            continue
        blur = vendor.out_of_plane_blur * max(0.0, abs(z - key) - half_t)
        prof = gaussian_blur(shape.profile, blur) if blur > 0.05 else shape.profile
        att[z] += contrast * weights[z] * prof * body


def render_breast(
    cfg: DBTSynthConfig, plan: dict, laterality: str, view: str, seed: int, index: int, view_index: int
) -> Stack:
    """Render one view of one breast as stored pixels plus its lesions."""
    vendor = vendor_model(cfg, plan["vendor"])
    rng = rng_for(seed, index, 1 + view_index)
    # Lesion class and geometry are drawn per breast, so CC and MLO of a breast share them.
    lrng = rng_for(seed, index, 100 + (0 if laterality == "L" else 1))
    zoom = 0.1 / vendor.spacing_mm
    h, w = int(round(cfg.height * zoom)), int(round(cfg.width * zoom))
    d = max(8, int(round(plan["thickness"] / vendor.slice_thickness_mm * cfg.depth_scale)))
    shape = breast_shape(h, w, view, rng)
    body = shape.mask
    tissue = power_law_field((d, h, w), cfg.beta, rng, anisotropy=(vendor.tissue_z_smooth / cfg.depth_scale, 1.0, 1.0))
    fg = fibroglandular(tissue, plan["density"])
    att = body[None] * (0.28 + 0.42 * vendor.tissue_contrast * fg) + 0.35 * shape.pectoral[None]
    lesions = []
    label = plan["labels"][laterality]
    kinds = {"cancer": ["malignant"], "benign": ["benign"], "normal": []}[label]
    if label == "benign" and lrng.random() < 0.2:
        kinds = ["benign", "benign"]
    for j, kind in enumerate(kinds):
        radius = float(lrng.uniform(*cfg.lesion_radius_px[kind])) * zoom
        contrast = float(lrng.uniform(*cfg.lesion_contrast[kind]))
        key = int(np.clip(round(d * lrng.uniform(0.25, 0.75)), 1, d - 2))
        half_t = radius / zoom * 0.1 / vendor.slice_thickness_mm * cfg.depth_scale * 3.0 * cfg.lesion_depth_factor
        cy, cx = place_in_breast(shape, radius, rng)
        srng = rng_for(seed, index, 200 + view_index * 10 + j)
        if kind == "malignant" and cfg.spiculation != 1.0:
            n = int(round(srng.integers(7, 16) * cfg.spiculation))
            les = malignant_lesion(h, w, cy, cx, radius, srng, n_spicules=n)
        else:
            les = lesion_shape(kind, h, w, cy, cx, radius, srng)
        half_t = max(half_t, 0.6)
        _render_lesion(att, les, key, half_t, contrast, vendor, body)
        lesions.append((kind, key, les, radius, contrast, visible_half_depth(half_t, vendor.depth_spread * half_t)))
    stored, window = acquire(att, body[None], vendor, rng)
    if laterality == "R":  # display convention: right breast with the chest wall on the right
        stored = stored[:, :, ::-1]
    out = []
    for kind, key, les, radius, contrast, half_depth in lesions:
        mask = les.mask[:, ::-1] if laterality == "R" else les.mask
        out.append(Lesion(kind, key, mask_bbox(mask), np.ascontiguousarray(mask), radius, contrast, half_depth))
    return Stack(laterality, view, vendor.name, label, np.ascontiguousarray(stored), window, plan["density"], out)


def generate_exam(cfg: DBTSynthConfig, seed: int, index: int) -> tuple[dict, list[Stack]]:
    """The plan and the four stacks of exam ``index``."""
    plan = exam_plan(cfg, seed, index)
    stacks = [render_breast(cfg, plan, lat, view, seed, index, i) for i, (lat, view) in enumerate(VIEWS)]
    return plan, stacks
