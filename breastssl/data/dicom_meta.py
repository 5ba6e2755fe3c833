"""Metadata of DICOM breast images: laterality, view, spacing, windows and per-frame functional groups.

Only technical attributes and UIDs are copied out; patient-identifying attributes (names, IDs, dates,
institution, accession number) never leave this module, so reader outputs carry none (DESIGN §9).
"""

from __future__ import annotations

import math
from typing import Any

from pydicom.dataset import Dataset

SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.1.2": "Digital Mammography X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.2.1": "Digital Mammography X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.13.1.3": "Breast Tomosynthesis Image Storage",
    "1.2.840.10008.5.1.4.1.1.13.1.4": "Breast Projection X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.13.1.5": "Breast Projection X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.6.1": "Ultrasound Image Storage",
    "1.2.840.10008.5.1.4.1.1.3.1": "Ultrasound Multi-frame Image Storage",
    "1.2.840.10008.5.1.4.1.1.6.2": "Enhanced US Volume Storage",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
}
TOMO_SOP = {"1.2.840.10008.5.1.4.1.1.13.1.3"}
US_SOP = {"1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.3.1", "1.2.840.10008.5.1.4.1.1.6.2"}

# SNOMED (SRT and SCT) codes of mammographic views, and the words of their code meanings
VIEW_CODES: dict[str, str] = {
    "R-10242": "CC",
    "399162004": "CC",
    "R-10226": "MLO",
    "399368009": "MLO",
    "R-10224": "ML",
    "399260004": "ML",
    "R-10228": "LM",
    "399352003": "LM",
    "R-1024A": "XCCL",
    "399192003": "XCCL",
    "R-10230": "SIO",
}
VIEW_WORDS: list[tuple[str, str]] = [
    ("exaggerated", "XCCL"),
    ("oblique", "MLO"),
    ("cranio-caudal", "CC"),
    ("craniocaudal", "CC"),
    ("medio-lateral", "ML"),
    ("mediolateral", "ML"),
    ("latero-medial", "LM"),
    ("lateromedial", "LM"),
]
VIEW_NAMES = {"CC", "MLO", "ML", "LM", "XCCL", "XCCM", "SIO", "FB", "AT"}


def int_attr(ds: Dataset, keyword: str, default: int) -> int:
    """An integer attribute (IS/US/UL...), ``default`` if absent or empty.

    pydicom only warns about an IS value such as "1A" and keeps the string, so the conversion happens
    here; a value that is not an integer raises a ValueError naming the attribute (a DataError upstream).
    """
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    try:  # int("12.0") fails: an IS written as a decimal is still an integer, so go through float
        number = float(str(value))
    except (TypeError, ValueError):
        number = float("nan")
    if number.is_integer():
        return int(number)
    raise ValueError(f"{keyword} is not an integer: {value!r}")


def optional_int(ds: Dataset, keyword: str, default: int) -> int:
    """An integer attribute the images do not depend on (InstanceNumber): ``default`` when malformed."""
    try:
        return int_attr(ds, keyword, default)
    except ValueError:
        return default


def optional_floats(value: Any, n: int | None = None) -> list[float] | None:
    """A multi-valued decimal attribute as floats, or None when absent, malformed, non-finite or of the wrong length.

    Used for geometry that only orders slices (ImagePositionPatient, ImageOrientationPatient): a damaged
    value such as ``0\\0&0`` falls back to the ordering by InstanceNumber instead of failing the file.
    """
    if value is None or value == "":
        return None
    items = list(value) if not isinstance(value, (str, bytes, int, float)) and hasattr(value, "__len__") else [value]
    try:
        out = [float(v) for v in items]
    except (TypeError, ValueError):
        return None
    if not out or (n is not None and len(out) != n) or not all(math.isfinite(v) for v in out):
        return None
    return out


def positive_floats(value: Any, n: int) -> list[float] | None:
    """``n`` finite, positive decimals (a spacing or thickness), or None when absent or anything else."""
    out = optional_floats(value, n)
    return out if out is not None and min(out) > 0 else None


def shown(value: Any) -> str:
    """An attribute value as DICOM writes it (``-0.1\\0.1``), for messages."""
    if not isinstance(value, (str, bytes, int, float)) and hasattr(value, "__len__"):
        return "\\".join(str(v) for v in value)
    return str(value)


def _measure(candidates: list[tuple[str, Any]], n: int, rejected: list[tuple[str, str]]) -> list[float] | None:
    """The first valid value among (attribute, value) candidates; present but invalid ones go to ``rejected``.

    Spacing and thickness are informative (nothing downstream depends on them), so a negative, zero,
    non-finite or malformed value makes them unknown rather than failing the file; the reader warns.
    """
    for name, value in candidates:
        if value is None or value == "":
            continue
        valid = positive_floats(value, n)
        if valid is not None:
            return valid
        rejected.append((name, shown(value)))
    return None


