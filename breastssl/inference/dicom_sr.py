"""DICOM Structured Reports of a prediction: ``breastssl predict --run RUN ... --dicom-sr SR_OUT``.

One Comprehensive 3D SR per study (TID 1500 Measurement Report), built with highdicom from the predict output
folder (``sources.csv``, ``regions.csv``, the level tables) and the source files' headers:

- observer context: a device observer "breastssl" (name and manufacturer), model "<family> run <run folder name>";
  every group names the algorithm (TID 4019): "breastssl", the package version, the run folder's name;
- one Planar ROI group (TID 1410) per region of ``regions.csv``: the box as a closed POLYLINE SCOORD in SOURCE
  pixels on the referenced image (a DBT multi-frame object: ReferencedFrameNumber = slice + 1; a legacy
  one-file-per-slice series: that slice's own SOP instance; a CoMoTo volume box: its middle slice, the range in the
  tracking identifier), finding site breast + laterality, the region's score as "Probability of cancer" (DCM
  111047) in {probability};
- one measurement group (TID 1501) per image or stack, per breast and for the study, each with its score (breast and
  study: the run's aggregation of the images below; derivation "Maximum" when that is the maximum).

Files: ``SR_OUT/<exam_id>.dcm`` (the StudyInstanceUID when an exam ID does not name exactly one study); each SR is a
new series (number 990) of the source study, COMPLETE, UNVERIFIED and PRELIMINARY (nobody has signed it).
Nothing of the source beyond its patient and study identification is copied (:mod:`.dicom_refs`). A level without a
score (a detector that found nothing in those images) gets the qualitative evaluation "Lesion: Absent" instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .dicom_refs import (
    ALGORITHM,
    VERSION,
    device_uid,
    identification,
    quiet_highdicom,
    read_sources,
    require_dicom,
    source_headers,
)
from .findings import safe_name

SERIES_NUMBER = 990  # SR series of breastssl (a high number keeps it after the acquired series in a viewer)
LATERALITY_CODES = {"L": ("7771000", "Left"), "R": ("24028007", "Right")}


def _codes() -> dict[str, Any]:
    from highdicom.sr import CodedConcept
    from pydicom.sr.codedict import codes

    return {
        "score": codes.DCM.ProbabilityOfCancer,
        "unit": CodedConcept("{probability}", "UCUM", "probability"),
        "maximum": codes.SCT.Maximum,
        "breast": codes.SCT.Breast,
        "lesion": codes.SCT.Lesion,
        "abnormal": codes.SCT.MorphologicallyAbnormalStructure,
        "procedure": {
            "US": codes.SCT.UltrasonographyOfBreast,
            "MG": codes.SCT.Mammography,
            "DBT": codes.SCT.Mammography,
        },
    }


def write_reports(out: Path, dest: Path, run_name: str, family: str) -> list[Path]:
    """One SR per study of the predict output folder ``out``, written into the folder ``dest``; returns the files."""
    sources = read_sources(out)
    require_dicom(sources, "--dicom-sr")
    regions = pd.read_csv(out / "regions.csv", dtype={"image_id": str})
    regions = regions.dropna(subset=["x", "y", "w", "h", "score"])
    aggregation = _aggregation(out)
    names = _file_names(sources)
    written = []
    for study_uid, group in sources.groupby("study_instance_uid", sort=True):
        headers = {r["image_id"]: source_headers(r) for r in group.to_dict("records")}
        sr = build_report(group, headers, regions[regions["image_id"].isin(group["image_id"])], out, run_name,
                          family, aggregation)  # fmt: skip
        path = dest / f"{names[study_uid]}.dcm"
        sr.save_as(path, enforce_file_format=True)
        written.append(path)
    return written


def _aggregation(out: Path) -> str:
    """The method that aggregated image scores up to breasts and exams (DBT runs: the run's; else max)."""
    doc = out / "predictions.json"
    if doc.is_file():
        return str(json.loads(doc.read_text(encoding="utf-8")).get("aggregation", "max"))
    return "max"


def _file_names(sources: pd.DataFrame) -> dict[str, str]:
    """Study UID → file stem: the exam ID when it names exactly that study, else the study UID."""
    exams = sources.groupby("study_instance_uid")["exam_id"].unique()
    owners = sources.groupby("exam_id")["study_instance_uid"].nunique()
    return {uid: safe_name(ids[0]) if len(ids) == 1 and ids[0] and owners[ids[0]] == 1 else uid
            for uid, ids in exams.items()}  # fmt: skip


def _levels(group: pd.DataFrame, out: Path, aggregation: str) -> tuple[dict[str, float], float]:
    """Breast (laterality → score) and study scores of one study: DBT's breasts.csv / exams.csv when the study is one
    exam of them, else the maximum of the image scores."""
    scores = pd.to_numeric(group["score"], errors="coerce")
    breast = {
        lat: float(scores[group["laterality"] == lat].max()) for lat in ("L", "R") if (group["laterality"] == lat).any()
    }
    study = float(scores.max()) if scores.notna().any() else math.nan
    exam_ids = group["exam_id"].unique()
    if (out / "exams.csv").is_file() and len(exam_ids) == 1:
        exams = pd.read_csv(out / "exams.csv", dtype={"exam_id": str}).set_index("exam_id")["score"]
        breasts = pd.read_csv(out / "breasts.csv", dtype={"exam_id": str, "laterality": str})
        breasts = breasts[breasts["exam_id"] == exam_ids[0]].set_index("laterality")["score"]
        study = float(exams.get(exam_ids[0], study))
        breast = {lat: float(breasts.get(lat, s)) for lat, s in breast.items()}
    return breast, study


def build_report(
    group: pd.DataFrame,
    headers: dict[str, list[Any]],
    regions: pd.DataFrame,
    out: Path,
    run_name: str,
    family: str,
    aggregation: str = "max",
) -> Any:
    """The Comprehensive3DSR of one study: ``group`` = its rows of sources.csv, ``headers`` = image_id → the source
    headers (one, or a legacy series' slices), ``regions`` = its rows of regions.csv."""
    import highdicom as hd
    from highdicom.sr import (
        AlgorithmIdentification,
        DeviceObserverIdentifyingAttributes,
        MeasurementReport,
        ObservationContext,
        ObserverContext,
    )
    from pydicom.sr.codedict import codes

    c = _codes()
    algo = AlgorithmIdentification(name=ALGORITHM, version=VERSION, parameters=[f"run {run_name}", family])
    device = DeviceObserverIdentifyingAttributes(uid=device_uid(run_name), name=ALGORITHM, manufacturer_name=ALGORITHM,
                                                 model_name=f"{family} run {run_name}")  # fmt: skip
    context = ObservationContext(observer_device_context=ObserverContext(codes.cid270.Device, device))
    rows = {r["image_id"]: r for r in group.to_dict("records")}
    breast, study = _levels(group, out, aggregation)
    derivation = c["maximum"] if aggregation == "max" else None
    items = [_group("study", [_site(None)], study, algo, derivation)]
    items += [_group(f"breast {lat}", [_site(lat)], score, algo, derivation) for lat, score in breast.items()]
    for image_id, row in rows.items():
        refs = [
            hd.sr.SourceImageForMeasurementGroup(str(h.SOPClassUID), str(h.SOPInstanceUID)) for h in headers[image_id]
        ]
        score = float(row["score"]) if row["score"] not in ("", "nan") else math.nan
        items.append(_group(f"image {image_id}", [_site(row["laterality"])], score, algo, None, refs))
    for r in regions.to_dict("records"):
        items.append(_roi(r, rows[r["image_id"]], headers[r["image_id"]], algo))
    procedure = c["procedure"].get(str(group["modality"].iloc[0]), codes.SCT.ImagingProcedure)
    report = MeasurementReport(observation_context=context, procedure_reported=[procedure], imaging_measurements=items,
                               title=codes.cid7021.ImagingMeasurementReport)  # fmt: skip
    evidence = [identification(h) for hs in headers.values() for h in hs]
    with quiet_highdicom():
        return hd.sr.Comprehensive3DSR(evidence=evidence, content=report[0], series_instance_uid=hd.UID(),
                                       series_number=SERIES_NUMBER, sop_instance_uid=hd.UID(), instance_number=1,
                                       manufacturer=ALGORITHM, is_complete=True, is_final=False, is_verified=False,
                                       series_description=f"breastssl {family} findings ({run_name})")  # fmt: skip


def _site(laterality: str | None) -> Any:
    from highdicom.sr import CodedConcept, FindingSite

    lat = LATERALITY_CODES.get(str(laterality or ""))
    return FindingSite(_codes()["breast"], laterality=CodedConcept(lat[0], "SCT", lat[1]) if lat else None)


def _measurement(score: float, algo: Any, derivation: Any = None) -> Any:
    from highdicom.sr import Measurement

    c = _codes()
    return Measurement(name=c["score"], value=float(score), unit=c["unit"], derivation=derivation, algorithm_id=algo)


def _group(
    name: str, sites: list[Any], score: float, algo: Any, derivation: Any, refs: Sequence[Any] | None = None
) -> Any:
    """A TID 1501 measurement group with one score (study, breast or image level); without a score (a detector that
    found nothing in these images) the qualitative evaluation "Lesion: Absent" instead."""
    import highdicom as hd
    from highdicom.sr import MeasurementsAndQualitativeEvaluations, QualitativeEvaluation, TrackingIdentifier
    from pydicom.sr.codedict import codes

    found = not math.isnan(score)
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier=name),
        finding_sites=sites,
        algorithm_id=algo,
        measurements=[_measurement(score, algo, derivation)] if found else None,
        qualitative_evaluations=None if found else [QualitativeEvaluation(codes.SCT.Lesion, codes.SCT.Absent)],
        source_images=list(refs) if refs else None,
    )


