"""``--format cbis-ddsm``: Curated Breast Imaging Subset of DDSM (TCIA).

Published layout: ``mass_case_description_{train,test}_set.csv`` and ``calc_case_description_{train,
test}_set.csv`` (patient_id, breast density / breast_density, left or right breast, image view,
abnormality id, abnormality type, ..., pathology, image file path, cropped image file path, ROI mask
file path) and the DICOM tree. The CSV paths (``Mass-Training_P_00001_LEFT_CC/<uid>/<uid>/000000.dcm``)
do not match the names of the TCIA download (``Mass-Training_P_00001_LEFT_CC/<date>-DDSM-<n>/1.000000-full
mammogram images-<n>/1-1.dcm``), so files are found by their top folder: the full image in the image
path's folder, the ROI mask in the ROI path's folder (``..._1``), told apart from the cropped image
by its size (the mask has the full image's size).

One manifest row per full mammogram; pathology MALIGNANT → cancer, BENIGN(_WITHOUT_CALLBACK) → benign.
Each abnormality is a lesion whose box bounds its ROI mask.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..dicom import read_dicom
from ..dicom_pixels import read_dataset
from ..schema import read_table
from .common import Ingested, Skipper, rel, require


def _index(root: Path) -> dict[str, list[Path]]:
    """Top folder name (Mass-Training_P_00001_LEFT_CC, ..._1) → DICOM files under it."""
    index: dict[str, list[Path]] = defaultdict(list)
    for f in root.rglob("*.dcm"):
        for part in f.relative_to(root).parts[:-1]:
            if part.startswith(("Mass-", "Calc-")):
                index[part].append(f)
                break
    return index


def _locate(root: Path, csv_path: str, index: dict[str, list[Path]], want_largest: bool) -> Path:
    csv_path = str(csv_path).strip()
    direct = root / csv_path
    if direct.is_file():
        return direct
    top = Path(csv_path).parts[0] if csv_path else ""
    files = index.get(top, [])
    if not files:
        raise DataError(f"{direct}: file does not exist and no DICOM file under a folder named {top!r}")
    if len(files) == 1:
        return files[0]
    sizes = []
    for f in files:
        ds = read_dataset(f, stop_before_pixels=True)
        sizes.append(int(ds.get("Rows", 0)) * int(ds.get("Columns", 0)))
    return files[int(np.argmax(sizes) if want_largest else np.argmin(sizes))]


def ingest(root: Path, labels: Path | None = None, skip_bad: bool = False) -> Ingested:
    """Manifest and lesions from a CBIS-DDSM download (see module docstring)."""
    require(root, ["*case_description*.csv"], "cbis-ddsm")
    out = Ingested()
    skip = Skipper(out, skip_bad)
    index = _index(root)
    images: dict[str, dict] = {}
    for csv in sorted(root.glob("*case_description*.csv")):
        table = read_table(csv)
        table.columns = [c.strip() for c in table.columns]
        need = [
            "patient_id",
            "left or right breast",
            "image view",
            "pathology",
            "image file path",
            "ROI mask file path",
        ]
        missing = [c for c in need if c not in table.columns]
        if missing:
            raise DataError(f"{csv}: not a CBIS-DDSM description table; missing column(s) {', '.join(missing)}")
        split = "test" if "test" in csv.name.lower() else "train"
        for r in table.to_dict("records"):
            image_id = Path(str(r["image file path"]).strip()).parts[0]
            lat, view = str(r["left or right breast"]).upper()[:1], str(r["image view"]).upper()
            try:
                if image_id not in images:
                    path = _locate(root, r["image file path"], index, want_largest=True)
                    images[image_id] = {
                        "image_id": image_id,
                        "patient_id": str(r["patient_id"]),
                        "exam_id": f"{r['patient_id']}-{lat}",
                        "laterality": lat,
                        "view": view,
                        "modality": "MG",
                        "vendor": "DDSM film",
                        "site": "DDSM",
                        "path": rel(path, root),
                        "n_slices": 1,
                        "breast_label": "benign",
                        "annotation": "full",
                        "split": split,
                        "abnormality_type": str(r.get("abnormality type", "")),
                    }
                if str(r["pathology"]).upper().startswith("MALIGNANT"):
                    images[image_id]["breast_label"] = "cancer"
                mask_path = _locate(root, r["ROI mask file path"], index, want_largest=True)
                mask = read_dicom(mask_path, voi=False).pixels
            except DataError as exc:
                skip.bad(r["image file path"], exc)
                continue
            ys, xs = np.nonzero(mask > mask.min())
            if len(xs) == 0:
                skip.bad(mask_path, DataError(f"{mask_path}: ROI mask is empty"))
                continue
            out.lesions.append(
                {
                    "image_id": image_id,
                    "exam_id": images[image_id]["exam_id"],
                    "laterality": lat,
                    "view": view,
                    "lesion_id": f"{image_id}-A{r.get('abnormality id', len(out.lesions))}",
                    "slice": -1,
                    "x": float(xs.min()),
                    "y": float(ys.min()),
                    "w": float(xs.max() - xs.min() + 1),
                    "h": float(ys.max() - ys.min() + 1),
                    "mask_path": rel(mask_path, root),
                    "lesion_class": "malignant" if str(r["pathology"]).upper().startswith("MALIGNANT") else "benign",
                }
            )
    out.manifest = list(images.values())
    return out
