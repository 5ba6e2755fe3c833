"""The mammography generator as a dataset plugin: images, reports, manifest and lesion rows, statistics, preview.

Per exam it writes four mammograms (DICOM "for presentation", or .npy holding display-oriented values),
``reports/<exam_id>.txt`` and, per lesion, a binary mask PNG. Each manifest row carries the report's
reading of that breast next to the truth: ``mass_label`` (the image truth, positive | negative),
``report_label`` (positive | negative | uncertain, as phrased), ``report_intended`` (positive |
negative), ``report_error`` (none | missed | false_alarm | wrong_side), ``report_birads`` and
``report_soft_label``. ``annotation`` is ``full`` (masks usable for training) or ``report`` (only the
report may be used; the masks stay in the lesions table as evaluation truth).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .dbt_dataset import lesion_cnr
from .dicom_write import write_mg
from .mammo import MammoSynthConfig, View, generate_exam, stored_values, vendor_model
from .preview import load_pixels, save_mask
from .reports import NEGATION_CUES, UNCERTAINTY_CUES, Report, has_cue
from .writer import ItemRows, Modality

__all__ = ["MammoSynthConfig", "mammo_modality", "preview", "summarize"]


def _item(cfg: MammoSynthConfig, out: Path, fmt: str, seed: int, index: int) -> ItemRows:
    plan, views, report = generate_exam(cfg, seed, index)
    exam_id, patient_id = f"mg-e{index:06d}", f"mg-p{index:06d}"
    vendor = vendor_model(cfg, plan["vendor"])
    (out / "images" / exam_id).mkdir(parents=True, exist_ok=True)
    (out / "reports").mkdir(exist_ok=True)
    report_rel = f"reports/{exam_id}.txt"
    (out / report_rel).write_text(report.text, encoding="utf-8", newline="\n")
    rows, lesion_rows = [], []
    for v in views:
        image_id = f"{exam_id}-{v.laterality}{v.view}"
        rel = f"images/{exam_id}/{image_id}.{'dcm' if fmt == 'dicom' else 'npy'}"
        photometric = v.photometric if fmt == "dicom" else "MONOCHROME2"
        if fmt == "dicom":
            stored, window = stored_values(v, vendor.bits_stored)
            meta = {
                "seed": seed,
                "image_id": image_id,
                "exam_id": exam_id,
                "patient_id": patient_id,
                "laterality": v.laterality,
                "view": v.view,
                "vendor": v.vendor,
                "manufacturer": vendor.manufacturer,
                "site": f"{v.vendor}-site",
                "spacing": round(v.spacing_mm, 6),
                "window": window,
                "bits_stored": vendor.bits_stored,
                "photometric": photometric,
                "voi_function": "SIGMOID" if vendor.tone == "sigmoid" else "LINEAR",
            }
            write_mg(out / rel, stored, meta)
        else:
            np.save(out / rel, v.pixels)
        rows.append(_manifest_row(cfg, plan, v, report, image_id, exam_id, patient_id, rel, photometric))
        rows[-1]["report_path"] = report_rel
        lesion_rows.extend(_lesion_rows(out, v, image_id, exam_id))
    return ItemRows(rows, lesion_rows, stratum=f"{plan['vendor']}/{plan['exam_class']}")


def _manifest_row(
    cfg: MammoSynthConfig,
    plan: dict,
    v: View,
    report: Report,
    image_id: str,
    exam_id: str,
    patient_id: str,
    rel: str,
    photometric: str,
) -> dict[str, Any]:
    vendor = vendor_model(cfg, v.vendor)
    top = float(2**vendor.bits_stored - 1)
    body = v.pixels > 0.05 * top
    vals = v.pixels[body] / top
    side = report.sides[v.laterality]
    return {
        "image_id": image_id,
        "patient_id": patient_id,
        "exam_id": exam_id,
        "laterality": v.laterality,
        "view": v.view,
        "modality": "MG",
        "vendor": v.vendor,
        "site": f"{v.vendor}-site",
        "path": rel,
        "n_slices": 1,
        "breast_label": v.breast_label,
        "annotation": plan["annotation"],
        "split": "",
        "exam_class": plan["exam_class"],
        "mass_label": side.true_label,
        "report_label": side.report_label,
        "report_intended": side.intended,
        "report_error": side.error,
        "report_birads": side.birads,
        "report_soft_label": side.soft_label,
        "exam_birads": report.birads,
        "report_negation": has_cue(report.text, NEGATION_CUES),
        "report_uncertainty": has_cue(report.text, UNCERTAINTY_CUES),
        "rows": int(v.pixels.shape[0]),
        "columns": int(v.pixels.shape[1]),
        "spacing": round(v.spacing_mm, 6),
        "photometric": photometric,
        "window_center": v.window[0],
        "window_width": v.window[1],
        "bits_stored": vendor.bits_stored,
        "density": round(plan["density"], 4),
        "intensity_mean": round(float(vals.mean()), 4),
        "intensity_std": round(float(vals.std()), 4),
    }


def _lesion_rows(out: Path, v: View, image_id: str, exam_id: str) -> list[dict[str, Any]]:
    rows = []
    for j, les in enumerate(v.lesions):
        lesion_id = f"{image_id}-L{j}"
        mask_rel = f"masks/{lesion_id}.png"
        save_mask(out / mask_rel, les.mask)
        x, y, w, h = les.bbox
        rows.append(
            {
                "image_id": image_id,
                "exam_id": exam_id,
                "laterality": v.laterality,
                "view": v.view,
                "lesion_id": lesion_id,
                "slice": -1,
                "x": x,
                "y": y,
                "w": w,
                "h": h,
                "mask_path": mask_rel,
                "lesion_class": les.lesion_class,
                "radius_px": round(les.radius_px, 3),
                "size_mm": les.finding.size_mm,
                "contrast": round(les.contrast, 4),
                "cnr": round(lesion_cnr(v.pixels[None], les.mask, 0), 3),
                "clock": les.finding.clock,
                "quadrant": les.finding.quadrant,
                "depth": les.finding.depth,
            }
        )
    return rows


def _report_stats(manifest: pd.DataFrame) -> dict[str, Any]:
    sides = manifest.drop_duplicates(["exam_id", "laterality"])
    exams = manifest.drop_duplicates("exam_id")
    return {
        "sides": int(len(sides)),
        "disagreement_rate": round(float((sides["report_intended"] != sides["mass_label"]).mean()), 4),
        "error_types": sides["report_error"].value_counts().to_dict(),
        "report_label_fraction": sides["report_label"].value_counts(normalize=True).round(3).to_dict(),
        "exam_birads": exams["exam_birads"].value_counts().sort_index().to_dict(),
        "fraction_with_negation": round(float(exams["report_negation"].astype(bool).mean()), 3),
        "fraction_with_uncertainty": round(float(exams["report_uncertainty"].astype(bool).mean()), 3),
    }


def summarize(manifest: pd.DataFrame, lesions: pd.DataFrame) -> dict[str, Any]:
    """Class proportions, per-vendor intensity, lesion size/contrast/CNR, report agreement statistics."""
    exams = manifest.drop_duplicates("exam_id")
    out: dict[str, Any] = {
        "exams": int(len(exams)),
        "images": int(len(manifest)),
        "exam_class_fraction": exams["exam_class"].value_counts(normalize=True).round(3).to_dict(),
        "breast_label_fraction": manifest.drop_duplicates(["exam_id", "laterality"])["breast_label"]
        .value_counts(normalize=True)
        .round(3)
        .to_dict(),
        "annotation_fraction": exams["annotation"].value_counts(normalize=True).round(3).to_dict(),
        "per_vendor": {},
    }
    for vendor, g in manifest.groupby("vendor"):
        out["per_vendor"][vendor] = {
            "exams": int(g["exam_id"].nunique()),
            "matrix": f"{int(g['rows'].iloc[0])}x{int(g['columns'].iloc[0])}",
            "spacing_mm": round(float(g["spacing"].iloc[0]), 4),
            "photometric": sorted(g["photometric"].unique()),
            "intensity_mean": round(float(g["intensity_mean"].mean()), 4),
            "intensity_std": round(float(g["intensity_std"].mean()), 4),
        }
    if len(lesions):
        merged = lesions.merge(manifest[["image_id", "vendor", "density"]], on="image_id")
        out["lesions"] = {
            cls: {
                "count": int(len(g)),
                "size_mm_mean": round(float(g["size_mm"].mean()), 1),
                "bbox_px_mean": round(float(((g["w"] + g["h"]) / 2).mean()), 2),
                "contrast_mean": round(float(g["contrast"].mean()), 3),
                "cnr_mean": round(float(g["cnr"].mean()), 2),
                "cnr_fatty_mean": _mean(g.loc[g["density"] < 0.4, "cnr"]),
                "cnr_dense_mean": _mean(g.loc[g["density"] >= 0.4, "cnr"]),
            }
            for cls, g in merged.groupby("lesion_class")
        }
        out["lesion_cnr_by_vendor"] = merged.groupby("vendor")["cnr"].mean().round(2).to_dict()
    out["reports"] = _report_stats(manifest)
    return out


def _mean(values: pd.Series) -> float | None:
    """Rounded mean, or None (JSON null) for no values."""
    return round(float(values.mean()), 2) if len(values) else None


def display_pixels(out: Path, row: pd.Series) -> np.ndarray:
    """A manifest row's image with MONOCHROME1 inverted, so that dense tissue is bright."""
    img = load_pixels(out / row["path"]).astype(np.float32)
    if row.get("photometric") == "MONOCHROME1":
        img = float(2 ** int(row["bits_stored"]) - 1) - img
    return img


