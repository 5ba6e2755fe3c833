"""Synthetic four-view screening mammograms (L/R × CC/MLO) with lesion masks and a report per exam.

A mammogram is a projection: the image is the path length through the compressed breast (``thickness``,
falling to zero at the skin) times the local attenuation, a mix of fat and fibroglandular tissue drawn
from a 2D power-law field (β ≈ 3). A mass *replaces* the tissue it occupies with tissue a little denser
than glandular tissue, so it stands out against fat and almost vanishes in dense parenchyma: density
masks lesions the way it does in real screening.

The two breasts of a patient are mirror images: the same outline per view, the same density, and a
parenchymal field shared between the sides (the right one is mirrored when stored), so that a
bilateral model (DESIGN §5.2) sees the asymmetry a lesion makes against a similar contralateral
breast. A lesion is placed in 3D breast coordinates (distance from the chest wall, and a clock-face
position around the nipple axis) and projected into both views, so CC and MLO show the same lesion and
the report can give its clock position and quadrant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import Field, model_validator
from scipy import ndimage

from ...config import Section
from .common import (
    BreastShape,
    breast_shape,
    draw_exam_labels,
    fibroglandular,
    lesion_shape,
    malignant_lesion,
    mask_bbox,
    power_law_field,
    rng_for,
)
from .imaging import acquire
from .reports import LesionFinding, Report, clock_position, make_report
from .vendors import VendorModel

VIEWS = [("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO")]

# FFDM appearance models. Pitches follow the detectors (Hologic 70 µm, GE 100 µm, Siemens 85 µm); GE
# stores "for presentation" images as MONOCHROME1 (readers must invert) with a sigmoid VOI LUT.
MG_VENDORS: dict[str, VendorModel] = {
    "Hologic": VendorModel(
        name="Hologic",
        manufacturer="HOLOGIC, Inc. (synthetic)",
        spacing_mm=0.07,
        psf_sigma=0.5,
        noise_sigma=0.02,
        noise_grain=0.5,
        tone="log",
        tone_param=5.0,
        brightness=0.0,
        bits_stored=12,
        tissue_contrast=1.0,
    ),
    "GE": VendorModel(
        name="GE",
        manufacturer="GE MEDICAL SYSTEMS (synthetic)",
        spacing_mm=0.1,
        psf_sigma=0.8,
        noise_sigma=0.016,
        noise_grain=0.9,
        tone="sigmoid",
        tone_param=4.0,
        brightness=0.03,
        bits_stored=14,
        tissue_contrast=1.12,
    ),
    "Siemens": VendorModel(
        name="Siemens",
        manufacturer="SIEMENS (synthetic)",
        spacing_mm=0.085,
        psf_sigma=0.35,
        noise_sigma=0.03,
        noise_grain=0.3,
        tone="gamma",
        tone_param=0.75,
        brightness=-0.02,
        bits_stored=12,
        tissue_contrast=0.9,
    ),
}


class MammoSynthConfig(Section):
    """Parameters of the synthetic mammography generator (defaults: demo scale)."""

    height: int = Field(128, ge=48, description="rows at the reference pitch; other pitches scale the matrix")
    width: int = Field(96, ge=32)
    reference_pitch_mm: float = Field(0.085, gt=0, description="detector pitch at which the matrix is height×width")
    field_height_mm: float = Field(240.0, gt=0, description="physical height of the image; sets PixelSpacing")
    vendors: list[str] = ["Hologic", "GE", "Siemens"]
    vendor_weights: list[float] = [0.5, 0.25, 0.25]
    monochrome1_vendors: list[str] = ["GE"]
    exam_mix: dict[str, float] = {"cancer": 0.25, "benign": 0.3, "normal": 0.45}
    full_fraction: float = Field(0.25, ge=0, le=1, description="exams with usable masks; the rest: report only")
    density: tuple[float, float] = (0.08, 0.75)
    beta: float = Field(3.0, description="power-law exponent of the parenchymal texture")
    bilateral_independence: float = Field(
        0.4, ge=0, le=1, description="weight of the side-specific texture (0: identical sides, 1: unrelated)"
    )
    radial_texture: float = Field(1.0, ge=0, description="weight of streaks converging on the nipple")
    texture_softness: float = Field(0.55, gt=0, description="softness of the fat/glandular threshold")
    fat_att: float = Field(0.3, gt=0, description="attenuation per unit path of fat")
    glandular_att: float = Field(0.42, gt=0, description="extra attenuation of fibroglandular over fat")
    pectoral_att: float = 0.32
    lesion_radius_px: dict[str, tuple[float, float]] = {"malignant": (3.0, 7.0), "benign": (2.8, 6.0)}
    lesion_contrast: dict[str, tuple[float, float]] = {"malignant": (0.15, 0.6), "benign": (0.1, 0.5)}
    lesion_occupancy: float = Field(0.65, gt=0, le=1, description="fraction of the path a mass occupies at its core")
    spiculation: float = Field(1.0, ge=0, description="scale of malignant spicule count (0 = none)")
    report_error_rate: float = Field(0.05, ge=0, le=1, description="per-side report/image disagreement")
    report_uncertainty_rate: float = Field(0.15, ge=0, le=1, description="hedged phrasing of a positive side")
    report_paired_share: float = Field(0.3, ge=0, le=1, description="share of errors that pair up (wrong side)")
    splits: dict[str, float] = {"train": 0.6, "val": 0.15, "test": 0.25}
    vendor_overrides: dict[str, dict[str, float | int | str]] = {}

    @model_validator(mode="after")
    def _known_vendors(self) -> MammoSynthConfig:
        unknown = [v for v in self.vendors if v not in MG_VENDORS]
        if unknown:
            raise ValueError(f"unknown mammography vendor(s) {unknown}; known: {sorted(MG_VENDORS)}")
        if len(self.vendor_weights) != len(self.vendors):
            raise ValueError("vendor_weights must have one weight per vendor")
        return self


@dataclass
class Lesion:
    """A rendered lesion in stored-image coordinates (after mirroring)."""

    lesion_class: str
    bbox: tuple[float, float, float, float]
    mask: np.ndarray
    radius_px: float
    contrast: float
    finding: LesionFinding


@dataclass
class View:
    """One mammogram, display-oriented (bright = dense), ready to write."""

    laterality: str
    view: str
    vendor: str
    breast_label: str
    pixels: np.ndarray  # (H, W) uint16, MONOCHROME2 sense
    window: tuple[float, float]
    photometric: str
    spacing_mm: float
    lesions: list[Lesion] = field(default_factory=list)


def vendor_model(cfg: MammoSynthConfig, name: str) -> VendorModel:
    """The vendor's appearance model with the config's overrides applied."""
    base = MG_VENDORS[name]
    over = cfg.vendor_overrides.get(name, {})
    return base.model_copy(update=over) if over else base


def pixel_spacing(cfg: MammoSynthConfig, vendor: VendorModel) -> float:
    """Physical pixel spacing (mm) of the demo-scale matrix of ``vendor``."""
    return vendor.spacing_mm * cfg.field_height_mm / (cfg.height * cfg.reference_pitch_mm)


def _lesion_draw(cfg: MammoSynthConfig, rng: np.random.Generator, kind: str, side: str) -> dict:
    """A lesion in breast coordinates, shared by both views of the breast."""
    radius = float(rng.uniform(*cfg.lesion_radius_px[kind]))
    t = float(rng.uniform(0.2, 0.75))  # distance from the chest wall, fraction of breast depth
    ang, rho = rng.uniform(0, 2 * np.pi), float(np.sqrt(rng.uniform(0.0, 0.75)))
    lateral, superior = rho * np.cos(ang), rho * np.sin(ang)
    clock, quadrant = clock_position(side, lateral, superior)
    depth = "posterior" if t < 0.4 else ("middle" if t < 0.6 else "anterior")
    size_mm = 2 * radius * cfg.field_height_mm / cfg.height
    return {
        "kind": kind,
        "radius": radius,
        "contrast": float(rng.uniform(*cfg.lesion_contrast[kind])),
        "t": t,
        "lateral": lateral,
        "superior": superior,
        "finding": LesionFinding(kind, clock, quadrant, depth, round(size_mm, 1)),
    }


def exam_plan(cfg: MammoSynthConfig, seed: int, index: int) -> dict:
    """Draw an exam's vendor, class, labels, density, annotation level and lesions (no rendering)."""
    rng = rng_for(seed, index, 0)
    vendor, exam_class, labels = draw_exam_labels(rng, cfg.vendors, cfg.vendor_weights, cfg.exam_mix, 0.15, 0.2)
    annotation = "full" if rng.random() < cfg.full_fraction else "report"
    lesions: dict[str, list[dict]] = {}
    for k, lat in enumerate(("L", "R")):
        lrng = rng_for(seed, index, 100 + k)
        kinds = {"cancer": ["malignant"], "benign": ["benign"], "normal": []}[labels[lat]]
        if labels[lat] == "benign" and lrng.random() < 0.15:
            kinds = ["benign", "benign"]
        lesions[lat] = [_lesion_draw(cfg, lrng, kind, lat) for kind in kinds]
    return {
        "vendor": vendor,
        "exam_class": exam_class,
        "labels": labels,
        "density": float(rng.uniform(*cfg.density)),
        "annotation": annotation,
        "lesions": lesions,
    }


