"""``--format bcs-dbt``: Breast Cancer Screening – Digital Breast Tomosynthesis (Duke, TCIA).

Published layout: the DICOM tree (one Breast Tomosynthesis object per view) and, at the root, the CSVs
``BCS-DBT file-paths-<split>-v2.csv`` (PatientID, StudyUID, View, descriptive_path, classic_path),
``BCS-DBT labels-<split>-v2.csv`` (PatientID, StudyUID, View, Normal, Actionable, Benign, Cancer) and
``BCS-DBT boxes-<split>-v2.csv`` (PatientID, StudyUID, View, Subject, Slice, X, Y, Width, Height,
Class, AD, VolumeSlices). Split names map train → train, validation → val, test → test.

Labels: Cancer → cancer, else Benign → benign, else Normal → normal, else (actionable only) unknown.
Boxes are copied as published (``box_frame`` = "bcs-dbt"): the challenge defines them on the image as
its reference loader displays it, which may be mirrored relative to the stored pixels; map them with
the reader's orientation if the two differ.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd

from ...errors import DataError
from ..dicom_pixels import read_dataset
from ..schema import read_table
from .common import Ingested, Skipper, require

SPLITS = {"train": "train", "training": "train", "validation": "val", "val": "val", "test": "test"}


def _split_of(name: str) -> str:
    m = re.search(r"-(train|training|validation|val|test)\b", name.lower())
    return SPLITS[m.group(1)] if m else "train"


def _key(pid: str, study: str, view: str) -> tuple[str, str, str]:
    return str(pid), str(study), str(view).lower()


def _labels(root: Path) -> dict[tuple, str]:
    out = {}
    for f in sorted(root.glob("*labels*.csv")):
        for r in read_table(f).to_dict("records"):
            label = (
                "cancer"
                if r.get("Cancer")
                else "benign"
                if r.get("Benign")
                else "normal"
                if r.get("Normal")
                else "unknown"
            )
            out[_key(r["PatientID"], r["StudyUID"], r["View"])] = label
    return out


def ingest(root: Path, labels: Path | None = None, skip_bad: bool = False) -> Ingested:
    """Manifest and lesions from a BCS-DBT download (see module docstring)."""
    require(root, ["*file-paths*.csv"], "bcs-dbt")
    out = Ingested()
    skip = Skipper(out, skip_bad)
    breast = _labels(root)
    boxes = pd.concat([read_table(f) for f in sorted(root.glob("*boxes*.csv"))] or [pd.DataFrame()], ignore_index=True)
    for f in sorted(root.glob("*file-paths*.csv")):
        table = read_table(f)
        missing = [c for c in ("PatientID", "StudyUID", "View", "descriptive_path") if c not in table.columns]
        if missing:
            raise DataError(f"{f}: not a BCS-DBT file-paths table; missing column(s) {', '.join(missing)}")
        split = _split_of(f.name)
        for r in table.to_dict("records"):
            view = str(r["View"]).lower()
            cands = [root / str(r["descriptive_path"]).strip()] + (
                [root / str(r["classic_path"]).strip()] if "classic_path" in r else []
            )
            path = next((p for p in cands if p.is_file()), None)
            try:
                if path is None:
                    raise DataError(f"{cands[0]}: file does not exist (listed in {f.name})")
                n = int(read_dataset(path, stop_before_pixels=True).get("NumberOfFrames") or 1)
            except DataError as exc:
                skip.bad(path or cands[0], exc)
                continue
            key = _key(r["PatientID"], r["StudyUID"], view)
            exam = f"{r['PatientID']}-{hashlib.sha256(str(r['StudyUID']).encode()).hexdigest()[:8]}"
            image_id = f"{exam}-{view}"
            these = (
                boxes[
                    (boxes["PatientID"] == r["PatientID"])
                    & (boxes["StudyUID"] == r["StudyUID"])
                    & (boxes["View"].str.lower() == view)
                ]
                if len(boxes)
                else boxes
            )
            label = breast.get(key, "unknown")
            out.manifest.append(
                {
                    "image_id": image_id,
                    "patient_id": str(r["PatientID"]),
                    "exam_id": exam,
                    "laterality": view[0].upper(),
                    "view": view[1:].upper(),
                    "modality": "DBT",
                    "vendor": "unknown",
                    "site": "Duke",
                    "path": str(path.relative_to(root)),
                    "n_slices": n,
                    "breast_label": label,
                    "annotation": "full" if len(these) else ("weak" if label != "unknown" else "none"),
                    "split": split,
                }
            )
            for j, b in enumerate(these.to_dict("records")):
                out.lesions.append(
                    {
                        "image_id": image_id,
                        "exam_id": exam,
                        "laterality": view[0].upper(),
                        "view": view[1:].upper(),
                        "lesion_id": f"{image_id}-L{j}",
                        "slice": int(b["Slice"]),
                        "x": float(b["X"]),
                        "y": float(b["Y"]),
                        "w": float(b["Width"]),
                        "h": float(b["Height"]),
                        "mask_path": "",
                        "lesion_class": "malignant" if str(b["Class"]).lower() == "cancer" else "benign",
                        "box_frame": "bcs-dbt",
                    }
                )
    return out
