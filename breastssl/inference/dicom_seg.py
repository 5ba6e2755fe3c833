"""DICOM Segmentations of a prediction: ``breastssl predict --run RUN ... --dicom-seg SEG_OUT``.

For runs whose model has a segmentation head (DBT slice runs, mammography self-training runs): one FRACTIONAL
Segmentation (probability, MaximumFractionalValue 255) per source image, built with highdicom. The probability map
of ``views/<image_id>.npz`` is mapped back to the source pixel grid (flip, crop and resize undone:
:func:`breastssl.inference.geometry.map_to_source`, bilinear), so every SEG frame has the source's Rows × Columns
and references its source frame:

- an enhanced multi-frame DBT object: one SEG frame per source frame (ReferencedFrameNumber);
- a legacy one-file-per-slice series: one SEG frame per slice, each referencing that slice's instance;
- a 2-D mammogram: one frame.

Empty frames are kept (a frame per source frame, whatever it holds). One segment, "lesion probability" (category
SCT Morphologically abnormal structure, type SCT Lesion), names the algorithm (breastssl, its version, the run).
Only the source's patient and study identification and its plane geometry are copied (:mod:`.dicom_refs`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, UserError
from .dicom_refs import ALGORITHM, VERSION, quiet_highdicom, read_sources, require_dicom, source_headers, with_geometry
from .findings import safe_name
from .geometry import load_view, map_to_source

SERIES_NUMBER = 991  # SEG series of breastssl, after the SR's 990
MAX_FRACTIONAL = 255


def segment_description(run_name: str, family: str) -> Any:
    """The one segment: the model's lesion probability, produced automatically by breastssl."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name=ALGORITHM,
        family=codes.cid7162.ArtificialIntelligence,
        version=VERSION,
        parameters={"run": run_name, "family": family},
    )
    return hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="lesion probability",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        anatomic_regions=[codes.SCT.Breast],
    )


def source_maps(out: Path, row: dict[str, Any]) -> np.ndarray:
    """(S, rows, cols) float32 probabilities of one source on its own pixel grid (from ``views/<id>.npz``)."""
    _, prob, g = load_view(out / "views" / f"{safe_name(row['image_id'])}.npz")
    if prob is None:
        raise UserError(f"{row['path']}: the run's model gave no probability map for it (no segmentation output), "
                        "so there is nothing for --dicom-seg to write")  # fmt: skip
    return map_to_source(prob.astype(np.float32) / 255.0, g)


def build_segmentation(maps: np.ndarray, headers: list[Any], path: str, run_name: str, family: str) -> Any:
    """The Segmentation of one source: ``maps`` (S, rows, cols) in [0, 1] on the source grid, ``headers`` the source
    object's header (one) or a legacy series' slice headers in slice order."""
    import highdicom as hd

    first = headers[0]
    frames = int(first.get("NumberOfFrames", 1) or 1) if len(headers) == 1 else len(headers)
    shape = (frames, int(first.Rows), int(first.Columns))
    if maps.shape != shape:
        raise DataError(f"{path}: the prediction's map is {maps.shape} on the source grid, the source is {shape} "
                        "(frames, rows, columns)")  # fmt: skip
    sources = [with_geometry(h) for h in headers]
    if frames == 1 and "SliceThickness" not in sources[0]:
        # a projection image (FFDM): its SEG frame maps onto it pixel for pixel; with a spacing but no thickness
        # highdicom writes a Pixel Measures item that strict readers (its own included) reject
        for kw in ("PixelSpacing", "ImagerPixelSpacing"):
            if kw in sources[0]:
                del sources[0][kw]
    if len(headers) > 1:
        _require(sources, path, ["FrameOfReferenceUID", "ImagePositionPatient", "ImageOrientationPatient",
                                 "PixelSpacing", "SliceThickness"])  # fmt: skip
    pixels = maps if frames > 1 else maps[0]
    with quiet_highdicom():
        try:
            return hd.seg.Segmentation(
                source_images=sources,
                pixel_array=np.clip(pixels, 0.0, 1.0).astype(np.float32),
                segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
                segment_descriptions=[segment_description(run_name, family)],
                series_instance_uid=hd.UID(),
                series_number=SERIES_NUMBER,
                sop_instance_uid=hd.UID(),
                instance_number=1,
                manufacturer=ALGORITHM,
                manufacturer_model_name=f"{ALGORITHM} {family}",
                software_versions=VERSION,
                device_serial_number=run_name[:64],
                fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY,
                max_fractional_value=MAX_FRACTIONAL,
                omit_empty_frames=False,  # one SEG frame per source frame, even where the map is 0
                content_label="BREASTSSL",
                content_description=f"breastssl {family} lesion probability"[:64],
                series_description=f"breastssl {family} lesion probability ({run_name})"[:64],
            )
        except (ValueError, AttributeError, TypeError) as exc:  # highdicom's word on an unusable source header
            raise DataError(
                f"{path}: cannot derive a DICOM SEG from this source ({type(exc).__name__}: {exc})"
            ) from None


def _require(sources: list[Any], path: str, keywords: list[str]) -> None:
    """A legacy series' SEG frames repeat the slices' plane geometry: name what a slice lacks."""
    for ds in sources:
        missing = [k for k in keywords if k not in ds]
        if missing:
            raise DataError(f"{path}: slice {ds.SOPInstanceUID} lacks {', '.join(missing)}, which a multi-slice DICOM "
                            "SEG needs to place its frames")  # fmt: skip


def write_segmentations(out: Path, dest: Path, run_name: str, family: str) -> list[Path]:
    """One SEG per source image of the predict output folder ``out``, written into the folder ``dest``."""
    sources = read_sources(out)
    require_dicom(sources, "--dicom-seg")
    written = []
    for row in sources.to_dict("records"):
        seg = build_segmentation(source_maps(out, row), source_headers(row), row["path"], run_name, family)
        path = dest / f"{safe_name(row['image_id'])}.dcm"
        seg.save_as(path, enforce_file_format=True)
        written.append(path)
    return written
