"""The source DICOM objects behind ``sources.csv``, reduced to what an SR or a SEG may carry from them.

highdicom copies the whole Patient and Study modules and the acquisition equipment (institution, station...) of the
dataset it is given. Exports of breastssl carry the source's patient and study identification and nothing else
(DESIGN §9), so the writers hand highdicom a reduced copy: :func:`identification` (plus, for a SEG, the plane
geometry its frames must share with the source, :func:`with_geometry`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from pydicom.dataset import Dataset

from .. import __version__
from ..errors import DataError, UserError

ALGORITHM = "breastssl"
VERSION = __version__
# what the SR / SEG copy from the source: its object identity, then the patient and study identification the
# Patient and General Study modules require (type 2: present, possibly empty)
OBJECT_KEYWORDS = ["SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"]
IDENTIFICATION_KEYWORDS = ["PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyID", "AccessionNumber",
                           "StudyDate", "StudyTime", "ReferringPhysicianName"]  # fmt: skip
# the plane geometry of a source image, which a SEG's frames repeat (single-frame and legacy series images)
GEOMETRY_KEYWORDS = ["Modality", "Rows", "Columns", "NumberOfFrames", "FrameOfReferenceUID", "PixelSpacing",
                     "ImagerPixelSpacing", "ImagePositionPatient", "ImageOrientationPatient", "SliceThickness",
                     "SpacingBetweenSlices"]  # fmt: skip
FRAME_GROUPS = {"shared": ["PixelMeasuresSequence", "PlaneOrientationSequence"], "per_frame": ["PlanePositionSequence"]}


def read_sources(out: Path) -> pd.DataFrame:
    """``sources.csv`` of a predict output folder, every column as text ("" for empty)."""
    path = out / "sources.csv"
    if not path.is_file():
        raise UserError(f"{out}: no sources.csv (not an output folder of `breastssl predict --run`)")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def require_dicom(sources: pd.DataFrame, what: str) -> None:
    """A UserError naming the first source that is not a DICOM object (``what``: "--dicom-sr" / "--dicom-seg")."""
    bad = sources[sources["sop_instance_uid"] == ""]
    if len(bad):
        path = bad["path"].iloc[0]
        raise UserError(f"{what} references the source DICOM images, but {path} is not a DICOM object "
                        f"({len(bad)} input(s) are not DICOM); give DICOM files or folders")  # fmt: skip


def source_headers(row: Mapping[str, Any]) -> list[Dataset]:
    """The headers (no pixel data) of a ``sources.csv`` row's object: one file, or the slices of a legacy series in
    slice order; each checked against the SOP Instance UID predict recorded (the file must not have changed)."""
    from ..data.dicom_pixels import read_dataset
    from .findings import series_slices

    path = Path(str(row["path"]))
    if not path.exists():
        raise DataError(f"{path}: source image of {row['image_id']} no longer exists")
    files = series_slices(path, str(row["series_instance_uid"])) if path.is_dir() else [path]
    headers = [read_dataset(f, stop_before_pixels=True) for f in files]
    want = str(row["slice_sop_instance_uids"]).split(";") if path.is_dir() else [str(row["sop_instance_uid"])]
    got = [str(h.get("SOPInstanceUID", "")) for h in headers]
    if got != want:
        raise DataError(f"{path}: its SOP Instance UIDs differ from those predict recorded in sources.csv "
                        "(the source changed since prediction)")  # fmt: skip
    return headers


def identification(ds: Dataset) -> Dataset:
    """A copy of ``ds`` holding only its object identity and the patient / study identification."""
    out = Dataset()
    for kw in OBJECT_KEYWORDS + IDENTIFICATION_KEYWORDS:
        if kw in ds:
            out[kw] = ds[kw]
        elif kw in IDENTIFICATION_KEYWORDS:  # type 2 in the Patient / General Study modules
            setattr(out, kw, None)
    for kw in ("StudyInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        if not str(out.get(kw, "") or ""):
            raise DataError(f"source object has no {kw}; cannot be referenced")
    return out


def with_geometry(ds: Dataset) -> Dataset:
    """:func:`identification` plus the plane geometry a SEG repeats: pixel spacing, positions and orientation
    (for an enhanced multi-frame object only its Pixel Measures, Plane Orientation and Plane Position groups)."""
    out = identification(ds)
    for kw in GEOMETRY_KEYWORDS:
        if kw in ds:
            out[kw] = ds[kw]
    if "SharedFunctionalGroupsSequence" in ds:
        out.SharedFunctionalGroupsSequence = [_groups(ds.SharedFunctionalGroupsSequence[0], FRAME_GROUPS["shared"])]
    if "PerFrameFunctionalGroupsSequence" in ds:
        out.PerFrameFunctionalGroupsSequence = [
            _groups(item, FRAME_GROUPS["per_frame"]) for item in ds.PerFrameFunctionalGroupsSequence
        ]
    return out


def _groups(item: Dataset, keywords: list[str]) -> Dataset:
    out = Dataset()
    for kw in keywords:
        if kw in item:
            out[kw] = item[kw]
    return out


@contextlib.contextmanager
def quiet_highdicom() -> Iterator[None]:
    """highdicom warns about single-component person names (pseudonymised data has them): not the user's concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name.*")
        yield


def device_uid(run_name: str) -> str:
    """A stable UID of the algorithm (breastssl version + run), so every export of one run names one device."""
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[ALGORITHM, VERSION, run_name])
