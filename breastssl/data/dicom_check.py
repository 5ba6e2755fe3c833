"""Checking a DICOM file as the reader would, without decoding its pixels (used by ingest and predict).

``check_file`` applies every check :func:`breastssl.data.dicom.read_image` makes before decoding: the file
parses to its end, the header attributes the pixels depend on are well formed, PixelData is present, a
decoder for the transfer syntax is installed, and uncompressed data holds Rows × Columns × frames ×
samples × bits. The pixel data itself is left on disk (only its length and offset are read), so a
folder of large DBT stacks is checked at the cost of its headers. What only a decode shows (a damaged
JPEG codestream, a LUT that cannot be applied) needs ``verify_pixels=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from ..errors import DataError
from .dicom_meta import frame_info, header_meta, us_spacing
from .dicom_pixels import check_pixel_data, read_dataset
from .dicom_sanity import check_rescale

# what a malformed attribute raises on conversion (int("1A"), float("0&0"), a missing item, an absurd size)
MALFORMED = (ValueError, TypeError, AttributeError, OverflowError, KeyError, IndexError)


def checked_header(ds: Dataset, path: Path) -> dict[str, Any]:
    """:func:`header_meta` with a malformed attribute turned into a :class:`DataError` naming the file."""
    try:
        return header_meta(ds)
    except MALFORMED as exc:
        raise DataError(f"{path}: malformed header attribute ({type(exc).__name__}: {exc})") from None


def check_file(path: Path, verify_pixels: bool = False) -> tuple[Dataset, dict[str, Any]]:
    """(dataset without pixel values, header metadata) of an image file the reader will accept.

    Raises a :class:`DataError` naming the file otherwise: not an image object, truncated, no PixelData,
    too little pixel data for the header, no decoder installed, a malformed attribute, SamplesPerPixel that
    does not fit the PhotometricInterpretation, a zero or non-finite RescaleSlope. With
    ``verify_pixels`` the file is also decoded in full through the reader.
    """
    ds = read_dataset(path, defer_pixels=True)
    if "Rows" not in ds:
        raise DataError(f"{path}: DICOM object without an image (SOP class {ds.get('SOPClassUID', '?')})")
    meta = checked_header(ds, path)
    # the frame count is checked against the data before the per-frame attributes are walked, so that a
    # damaged NumberOfFrames of 10^9 fails here instead of looping
    check_pixel_data(ds, path, meta)
    try:
        frames = frame_info(ds, meta["n_frames"])  # windows, rescale, spacing: what the reader parses for every frame
        us_spacing(ds)
    except MALFORMED as exc:
        raise DataError(f"{path}: malformed header attribute ({type(exc).__name__}: {exc})") from None
    check_rescale(ds, meta, frames, path)  # a zero or non-finite RescaleSlope fails the reader: fail here too
    if verify_pixels:
        from .dicom import read_image

        read_image(path)
    return ds, meta
