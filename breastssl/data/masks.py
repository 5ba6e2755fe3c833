"""Lesion masks from files: PNG/TIFF/... through PIL, DICOM (e.g. CBIS-DDSM's ROI masks) through the reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError

MASK_SUFFIXES = {".png", ".bmp", ".tif", ".tiff", ".gif", ".jpg", ".jpeg", ".dcm"}


def read_mask(path: str | Path) -> np.ndarray:
    """The mask in ``path`` as a bool (H, W) array: foreground = the brighter half of the value range."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: lesion mask does not exist")
    if path.suffix.lower() == ".dcm":
        from .dicom import read_image

        pixels = read_image(path, voi=False).pixels  # modality values: a binary ROI mask is 0 / max
        pixels = pixels[0] if pixels.ndim == 3 else pixels
        top = float(pixels.max()) if pixels.size else 0.0
        return pixels > top / 2 if top > 0 else np.zeros(pixels.shape, bool)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("L")) > 127
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: lesion mask is not a readable image ({exc})") from None
