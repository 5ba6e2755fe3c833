"""``--format inbreast``: INbreast (Moreira et al. 2012).

Published layout: ``AllDICOMs/<file id>_<patient id>_MG_<L|R>_<CC|ML>_ANON.dcm``, ``AllXML/<file id>.xml``
(an XML property list: Images → ROIs → Name, Point_px = ["(x, y)", ...]) and ``INbreast.csv``
(semicolon-separated: Laterality; View; Acquisition date; File Name; ACR; Bi-Rads).

INbreast's "ML" files are medio-lateral oblique views and are written as MLO. breast_label from the
image's Bi-Rads: 1 normal, 2–3 benign, 4–6 cancer; each ROI becomes a lesion whose box bounds its
points (at least 2 px wide), malignant when the image's Bi-Rads is 4–6.
"""

from __future__ import annotations

import plistlib
import re
from pathlib import Path
from typing import Any

import pandas as pd

from ...errors import DataError
from .common import Ingested, Skipper, find_one, rel

NAME = re.compile(r"^(\d+)_([0-9a-fA-F]+)_MG_([LR])_(CC|ML|MLO)_ANON", re.IGNORECASE)


def _birads(root: Path) -> dict[str, int]:
    csvs = sorted(root.rglob("INbreast.csv"))
    if not csvs:
        return {}
    table = pd.read_csv(csvs[0], sep=";", dtype=str)
    table.columns = [c.strip() for c in table.columns]
    out = {}
    for r in table.to_dict("records"):
        m = re.match(r"(\d)", str(r.get("Bi-Rads", "")).strip())
        if m:
            out[str(r.get("File Name", "")).strip()] = int(m.group(1))
    return out


def _rois(xml: Path) -> list[dict[str, Any]]:
    try:
        with open(xml, "rb") as fh:
            plist = plistlib.load(fh, fmt=plistlib.FMT_XML)
    except Exception as exc:  # plistlib raises ExpatError/ValueError/... for malformed XML
        raise DataError(f"{xml}: not a readable INbreast XML plist ({type(exc).__name__}: {exc})") from None
    rois = []
    for image in plist.get("Images", []):
        for roi in image.get("ROIs", []):
            pts = [tuple(float(v) for v in re.findall(r"[-\d.]+", p))[:2] for p in roi.get("Point_px", [])]
            if pts:
                rois.append({"name": str(roi.get("Name", "")), "points": pts})
    return rois


def ingest(root: Path, labels: Path | None = None, skip_bad: bool = False) -> Ingested:
    """Manifest and lesions from an INbreast release (see module docstring)."""
    dicoms = find_one(root, "AllDICOMs", "inbreast") if root.is_dir() else None
    if dicoms is None or not dicoms.is_dir():
        raise DataError(f"{root}: does not look like an inbreast dataset; no AllDICOMs/ folder")
    xml_dir = dicoms.parent / "AllXML"
    out = Ingested()
    skip = Skipper(out, skip_bad)
    birads = _birads(root)
    for f in sorted(dicoms.glob("*.dcm")):
        m = NAME.match(f.name)
        if not m:
            skip.bad(f, DataError(f"{f}: name does not follow <id>_<patient>_MG_<L|R>_<CC|ML>_ANON.dcm"))
            continue
        file_id, patient, lat, view = m.group(1), m.group(2), m.group(3).upper(), m.group(4).upper()
        view = "MLO" if view == "ML" else view
        b = birads.get(file_id, 0)
        label = "normal" if b == 1 else "benign" if b in (2, 3) else "cancer" if b >= 4 else "unknown"
        xml = xml_dir / f"{file_id}.xml"
        out.manifest.append(
            {
                "image_id": file_id,
                "patient_id": patient,
                "exam_id": patient,
                "laterality": lat,
                "view": view,
                "modality": "MG",
                "vendor": "Siemens",
                "site": "INbreast",
                "path": rel(f, root),
                "n_slices": 1,
                "breast_label": label,
                "annotation": "full" if xml.exists() else "weak",
                "split": "train",
                "birads": b,
            }
        )
        if not xml.exists():
            continue
        try:
            rois = _rois(xml)
        except DataError as exc:
            skip.bad(xml, exc)
            continue
        for j, roi in enumerate(rois):
            xs, ys = [p[0] for p in roi["points"]], [p[1] for p in roi["points"]]
            out.lesions.append(
                {
                    "image_id": file_id,
                    "exam_id": patient,
                    "laterality": lat,
                    "view": view,
                    "lesion_id": f"{file_id}-L{j}",
                    "slice": -1,
                    "x": min(xs),
                    "y": min(ys),
                    "w": max(2.0, max(xs) - min(xs)),
                    "h": max(2.0, max(ys) - min(ys)),
                    "mask_path": "",
                    "lesion_class": "malignant" if b >= 4 else "benign",
                    "roi_name": roi["name"],
                }
            )
    return out