def _number(value: Any, default: float) -> float:
    """A decimal attribute, ``default`` when absent or empty; 0 stays 0 (a RescaleSlope of 0 is an error upstream)."""
    return default if value is None or value == "" else float(value)


def first_item(ds: Dataset, keyword: str) -> Dataset | None:
    """The first item of a sequence attribute, or None."""
    seq = ds.get(keyword)
    return seq[0] if seq else None


def _text(value: Any) -> str:
    return str(value).strip().upper() if value not in (None, "") else ""


def laterality_from_tags(ds: Dataset) -> str | None:
    """L or R from ImageLaterality, Laterality or FrameLaterality (shared groups); None if absent or B/U."""
    candidates = [ds.get("ImageLaterality"), ds.get("Laterality")]
    shared = first_item(ds, "SharedFunctionalGroupsSequence")
    anat = first_item(shared, "FrameAnatomySequence") if shared is not None else None
    if anat is not None:
        candidates.append(anat.get("FrameLaterality"))
    for value in candidates:
        value = _text(value)
        if value in {"L", "R"}:
            return value
    return None


def view_from_tags(ds: Dataset) -> str | None:
    """The view (CC, MLO, ML, ...) from ViewPosition or ViewCodeSequence; None if absent."""
    pos = _text(ds.get("ViewPosition"))
    if pos in VIEW_NAMES:
        return pos
    items = list(ds.get("ViewCodeSequence") or [])
    shared = first_item(ds, "SharedFunctionalGroupsSequence")
    if not items and shared is not None:
        anat = first_item(shared, "FrameAnatomySequence")
        items = list(anat.get("ViewCodeSequence") or []) if anat is not None else []
    for item in items:
        code = str(item.get("CodeValue", "")).strip()
        if code in VIEW_CODES:
            return VIEW_CODES[code]
        meaning = str(item.get("CodeMeaning", "")).lower()
        for word, view in VIEW_WORDS:
            if word in meaning:
                return view
    return None


def _windows(item: Dataset | None) -> list[tuple[float, float]]:
    if item is None or "WindowCenter" not in item or "WindowWidth" not in item:
        return []
    c, w = item.WindowCenter, item.WindowWidth
    cs = list(c) if not isinstance(c, (int, float, str)) and hasattr(c, "__len__") else [c]
    ws = list(w) if not isinstance(w, (int, float, str)) and hasattr(w, "__len__") else [w]
    return [(float(a), float(b)) for a, b in zip(cs, ws, strict=False)]


def _lookup(groups: list[Dataset | None], seq: str) -> Dataset | None:
    """The first ``seq`` item found in the given functional groups (per-frame before shared)."""
    for g in groups:
        if g is not None:
            item = first_item(g, seq)
            if item is not None:
                return item
    return None


def frame_info(ds: Dataset, n_frames: int) -> list[dict[str, Any]]:
    """Per-frame window, VOI function, rescale, spacing and position, with top-level fallbacks.

    Enhanced objects keep these in Per-frame / Shared Functional Groups (PS3.3 C.7.6.16); classic
    objects keep them at the top level and they apply to every frame.
    """
    shared = first_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence") or [])
    out = []
    for k in range(n_frames):
        groups = [per_frame[k] if k < len(per_frame) else None, shared]
        voi = _lookup(groups, "FrameVOILUTSequence") or ds
        pvt = _lookup(groups, "PixelValueTransformationSequence") or ds
        pm = _lookup(groups, "PixelMeasuresSequence") or ds
        pp = _lookup(groups, "PlanePositionSequence") or ds
        fc = _lookup(groups, "FrameContentSequence")
        rejected: list[tuple[str, str]] = []
        spacing = _measure(
            [("PixelSpacing", pm.get("PixelSpacing")), ("PixelSpacing", ds.get("PixelSpacing")),
             ("ImagerPixelSpacing", ds.get("ImagerPixelSpacing"))], 2, rejected
        )  # fmt: skip
        thickness = _measure(
            [("SliceThickness", pm.get("SliceThickness")), ("SliceThickness", ds.get("SliceThickness"))], 1, rejected
        )
        pos = optional_floats(pp.get("ImagePositionPatient"), 3)
        out.append(
            {
                "windows": _windows(voi) or _windows(ds),
                "voi_function": str(voi.get("VOILUTFunction") or ds.get("VOILUTFunction") or "LINEAR"),
                "slope": _number(pvt.get("RescaleSlope"), 1.0),
                "intercept": _number(pvt.get("RescaleIntercept"), 0.0),
                "spacing": spacing,
                "slice_thickness": thickness[0] if thickness else None,
                "rejected": rejected,  # (attribute, value) of invalid spacing/thickness, for the reader's warning
                "position": pos,
                "stack_position": int(fc.InStackPositionNumber)
                if fc is not None and "InStackPositionNumber" in fc
                else None,
            }
        )
    return out


