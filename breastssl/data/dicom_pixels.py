"""Parsing DICOM files and decoding their pixel data, with errors that name the file and the problem."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from ..errors import DataError
from .dicom_codestream import RLE_SYNTAX, check_codestream_size, rle_overrun

# transfer syntax (prefix) → what to install for pydicom to decode it
DECODER_PACKAGES: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg-libjpeg (or pillow)",
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg (or pillow)",
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.80": "pylibjpeg-libjpeg (or pyjpegls)",
    "1.2.840.10008.1.2.4.81": "pylibjpeg-libjpeg (or pyjpegls)",
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg (or pillow)",
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg (or pillow)",
    "1.2.840.10008.1.2.4.20": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.21": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pylibjpeg-rle",
}
NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}


PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}  # PixelData, FloatPixelData, DoubleFloatPixelData
DEFLATED = "1.2.840.10008.1.2.1.99"
DEFER_BYTES = 64 * 1024  # values above this stay on disk when only the header is checked


def read_dataset(path: Path, stop_before_pixels: bool = False, defer_pixels: bool = False) -> Dataset:
    """Parse a DICOM file; :class:`DataError` if it is missing, not DICOM, truncated or corrupt.

    ``defer_pixels`` parses the whole file but leaves large values (the pixel data) on disk: the element's
    length and offset are kept, so :func:`check_pixel_data` can check the data is complete without reading it.
    """
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    defer = DEFER_BYTES if defer_pixels else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = _parse(path, stop_before_pixels, defer)
            if defer is not None and _transfer_syntax(ds) == DEFLATED:
                # a deflated file is parsed from an inflated copy: offsets do not match the file, so read it all
                ds = _parse(path, stop_before_pixels, None)
            # force parsing of every element now, so that corruption shows up here and not later
            _force(ds, skip_pixels=defer is not None)
    except DataError:
        raise
    except Exception as exc:  # pydicom raises many types for truncated or corrupt files
        raise DataError(
            f"{path}: cannot be parsed as DICOM, truncated or corrupt ({type(exc).__name__}: {exc})"
        ) from None
    return ds


def _parse(path: Path, stop_before_pixels: bool, defer: int | None) -> Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, defer_size=defer)
    except InvalidDicomError:
        # files without the 128-byte preamble: accept only if they parse into an image header
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True, defer_size=defer)
        if "SOPClassUID" not in ds and "Rows" not in ds:
            raise DataError(f"{path}: not a DICOM file (no DICM preamble and no image attributes)") from None
        return ds


def _force(ds: Dataset, skip_pixels: bool) -> None:
    """Convert every element's value (nested sequences included), leaving deferred pixel data unread."""
    if not skip_pixels:
        for elem in ds.iterall():
            _ = elem.value
        return
    for tag in list(ds.keys()):
        if tag in PIXEL_TAGS:
            continue
        elem = ds[tag]
        if elem.VR == "SQ":
            for item in elem.value:
                _force(item, skip_pixels)
        else:
            _ = elem.value


def _transfer_syntax(ds: Dataset) -> str:
    fm = getattr(ds, "file_meta", None)
    ts = str(getattr(fm, "TransferSyntaxUID", "") or "") if fm is not None else ""
    return ts or "1.2.840.10008.1.2"  # no file meta: implicit VR little endian, as pydicom assumes


def check_decoder(ts: str, path: Path) -> None:
    """Raise a :class:`DataError` naming the package to install if ``ts`` cannot be decoded here."""
    if ts in NATIVE or ts == "1.2.840.10008.1.2.1.99":
        return
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        name = getattr(pydicom.uid.UID(ts), "name", ts)
        raise DataError(
            f"{path}: transfer syntax {ts} ({name}) has no decoder in pydicom {pydicom.__version__}; "
            "convert the file to an uncompressed transfer syntax (e.g. `gdcmconv --raw`)"
        ) from None
    if not decoder.is_available:
        package = DECODER_PACKAGES.get(ts, "a pydicom pixel-data plugin (pylibjpeg-libjpeg, pylibjpeg-openjpeg)")
        name = getattr(pydicom.uid.UID(ts), "name", ts)
        raise DataError(
            f"{path}: transfer syntax {ts} ({name}) needs a decoder that is not installed: pip install {package}"
        )