def preview(out: Path, manifest: pd.DataFrame, lesions: pd.DataFrame, png: Path) -> None:
    """Per vendor × breast label, two CC cases with lesion outlines (red), plus one report as text."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    panels = []
    for vendor in sorted(manifest["vendor"].unique()):
        for label in ["cancer", "benign", "normal"]:
            sel = manifest[(manifest.vendor == vendor) & (manifest.breast_label == label)]
            for exam_id, lat in sel[["exam_id", "laterality"]].drop_duplicates().head(2).itertuples(index=False):
                for _, row in sel[(sel.exam_id == exam_id) & (sel.laterality == lat)].iterrows():
                    panels.append((row, f"{vendor} {label} {lat}{row['view']}\n{exam_id}"))
    ncols = 8
    nrows = max(1, int(np.ceil(len(panels) / ncols))) + 1
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.9 * ncols, 2.5 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (row, title) in zip(axes.flat, panels, strict=False):
        img = display_pixels(out, row)
        vals = img[img > np.percentile(img, 30)]
        ax.imshow(img, cmap="gray", vmin=np.percentile(vals, 1), vmax=np.percentile(vals, 99.7))
        for _, les in lesions[lesions.image_id == row["image_id"]].iterrows():
            mask = np.asarray(Image.open(out / les["mask_path"])) > 0
            ax.contour(mask, levels=[0.5], colors="red", linewidths=0.6)
        ax.set_title(title, fontsize=6)
    case = manifest[manifest.breast_label == "cancer"]
    row = (case if len(case) else manifest).iloc[0]
    text = (out / row["report_path"]).read_text(encoding="utf-8")
    (png.parent / "preview_report.txt").write_text(f"{row['exam_id']}\n{text}", encoding="utf-8")
    big = fig.add_subplot(nrows, 1, nrows)
    big.axis("off")
    big.text(0, 1, f"report of {row['exam_id']}:\n{_wrap(text)}", va="top", fontsize=5.5, family="monospace")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def _wrap(text: str, width: int = 150) -> str:
    import textwrap

    return "\n".join(textwrap.fill(line, width) if line else "" for line in text.splitlines())


def mammo_modality(cfg: MammoSynthConfig) -> Modality:
    """The mammography plugin bound to a config."""
    return Modality("mammo", partial(_item, cfg), summarize, preview)
