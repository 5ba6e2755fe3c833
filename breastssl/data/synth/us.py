"""Synthetic breast ultrasound: B-mode images of two sites with BI-RADS-like nodules and screen clutter.

An image is rendered the way a linear-array scanner forms it, in a much simplified form: a map of
tissue echogenicity (skin, subcutaneous fat with Cooper's ligaments, the fibroglandular layer,
retromammary fat, pectoralis muscle, sometimes a rib with its shadow) weights complex Gaussian
scatterers; their sum through a point-spread function that is wider laterally than axially (and
widest away from the transmit focus) gives fully developed speckle with a Rayleigh envelope. Depth
attenuation, electronic noise, time-gain compensation, optional spatial compounding and log
compression to 8 bits follow, each with site-specific settings.

Nodules follow the BI-RADS ultrasound lexicon (descriptors and shapes: :mod:`.us_nodule`). Their
posterior features are not painted: they follow from the nodule's own attenuation along each column.
Screen overlays (:mod:`.us_clutter`) are drawn from a random stream of their own, blind to the class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator
from scipy import ndimage
from scipy.special import expit

from ...config import Section, deep_merge
from .common import power_law_field, rng_for
from .us_clutter import add_clutter
from .us_nodule import choice, nodule_features, nodule_shape, nodule_size


class USSite(Section):
    """One hospital's scanner settings, case mix, annotation policy and screen layout."""

    weight: float = Field(0.5, ge=0, description="share of the images that come from this site")
    class_mix: dict[str, float] = {"malignant": 0.36, "benign": 0.49, "normal": 0.15}
    annotation: dict[str, float] = Field({"full": 0.3, "none": 0.7}, description="full | weak | none, per patient")
    independent_test: bool = Field(False, description="every image of the site goes to the test split")
    vendor: str = "EchoSim-12L"
    manufacturer: str = "breastssl synthetic"
    rows: int = Field(128, ge=48)
    cols: int = Field(160, ge=48)
    margins: tuple[int, int, int, int] = Field((13, 7, 8, 14), description="top, bottom, left, right, px")
    rgb: bool = Field(False, description="store RGB (grey B-mode, coloured overlays) instead of MONOCHROME2")
    layout: Literal["left", "right"] = "left"
    frequency_mhz: float = Field(12.0, gt=0, description="sets the speckle size and the attenuation")
    depth_mm: tuple[float, float] = (30.0, 40.0)
    focus: tuple[float, float] = Field((0.35, 0.6), description="transmit focus, fraction of the depth")
    dynamic_range_db: float = Field(55.0, gt=10)
    gain_db: float = 0.0
    gain_jitter_db: float = Field(2.0, ge=0, description="operator gain changes, std")
    tgc_tilt_db: float = Field(0.0, description="residual TGC error from top to bottom (+: deep brighter)")
    tgc_jitter_db: float = Field(1.5, ge=0, description="per-image TGC slider error, std")
    compounding: int = Field(2, ge=1, description="averaged speckle realisations (spatial compounding)")
    noise_db: float = Field(-75.0, description="electronic noise relative to glandular echoes")
    gamma: float = Field(1.0, gt=0, description="post-processing grey map exponent")

    @field_validator("class_mix", "annotation")
    @classmethod
    def _known_keys(cls, v: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        allowed = {"class_mix": {"malignant", "benign", "normal"}, "annotation": {"full", "weak", "none"}}[
            info.field_name
        ]
        if not v or set(v) - allowed or sum(v.values()) <= 0 or min(v.values()) < 0:
            raise ValueError(f"needs non-negative weights over {sorted(allowed)} with a positive sum, got {v}")
        return v


def _default_sites() -> dict[str, USSite]:
    return {
        "site-A": USSite(weight=0.75),
        "site-B": USSite(
            weight=0.25,
            class_mix={"malignant": 0.49, "benign": 0.36, "normal": 0.15},
            annotation={"full": 1.0},
            independent_test=True,
            vendor="EchoSim-6L",
            rows=136,
            cols=184,
            margins=(14, 9, 14, 12),
            rgb=True,
            layout="right",
            frequency_mhz=6.0,
            depth_mm=(38.0, 50.0),
            focus=(0.3, 0.5),
            dynamic_range_db=46.0,
            gain_db=0.0,
            tgc_tilt_db=2.5,
            compounding=1,
            noise_db=-65.0,
            gamma=0.85,
        ),
    }


class USSynthConfig(Section):
    """Parameters of the synthetic ultrasound generator (defaults: demo scale; an item is one image)."""

    sites: dict[str, USSite] = Field(default_factory=_default_sites)
    separation: float = Field(
        0.85,
        ge=0,
        le=1.5,
        description="0: classes share the descriptor tables; 1: the BI-RADS-like tables (ideal-observer AUC on the "
        "descriptors alone: 0.5 -> 0.84, 0.7 -> 0.92, 1.0 -> 0.985)",
    )
    nodule_size_mm: dict[str, tuple[float, float]] = {"malignant": (7.0, 22.0), "benign": (6.0, 20.0)}
    pair_fraction: float = Field(0.3, ge=0, le=1, description="patients with a second, orthogonal image")
    clutter: dict[str, float] = Field(
        {"text": 0.9, "bar": 0.85, "depth_scale": 0.95, "body_marker": 0.6, "calipers": 0.4, "calipers_normal": 0.1},
        description="probability of each overlay; calipers at the same rate for both classes",
    )
    speckle_axial_mm_mhz: float = Field(2.6, gt=0, description="axial PSF sigma × frequency (demo resolution)")
    speckle_lateral_mm_mhz: float = Field(5.4, gt=0, description="lateral PSF sigma × frequency at the focus")
    attenuation_db_cm_mhz: float = Field(0.5, ge=0)
    splits: dict[str, float] = {"train": 0.7, "val": 0.1, "test": 0.2}

    @field_validator("sites", mode="before")
    @classmethod
    def _merge_sites(cls, v: Any) -> Any:
        """A partial mapping updates the default sites (``--set sites.site-B.weight=0`` drops site B's images)."""
        if not isinstance(v, dict):
            return v
        out: dict[str, Any] = {k: s.model_dump() for k, s in _default_sites().items()}
        for name, upd in v.items():
            out[name] = deep_merge(out.get(name, {}), upd) if isinstance(upd, dict) else upd
        return out

    @field_validator("sites")
    @classmethod
    def _some_weight(cls, v: dict[str, USSite]) -> dict[str, USSite]:
        if sum(s.weight for s in v.values()) <= 0:
            raise ValueError("at least one site needs a positive weight")
        return v


@dataclass
class USImage:
    """One rendered ultrasound image, ready to write."""

    pixels: np.ndarray  # (H, W) or (H, W, 3) uint8
    field_grey: np.ndarray  # (fh, fw) uint8: the B-mode field before overlays
    field: tuple[int, int, int, int]  # top, left, height, width of the B-mode field in the canvas
    spacing_mm: float
    depth_mm: float
    gain_db: float
    mask: np.ndarray | None  # (H, W) bool in canvas coordinates
    features: dict[str, str] = field(default_factory=dict)
    size_mm: tuple[float, float] = (0.0, 0.0)  # width, height
    clutter: dict[str, bool] = field(default_factory=dict)


def image_plan(cfg: USSynthConfig, seed: int, index: int) -> dict:
    """Patient-level draws for image ``index``: site, class, nodule descriptors, annotation, laterality.

    Images 2k and 2k+1 belong to one patient with probability ``pair_fraction`` (two orthogonal planes
    of the same nodule); the plan is drawn from the patient's first image index, so both agree.
    """
    k = index // 2
    paired = bool(rng_for(seed, k, 99).random() < cfg.pair_fraction)
    pidx = 2 * k if paired else index
    rng = rng_for(seed, pidx, 0)
    names = list(cfg.sites)
    weights = np.array([cfg.sites[n].weight for n in names], dtype=float)
    site = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    s = cfg.sites[site]
    kind = choice(s.class_mix, rng)
    plan = {
        "site": site,
        "patient_index": pidx,
        "plane": index - pidx,
        "paired": paired,
        "kind": None if kind == "normal" else kind,
        "breast_label": {"malignant": "cancer", "benign": "benign"}.get(kind, "normal"),
        "annotation": choice(s.annotation, rng),
        "laterality": "L" if rng.random() < 0.5 else "R",
        "clock": int(rng.integers(1, 13)),
    }
    if plan["kind"]:
        feats = nodule_features(kind, rng, cfg.separation)
        w_mm, h_mm = nodule_size(feats, rng.uniform(*cfg.nodule_size_mm[kind]), rng)
        # echogenicity relative to glandular tissue; subcutaneous fat, the lexicon's reference, is at -17 dB
        lo, hi = {"malignant": (-33.0, -23.0), "benign": (-30.0, -21.0)}[kind]
        echo = {"anechoic": (-46.0, -40.0), "isoechoic": (-19.0, -14.0)}.get(feats["echo"], (lo, hi))
        post = {"enhancement": (4.0, 10.0), "none": (-1.5, 1.5), "shadowing": (-22.0, -9.0), "combined": (8.0, 14.0)}
        plan.update(
            features=feats,
            size_mm=(w_mm, h_mm),
            echo_db=float(rng.uniform(*echo)),
            posterior_db=float(rng.uniform(*post[feats["posterior"]])),
            edge_shadows=bool(feats["margin"] == "circumscribed" and rng.random() < 0.5),
            depth_frac=float(rng.uniform(0.15, 0.85)),
        )
    return plan


def _smoothstep(t: np.ndarray, width: float) -> np.ndarray:
    return expit(t / width)


def _tissue(fh: int, fw: int, sp: float, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Echogenicity (dB re. glandular tissue), specular reflectors, per-pixel attenuation (dB) and layers."""
    y = (np.arange(fh, dtype=np.float32)[:, None] + 0.5) * sp
    x = (np.arange(fw, dtype=np.float32)[None, :] + 0.5) * sp

    def curve(amp: float) -> np.ndarray:
        return amp * power_law_field((fw,), 4.0, rng)[None, :]

    skin = rng.uniform(1.2, 2.2) + curve(0.15)
    fat_b = np.maximum(skin + rng.uniform(2.0, 9.0) + curve(1.2), skin + 0.8)
    gland_b = np.maximum(fat_b + rng.uniform(7.0, 18.0) + curve(2.0), fat_b + 3.0)
    pect_t = np.maximum(gland_b + rng.uniform(1.5, 5.0) + curve(0.8), gland_b + 0.8)
    pect_b = np.maximum(pect_t + rng.uniform(4.0, 9.0) + curve(0.5), pect_t + 2.0)
    bounds = [np.full_like(skin, -1.0), skin, fat_b, gland_b, pect_t, pect_b, np.full_like(skin, 1e4)]
    steps = [_smoothstep(y - b, 0.25) for b in bounds]
    w = [steps[i] - steps[i + 1] for i in range(6)]  # skin, fat, gland, retromammary fat, muscle, chest wall
    tex = power_law_field((fh, fw), 2.6, rng, anisotropy=(1.0, 2.0))
    tex2 = power_law_field((fh, fw), 2.8, rng, anisotropy=(1.0, 2.5))
    islands = _smoothstep(-(tex2 - rng.uniform(-0.6, 0.6)), 0.25)  # fat lobules inside the gland
    period = rng.uniform(1.2, 2.0)
    slope = rng.uniform(-0.15, 0.15)
    striae = (np.sin(2 * np.pi * (y + slope * x) / period) > 0.55).astype(np.float32)
    echo = (
        w[0] * 2.0
        + w[1] * (-17.0 + 2.0 * tex)
        + w[2] * (2.0 * tex2 - 16.0 * islands + 1.0)
        + w[3] * (-17.0 + 2.0 * tex)
        + w[4] * (-11.0 + 7.0 * striae + 1.5 * tex)
        + w[5] * (-15.0 + 3.0 * tex)
    )
    for _ in range(int(rng.integers(2, 6))):  # Cooper's ligaments: arches from the gland surface to the skin
        x0, half = rng.uniform(0, fw * sp), rng.uniform(3.0, 9.0)
        t = np.clip(1.0 - ((x - x0) / half) ** 2, 0, None)
        yc = fat_b - (fat_b - skin) * t
        echo += 9.0 * np.exp(-0.5 * ((y - yc) / 0.2) ** 2) * (t > 0) * w[1]

    def line(at: np.ndarray, strength: float) -> np.ndarray:  # a specular interface, patchy along its length
        patchy = np.clip(0.55 + 0.5 * power_law_field((fw,), 3.0, rng), 0, 1)[None, :]
        return strength * patchy * np.exp(-0.5 * ((y - at) / 0.2) ** 2)

    spec = 3.0 * np.exp(-0.5 * ((y - 0.3) / 0.2) ** 2) + line(fat_b, 0.3) + line(pect_t, 1.0) + line(pect_b, 0.7)
    att = np.zeros((fh, fw), np.float32)
    depth = fh * sp
    if rng.random() < 0.35 and float(pect_b.mean()) + 5.0 < depth:  # a rib: bright surface, dark shadow
        xr, rx, ry = rng.uniform(0.2, 0.8) * fw * sp, rng.uniform(4.0, 7.0), rng.uniform(1.8, 3.0)
        yr = float(pect_b.mean()) + ry + rng.uniform(0.5, 3.0)
        e = np.hypot((x - xr) / rx, (y - yr) / ry)
        spec += 2.5 * np.exp(-0.5 * ((e - 1.0) * ry / 0.25) ** 2) * (y < yr)
        echo = np.where(e < 1, -30.0, echo)
        att += (e < 1) * (-60.0 / (2 * ry / sp))
    return echo.astype(np.float32), spec.astype(np.float32), att, (fat_b / sp, gland_b / sp)


def _paste(shape: tuple[int, int], local: np.ndarray, r0: int, c0: int) -> np.ndarray:
    """``local`` placed with its top-left corner at (r0, c0) in a zero array of ``shape``, clipped."""
    out = np.zeros(shape, local.dtype)
    h, w = shape
    lr, lc = max(0, -r0), max(0, -c0)
    r1, c1 = min(h, r0 + local.shape[0]), min(w, c0 + local.shape[1])
    if r1 > max(r0, 0) and c1 > max(c0, 0):
        out[max(r0, 0) : r1, max(c0, 0) : c1] = local[lr : lr + r1 - max(r0, 0), lc : lc + c1 - max(c0, 0)]
    return out


def _add_nodule(plan: dict, echo, spec, att, layers, sp: float, rng: np.random.Generator) -> tuple[np.ndarray, tuple]:
    """Render the planned nodule into the tissue maps in place; returns its field mask and (w, h) in mm."""
    fh, fw = echo.shape
    w_mm, h_mm = plan["size_mm"]
    if plan["plane"] == 1:  # the orthogonal plane: same height, another width
        w_mm = float(np.clip(w_mm * rng.uniform(0.75, 1.25), 0.5 * h_mm, 3.0 * h_mm))
    scale = min(1.0, 0.5 * fh * sp / h_mm, 0.6 * fw * sp / w_mm)
    w_mm, h_mm = w_mm * scale, h_mm * scale
    a, b = w_mm / sp / 2, h_mm / sp / 2
    shape = nodule_shape(plan["features"], 2 * a, 2 * b, rng)
    cx = float(np.clip(rng.uniform(0.22, 0.78) * fw, a + 4, fw - a - 4))
    fat_b, gland_b = (float(v[0, int(cx)]) for v in layers)
    cy = fat_b + plan["depth_frac"] * max(gland_b - fat_b, 1.0)
    cy = float(np.clip(cy, b + 0.12 * fh, fh - b - max(0.22 * fh, 1.1 * b)))
    half = shape.mask.shape[0] // 2
    r0, c0 = int(round(cy)) - half, int(round(cx)) - half
    soft = _paste((fh, fw), shape.soft, r0, c0)
    mask = _paste((fh, fw), shape.mask, r0, c0)
    tex = _paste((fh, fw), power_law_field(shape.mask.shape, 2.8, rng), r0, c0)
    feats = plan["features"]
    het = {"heterogeneous": 6.0, "isoechoic": 2.5, "anechoic": 1.0}.get(feats["echo"], 1.5)
    nod = plan["echo_db"] + het * tex
    echo[:] = echo * (1 - soft) + nod * soft
    spec *= 1 - soft  # the nodule displaces the interfaces it sits on
    echo += 9.0 * _paste((fh, fw), shape.halo, r0, c0) - 11.0 * _paste((fh, fw), shape.spicules, r0, c0)
    post = plan["posterior_db"]
    if feats["posterior"] == "combined":  # shadow under one half, enhancement under the other
        side = np.where(np.arange(fw) < cx, 1.0, -1.0) * (1 if rng.random() < 0.5 else -1)
        post = np.where(side > 0, -post, 0.6 * post)[None, :]
    att += soft * post / max(2 * b, 1.0)
    if plan["edge_shadows"]:  # refraction at the curved lateral margins of a smooth mass
        row = int(round(cy))
        for col in (cx - a, cx + a):
            att[row] += -9.0 * np.exp(-0.5 * ((np.arange(fw) - col) / 0.8) ** 2)
    if feats["calcifications"] == "yes":
        rows, cols = np.nonzero(mask)
        pick = rng.choice(rows.size, size=min(rows.size, int(rng.integers(3, 9))), replace=False)
        spec[rows[pick], cols[pick]] += 2.5
    return mask, (w_mm, h_mm)


def _bmode(cfg: USSynthConfig, s: USSite, echo, spec, att, sp: float, focus: float, gain: float, rng) -> np.ndarray:
    """Speckle formation, attenuation, noise, TGC and log compression; returns the (fh, fw) uint8 field."""
    fh, fw = echo.shape
    ax = cfg.speckle_axial_mm_mhz / s.frequency_mhz / sp
    lat = cfg.speckle_lateral_mm_mhz / s.frequency_mhz / sp
    rows = np.arange(fh, dtype=np.float32)[:, None]
    in_focus = np.exp(-0.5 * ((rows - focus) / (0.3 * fh)) ** 2)
    amp = 10.0 ** (echo / 20.0)
    env = np.zeros((fh, fw), np.float32)
    for _ in range(s.compounding):
        z = rng.standard_normal((2, fh, fw)).astype(np.float32) * amp
        z[0] += spec
        near = ndimage.gaussian_filter(z, (0, ax, lat)) * (2 * np.sqrt(np.pi * ax * lat))
        far = ndimage.gaussian_filter(z, (0, ax, 2.2 * lat)) * (2 * np.sqrt(np.pi * ax * 2.2 * lat))
        c = in_focus * near + (1 - in_focus) * far
        env += np.hypot(c[0], c[1]) / s.compounding
    path = np.cumsum(att, axis=0) - att  # two-way excess attenuation above each pixel
    path = ndimage.gaussian_filter1d(path, lat, axis=1)
    depth_cm = rows * sp / 10.0
    tissue = -2.0 * cfg.attenuation_db_cm_mhz * s.frequency_mhz * depth_cm
    signal = env * 10.0 ** ((path + tissue) / 20.0)
    noise = ndimage.gaussian_filter(rng.standard_normal((2, fh, fw)).astype(np.float32), (0, ax, ax)) / (
        1 / (2 * np.sqrt(np.pi) * ax)
    )
    n0 = 10.0 ** (s.noise_db / 20.0)
    received = np.hypot(signal + n0 * noise[0], n0 * noise[1])
    knots = np.linspace(0, fh - 1, 8)
    tgc = -tissue + s.tgc_tilt_db * rows / fh + np.interp(rows, knots, rng.normal(0, s.tgc_jitter_db, 8))
    db = 20.0 * np.log10(received + 1e-12) + tgc + gain
    black = -0.67 * s.dynamic_range_db
    grey = np.clip((db - black) / s.dynamic_range_db, 0.0, 1.0) ** s.gamma
    return np.round(grey * 255).astype(np.uint8)


def render_image(cfg: USSynthConfig, plan: dict, seed: int, index: int, image_id: str = "") -> USImage:
    """Render image ``index`` of ``plan``: B-mode field, nodule, screen overlays."""
    rng = rng_for(seed, index, 1)
    s = cfg.sites[plan["site"]]
    top, bottom, left, right = s.margins
    fh, fw = s.rows - top - bottom, s.cols - left - right
    depth = float(rng.uniform(*s.depth_mm))
    sp = depth / fh
    echo, spec, att, layers = _tissue(fh, fw, sp, rng)
    mask_f, size = None, (0.0, 0.0)
    if plan["kind"]:
        mask_f, size = _add_nodule(plan, echo, spec, att, layers, sp, rng)
    focus = float(rng.uniform(*s.focus)) * fh
    gain = s.gain_db + float(rng.normal(0, s.gain_jitter_db))
    grey = _bmode(cfg, s, echo, spec, att, sp, focus, gain, rng)
    canvas = np.zeros((s.rows, s.cols, 3), np.uint8)
    canvas[top : top + fh, left : left + fw] = grey[..., None]
    mask = None
    if mask_f is not None:
        mask = np.zeros((s.rows, s.cols), bool)
        mask[top : top + fh, left : left + fw] = mask_f
    field_box = (top, left, fh, fw)
    info = {"image_id": image_id, "laterality": plan["laterality"], "clock": plan["clock"], "gain_db": gain}
    info.update(depth_mm=depth, spacing_mm=sp, focus_row=int(top + focus))
    # overlays draw from their own stream: what is drawn cannot depend on the nodule or its class
    flags = add_clutter(canvas, field_box, s, info, mask, rng_for(seed, index, 2), cfg.clutter)
    pixels = canvas if s.rgb else np.ascontiguousarray(canvas[..., 0])
    return USImage(pixels, grey, field_box, sp, depth, gain, mask, plan.get("features", {}), size, flags)