def pixel_data_length(ds: Dataset, path: Path) -> int:
    """Bytes of native PixelData, without reading them when they were deferred (checked against the file size)."""
    elem = ds.get_item(0x7FE00010, keep_deferred=True)  # the raw element: no conversion, no deferred read
    value = getattr(elem, "value", None)
    if value is not None:
        return len(value)
    length, start = int(elem.length), int(getattr(elem, "value_tell", 0) or 0)
    if length == 0xFFFFFFFF:  # undefined length: encapsulated, its items were parsed to the delimiter
        return 0
    size = path.stat().st_size
    if start + length > size:
        raise DataError(
            f"{path}: truncated: PixelData declares {length} bytes from offset {start} but the file ends at {size}"
        )
    return length


def _check_native_length(ds: Dataset, path: Path, meta: dict[str, Any]) -> None:
    rows, cols, spp = meta["rows"], meta["columns"], meta["samples_per_pixel"]
    bits, frames = meta["bits_allocated"], meta["n_frames"]
    if bits not in (1, 8, 16, 32, 64):
        raise DataError(
            f"{path}: impossible image header (Rows={rows}, Columns={cols}, SamplesPerPixel={spp}, "
            f"BitsAllocated={bits}, NumberOfFrames={frames})"
        )
    n_bits = rows * cols * spp * frames * bits
    expected = (n_bits + 7) // 8
    if meta["photometric"] == "YBR_FULL_422":
        expected = expected * 2 // 3
    actual = pixel_data_length(ds, path)
    if actual < expected or actual > expected + 1 + (expected & 1):
        per_frame = max(1, expected // frames)
        raise DataError(
            f"{path}: PixelData holds {actual} bytes but the header (NumberOfFrames={frames}, Rows={rows}, "
            f"Columns={cols}, SamplesPerPixel={spp}, BitsAllocated={bits}) needs {expected}; "
            f"the data would hold {actual / per_frame:.2f} frames"
        )


REQUIRED_PIXEL_ATTRIBUTES = (
    "Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored",
    "PixelRepresentation",
)  # fmt: skip


def _photometric_names() -> set[str]:
    from pydicom.pixels.common import PhotometricInterpretation

    return {str(v) for v in PhotometricInterpretation} | {"PALETTE COLOR"}


def samples_needed(photometric: str) -> int:
    """SamplesPerPixel a PhotometricInterpretation requires (PS3.3 C.7.6.3.1.2): grey and palette 1, ARGB/CMYK 4."""
    if photometric in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"):
        return 1
    return 4 if photometric in ("ARGB", "CMYK") else 3


def _check_pixel_module(ds: Dataset, path: Path, meta: dict[str, Any]) -> None:
    """What pydicom requires of the Image Pixel module before it decodes (the reader fails there otherwise)."""
    fm = getattr(ds, "file_meta", None)
    if fm is None or not str(fm.get("TransferSyntaxUID", "") or ""):
        problem = "the file meta has no TransferSyntaxUID"
    elif missing := [k for k in REQUIRED_PIXEL_ATTRIBUTES if ds.get(k) in (None, "")]:
        problem = f"missing required attribute(s) {', '.join(missing)}"
    elif not 1 <= meta["bits_stored"] <= meta["bits_allocated"]:
        problem = f"BitsStored={meta['bits_stored']} must be between 1 and BitsAllocated={meta['bits_allocated']}"
    elif meta["pixel_representation"] not in (0, 1):
        problem = f"PixelRepresentation={meta['pixel_representation']} must be 0 or 1"
    elif meta["rows"] > 65535 or meta["columns"] > 65535:
        problem = f"Rows={meta['rows']}, Columns={meta['columns']} exceed 65535"
    elif (photometric := str(ds.get("PhotometricInterpretation")).strip()) not in _photometric_names():
        problem = f"unknown PhotometricInterpretation {photometric!r}"
    elif meta["samples_per_pixel"] != (need := samples_needed(photometric)):
        # decoding anyway gives garbage: PALETTE COLOR on 3 samples expands each sample to RGB (a 5-D array)
        problem = (
            f"PhotometricInterpretation {photometric} needs SamplesPerPixel={need} "
            f"but SamplesPerPixel={meta['samples_per_pixel']}"
        )
    elif meta["samples_per_pixel"] == 3 and ds.get("PlanarConfiguration") not in (0, 1):
        problem = f"PlanarConfiguration={ds.get('PlanarConfiguration')!r} must be 0 or 1 for colour data"
    else:
        return
    raise DataError(f"{path}: pixel data cannot be decoded: {problem}")


def check_pixel_data(ds: Dataset, path: Path, meta: dict[str, Any]) -> str:
    """The reader's checks before decoding: PixelData present, a sane header, a decoder installed for the
    transfer syntax, and (uncompressed) as many bytes as Rows × Columns × frames × samples × bits.

    Cheap (no decoding, and deferred pixel data is not read); returns the transfer syntax. A damaged
    codestream inside compressed data only shows when it is decoded.
    """
    if "PixelData" not in ds:
        kind = "FloatPixelData" if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds else "no pixel data"
        raise DataError(f"{path}: has no PixelData ({kind}; SOP class {meta['sop_class_name']})")
    rows, cols, spp, frames = meta["rows"], meta["columns"], meta["samples_per_pixel"], meta["n_frames"]
    if rows < 1 or cols < 1 or frames < 1 or spp not in (1, 3):
        raise DataError(
            f"{path}: impossible image header (Rows={rows}, Columns={cols}, SamplesPerPixel={spp}, "
            f"BitsAllocated={meta['bits_allocated']}, NumberOfFrames={frames})"
        )
    _check_pixel_module(ds, path, meta)
    ts = _transfer_syntax(ds)
    check_decoder(ts, path)
    if ts in NATIVE:
        _check_native_length(ds, path, meta)
    elif frames * 8 > path.stat().st_size:  # each compressed frame needs at least one 8-byte item header
        raise DataError(f"{path}: NumberOfFrames={frames} cannot fit in a file of {path.stat().st_size} bytes")
    return ts


def decode_pixels(ds: Dataset, path: Path, meta: dict[str, Any]) -> np.ndarray:
    """Decoded pixels as (F, H, W) or (F, H, W, 3), checked against the header's frame count."""
    ts = check_pixel_data(ds, path, meta)
    if ts not in NATIVE:
        check_codestream_size(ds, path, meta, ts)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # recorded, not shown: pydicom's notes on conformance are noise here
            arr = ds.pixel_array
    except DataError:
        raise
    except Exception as exc:  # decoders raise many types for damaged codestreams
        raise DataError(f"{path}: pixel data cannot be decoded ({type(exc).__name__}: {exc})") from None
    if ts == RLE_SYNTAX:
        rle_overrun([str(w.message) for w in caught], path, meta)
    frames, spp = meta["n_frames"], meta["samples_per_pixel"]
    arr = np.asarray(arr)
    if frames == 1 and arr.ndim == (3 if spp > 1 else 2):
        arr = arr[None]
    want = (frames, meta["rows"], meta["columns"]) + ((spp,) if spp > 1 else ())
    if arr.shape != want:
        raise DataError(
            f"{path}: decoded pixel data has shape {arr.shape}, the header (NumberOfFrames={frames}, "
            f"Rows={meta['rows']}, Columns={meta['columns']}, SamplesPerPixel={spp}) says {want}"
        )
    if ts not in NATIVE and meta["photometric"].startswith("YBR"):
        meta["photometric_decoded"] = "RGB"
    return arr


def is_dicom_file(path: Path) -> bool:
    """Cheap test: the DICM magic at byte 128, or a .dcm / .dicom suffix."""
    if path.suffix.lower() in {".dcm", ".dicom"}:
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def series_files(folder: Path, series_uid: str | None = None) -> list[Path]:
    """DICOM files in ``folder`` (not recursive), those of ``series_uid`` (or its hashed key) when given."""
    from .datasets.common import pseudonym

    files = sorted(p for p in folder.iterdir() if p.is_file() and is_dicom_file(p))
    if not files:
        raise DataError(f"{folder}: folder holds no DICOM files")
    if series_uid:
        keep = []
        for p in files:
            uid = str(read_dataset(p, stop_before_pixels=True).get("SeriesInstanceUID", ""))
            if series_uid in (uid, pseudonym(uid, "s")):
                keep.append(p)
        if not keep:
            raise DataError(f"{folder}: no DICOM file of series {series_uid}")
        files = keep
    return files
