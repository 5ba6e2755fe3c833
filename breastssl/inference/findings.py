"""What every ``breastssl predict --run`` family writes for viewers and DICOM exports (issue 19's contract).

Beside each family's own tables, OUT gets:

- ``views/<image_id>.npz``: the model's input and (with a segmentation head) its probability map, uint8 (S, h, w)
  in the model frame, and the geometry back to the source image (:mod:`breastssl.inference.geometry`);
- ``regions.csv``: one row per finding (:data:`REGION_COLUMNS`), boxes in source and in model pixels;
- ``sources.csv``: one row per input image or stack (:data:`SOURCE_COLUMNS`): ids, path, the image-level score and,
  for DICOM input, the UIDs that tie a prediction to the stored object (for legacy one-file-per-slice series the
  slices' SOP Instance UIDs, in slice order).

Plain outputs carry no patient identifiers (DESIGN §9): ``patient_id`` is the pseudonymous ID predict already uses,
and ``patient_name``, ``study_id`` and ``accession_number`` stay empty; the DICOM SR and SEG exports
(:mod:`.dicom_sr`, :mod:`.dicom_seg`) read those from the source files themselves.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.datasets.common import pseudonym
from ..errors import DataError
from . import geometry as geom

DBT_MAP_THRESHOLD = 0.5  # a DBT slice run has no lesion threshold of its own: a pixel is lesion when p ≥ 0.5
REGION_COLUMNS = ["image_id", "slice", "region", "score", "x", "y", "w", "h", "mx", "my", "mw", "mh",
                  "slice_first", "slice_last", "contour"]  # fmt: skip
DICOM_COLUMNS = ["study_instance_uid", "series_instance_uid", "sop_instance_uid", "sop_class_uid", "patient_id",
                 "patient_name", "study_id", "accession_number", "frame_of_reference_uid"]  # fmt: skip
SOURCE_COLUMNS = ["image_id", "exam_id", "laterality", "view", "modality", "path", "n_slices", "score",
                  *DICOM_COLUMNS, "slice_sop_instance_uids"]  # fmt: skip


def safe_name(name: str) -> str:
    """A file name for an image ID (anything but letters, digits, ``._-`` becomes ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(name))


# ---- regions -----------------------------------------------------------------------------------------


def outline(mask: np.ndarray) -> np.ndarray:
    """(K, 2) ``x, y`` polygon (pixel-edge coordinates, closed: first = last) around the largest part of the
    boolean (h, w) ``mask``'s boundary."""
    from skimage.measure import approximate_polygon, find_contours

    # padded, so regions touching the border close; level 0.5 between pixel centres runs along pixel edges (corners
    # are cut by half a pixel); "high" connectivity keeps diagonal neighbours together, as the 8-connected regions do
    contours = find_contours(np.pad(mask.astype(np.float32), 1), 0.5, fully_connected="high")
    if not contours:
        return np.zeros((0, 2))
    rc = approximate_polygon(max(contours, key=len), tolerance=0.05) - 1 + 0.5  # drops collinear points only
    return rc[:, ::-1]


def map_regions(prob: np.ndarray, threshold: float) -> list[dict[str, Any]]:
    """8-connected components of ``prob >= threshold`` of one (h, w) map: per region its model-frame box
    (``mx, my, mw, mh``), ``score`` (the component's maximum) and ``outline`` ((K, 2) model-frame polygon)."""
    from scipy import ndimage

    labels, n = ndimage.label(np.asarray(prob) >= threshold, structure=np.ones((3, 3), bool))
    out = []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        part = labels[sl] == k
        poly = outline(part) + [sl[1].start, sl[0].start]
        out.append({"mx": float(sl[1].start), "my": float(sl[0].start), "mw": float(sl[1].stop - sl[1].start),
                    "mh": float(sl[0].stop - sl[0].start), "score": float(prob[sl][part].max()),
                    "outline": poly})  # fmt: skip
    return out


