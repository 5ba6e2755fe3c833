"""The ultrasound generator as a dataset plugin: files, manifest rows, lesion rows, statistics, preview.

One item is one image. Images 2k and 2k+1 may belong to one patient (two planes of one nodule); a
patient's images share a split (``ItemRows.group``), and the images of an independent test site all
go to the test split (``ItemRows.split``), as dataset B of the two-hospital paper (seed 004).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from .common import mask_bbox
from .dicom_write import write_us
from .preview import montage, save_mask
from .us import USImage, USSynthConfig, image_plan, render_image
from .writer import ItemRows, Modality

__all__ = ["USSynthConfig", "us_modality", "summarize", "preview", "posterior_contrast", "speckle_correlation"]


def speckle_correlation(grey: np.ndarray) -> tuple[float, float]:
    """Lag-1 (lateral, axial) correlation of the speckle: residual after a 5×7 median removes the structure.

    Measured on the middle half of the depth (for speed). Larger values mean coarser speckle (a lower
    transducer frequency, a wider point-spread function).
    """
    h = grey.shape[0]
    g = grey[h // 4 : h - h // 4].astype(np.float32)
    r = g - ndimage.median_filter(g, size=(5, 7))
    var = float((r * r).mean()) + 1e-6
    return float((r[:, 1:] * r[:, :-1]).mean() / var), float((r[1:] * r[:-1]).mean() / var)


def posterior_contrast(grey: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Mean grey level under the central half of a box minus that beside it at the same depth.

    Negative: posterior shadowing; positive: enhancement. ``box`` is (x, y, w, h) in ``grey``'s pixels.
    """
    x, y, w, h = (int(round(v)) for v in box)
    r0, r1 = y + h + 1, min(grey.shape[0], y + h + 1 + max(3, h // 2))
    if r1 <= r0:
        return 0.0
    below = grey[r0:r1, x + w // 4 : x + w - w // 4]
    side = max(2, w // 2)
    beside = np.concatenate(
        [grey[r0:r1, max(0, x - side) : x].ravel(), grey[r0:r1, x + w : x + w + side].ravel()]
    ).astype(np.float32)
    if below.size == 0 or beside.size == 0:
        return 0.0
    return float(below.mean() - beside.mean())


def nodule_contrast(grey: np.ndarray, mask: np.ndarray) -> float:
    """Mean grey inside the nodule minus that of a 1–3 px ring around it."""
    ring = ndimage.binary_dilation(mask, iterations=3) & ~ndimage.binary_dilation(mask, iterations=1)
    if not mask.any() or not ring.any():
        return 0.0
    return float(grey[mask].mean() - grey[ring].mean())


def _item(cfg: USSynthConfig, out: Path, fmt: str, seed: int, index: int) -> ItemRows:
    plan = image_plan(cfg, seed, index)
    site = cfg.sites[plan["site"]]
    image_id = f"us-{index:06d}"
    patient_id, exam_id = f"us-p{plan['patient_index']:06d}", f"us-e{plan['patient_index']:06d}"
    im = render_image(cfg, plan, seed, index, image_id)
    rel = f"images/{exam_id}/{image_id}.{'dcm' if fmt == 'dicom' else 'npy'}"
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "seed": seed,
        "image_id": image_id,
        "exam_id": exam_id,
        "patient_id": patient_id,
        "laterality": plan["laterality"],
        "vendor": site.vendor,
        "manufacturer": site.manufacturer,
        "site": plan["site"],
        "spacing": im.spacing_mm,
        "burned_in": any(im.clutter.values()),
        "region": (im.field[1], im.field[0], im.field[1] + im.field[3] - 1, im.field[0] + im.field[2] - 1),
    }
    if fmt == "dicom":
        write_us(out / rel, im.pixels, meta)
    else:
        np.save(out / rel, im.pixels)
    corr_lat, corr_ax = speckle_correlation(im.field_grey)
    row = {
        "image_id": image_id,
        "patient_id": patient_id,
        "exam_id": exam_id,
        "laterality": plan["laterality"],
        "view": "US",
        "modality": "US",
        "vendor": site.vendor,
        "site": plan["site"],
        "path": rel,
        "n_slices": 1,
        "breast_label": plan["breast_label"],
        "annotation": plan["annotation"],
        "split": "",
        "rows": int(im.pixels.shape[0]),
        "columns": int(im.pixels.shape[1]),
        "photometric": "RGB" if im.pixels.ndim == 3 else "MONOCHROME2",
        "spacing": round(im.spacing_mm, 5),
        "depth_mm": round(im.depth_mm, 2),
        "frequency_mhz": site.frequency_mhz,
        "gain_db": round(im.gain_db, 2),
        "field_top": im.field[0],
        "field_left": im.field[1],
        "field_rows": im.field[2],
        "field_cols": im.field[3],
        "plane": plan["plane"],
        "clock": plan["clock"],
        "intensity_mean": round(float(im.field_grey.mean()) / 255, 4),
        "intensity_std": round(float(im.field_grey.std()) / 255, 4),
        "speckle_corr_lat": round(corr_lat, 4),
        "speckle_corr_ax": round(corr_ax, 4),
        **{f"has_{k}": v for k, v in im.clutter.items()},
    }
    lesions = _lesion_rows(out, im, plan, image_id, exam_id) if im.mask is not None else []
    return ItemRows(
        [row],
        lesions,
        stratum=f"{plan['site']}/{plan['breast_label']}",
        group=patient_id,
        split="test" if site.independent_test else "",
    )


def _lesion_rows(out: Path, im: USImage, plan: dict, image_id: str, exam_id: str) -> list[dict[str, Any]]:
    lesion_id = f"{image_id}-L0"
    mask_rel = f"masks/{lesion_id}.png"
    save_mask(out / mask_rel, im.mask)
    x, y, w, h = mask_bbox(im.mask)
    top, left, fh, fw = im.field
    field_mask = im.mask[top : top + fh, left : left + fw]
    row = {
        "image_id": image_id,
        "exam_id": exam_id,
        "laterality": plan["laterality"],
        "view": "US",
        "lesion_id": lesion_id,
        "slice": -1,
        "x": x,
        "y": y,
        "w": w,
        "h": h,
        "mask_path": mask_rel,
        "lesion_class": plan["kind"],
        "width_mm": round(im.size_mm[0], 2),
        "height_mm": round(im.size_mm[1], 2),
        "taller_than_wide": bool(h > w),
        "nodule_contrast": round(nodule_contrast(im.field_grey, field_mask), 2),
        "posterior_contrast": round(posterior_contrast(im.field_grey, (x - left, y - top, w, h)), 2),
    }
    row.update({f"birads_{k}": v for k, v in im.features.items()})
    return [row]


def _rate(values: pd.Series) -> float:
    return round(float(values.astype(bool).mean()), 3) if len(values) else float("nan")


def summarize(manifest: pd.DataFrame, lesions: pd.DataFrame) -> dict[str, Any]:
    """Per-site counts and settings, class and annotation mix, nodule geometry, intensity, clutter rates."""
    out: dict[str, Any] = {
        "images": int(len(manifest)),
        "patients": int(manifest["patient_id"].nunique()),
        "breast_label_fraction": manifest["breast_label"].value_counts(normalize=True).round(3).to_dict(),
        "split_counts": manifest["split"].value_counts().to_dict(),
        "per_site": {},
    }
    for site, g in manifest.groupby("site"):
        out["per_site"][site] = {
            "images": int(len(g)),
            "patients": int(g["patient_id"].nunique()),
            "breast_label_fraction": g["breast_label"].value_counts(normalize=True).round(3).to_dict(),
            "annotation_fraction": g["annotation"].value_counts(normalize=True).round(3).to_dict(),
            "splits": g["split"].value_counts().to_dict(),
            "photometric": sorted(g["photometric"].unique()),
            "matrix": f"{int(g['rows'].iloc[0])}x{int(g['columns'].iloc[0])}",
            "spacing_mm_mean": round(float(g["spacing"].mean()), 4),
            "frequency_mhz": float(g["frequency_mhz"].iloc[0]),
            "intensity_mean": round(float(g["intensity_mean"].mean()), 4),
            "intensity_std": round(float(g["intensity_std"].mean()), 4),
            "speckle_corr_lat": round(float(g["speckle_corr_lat"].mean()), 3),
            "speckle_corr_ax": round(float(g["speckle_corr_ax"].mean()), 3),
        }
    clutter_cols = [c for c in manifest.columns if c.startswith("has_")]
    out["clutter_rate_by_label"] = {
        label: {c[4:]: _rate(g[c]) for c in clutter_cols} for label, g in manifest.groupby("breast_label")
    }
    if len(lesions):
        out["nodules"] = {}
        for cls, g in lesions.groupby("lesion_class"):
            out["nodules"][cls] = {
                "count": int(len(g)),
                "width_mm_mean": round(float(g["width_mm"].mean()), 2),
                "height_mm_mean": round(float(g["height_mm"].mean()), 2),
                "box_aspect_w_over_h_median": round(float((g["w"] / g["h"]).median()), 3),
                "taller_than_wide_fraction": _rate(g["taller_than_wide"]),
                "nodule_contrast_mean": round(float(g["nodule_contrast"].mean()), 2),
                "posterior_contrast_mean": round(float(g["posterior_contrast"].mean()), 2),
                "margin": g["birads_margin"].value_counts(normalize=True).round(3).to_dict(),
                "posterior": g["birads_posterior"].value_counts(normalize=True).round(3).to_dict(),
            }
    return out


def preview(out: Path, manifest: pd.DataFrame, lesions: pd.DataFrame, png: Path) -> None:
    """Three images per site × label (cancer, benign, normal), stored pixels, GT box in red."""
    from .preview import load_pixels

    panels = []
    for site in sorted(manifest["site"].unique()):
        for label in ["cancer", "benign", "normal"]:
            for _, row in manifest[(manifest.site == site) & (manifest.breast_label == label)].head(3).iterrows():
                img = load_pixels(out / row["path"])
                if img.ndim == 2:  # show stored grey levels as they are, not re-windowed
                    img = np.repeat(img[..., None], 3, axis=-1)
                les = lesions[lesions.image_id == row["image_id"]]
                box = tuple(les[["x", "y", "w", "h"]].iloc[0]) if len(les) else None
                title = f"{site} {label} {row['photometric']}"
                if len(les):
                    r = les.iloc[0]
                    title += f"\n{r['birads_margin']}, {r['birads_orientation']}, {r['birads_posterior']}"
                panels.append((img, title, box))
    montage(panels, png, ncols=6)


def us_modality(cfg: USSynthConfig) -> Modality:
    """The ultrasound plugin bound to a config."""
    return Modality("us", partial(_item, cfg), summarize, preview)
