"""The nodule model of synthetic breast ultrasound: BI-RADS descriptors drawn per class, and the shape they give.

Each descriptor of the BI-RADS ultrasound lexicon (shape, orientation, margin, echo pattern, posterior
features, echogenic halo, calcifications) is drawn from a class-conditional table, so typical benign
nodules are oval, parallel (wider than tall), circumscribed and enhancing, typical malignant ones
irregular, not parallel (taller than wide), angular, microlobulated or spiculated and shadowing, and
many cases are not textbook. ``separation`` pulls the two tables together (0: no descriptor differs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

# P(descriptor | class) at separation 1; the numbers are of the order reported for BI-RADS US
# descriptors (Hong 2005; Stavros 1995), not a fit to any data set.
FEATURE_TABLE: dict[str, dict[str, dict[str, float]]] = {
    "orientation": {
        "malignant": {"parallel": 0.42, "not parallel": 0.58},
        "benign": {"parallel": 0.9, "not parallel": 0.1},
    },
    "shape": {
        "malignant": {"oval": 0.15, "round": 0.1, "irregular": 0.75},
        "benign": {"oval": 0.7, "round": 0.15, "irregular": 0.15},
    },
    "margin": {
        "malignant": {
            "circumscribed": 0.1,
            "indistinct": 0.25,
            "angular": 0.25,
            "microlobulated": 0.2,
            "spiculated": 0.2,
        },
        "benign": {
            "circumscribed": 0.72,
            "indistinct": 0.12,
            "angular": 0.04,
            "microlobulated": 0.1,
            "spiculated": 0.02,
        },
    },
    "echo": {
        "malignant": {"anechoic": 0.0, "hypoechoic": 0.32, "heterogeneous": 0.6, "isoechoic": 0.08},
        "benign": {"anechoic": 0.15, "hypoechoic": 0.5, "heterogeneous": 0.2, "isoechoic": 0.15},
    },
    "posterior": {
        "malignant": {"enhancement": 0.12, "none": 0.35, "shadowing": 0.5, "combined": 0.03},
        "benign": {"enhancement": 0.48, "none": 0.42, "shadowing": 0.07, "combined": 0.03},
    },
    "halo": {"malignant": {"yes": 0.35, "no": 0.65}, "benign": {"yes": 0.04, "no": 0.96}},
    "calcifications": {"malignant": {"yes": 0.3, "no": 0.7}, "benign": {"yes": 0.05, "no": 0.95}},
}
EDGE_PX = {"circumscribed": 0.5, "indistinct": 2.2, "angular": 0.8, "microlobulated": 0.7, "spiculated": 1.2}


@dataclass
class NoduleShape:
    """A nodule on a local square grid centred on it."""

    mask: np.ndarray  # (n, n) bool: the annotated contour
    soft: np.ndarray  # (n, n) float32 in [0, 1]: occupancy with the margin's blur
    halo: np.ndarray  # (n, n) float32: echogenic rim outside the margin (zeros without a halo)
    spicules: np.ndarray  # (n, n) float32: thin radiating lines outside the body


def choice(table: dict[str, float], rng: np.random.Generator) -> str:
    """A key of ``table`` drawn with probability proportional to its (clipped non-negative) value."""
    keys = list(table)
    p = np.clip(np.array([table[k] for k in keys], dtype=float), 0, None)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def nodule_features(kind: str, rng: np.random.Generator, separation: float = 1.0) -> dict[str, str]:
    """BI-RADS descriptors of a ``kind`` ('malignant' | 'benign') nodule; ``separation`` mixes the tables."""
    if kind not in ("malignant", "benign"):
        raise ValueError(f"unknown nodule kind {kind!r}")
    out = {}
    for name, by_class in FEATURE_TABLE.items():
        mean = {k: 0.5 * (by_class["malignant"][k] + by_class["benign"][k]) for k in by_class[kind]}
        out[name] = choice({k: mean[k] + separation * (v - mean[k]) for k, v in by_class[kind].items()}, rng)
    return out


def nodule_size(features: dict[str, str], size_mm: float, rng: np.random.Generator) -> tuple[float, float]:
    """(width, height) in mm from the longest dimension and the orientation and shape descriptors."""
    if features["orientation"] == "not parallel":
        aspect = rng.uniform(0.55, 0.95)  # width / height
    else:
        aspect = {"oval": (1.3, 2.3), "round": (1.0, 1.15), "irregular": (1.05, 1.8)}[features["shape"]]
        aspect = rng.uniform(*aspect)
    return (size_mm, size_mm / aspect) if aspect >= 1 else (size_mm * aspect, size_mm)


def nodule_shape(features: dict[str, str], width_px: float, height_px: float, rng: np.random.Generator) -> NoduleShape:
    """The contour, soft body, halo and spicules of a nodule ``width_px`` wide and ``height_px`` tall."""
    a, b = width_px / 2.0, height_px / 2.0
    margin = features["margin"]
    spic_len = 0.8 * max(a, b) if margin == "spiculated" else 0.0
    halo_w = rng.uniform(0.8, 1.6) + 0.06 * max(a, b) if features.get("halo") == "yes" else 0.0
    half = int(np.ceil(max(a, b) * 1.3 + spic_len + 2.5 * halo_w + 3))
    yy, xx = (np.mgrid[0 : 2 * half + 1, 0 : 2 * half + 1] - half).astype(np.float32)
    tilt = rng.normal(0.0, 0.12)
    u = np.cos(tilt) * xx + np.sin(tilt) * yy
    v = -np.sin(tilt) * xx + np.cos(tilt) * yy
    rel0 = np.hypot(u / a, v / b)
    theta = np.arctan2(v / b, u / a)
    f = np.ones_like(theta)
    irregular = features["shape"] == "irregular"
    for k in range(2, 6):
        amp = rng.uniform(0.05, 0.13) / np.sqrt(k - 1) if irregular else rng.uniform(0.0, 0.025)
        f += amp * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    if margin == "angular":
        n = int(rng.integers(5, 9))
        ang = np.sort(rng.uniform(-np.pi, np.pi, n))
        f *= np.interp(theta, ang, rng.uniform(0.8, 1.15, n), period=2 * np.pi)
    elif margin == "microlobulated":
        f *= 1.0 + rng.uniform(0.06, 0.12) * (
            np.abs(np.cos(int(rng.integers(6, 11)) * theta + rng.uniform(0, 3))) - 0.63
        )
    radius = np.hypot(a * np.cos(theta), b * np.sin(theta)) * f  # boundary distance in this direction
    sd = (1.0 - rel0 / f) * radius  # signed distance to the margin, px (positive inside)
    mask = sd >= 0
    soft = expit(sd / EDGE_PX[margin])
    halo = np.zeros_like(soft)
    if halo_w > 0:
        thick = halo_w * (0.7 + 0.3 * np.cos(3 * theta + rng.uniform(0, 2 * np.pi)))
        halo = np.exp(-0.5 * (np.clip(-sd, 0, None) / thick) ** 2) * (1 - soft)
    spic = np.zeros_like(soft)
    if spic_len > 0:
        for _ in range(int(rng.integers(8, 17))):
            psi = rng.uniform(-np.pi, np.pi)
            along = xx * np.cos(psi) + yy * np.sin(psi)
            across = np.abs(-xx * np.sin(psi) + yy * np.cos(psi))
            r_b = float(np.hypot(a * np.cos(psi), b * np.sin(psi)))
            length = spic_len * rng.uniform(0.5, 1.0)
            taper = np.clip(1.0 - (along - r_b) / length, 0, 1) * (along > 0.8 * r_b)
            spic = np.maximum(spic, np.exp(-0.5 * (across / rng.uniform(0.5, 0.9)) ** 2) * taper)
        spic *= 1 - soft
    return NoduleShape(mask, soft.astype(np.float32), halo.astype(np.float32), spic.astype(np.float32))


def make_nodule(
    kind: str, rng: np.random.Generator, px_per_mm: float = 3.0, separation: float = 1.0, size_mm: float | None = None
) -> tuple[dict[str, str], NoduleShape]:
    """Descriptors and shape of a random ``kind`` nodule (no image): the generator's shape model alone."""
    features = nodule_features(kind, rng, separation)
    size = size_mm if size_mm is not None else rng.uniform(6.0, 20.0)
    w_mm, h_mm = nodule_size(features, size, rng)
    return features, nodule_shape(features, w_mm * px_per_mm, h_mm * px_per_mm, rng)