def _contour_text(points: np.ndarray) -> str:
    return ";".join(f"{x:.2f} {y:.2f}" for x, y in points)


# ---- sources -----------------------------------------------------------------------------------------


def series_slices(folder: Path, series_uid: str | None) -> list[Path]:
    """The files of a legacy one-file-per-slice series in slice order (slice k = file k), as the reader stacks them."""
    from ..data.dicom import series_in_slice_order
    from ..data.dicom_pixels import series_files

    return series_in_slice_order(series_files(folder, series_uid or None))


def dicom_identity(path: Path, series_uid: str | None = None) -> dict[str, Any]:
    """The DICOM UIDs of a source file, or of a legacy series folder (its first slice, and every slice's SOP
    Instance UID joined by ";"); empty values for a file that is not DICOM (.npy, PNG...)."""
    from ..data.dicom_pixels import is_dicom_file, read_dataset

    ident: dict[str, Any] = dict.fromkeys([*DICOM_COLUMNS, "slice_sop_instance_uids"], "")
    files = series_slices(path, series_uid) if path.is_dir() else [path] if is_dicom_file(path) else []
    if not files:
        return ident
    headers = [read_dataset(f, stop_before_pixels=True) for f in files]
    ds = headers[0]
    ident.update(study_instance_uid=str(ds.get("StudyInstanceUID", "")),
                 series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
                 sop_instance_uid=str(ds.get("SOPInstanceUID", "")), sop_class_uid=str(ds.get("SOPClassUID", "")),
                 frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")))  # fmt: skip
    if path.is_dir():
        ident["slice_sop_instance_uids"] = ";".join(str(h.get("SOPInstanceUID", "")) for h in headers)
    return ident


def stored_shape(path: Path, series_uid: str | None = None) -> tuple[int, int]:
    """(rows, cols) of a stored image or stack without decoding it (DICOM header, .npy header, raster size)."""
    from ..data.dicom_pixels import is_dicom_file, read_dataset

    if path.is_dir():
        path = series_slices(path, series_uid)[0]
    if path.suffix.lower() == ".npy":
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
        return (int(shape[0]), int(shape[1])) if len(shape) == 2 else (int(shape[-2]), int(shape[-1]))
    if is_dicom_file(path):
        ds = read_dataset(path, stop_before_pixels=True)
        return int(ds.Rows), int(ds.Columns)
    from PIL import Image

    with Image.open(path) as im:
        return im.height, im.width


# ---- the writer --------------------------------------------------------------------------------------


class FindingsWriter:
    """Collects the views, regions and sources of one prediction and writes them into ``out`` (the temporary
    output folder of the predictor's atomic write).

    Per image: :meth:`add_image` (writes its view, reads its source identification), then any number of
    :meth:`add_map_regions` / :meth:`add_boxes`; :meth:`close` writes ``regions.csv`` and ``sources.csv``.
    """

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        (self.out / "views").mkdir(parents=True, exist_ok=True)
        self.sources: dict[str, dict[str, Any]] = {}
        self.geometry: dict[str, geom.Geometry] = {}
        self.regions: list[dict[str, Any]] = []
        self._count: dict[str, int] = {}

    def add_image(
        self,
        source: Mapping[str, Any],
        image: np.ndarray,
        prob: np.ndarray | None,
        geometry: geom.Geometry,
        score: float | None = None,
    ) -> None:
        """One input image or stack. ``source``: image_id, exam_id (None for bare files: the pseudonym of the DICOM
        study, as ingest makes it, else the file's folder name), laterality, view, modality, path, n_slices (and
        ``series_uid`` for a legacy series folder); ``image``, ``prob``: (S, h, w) or (h, w) in [0, 1] in the
        model frame; ``score``: the image/stack-level score (or later, by :meth:`set_scores`)."""
        image_id = str(source["image_id"])
        path = Path(str(source["path"])).resolve()  # absolute: the SR / SEG writers and viewers read it later
        if image_id in self.sources:
            raise DataError(f"{path}: its image ID {image_id!r} is another input's too (two files of one name?)")
        series = source.get("series_uid")
        row = {c: source.get(c, "") for c in SOURCE_COLUMNS[:7]}
        row.update(image_id=image_id, path=str(path), score=np.nan if score is None else float(score))
        row.update(dicom_identity(path, series if isinstance(series, str) else None))
        if not str(row["exam_id"] or ""):  # bare files: the study's pseudonym (as ingest names it), else the folder
            study = row["study_instance_uid"]
            row["exam_id"] = pseudonym(study, "e") if study else path.parent.name
        pid = source.get("patient_id")
        row["patient_id"] = pid if isinstance(pid, str) else ""  # predict's pseudonym, never the DICOM PatientID
        self.sources[image_id] = row
        self.geometry[image_id] = dict(geometry)
        geom.save_view(self.out / "views" / f"{safe_name(image_id)}.npz", image, prob, geometry)

    def add_map_regions(self, image_id: str, prob: np.ndarray, slice_index: int, threshold: float) -> None:
        """Regions of one (h, w) model-frame probability map of slice ``slice_index`` (:func:`map_regions`)."""
        g = self.geometry[image_id]
        for r in map_regions(prob, threshold):
            box = geom.model_to_source_boxes(np.array([[r["mx"], r["my"], r["mw"], r["mh"]]]), g)[0]
            contour = geom.model_to_source_points(r["outline"], g)
            self._add(image_id, slice_index, slice_index, slice_index, r["score"], box, r, _contour_text(contour))

    def add_boxes(
        self,
        image_id: str,
        boxes: np.ndarray,
        scores: Sequence[float],
        slices: Sequence[tuple[int, int, int]] | None = None,
        extra: Mapping[str, Sequence[Any]] | None = None,
    ) -> None:
        """Detector boxes (N, 4) ``x, y, w, h`` in the model frame with their scores; ``slices``: per box
        (slice, first, last), default (0, 0, 0); ``extra``: further columns, one value per box."""
        g = self.geometry[image_id]
        model = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        source = geom.model_to_source_boxes(model, g)
        for i in range(len(model)):
            z, first, last = slices[i] if slices is not None else (0, 0, 0)
            more = {k: v[i] for k, v in (extra or {}).items()}
            m = dict(zip(("mx", "my", "mw", "mh"), map(float, model[i]), strict=True))
            self._add(image_id, int(z), int(first), int(last), float(scores[i]), source[i], m, "", more)

    def _add(
        self,
        image_id: str,
        z: int,
        first: int,
        last: int,
        score: float,
        box: np.ndarray,
        m: Mapping[str, Any],
        contour: str,
        more: Mapping[str, Any] | None = None,
    ) -> None:
        region = self._count.get(image_id, 0)
        self._count[image_id] = region + 1
        self.regions.append({"image_id": image_id, "slice": z, "region": region, "score": score,
                             "x": float(box[0]), "y": float(box[1]), "w": float(box[2]), "h": float(box[3]),
                             "mx": m["mx"], "my": m["my"], "mw": m["mw"], "mh": m["mh"], "slice_first": first,
                             "slice_last": last, "contour": contour, **(more or {})})  # fmt: skip

    def set_scores(self, scores: Mapping[str, float]) -> None:
        """Image/stack-level scores known only after all images were scored (e.g. DBT aggregation)."""
        for image_id, score in scores.items():
            if image_id in self.sources:
                self.sources[image_id]["score"] = float(score)

    def close(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Write ``regions.csv`` and ``sources.csv``; returns both tables."""
        regions = pd.DataFrame(self.regions)
        extra = [c for c in regions.columns if c not in REGION_COLUMNS]
        regions = regions.reindex(columns=REGION_COLUMNS + extra)
        sources = pd.DataFrame(list(self.sources.values()), columns=SOURCE_COLUMNS)
        regions.to_csv(self.out / "regions.csv", index=False)
        sources.to_csv(self.out / "sources.csv", index=False)
        return regions, sources