def us_region(ds: Dataset) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the first ultrasound region (the B-mode field), or None.

    The region only narrows the crop, so an incomplete or malformed item (no RegionLocationMaxY1, a
    non-integer) gives None (the whole image) rather than failing the file.
    """
    item = first_item(ds, "SequenceOfUltrasoundRegions")
    keys = ("RegionLocationMinX0", "RegionLocationMinY0", "RegionLocationMaxX1", "RegionLocationMaxY1")
    if item is None or any(k not in item for k in keys):
        return None
    try:
        x0, y0, x1, y1 = (int(item.get(k)) for k in keys)
    except (TypeError, ValueError):
        return None
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def us_spacing(ds: Dataset, rejected: list[tuple[str, str]] | None = None) -> list[float] | None:
    """Pixel spacing in mm (row, column) from the first ultrasound region (PhysicalDelta in cm), or None.

    Spacing of ultrasound is informative only (many archives have none), so a region without both deltas,
    with units other than cm or with a malformed, non-finite or non-positive delta gives None; the deltas of
    the last case are appended to ``rejected`` (for the reader's warning).
    """
    item = first_item(ds, "SequenceOfUltrasoundRegions")
    if item is None or "PhysicalDeltaX" not in item or "PhysicalDeltaY" not in item:
        return None
    if optional_int(item, "PhysicalUnitsXDirection", 3) != 3:
        return None
    raw = [item.get("PhysicalDeltaY"), item.get("PhysicalDeltaX")]
    deltas = positive_floats(raw, 2)
    if deltas is None:
        if rejected is not None:
            rejected.append(("PhysicalDeltaY/PhysicalDeltaX", shown(raw)))
        return None
    return [deltas[0] * 10.0, deltas[1] * 10.0]


def modality_of(ds: Dataset, n_frames: int) -> str:
    """MG, DBT or US (the manifest's modality vocabulary) from SOP class, Modality and ImageType."""
    sop = str(ds.get("SOPClassUID", ""))
    dicom_modality = _text(ds.get("Modality"))
    image_type = " ".join(str(v).upper() for v in (ds.get("ImageType") or []))
    if sop in US_SOP or dicom_modality == "US":
        return "US"
    if sop in TOMO_SOP or "TOMO" in image_type or (dicom_modality == "MG" and n_frames > 1):
        return "DBT"
    if dicom_modality in {"MG", "MX", "DX", "CR", ""} or "Mammography" in SOP_CLASSES.get(sop, ""):
        return "MG"
    return dicom_modality  # e.g. OT (secondary capture): not a breast modality, passed through


def header_meta(ds: Dataset) -> dict[str, Any]:
    """Technical metadata of a dataset (no pixel decoding, no patient identifiers).

    Attributes the pixels depend on (Rows, Columns, NumberOfFrames, bits...) raise a ValueError naming the
    attribute when malformed; optional ones (InstanceNumber, positions, the US region) fall back.
    """
    n_frames = int_attr(ds, "NumberOfFrames", 1) or 1
    sop = str(ds.get("SOPClassUID", ""))
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    po = ds.get("PatientOrientation")
    return {
        "modality": modality_of(ds, n_frames),
        "dicom_modality": _text(ds.get("Modality")),
        "sop_class": sop,
        "sop_class_name": SOP_CLASSES.get(sop, "unknown"),
        "transfer_syntax": ts,
        "study_uid": str(ds.get("StudyInstanceUID", "")),
        "series_uid": str(ds.get("SeriesInstanceUID", "")),
        "sop_uid": str(ds.get("SOPInstanceUID", "")),
        "instance_number": optional_int(ds, "InstanceNumber", 0),
        "manufacturer": str(ds.get("Manufacturer", "")),
        "model": str(ds.get("ManufacturerModelName", "")),
        "presentation_intent": _text(ds.get("PresentationIntentType")),
        "image_type": [str(v) for v in (ds.get("ImageType") or [])],
        "rows": int_attr(ds, "Rows", 0),
        "columns": int_attr(ds, "Columns", 0),
        "n_frames": n_frames,
        "samples_per_pixel": int_attr(ds, "SamplesPerPixel", 1) or 1,
        "photometric": _text(ds.get("PhotometricInterpretation")),
        "bits_allocated": int_attr(ds, "BitsAllocated", 0),
        "bits_stored": int_attr(ds, "BitsStored", 0) or int_attr(ds, "BitsAllocated", 0),
        "pixel_representation": int_attr(ds, "PixelRepresentation", 0),
        "laterality_tag": laterality_from_tags(ds),
        "view_tag": view_from_tags(ds),
        "patient_orientation": [str(v) for v in po] if po else None,
        "image_position": optional_floats(ds.get("ImagePositionPatient"), 3),
        "image_orientation": optional_floats(ds.get("ImageOrientationPatient"), 6),
        "us_region": us_region(ds) if "SequenceOfUltrasoundRegions" in ds else None,
    }
