"""Tiny DICOM fixtures written by the tests themselves (no real data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

SOP_MG = "1.2.840.10008.5.1.4.1.1.1.2"
SOP_MG_PROC = "1.2.840.10008.5.1.4.1.1.1.2.1"
SOP_BTO = "1.2.840.10008.5.1.4.1.1.13.1.3"
SOP_US = "1.2.840.10008.5.1.4.1.1.6.1"
SOP_US_MF = "1.2.840.10008.5.1.4.1.1.3.1"


def breast(h: int = 40, w: int = 32, side: str = "left", top: int = 4000) -> np.ndarray:
    """A half-disc of 'tissue' attached to the chest wall on ``side`` (uint16 stored values, bright = dense)."""
    yy, xx = np.mgrid[:h, :w]
    cx = 0 if side == "left" else w - 1
    inside = ((xx - cx) / (0.8 * w)) ** 2 + ((yy - h / 2) / (0.45 * h)) ** 2 <= 1
    img = np.where(inside, top * (0.5 + 0.5 * np.cos(yy / 5.0) ** 2), 50)
    return img.astype(np.uint16)


def make_ds(
    pixels: np.ndarray,
    sop: str = SOP_MG,
    modality: str = "MG",
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    frames: bool = False,
    **attrs: object,
) -> Dataset:
    """A minimal valid dataset holding ``pixels`` ((H, W), (F, H, W), (H, W, 3) or (F, H, W, 3))."""
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = sop
    fm.MediaStorageSOPInstanceUID = generate_uid()
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = fm
    ds.SOPClassUID, ds.SOPInstanceUID = sop, fm.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = modality
    ds.PatientID, ds.PatientName, ds.PatientBirthDate = "SECRET-ID-123", "Doe^Jane", "19600101"
    ds.InstitutionName, ds.AccessionNumber = "Secret Hospital", "ACC999"
    colour = pixels.shape[-1] == 3 and photometric in ("RGB", "YBR_FULL")
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    if frames:
        ds.NumberOfFrames = pixels.shape[0]
    ds.BitsAllocated = 8 if pixels.dtype == np.uint8 else 16
    ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def save(ds: Dataset, path: Path) -> Path:
    """Write ``ds`` as a DICOM file (with preamble)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def enhanced_dbt(
    stack: np.ndarray, windows: list[tuple[float, float]], spacing: float = 0.1, lat: str = "L"
) -> Dataset:
    """Breast Tomosynthesis object with shared pixel measures and a per-frame VOI LUT."""
    ds = make_ds(stack, SOP_BTO, frames=True, ImageLaterality=lat)
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "399368009", "SCT", "medio-lateral oblique"
    ds.ViewCodeSequence = Sequence([item])
    shared, pm = Dataset(), Dataset()
    pm.PixelSpacing, pm.SliceThickness = [spacing, spacing], 1.0
    shared.PixelMeasuresSequence = Sequence([pm])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per = []
    for z, (c, w) in enumerate(windows):
        fg, voi, pp = Dataset(), Dataset(), Dataset()
        voi.WindowCenter, voi.WindowWidth = c, w
        pp.ImagePositionPatient = [0.0, 0.0, float(z)]
        fg.FrameVOILUTSequence, fg.PlanePositionSequence = Sequence([voi]), Sequence([pp])
        per.append(fg)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    return ds


@pytest.fixture
def mammo_file(tmp_path: Path) -> Path:
    """A left CC For Presentation mammogram with a LINEAR window."""
    ds = make_ds(breast(), ImageLaterality="L", ViewPosition="CC", WindowCenter=2000, WindowWidth=4000)
    ds.PixelSpacing = [0.1, 0.1]
    return save(ds, tmp_path / "mg.dcm")


@pytest.fixture
def dbt_file(tmp_path: Path) -> Path:
    """A 5-slice left MLO Breast Tomosynthesis object with per-frame windows."""
    stack = np.stack([breast() for _ in range(5)])
    return save(enhanced_dbt(stack, [(2000.0 + 100 * z, 4000.0) for z in range(5)]), tmp_path / "dbt.dcm")
