"""The DBT generator as a dataset plugin: files, manifest rows, lesion rows, statistics, preview."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from .dbt import DBTSynthConfig, Stack, generate_exam, vendor_model

__all__ = ["DBTSynthConfig", "dbt_modality"]
from .dicom_write import write_dbt
from .preview import montage, save_mask
from .writer import ItemRows, Modality


def lesion_cnr(stack: np.ndarray, mask: np.ndarray, z: int) -> float:
    """Contrast-to-noise of a lesion on slice ``z``: (mean inside − mean of a ring) / std of the ring."""
    ring = ndimage.binary_dilation(mask, iterations=3) & ~ndimage.binary_dilation(mask, iterations=1)
    img = stack[z].astype(np.float32)
    if not mask.any() or not ring.any():
        return 0.0
    return float((img[mask].mean() - img[ring].mean()) / (img[ring].std() + 1e-6))


def _item(cfg: DBTSynthConfig, out: Path, fmt: str, seed: int, index: int) -> ItemRows:
    plan, stacks = generate_exam(cfg, seed, index)
    exam_id, patient_id = f"dbt-e{index:06d}", f"dbt-p{index:06d}"
    vendor = vendor_model(cfg, plan["vendor"])
    rows, lesion_rows = [], []
    (out / "images" / exam_id).mkdir(parents=True, exist_ok=True)
    for s in stacks:
        image_id = f"{exam_id}-{s.laterality}{s.view}"
        rel = f"images/{exam_id}/{image_id}.{'dcm' if fmt == 'dicom' else 'npy'}"
        meta = {
            "seed": seed,
            "image_id": image_id,
            "exam_id": exam_id,
            "patient_id": patient_id,
            "laterality": s.laterality,
            "view": s.view,
            "vendor": s.vendor,
            "manufacturer": vendor.manufacturer,
            "site": f"{s.vendor}-site",
            "spacing": vendor.spacing_mm,
            "slice_thickness": vendor.slice_thickness_mm,
            "window": s.window,
            "bits_stored": vendor.bits_stored,
        }
        if fmt == "dicom":
            write_dbt(out / rel, s.stored, meta)
        else:
            np.save(out / rel, s.stored)
        top = float(2**vendor.bits_stored - 1)
        body = s.stored[s.stored.shape[0] // 2] > 0.05 * top
        vals = s.stored[s.stored.shape[0] // 2][body] / top
        rows.append(
            {
                "image_id": image_id,
                "patient_id": patient_id,
                "exam_id": exam_id,
                "laterality": s.laterality,
                "view": s.view,
                "modality": "DBT",
                "vendor": s.vendor,
                "site": meta["site"],
                "path": rel,
                "n_slices": int(s.stored.shape[0]),
                "breast_label": s.breast_label,
                "annotation": "full" if s.vendor in cfg.annotated_vendors else "weak",
                "split": "",
                "exam_class": plan["exam_class"],
                "rows": int(s.stored.shape[1]),
                "columns": int(s.stored.shape[2]),
                "spacing": vendor.spacing_mm,
                "slice_thickness": vendor.slice_thickness_mm,
                "window_center": s.window[0],
                "window_width": s.window[1],
                "bits_stored": vendor.bits_stored,
                "density": round(s.density, 4),
                "intensity_mean": round(float(vals.mean()), 4),
                "intensity_std": round(float(vals.std()), 4),
            }
        )
        lesion_rows.extend(_lesion_rows(out, s, image_id, exam_id))
    return ItemRows(rows, lesion_rows, stratum=f"{plan['vendor']}/{plan['exam_class']}")


def _lesion_rows(out: Path, s: Stack, image_id: str, exam_id: str) -> list[dict[str, Any]]:
    rows = []
    d = s.stored.shape[0]
    for j, les in enumerate(s.lesions):
        lesion_id = f"{image_id}-L{j}"
        mask_rel = f"masks/{lesion_id}.png"
        save_mask(out / mask_rel, les.mask)
        far = les.key_slice + d // 3 if les.key_slice < d / 2 else les.key_slice - d // 3
        x, y, w, h = les.bbox
        rows.append(
            {
                "image_id": image_id,
                "exam_id": exam_id,
                "laterality": s.laterality,
                "view": s.view,
                "lesion_id": lesion_id,
                "slice": les.key_slice,
                "x": x,
                "y": y,
                "w": w,
                "h": h,
                "mask_path": mask_rel,
                "lesion_class": les.lesion_class,
                "radius_px": round(les.radius_px, 3),
                "contrast": round(les.contrast, 4),
                "half_depth": round(les.half_depth, 3),
                "cnr_key": round(lesion_cnr(s.stored, les.mask, les.key_slice), 3),
                "cnr_far": round(lesion_cnr(s.stored, les.mask, int(far)), 3),
            }
        )
    return rows


def summarize(manifest: pd.DataFrame, lesions: pd.DataFrame) -> dict[str, Any]:
    """Per-vendor counts, class proportions, slices, intensity statistics; lesion size and contrast."""
    exams = manifest.drop_duplicates("exam_id")
    out: dict[str, Any] = {
        "exams": int(len(exams)),
        "stacks": int(len(manifest)),
        "exam_class_fraction": exams["exam_class"].value_counts(normalize=True).round(3).to_dict(),
        "breast_label_fraction": manifest.drop_duplicates(["exam_id", "laterality"])["breast_label"]
        .value_counts(normalize=True)
        .round(3)
        .to_dict(),
        "per_vendor": {},
    }
    for vendor, g in manifest.groupby("vendor"):
        out["per_vendor"][vendor] = {
            "exams": int(g["exam_id"].nunique()),
            "annotation": sorted(g["annotation"].unique()),
            "slices_mean": round(float(g["n_slices"].mean()), 2),
            "slices_range": [int(g["n_slices"].min()), int(g["n_slices"].max())],
            "matrix": f"{int(g['rows'].iloc[0])}x{int(g['columns'].iloc[0])}",
            "intensity_mean": round(float(g["intensity_mean"].mean()), 4),
            "intensity_std": round(float(g["intensity_std"].mean()), 4),
        }
    if len(lesions):
        merged = lesions.merge(manifest[["image_id", "vendor"]], on="image_id")
        out["lesions"] = {
            cls: {
                "count": int(len(g)),
                "radius_px_mean": round(float(g["radius_px"].mean()), 2),
                "bbox_px_mean": round(float(((g["w"] + g["h"]) / 2).mean()), 2),
                "contrast_mean": round(float(g["contrast"].mean()), 3),
                "cnr_key_slice_mean": round(float(g["cnr_key"].mean()), 2),
                "cnr_far_slice_mean": round(float(g["cnr_far"].mean()), 2),
            }
            for cls, g in merged.groupby("lesion_class")
        }
        out["lesion_cnr_key_by_vendor"] = merged.groupby("vendor")["cnr_key"].mean().round(2).to_dict()
    return out


def preview(out: Path, manifest: pd.DataFrame, lesions: pd.DataFrame, png: Path) -> None:
    """Per vendor × breast label, two cases: key slice next to a far slice (lesion box in red)."""
    from .preview import load_pixels

    panels = []
    for vendor in sorted(manifest["vendor"].unique()):
        for label in ["cancer", "benign", "normal"]:
            cases = manifest[
                (manifest.vendor == vendor) & (manifest.breast_label == label) & (manifest.view == "CC")
            ].head(2)
            for _, row in cases.iterrows():
                stack = load_pixels(out / row["path"])
                les = lesions[lesions.image_id == row["image_id"]]
                d = stack.shape[0]
                key = int(les["slice"].iloc[0]) if len(les) else d // 2
                far = key + d // 3 if key < d / 2 else key - d // 3
                box = tuple(les[["x", "y", "w", "h"]].iloc[0]) if len(les) else None
                panels.append((stack[key], f"{vendor} {label}\nkey slice {key}/{d}", box))
                panels.append((stack[far], f"far slice {far}/{d}", box))
    montage(panels, png, ncols=4)


def dbt_modality(cfg: DBTSynthConfig) -> Modality:
    """The DBT plugin bound to a config."""
    return Modality("dbt", partial(_item, cfg), summarize, preview)
