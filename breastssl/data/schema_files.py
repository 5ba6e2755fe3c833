"""Cheap checks of the files a manifest or lesions table names (no pixel is decoded).

Used by :mod:`breastssl.data.schema`: whether a path can exist at all (length limits), whether it names a file,
how many frames a stack holds (the ``.npy`` header or the DICOM NumberOfFrames element) and whether a mask is an
image (its header, as PIL reads it). Each returns a plain value or a short reason, so the caller can list every
bad row of a table in one message.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

MAX_PATH_CHARS, MAX_NAME_CHARS = 4096, 255  # Linux PATH_MAX and NAME_MAX: longer names cannot be opened


def too_long(value: str) -> bool:
    """A path no file system can open (checked on the text, before the file system raises OSError)."""
    return len(value) > MAX_PATH_CHARS or any(len(part) > MAX_NAME_CHARS for part in value.split("/"))


def path_state(path: Path) -> str | None:
    """None if ``path`` exists, else why not ("does not exist" or the operating system's reason)."""
    try:
        return None if path.exists() else "does not exist"
    except OSError as exc:  # a name too long, a loop of links, a permission problem on the way
        return f"cannot be accessed ({exc.strerror or type(exc).__name__})"


def stored_frames(path: Path) -> int | None:
    """Frames a stack file holds, read from its header: ``.npy`` shape or DICOM NumberOfFrames.

    None when that cannot be told cheaply (a series folder, a raster image, an unreadable header): the reader
    reports such files by name when it loads them.
    """
    try:
        if path.is_dir():
            return None
        if path.suffix.lower() == ".npy":
            with open(path, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                fmt = np.lib.format
                read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                shape, _, _ = read(fh)  # the header only, no data
            return int(shape[0]) if len(shape) >= 3 else 1
        from .dicom_pixels import is_dicom_file

        if not is_dicom_file(path):
            return None
        import pydicom

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["NumberOfFrames"])
        frames = ds.get("NumberOfFrames")
        return int(frames) if frames not in (None, "") else 1
    except Exception:  # any unreadable header: not checkable here, the reader names the file later
        return None


def image_problem(path: Path) -> str | None:
    """None if ``path`` is an image the mask reader can open (header only: PIL, or DICOM for ``.dcm``), else why not."""
    from PIL import Image

    if path.suffix.lower() == ".dcm":
        return _dicom_mask_problem(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning: the size is checked by the reader
            with Image.open(path) as im:
                if im.width < 1 or im.height < 1:
                    return f"has size {im.width}x{im.height}"
    except FileNotFoundError:
        return "does not exist"
    except Exception as exc:  # PIL raises many types for files that are not images
        return f"is not an image ({type(exc).__name__})"
    return None


def _dicom_mask_problem(path: Path) -> str | None:
    """None if ``path`` is a DICOM file with an image size in its header (a CBIS-DDSM ROI mask), else why not."""
    import pydicom

    if not path.is_file():
        return "does not exist"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Rows", "Columns"])
        if int(ds.get("Rows") or 0) < 1 or int(ds.get("Columns") or 0) < 1:
            return "has no image size in its DICOM header"
    except Exception as exc:  # pydicom raises many types for files that are not DICOM
        return f"is not a DICOM image ({type(exc).__name__})"
    return None
