"""Write synthetic images as real DICOM objects (pydicom).

- mammography: Digital Mammography X-Ray Image Storage – For Presentation;
- DBT: Breast Tomosynthesis Image Storage, an enhanced multi-frame object with shared and per-frame
  functional groups (pixel measures, plane position, frame VOI LUT);
- ultrasound: Ultrasound Image Storage (single frame), monochrome or RGB.

Only pseudonymous identifiers are written: PatientID is the manifest's patient_id, the name is the
same pseudonym, and UIDs are derived deterministically from the dataset seed and item keys so that
the same seed gives byte-identical files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

SOP_MG = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray Image Storage - For Presentation
SOP_BTO = "1.2.840.10008.5.1.4.1.1.13.1.3"  # Breast Tomosynthesis Image Storage
SOP_US = "1.2.840.10008.5.1.4.1.1.6.1"  # Ultrasound Image Storage
UID_ROOT = "1.2.826.0.1.3680043.10.1137."  # a private root for synthetic data


def make_uid(*parts: Any) -> str:
    """A deterministic DICOM UID (≤ 64 chars) from arbitrary parts."""
    digest = int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:24], 16)
    return (UID_ROOT + str(digest))[:64]


def patient_orientation(laterality: str, view: str) -> list[str]:
    """(row direction, column direction) for a mammographic view in display convention."""
    toward = "P" if laterality == "R" else "A"
    if view == "CC":
        return [toward, "L" if laterality == "R" else "R"]
    return [toward, "F"]


def _base(meta: dict[str, Any], sop_class: str, modality: str) -> Dataset:
    key = (meta["seed"], meta["image_id"])
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = sop_class
    fm.MediaStorageSOPInstanceUID = make_uid(*key, "sop")
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = fm
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = fm.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = make_uid(meta["seed"], meta["exam_id"], "study")
    ds.SeriesInstanceUID = make_uid(*key, "series")
    ds.FrameOfReferenceUID = make_uid(*key, "for")
    ds.Modality = modality
    ds.PatientID = str(meta["patient_id"])
    ds.PatientName = str(meta["patient_id"])
    ds.PatientBirthDate = ""
    ds.PatientSex = "F" if modality != "US" else ""
    ds.StudyID = str(meta["exam_id"])[-16:]
    ds.AccessionNumber = ""
    ds.StudyDate = "20240101"
    ds.StudyTime = "000000"
    ds.ContentDate = "20240101"
    ds.ContentTime = "000000"
    ds.ReferringPhysicianName = ""
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Manufacturer = str(meta.get("manufacturer", meta.get("vendor", "")))
    ds.ManufacturerModelName = f"breastssl synthetic {meta.get('vendor', '')}".strip()
    ds.InstitutionName = str(meta.get("site", ""))
    ds.BodyPartExamined = "BREAST"
    ds.PatientIdentityRemoved = "YES"
    ds.BurnedInAnnotation = "YES" if meta.get("burned_in") else "NO"
    return ds


def _pixels_mono(ds: Dataset, arr: np.ndarray, bits_stored: int, photometric: str = "MONOCHROME2") -> None:
    """Attach uint16 (or uint8) monochrome pixels; ``arr`` is (H, W) or (frames, H, W)."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = int(arr.shape[-2]), int(arr.shape[-1])
    ds.BitsAllocated = 16 if arr.dtype == np.uint16 else 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(arr).tobytes()


def write_mg(path: Path, img: np.ndarray, meta: dict[str, Any]) -> None:
    """Digital mammogram. ``img``: (H, W) uint16 stored values; meta: ids, laterality, view, spacing, vendor."""
    ds = _base(meta, SOP_MG, "MG")
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.ImageLaterality = meta["laterality"]
    ds.Laterality = meta["laterality"]
    ds.ViewPosition = meta["view"]
    ds.PatientOrientation = patient_orientation(meta["laterality"], meta["view"])
    ds.PixelSpacing = [float(meta["spacing"]), float(meta["spacing"])]
    ds.ImagerPixelSpacing = [float(meta["spacing"]), float(meta["spacing"])]
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.WindowCenter, ds.WindowWidth = meta["window"]
    ds.VOILUTFunction = meta.get("voi_function", "LINEAR")
    _pixels_mono(ds, img, meta["bits_stored"], meta.get("photometric", "MONOCHROME2"))
    ds.save_as(path, enforce_file_format=True)