def _project(shape: BreastShape, les: dict, view: str, radius: float) -> tuple[float, float]:
    """Where a lesion at breast coordinates lands in one view (render grid), kept inside the breast.

    CC rows run lateral (top) to medial, MLO rows superior (top) to inferior, as displayed.
    """
    h, w = shape.mask.shape
    col = float(np.clip(les["t"] * shape.depth, 0, w - 1))
    rows = np.nonzero(shape.mask[:, int(col)] > 0.5)[0]
    centre, half = (rows.min() + rows.max()) / 2.0, (rows.max() - rows.min()) / 2.0
    comp = les["lateral"] if view == "CC" else les["superior"]
    row = centre - comp * half * 0.8
    allowed = (shape.mask > 0.98) & (shape.pectoral < 0.05)
    allowed = ndimage.binary_erosion(allowed, iterations=max(1, int(radius * 1.2)))
    rr, cc = np.nonzero(allowed)
    if rr.size == 0:
        return h / 2.0, shape.depth / 2.0
    i = int(np.argmin((rr - row) ** 2 + (cc - col) ** 2))
    return float(rr[i]), float(cc[i])


def _parenchyma(shape: BreastShape, beta: float, radial: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-std tissue field: isotropic power-law texture plus streaks converging on the nipple.

    The streaks (ducts, Cooper's ligaments) are a power-law field drawn on a (radius, angle) grid around
    the nipple, smooth along the radius, and resampled onto the image grid.
    """
    h, w = shape.mask.shape
    iso = power_law_field((h, w), beta, rng)
    if radial <= 0:
        return iso
    polar = power_law_field((64, 256), beta - 0.8, rng, anisotropy=(4.0, 1.0))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(yy - shape.center_row, xx - shape.depth) / max(shape.depth, 1.0)
    # A smooth warp of the angle bends the streaks, as ducts and ligaments are never straight lines.
    theta = np.arctan2(yy - shape.center_row, shape.depth - xx) + 0.12 * power_law_field((h, w), 4.0, rng)
    coords = np.stack([np.clip(r / 1.6, 0, 1) * 63, (theta + np.pi) / (2 * np.pi) * 255])
    streaks = ndimage.map_coordinates(polar, coords, order=1, mode="wrap")
    field = iso + radial * streaks
    return ((field - field.mean()) / (field.std() + 1e-8)).astype(np.float32)


def render_view(
    cfg: MammoSynthConfig, plan: dict, laterality: str, view: str, seed: int, index: int, view_index: int
) -> View:
    """Render one view of one breast as display-oriented stored values plus its lesions."""
    vendor = vendor_model(cfg, plan["vendor"])
    zoom = cfg.reference_pitch_mm / vendor.spacing_mm
    h, w = int(round(cfg.height * zoom)), int(round(cfg.width * zoom))
    v = 0 if view == "CC" else 1
    # Outline and the shared half of the texture depend on (patient, view) only: mirror-image breasts.
    shape = breast_shape(h, w, view, rng_for(seed, index, 20 + v))
    shared = _parenchyma(shape, cfg.beta, cfg.radial_texture, rng_for(seed, index, 30 + v))
    rng = rng_for(seed, index, 1 + view_index)
    own = _parenchyma(shape, cfg.beta, cfg.radial_texture, rng)
    a = cfg.bilateral_independence
    fg = fibroglandular(np.sqrt(1 - a * a) * shared + a * own, plan["density"], softness=cfg.texture_softness)
    # Glandular tissue sits behind the nipple, inside a subcutaneous fat layer.
    envelope = np.clip(shape.thickness / 0.6, 0.0, 1.0) ** 1.5
    dens = cfg.fat_att + cfg.glandular_att * vendor.tissue_contrast * fg * envelope
    path = shape.mask * shape.thickness
    att = path * dens + cfg.pectoral_att * shape.pectoral
    rendered = []
    for j, les in enumerate(plan["lesions"][laterality]):
        radius = les["radius"] * zoom
        cy, cx = _project(shape, les, view, radius)
        srng = rng_for(seed, index, 200 + view_index * 10 + j)
        with np.errstate(over="ignore"):  # the margin sigmoid saturates far from the lesion
            if les["kind"] == "malignant" and cfg.spiculation != 1.0:
                n = int(round(srng.integers(7, 16) * cfg.spiculation))
                ls = malignant_lesion(h, w, cy, cx, radius, srng, n_spicules=n)
            else:
                ls = lesion_shape(les["kind"], h, w, cy, cx, radius, srng)
        # The mass replaces the tissue on part of the path with tissue denser than glandular tissue.
        mass = cfg.fat_att + cfg.glandular_att * vendor.tissue_contrast * (1.0 + les["contrast"])
        att += path * cfg.lesion_occupancy * ls.profile * (mass - dens)
        rendered.append((les, ls, radius))
    pixels, window = acquire(att, shape.mask, vendor, rng)
    if laterality == "R":  # display convention: right breast with the chest wall on the right
        pixels = pixels[:, ::-1]
    out = []
    for les, ls, radius in rendered:
        mask = np.ascontiguousarray(ls.mask[:, ::-1] if laterality == "R" else ls.mask)
        out.append(Lesion(les["kind"], mask_bbox(mask), mask, radius, les["contrast"], les["finding"]))
    photometric = "MONOCHROME1" if vendor.name in cfg.monochrome1_vendors else "MONOCHROME2"
    return View(
        laterality,
        view,
        vendor.name,
        plan["labels"][laterality],
        np.ascontiguousarray(pixels),
        window,
        photometric,
        pixel_spacing(cfg, vendor),
        out,
    )


def stored_values(view: View, bits_stored: int) -> tuple[np.ndarray, tuple[float, float]]:
    """Pixels and window as written to DICOM: inverted for MONOCHROME1 (so they display right)."""
    if view.photometric != "MONOCHROME1":
        return view.pixels, view.window
    top = 2**bits_stored - 1
    return (top - view.pixels).astype(np.uint16), (round(top - view.window[0], 1), view.window[1])


def exam_report(cfg: MammoSynthConfig, plan: dict, seed: int, index: int) -> Report:
    """The exam's radiology report, written from the plan's true findings (with the configured errors)."""
    findings = {lat: [les["finding"] for les in plan["lesions"][lat]] for lat in ("L", "R")}
    return make_report(
        findings,
        rng_for(seed, index, 300),
        error_rate=cfg.report_error_rate,
        uncertainty_rate=cfg.report_uncertainty_rate,
        paired_share=cfg.report_paired_share,
        density=plan["density"],
    )


def generate_exam(cfg: MammoSynthConfig, seed: int, index: int) -> tuple[dict, list[View], Report]:
    """The plan, the four views and the report of exam ``index``."""
    plan = exam_plan(cfg, seed, index)
    views = [render_view(cfg, plan, lat, view, seed, index, i) for i, (lat, view) in enumerate(VIEWS)]
    return plan, views, exam_report(cfg, plan, seed, index)
