"""``--format busi``: Breast Ultrasound Images (BUSI, Al-Dhabyani et al. 2020).

Published layout: ``Dataset_BUSI_with_GT/{benign,malignant,normal}/<class> (<n>).png`` with masks
``<class> (<n>)_mask.png`` (and ``_mask_1.png``, ... for further lesions). Each mask's bounding box is
a lesion of the folder's class; normal images have empty masks.

BUSI records neither patient nor laterality: every image is its own patient (images of one woman may
therefore share a split only by chance), laterality is written as U (unknown),
and everything is in split ``train`` for the user to re-split.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..dicom import read_raster
from .common import Ingested, Skipper, rel

CLASSES = {"benign": ("benign", "benign"), "malignant": ("cancer", "malignant"), "normal": ("normal", "")}


def _base(root: Path) -> Path:
    for cand in [root, *sorted(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []:
        if all((cand / c).is_dir() for c in CLASSES):
            return cand
    raise DataError(
        f"{root}: does not look like a busi dataset; need folders benign/, malignant/, normal/ "
        "(or Dataset_BUSI_with_GT/ holding them)"
    )


def ingest(root: Path, labels: Path | None = None, skip_bad: bool = False) -> Ingested:
    """Manifest and lesions from a BUSI download (see module docstring)."""
    base = _base(root)
    out = Ingested()
    skip = Skipper(out, skip_bad)
    for folder, (label, lesion_class) in CLASSES.items():
        for img in sorted((base / folder).glob("*.png")):
            if "_mask" in img.stem:
                continue
            image_id = re.sub(r"[^A-Za-z0-9]+", "-", img.stem).strip("-")
            out.manifest.append(
                {
                    "image_id": image_id,
                    "patient_id": image_id,
                    "exam_id": image_id,
                    "laterality": "U",
                    "view": "US",
                    "modality": "US",
                    "vendor": "unknown",
                    "site": "BUSI",
                    "path": rel(img, root),
                    "n_slices": 1,
                    "breast_label": label,
                    "annotation": "full",
                    "split": "train",
                }
            )
            for j, mask in enumerate(sorted(img.parent.glob(f"{img.stem}_mask*.png"))):
                try:
                    m = read_raster(mask).pixels
                except DataError as exc:
                    skip.bad(mask, exc)
                    continue
                m = m.max(axis=-1) if m.ndim == 3 else m
                ys, xs = np.nonzero(m > 0.5)
                if not lesion_class or len(xs) == 0:
                    continue
                out.lesions.append(
                    {
                        "image_id": image_id,
                        "exam_id": image_id,
                        "laterality": "U",
                        "view": "US",
                        "lesion_id": f"{image_id}-L{j}",
                        "slice": -1,
                        "x": float(xs.min()),
                        "y": float(ys.min()),
                        "w": float(xs.max() - xs.min() + 1),
                        "h": float(ys.max() - ys.min() + 1),
                        "mask_path": rel(mask, root),
                        "lesion_class": lesion_class,
                    }
                )
    if not out.manifest:
        raise DataError(f"{base}: no images found in benign/, malignant/, normal/")
    return out