def write_dbt(path: Path, stack: np.ndarray, meta: dict[str, Any]) -> None:
    """DBT stack as Breast Tomosynthesis Image Storage. ``stack``: (D, H, W) uint16 stored values."""
    ds = _base(meta, SOP_BTO, "MG")
    d = int(stack.shape[0])
    sp, thick = float(meta["spacing"]), float(meta["slice_thickness"])
    ds.ImageType = ["DERIVED", "PRIMARY", "TOMOSYNTHESIS", "NONE"]
    ds.ImageLaterality = meta["laterality"]
    ds.Laterality = meta["laterality"]
    ds.NumberOfFrames = d
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ContentQualification = "PRODUCT"
    ds.ViewCodeSequence = Sequence([_view_code(meta["view"])])
    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing = [sp, sp]
    pm.SliceThickness = thick
    shared.PixelMeasuresSequence = Sequence([pm])
    po = Dataset()
    po.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PlaneOrientationSequence = Sequence([po])
    pvt = Dataset()
    pvt.RescaleIntercept, pvt.RescaleSlope, pvt.RescaleType = 0, 1, "US"
    shared.PixelValueTransformationSequence = Sequence([pvt])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for z in range(d):
        fg = Dataset()
        fc = Dataset()
        fc.StackID = "1"
        fc.InStackPositionNumber = z + 1
        fc.DimensionIndexValues = [1, z + 1]
        fg.FrameContentSequence = Sequence([fc])
        pp = Dataset()
        pp.ImagePositionPatient = [0.0, 0.0, round(z * thick, 4)]
        fg.PlanePositionSequence = Sequence([pp])
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = meta["window"]
        fg.FrameVOILUTSequence = Sequence([voi])
        frames.append(fg)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    _pixels_mono(ds, stack, meta["bits_stored"], "MONOCHROME2")
    ds.save_as(path, enforce_file_format=True)


def _view_code(view: str) -> Dataset:
    codes = {"CC": ("R-10242", "cranio-caudal"), "MLO": ("R-10226", "medio-lateral oblique")}
    value, meaning = codes.get(view, ("R-10242", view))
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "SRT", meaning
    return item


def write_us(path: Path, img: np.ndarray, meta: dict[str, Any]) -> None:
    """Ultrasound image: (H, W) uint8 monochrome or (H, W, 3) uint8 RGB.

    An optional ``meta["region"]`` (x0, y0, x1, y1) bounds the B-mode field within the screen.
    """
    ds = _base(meta, SOP_US, "US")
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Laterality = meta.get("laterality", "")
    ds.Rows, ds.Columns = int(img.shape[0]), int(img.shape[1])
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if img.ndim == 3:
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
    else:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
    region = Dataset()
    region.RegionSpatialFormat = 1
    region.RegionDataType = 1
    region.RegionFlags = 0
    # meta["region"] = (x0, y0, x1, y1): the B-mode field inside the screen; default: the whole image
    x0, y0, x1, y1 = meta.get("region", (0, 0, ds.Columns - 1, ds.Rows - 1))
    region.RegionLocationMinX0, region.RegionLocationMinY0 = int(x0), int(y0)
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = int(x1), int(y1)
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3  # cm
    region.PhysicalDeltaX = region.PhysicalDeltaY = float(meta["spacing"]) / 10.0
    ds.SequenceOfUltrasoundRegions = Sequence([region])
    ds.PixelData = np.ascontiguousarray(img).tobytes()
    ds.save_as(path, enforce_file_format=True)
