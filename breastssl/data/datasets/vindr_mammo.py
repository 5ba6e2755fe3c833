"""``--format vindr-mammo``: VinDr-Mammo (PhysioNet).

Published layout: ``breast-level_annotations.csv`` (study_id, series_id, image_id, laterality,
view_position, height, width, breast_birads, breast_density, split), ``finding_annotations.csv`` (the
same plus finding_categories, finding_birads, xmin, ymin, xmax, ymax) and ``images/<study_id>/<image_id>.dicom``.

VinDr-Mammo has BI-RADS, not pathology: breast_label is normal for BI-RADS 1, benign for 2–3 and cancer
for 4–5 (suspicious), with annotation ``weak``; the BI-RADS is kept in ``birads``. A finding with a box
becomes a lesion, malignant when its finding_birads is 4–5. split: training → train, test → test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ...errors import DataError
from ..schema import read_table
from .common import Ingested, Skipper, require


def _birads(value: object) -> int:
    m = re.search(r"(\d)", str(value))
    return int(m.group(1)) if m else 0


def ingest(root: Path, labels: Path | None = None, skip_bad: bool = False) -> Ingested:
    """Manifest and lesions from a VinDr-Mammo download (see module docstring)."""
    require(root, ["breast-level_annotations.csv", "images"], "vindr-mammo")
    out = Ingested()
    skip = Skipper(out, skip_bad)
    breast = read_table(root / "breast-level_annotations.csv")
    need = ["study_id", "image_id", "laterality", "view_position", "breast_birads", "split"]
    missing = [c for c in need if c not in breast.columns]
    if missing:
        raise DataError(f"{root / 'breast-level_annotations.csv'}: missing column(s) {', '.join(missing)}")
    findings = (
        read_table(root / "finding_annotations.csv") if (root / "finding_annotations.csv").exists() else pd.DataFrame()
    )
    for r in breast.to_dict("records"):
        path = root / "images" / str(r["study_id"]) / f"{r['image_id']}.dicom"
        if not path.is_file():
            skip.bad(path, DataError(f"{path}: file does not exist (listed in breast-level_annotations.csv)"))
            continue
        b = _birads(r["breast_birads"])
        label = "normal" if b == 1 else "benign" if b in (2, 3) else "cancer" if b >= 4 else "unknown"
        lat, view = str(r["laterality"]).upper()[:1], str(r["view_position"]).upper()
        out.manifest.append(
            {
                "image_id": str(r["image_id"]),
                "patient_id": str(r["study_id"]),
                "exam_id": str(r["study_id"]),
                "laterality": lat,
                "view": view,
                "modality": "MG",
                "vendor": "unknown",
                "site": "VinDr",
                "path": str(path.relative_to(root)),
                "n_slices": 1,
                "breast_label": label,
                "annotation": "weak" if label != "unknown" else "none",
                "split": "test" if str(r["split"]).lower().startswith("test") else "train",
                "birads": b,
                "density": str(r.get("breast_density", "")),
            }
        )
        if findings.empty:
            continue
        rows = findings[(findings["image_id"] == r["image_id"]) & findings["xmin"].notna()]
        for j, f in enumerate(rows.to_dict("records")):
            out.lesions.append(
                {
                    "image_id": str(r["image_id"]),
                    "exam_id": str(r["study_id"]),
                    "laterality": lat,
                    "view": view,
                    "lesion_id": f"{r['image_id']}-L{j}",
                    "slice": -1,
                    "x": float(f["xmin"]),
                    "y": float(f["ymin"]),
                    "w": float(f["xmax"]) - float(f["xmin"]),
                    "h": float(f["ymax"]) - float(f["ymin"]),
                    "mask_path": "",
                    "lesion_class": "malignant" if _birads(f.get("finding_birads")) >= 4 else "benign",
                    "finding_categories": str(f.get("finding_categories", "")),
                }
            )
    return out
