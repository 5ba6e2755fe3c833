"""DICOM readers for mammography (FFDM), DBT and ultrasound behind one interface (DESIGN §4).

``read_image(path) -> Image``: ``.pixels`` is float32, (H, W) for a mammogram or a single-frame
monochrome ultrasound image, (D, H, W) for a DBT stack or a monochrome cine, (H, W, 3) / (F, H, W, 3)
for colour ultrasound; ``.meta`` is a dict of technical metadata (modality, laterality, view, spacing,
window, photometric, n_frames, sop_class, UIDs, ...) with no patient identifiers.

Grey-scale pixels pass bits-stored masking → Modality LUT → VOI LUT (window per frame, or a VOI LUT
Sequence) → MONOCHROME1 inversion, giving display values in [0, 1] where bright is dense. With
``voi=False`` they stop after the Modality LUT (modality units, no inversion). Colour pixels (RGB,
YBR_* converted to RGB, palette colour expanded) are scaled to [0, 1]. Readers never augment; every
failure is a :class:`DataError` that names the file and what is wrong. Absurd values never pass silently
(:mod:`.dicom_sanity`): a zero or non-finite RescaleSlope, an image the LUTs make constant or non-finite and
a header that disagrees with the compressed data fail; an unusable window is ignored and an invalid spacing
becomes ``None``, each with a warning naming the file.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from . import dicom_lut as lut
from . import dicom_sanity as sanity
from .dicom_meta import frame_info, header_meta, positive_floats, us_spacing
from .dicom_pixels import decode_pixels, read_dataset
from .orientation import resolve_laterality, resolve_view

RASTER_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


@dataclass
class Image:
    """Pixels and metadata of one image or stack; ``path`` is the file (or series folder) read."""

    pixels: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    path: str = ""


def lut_data(item: Any) -> np.ndarray:
    """LUTData as float32: a list of values (VR US) or raw 16-bit words (VR OW)."""
    value = item.LUTData
    if isinstance(value, bytes):
        return np.frombuffer(value, dtype="<u2").astype(np.float32)
    return np.asarray(value if hasattr(value, "__len__") else [value], dtype=np.float32).ravel()


def _voi_frames(
    values: np.ndarray, ds: Any, frames: list[dict[str, Any]], meta: dict[str, Any], path: Path
) -> np.ndarray:
    """Window (F, H, W) modality values to [0, 1] frame by frame; records what was used in ``meta``."""
    voi_seq = ds.get("VOILUTSequence")
    if voi_seq:
        item = voi_seq[0]
        desc = [int(v) for v in item.LUTDescriptor]
        data = lut_data(item)
        meta["window_source"] = "voi_lut_sequence"
        return lut.voi_lut_table(values, desc, data)
    frames = sanity.drop_bad_windows(frames, path)  # an unusable window is ignored (with a warning), not applied
    if all(f["windows"] for f in frames):
        out = np.empty(values.shape, dtype=np.float32)
        for k, f in enumerate(frames):
            c, w = f["windows"][0]
            out[k] = lut.window(values[k], c, w, f["voi_function"])
        meta["window"] = list(frames[len(frames) // 2]["windows"][0])
        meta["voi_function"] = frames[0]["voi_function"].upper()
        meta["window_source"] = "per_frame" if len({tuple(f["windows"][0]) for f in frames}) > 1 else "tags"
        return out
    if meta["modality"] == "US":  # screen captures: keep the stored range, do not stretch
        meta["window_source"] = "bits_stored"
        return (values / float(2 ** max(1, meta["bits_stored"]) - 1)).clip(0.0, 1.0)
    meta["window_source"] = "minmax"
    return lut.minmax(values)


def _grey(raw: np.ndarray, ds: Any, meta: dict[str, Any], voi: bool, path: Path) -> np.ndarray:
    frames = frame_info(ds, raw.shape[0])
    sanity.check_rescale(ds, meta, frames, path)
    vals = lut.mask_bits(raw, meta["bits_stored"], meta["pixel_representation"] == 1)
    # overflow to inf (a slope of 1e38) is reported below by file and values, not as a numpy RuntimeWarning
    with np.errstate(over="ignore", invalid="ignore"):
        if "ModalityLUTSequence" in ds:
            item = ds.ModalityLUTSequence[0]
            values = lut.apply_lut(vals, int(item.LUTDescriptor[1]), lut_data(item))
            values = values.astype(np.float32)
        else:
            values = np.empty(vals.shape, dtype=np.float32)
            for k, f in enumerate(frames):
                values[k] = lut.modality_lut(vals[k], f["slope"], f["intercept"])
    varies = sanity.check_lut_result(vals, values, path, "Modality LUT", sanity.lut_summary(ds, frames, None))
    sp = next((f["spacing"] for f in frames if f["spacing"]), None)
    sanity.warn_rejected(path, [r for f in frames for r in f["rejected"]])
    meta["spacing"] = sp
    meta["slice_thickness"] = frames[0]["slice_thickness"]
    meta["frame_positions"] = [f["position"] for f in frames] if any(f["position"] for f in frames) else None
    if not voi:
        return values
    try:
        out = _voi_frames(values, ds, frames, meta, path)
    except (ValueError, AttributeError, TypeError) as exc:
        raise DataError(f"{path}: invalid VOI LUT / window attributes ({exc})") from None
    summary = sanity.lut_summary(ds, frames, meta)
    sanity.check_lut_result(vals, out, path, "Modality and VOI LUTs", summary, stored_varies=varies)
    if meta["photometric"] == "MONOCHROME1":
        out = 1.0 - out
    return out


def _colour(raw: np.ndarray, ds: Any, meta: dict[str, Any], path: Path) -> np.ndarray:
    if meta["photometric"] == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:
            rgb = apply_color_lut(raw, ds)
        except Exception as exc:  # malformed palette descriptors come in many forms
            raise DataError(f"{path}: palette colour LUT cannot be applied ({type(exc).__name__}: {exc})") from None
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        return (rgb.astype(np.float32) / float(2**bits - 1)).clip(0, 1)
    bits = meta["bits_stored"] or 8
    rgb = lut.mask_bits(raw, bits, False).astype(np.float32)
    return rgb / float(2**bits - 1)


def _decode(path: Path, voi: bool) -> tuple[np.ndarray, dict[str, Any], Any]:
    """Read one file; (F, H, W) or (F, H, W, 3) float32 pixels, meta, dataset."""
    ds = read_dataset(path)
    try:
        meta = header_meta(ds)
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        raise DataError(f"{path}: malformed header attribute ({type(exc).__name__}: {exc})") from None
    raw = decode_pixels(ds, path, meta)
    colour = raw.ndim == 4 or meta["photometric"] == "PALETTE COLOR"
    if colour:
        pixels = _colour(raw, ds, meta, path)
        meta["window_source"] = "colour"
    else:
        pixels = _grey(raw, ds, meta, voi, path)
    want = (meta["n_frames"], meta["rows"], meta["columns"]) + ((3,) if colour else ())
    if pixels.shape != want:  # e.g. a palette applied to data that already has samples
        raise DataError(f"{path}: pixels of shape {pixels.shape} after decoding, the header says {want}")
    if meta.get("spacing") is None:
        rejected: list[tuple[str, str]] = []
        meta["spacing"] = us_spacing(ds, rejected)
        sanity.warn_rejected(path, rejected)
    if not np.all(np.isfinite(pixels)):
        raise DataError(f"{path}: pixel values are not finite after the Modality/VOI LUT")
    return pixels, meta, ds


def _finish(pixels: np.ndarray, meta: dict[str, Any], path: Path, voi: bool) -> Image:
    """Squeeze single frames, resolve laterality and view, return the Image."""
    if pixels.shape[0] == 1:
        pixels = pixels[0]
    sanity.check_shape(pixels, path)  # every reader returns one of the documented shapes, or fails by name
    modality = meta["modality"]
    if modality not in {"MG", "DBT"} or pixels.ndim == 4 or (pixels.ndim == 3 and meta["n_frames"] == 1):
        meta["laterality"], meta["laterality_source"] = (
            meta["laterality_tag"],
            "tag" if meta["laterality_tag"] else "unknown",
        )
        meta["view"] = "US" if modality == "US" else meta["view_tag"]
    else:
        display = pixels
        if not voi:  # modality values: bright = dense only for MONOCHROME2
            display = lut.minmax(pixels)
            display = 1.0 - display if meta["photometric"] == "MONOCHROME1" else display
        meta["laterality"], meta["laterality_source"] = resolve_laterality(
            meta["laterality_tag"], display, meta["patient_orientation"]
        )
        meta["view"], meta["view_source"] = resolve_view(meta["view_tag"], display)
    meta["shape"] = list(pixels.shape)
    meta["voi_applied"] = bool(voi)
    return Image(np.ascontiguousarray(pixels, dtype=np.float32), meta, str(path))


def read_dicom(path: str | Path, voi: bool = True) -> Image:
    """Read one DICOM file (MG, DBT multi-frame, US single-frame or cine)."""
    path = Path(path)
    with _malformed(path):
        pixels, meta, _ = _decode(path, voi)
        return _finish(pixels, meta, path, voi)


@contextlib.contextmanager
def _malformed(path: Path) -> Iterator[None]:
    """Turn any failure on a parsed but damaged file into a DataError naming it.

    The header parsed, so what fails here is an attribute with an impossible value (a window of
    "4u00.0", a negative frame count, a LUT descriptor of the wrong length...); they surface as many
    exception types from numpy and pydicom, all of which mean the same thing to the user.
    """
    try:
        yield
    except DataError:
        raise
    except MemoryError:
        raise DataError(f"{path}: header asks for more memory than available (damaged Rows/Columns/frames?)") from None
    except Exception as exc:  # noqa: BLE001 - boundary: damaged files raise arbitrary types
        raise DataError(f"{path}: malformed or inconsistent attributes ({type(exc).__name__}: {exc})") from None


def _slice_key(meta: dict[str, Any]) -> tuple[float, int]:
    pos, ori = meta.get("image_position"), meta.get("image_orientation")
    if pos and ori and len(ori) == 6:
        normal = np.cross(np.asarray(ori[:3]), np.asarray(ori[3:]))
        return float(np.dot(normal, pos)), meta["instance_number"]
    if pos:
        return float(pos[2]), meta["instance_number"]
    return 0.0, meta["instance_number"]


def series_in_slice_order(paths: Sequence[str | Path]) -> list[Path]:
    """The files of a legacy series in the slice order :func:`read_series` gives them, from their headers alone
    (no pixel decoding): slice ``k`` of the stack is file ``k`` of the list."""
    keyed = []
    for p in map(Path, paths):
        with _malformed(p):
            meta = header_meta(read_dataset(p, stop_before_pixels=True))
        keyed.append((_slice_key(meta), p))
    return [p for _, p in sorted(keyed, key=lambda t: t[0])]


def read_series(paths: Sequence[str | Path], voi: bool = True) -> Image:
    """Read a legacy series (one slice per file) as one (D, H, W) stack.

    Files must share one SeriesInstanceUID; slices are ordered by ImagePositionPatient along the slice
    normal, then InstanceNumber.
    """
    if not paths:
        raise DataError("read_series: no files given")
    parts = []
    for p in paths:
        with _malformed(Path(p)):
            pixels, meta, _ = _decode(Path(p), voi)
        if pixels.ndim != 3 or pixels.shape[0] != 1:
            raise DataError(f"{p}: expected a single grey-scale frame in a one-slice-per-file series")
        parts.append((_slice_key(meta), pixels[0], meta, Path(p)))
    uids = {m["series_uid"] for _, _, m, _ in parts}
    if len(uids) > 1:
        raise DataError(f"{parts[0][3].parent}: files of {len(uids)} different series given as one series")
    shapes = {px.shape for _, px, _, _ in parts}
    if len(shapes) > 1:
        raise DataError(f"{parts[0][3].parent}: slices of different sizes in one series: {sorted(shapes)}")
    parts.sort(key=lambda t: t[0])
    stack = np.stack([px for _, px, _, _ in parts])
    meta = dict(parts[0][2])
    meta["n_frames"] = len(parts)
    meta["modality"] = "DBT" if meta["modality"] in {"MG", "DBT"} and len(parts) > 1 else meta["modality"]
    meta["frame_positions"] = [m["image_position"] for _, _, m, _ in parts]
    meta["files"] = [str(p) for _, _, _, p in parts]
    meta["legacy_series"] = True
    folder = parts[0][3].parent
    with _malformed(folder):
        return _finish(stack, meta, folder, voi)


def read_npy(path: str | Path, row: Mapping[str, Any] | None = None) -> Image:
    """Read a ``.npy`` image/stack of the synthetic fast path; the manifest row gives window and spacing.

    Stored values are windowed with ``window_center`` / ``window_width`` (``voi_function``, default
    LINEAR) when the row has them, else scaled by their range; MONOCHROME1 rows are inverted.
    """
    path = Path(path)
    row = dict(row or {})
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/OSError/EOFError for damaged files
        raise DataError(f"{path}: cannot be read as a .npy array ({type(exc).__name__}: {exc})") from None
    if arr.dtype.kind not in "iuf" or arr.ndim not in (2, 3) or arr.size == 0:
        raise DataError(f"{path}: expected a non-empty 2-D or 3-D numeric array, got {arr.dtype} {arr.shape}")
    modality = str(row.get("modality") or ("DBT" if arr.ndim == 3 and arr.shape[-1] != 3 else "MG"))
    colour = arr.ndim == 3 and arr.shape[-1] == 3 and modality == "US"
    photometric = str(row.get("photometric") or ("RGB" if colour else "MONOCHROME2"))
    meta: dict[str, Any] = {"modality": modality, "photometric": photometric, "n_frames": 1}
    if colour or arr.dtype == np.uint8:
        pixels = arr.astype(np.float32) / (255.0 if arr.dtype == np.uint8 else max(1.0, float(arr.max())))
        meta["window_source"] = "colour" if colour else "uint8"
    elif _has(row, "window_center") and _has(row, "window_width"):
        c, w = float(row["window_center"]), float(row["window_width"])
        pixels = lut.window(arr.astype(np.float32), c, w, str(row.get("voi_function") or "LINEAR"))
        meta.update(window=[c, w], window_source="manifest")
    else:
        pixels = lut.minmax(arr)
        meta["window_source"] = "minmax"
    if photometric == "MONOCHROME1":
        pixels = 1.0 - pixels
    if arr.ndim == 3 and not colour:
        meta["n_frames"] = int(arr.shape[0])
    meta["spacing"] = positive_floats([row["spacing"]] * 2, 2) if _has(row, "spacing") else None
    if _has(row, "spacing") and meta["spacing"] is None:  # same rule as DICOM spacing: unknown, with a warning
        sanity.warn_rejected(path, [("manifest spacing", str(row["spacing"]))])
    meta["laterality_tag"] = row.get("laterality") if row.get("laterality") in ("L", "R") else None
    meta["view_tag"] = row.get("view") if _has(row, "view") else None
    meta["patient_orientation"] = None
    meta["pixels_dtype"] = str(arr.dtype)
    return _finish(pixels[None] if meta["n_frames"] == 1 else pixels, meta, path, True)


def _has(row: Mapping[str, Any], key: str) -> bool:
    v = row.get(key)
    return v is not None and not (isinstance(v, float) and np.isnan(v)) and v != ""


def read_raster(path: str | Path) -> Image:
    """Read a PNG/JPEG/TIFF image (e.g. BUSI ultrasound) as float32 in [0, 1]; grey if channels are equal."""
    from PIL import Image as PILImage

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PILImage.open(path) as im:
                arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "I;16", "I") else im)
    except Exception as exc:  # PIL raises many types for damaged files
        raise DataError(f"{path}: cannot be read as an image ({type(exc).__name__}: {exc})") from None
    if arr.ndim == 3 and np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
        arr = arr[..., 0]
    top = 255.0 if arr.dtype == np.uint8 else float(max(1, arr.max()))
    meta = {"modality": "US", "photometric": "RGB" if arr.ndim == 3 else "MONOCHROME2", "n_frames": 1}
    meta.update(laterality_tag=None, view_tag=None, patient_orientation=None, window_source="raster", spacing=None)
    return _finish((arr.astype(np.float32) / top)[None], meta, path, True)


def read_image(path: str | Path, row: Mapping[str, Any] | None = None, voi: bool = True) -> Image:
    """Read any supported image: DICOM file, a folder holding a legacy series, ``.npy`` or a raster image.

    ``row`` (a manifest row) supplies window/spacing for ``.npy`` files and, for a folder, the
    ``series_uid`` to select when the folder holds several series.
    """
    path = Path(path)
    if path.is_dir():
        from .dicom_pixels import series_files

        return read_series(series_files(path, (row or {}).get("series_uid")), voi)
    if path.suffix.lower() == ".npy":
        return read_npy(path, row)
    if path.suffix.lower() in RASTER_SUFFIXES:
        return read_raster(path)
    return read_dicom(path, voi)