def box_polyline(x: float, y: float, w: float, h: float) -> np.ndarray:
    """(5, 2) closed polyline (column, row) around a box in pixel-edge coordinates."""
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]], dtype=np.float64)


def _roi(region: dict[str, Any], source: dict[str, Any], headers: list[Any], algo: Any) -> Any:
    """A TID 1410 planar ROI group: the region's box on its source image (or frame) with its score."""
    import highdicom as hd
    from highdicom.sr import (
        ImageRegion,
        PlanarROIMeasurementsAndQualitativeEvaluations,
        SourceImageForRegion,
        TrackingIdentifier,
    )

    z = int(region["slice"])
    if len(headers) > 1:  # a legacy series: each slice is its own instance
        h, frames = headers[z], None
    else:
        h = headers[0]
        multi = int(h.get("NumberOfFrames", 1) or 1) > 1
        frames = [z + 1] if multi else None  # DICOM frames count from 1
    image = SourceImageForRegion(str(h.SOPClassUID), str(h.SOPInstanceUID), referenced_frame_numbers=frames)
    polyline = box_polyline(float(region["x"]), float(region["y"]), float(region["w"]), float(region["h"]))
    first, last = int(region["slice_first"]), int(region["slice_last"])
    label = f"{source['image_id']} region {int(region['region'])} slice {z}"
    label += f" (slices {first}-{last})" if first != last else ""
    c = _codes()
    return PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier=label),
        referenced_region=ImageRegion("POLYLINE", polyline, image),
        finding_type=c["lesion"],
        finding_category=c["abnormal"],
        algorithm_id=algo,
        finding_sites=[_site(source["laterality"])],
        measurements=[_measurement(float(region["score"]), algo)],
    )
