"""Read a predictions folder of ``breastssl predict --run`` for the study viewer (:mod:`breastssl.reports.viewer`).

The folder follows the issue-19 file contract:

- ``sources.csv``: one row per image or stack (image_id, exam_id, laterality, view, modality, path, n_slices and
  the DICOM identification where the input was DICOM);
- ``views/<safe image_id>.npz``: ``image`` uint8 (S, h, w) in the model frame, optional ``prob`` uint8 (S, h, w),
  ``geometry`` (JSON: source_shape, flip, crop, size);
- ``regions.csv``: findings with model-frame boxes ``mx, my, mw, mh`` and their slice range;
- the scores: DBT ``slices.csv``, ``stacks.csv``, ``breasts.csv``, ``exams.csv``; mammography, ultrasound and
  CoMoTo ``predictions.csv``; the run description in ``predictions.json`` or ``info.json``.

Only ``sources.csv`` and the view files are required. A view's score is its ``stacks.csv`` score, else the
``score`` column of ``sources.csv``, else its best ``predictions.csv`` row; a score that no table gives is derived
(a view's best region, a breast's best view, an exam's best breast) and labelled as such. Every problem is a
:class:`~breastssl.errors.DataError` naming the file (and the line of a CSV).
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, UserError

SOURCE_COLUMNS = ("image_id", "exam_id", "laterality", "view", "modality", "n_slices")
REGION_COLUMNS = ("image_id", "slice", "score", "mx", "my", "mw", "mh")
DICOM_EXAM_KEYS = ("patient_id", "patient_name", "study_id", "accession_number", "study_instance_uid")
# predictions.csv of each family: the column naming the image, then the column holding its score
KEY_COLUMNS = ("image_id", "image", "file")
SCORE_COLUMNS = ("image_score", "p_malignant", "Score", "score")
TOP_DEFAULT = 3  # top slices offered as jump buttons when stacks.csv does not name them


@dataclass
class Box:
    """A finding in model-frame pixels, on slices ``first`` … ``last``."""

    x: float
    y: float
    w: float
    h: float
    first: int
    last: int
    score: float
    region: int


@dataclass
class ViewData:
    """One image or stack and everything the viewer shows beside it (pixels stay in ``npz`` until encoded)."""

    image_id: str
    exam_id: str
    laterality: str
    view: str
    modality: str
    n_slices: int
    npz: Path
    path: str = ""
    score: float = math.nan
    score_source: str = ""
    curve: list[float] | None = None
    top: list[int] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)


@dataclass
class ExamData:
    """One exam: its views (right breast first, CC before MLO), breast and exam scores, DICOM identity."""

    exam_id: str
    views: list[ViewData]
    score: float = math.nan
    score_source: str = ""
    breasts: dict[str, tuple[float, str]] = field(default_factory=dict)
    identity: dict[str, str] = field(default_factory=dict)


@dataclass
class Study:
    """Everything read from a predictions folder."""

    root: Path
    exams: list[ExamData]
    info: dict[str, Any]
    notes: list[str] = field(default_factory=list)


# ---- files --------------------------------------------------------------------------------------------


def safe_name(image_id: str) -> str:
    """The file name stem the predictors give ``views/<id>.npz`` (anything but ``A-Za-z0-9._-`` becomes ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", image_id)


def read_table(path: Path, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV as strings (no NA guessing: ids like ``NA`` stay text); a missing column is an error naming the file."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{path}: not a readable CSV table ({type(exc).__name__}: {exc})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; has {list(df.columns)}")
    return df


def numbers(df: pd.DataFrame, column: str, path: Path, allow_empty: bool = False) -> np.ndarray:
    """``df[column]`` as floats; a non-number (or an empty cell unless ``allow_empty``) names its CSV line."""
    text = df[column].astype(str).str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(float)
    missing = ((text == "") | (text.str.lower() == "nan")).to_numpy()
    bad = np.isnan(values) & ~missing
    if not allow_empty:
        bad |= missing
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: line {i + 2}: column {column} is {df[column].iloc[i]!r}, not a number")
    return values


def read_info(root: Path) -> dict[str, Any]:
    """The run description: ``predictions.json`` (DBT and the contract) or ``info.json`` (CoMoTo), if any."""
    for name in ("predictions.json", "info.json"):
        path = root / name
        if path.is_file():
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DataError(f"{path}: not valid JSON ({exc})") from None
            if not isinstance(doc, dict):
                raise DataError(f"{path}: expected a JSON object, found {type(doc).__name__}")
            return doc
    return {}


def load_view(path: Path, n_slices: int | None = None) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """(image (S, h, w) uint8, prob (S, h, w) uint8 or None, geometry dict) of a ``views/<id>.npz``, checked."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz view file ({type(exc).__name__}: {exc})") from None
    if "image" not in arrays:
        raise DataError(f"{path}: has no 'image' array (keys: {sorted(arrays)})")
    image, prob = arrays["image"], arrays.get("prob")
    if image.ndim == 2:  # a 2-D image written without its slice axis
        image = image[None]
    if image.ndim != 3 or image.dtype != np.uint8 or min(image.shape) < 1:
        raise DataError(f"{path}: 'image' must be uint8 (S, h, w), found {image.dtype} {image.shape}")
    if prob is not None:
        prob = prob[None] if prob.ndim == 2 else prob
        if prob.shape != image.shape or prob.dtype != np.uint8:
            raise DataError(f"{path}: 'prob' must be uint8 of the image's shape {image.shape}, found "
                            f"{prob.dtype} {prob.shape}")  # fmt: skip
    if n_slices is not None and image.shape[0] != n_slices:
        raise DataError(f"{path}: 'image' has {image.shape[0]} slice(s), sources.csv says n_slices={n_slices}")
    geometry: dict[str, Any] = {}
    if "geometry" in arrays:
        try:
            geometry = json.loads(str(arrays["geometry"][()]))
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: 'geometry' is not a JSON string ({exc})") from None
        if not isinstance(geometry, dict) or not isinstance(geometry.get("flip", {}), dict):
            raise DataError(f"{path}: 'geometry' must be a JSON object with a 'flip' object")
    return image, prob, geometry


# ---- the folder ---------------------------------------------------------------------------------------


def read_study(root: str | Path) -> Study:
    """Read and check a predictions folder (see the module docstring); pixels are read later, view by view."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"predictions folder {root} does not exist")
    if not root.is_dir():
        raise UserError(f"{root} is a file, not a predictions folder")
    src_path = root / "sources.csv"
    if not src_path.is_file():
        raise DataError(f"{root}: no sources.csv, so not a predictions folder the viewer can read (it needs "
                        "sources.csv and views/ from `breastssl predict --run`)")  # fmt: skip
    sources = read_table(src_path, SOURCE_COLUMNS)
    if sources.empty:
        raise DataError(f"{src_path}: no rows, so no predictions to show")
    dup = sources["image_id"][sources["image_id"].duplicated()]
    if len(dup):
        raise DataError(f"{src_path}: image_id {dup.iloc[0]!r} appears more than once")
    n_slices = numbers(sources, "n_slices", src_path)
    study = Study(root, [], read_info(root))
    records = sources.to_dict("records")
    views = [_view(root, src_path, r, int(n), i) for i, (r, n) in enumerate(zip(records, n_slices, strict=True))]
    by_id = {v.image_id: v for v in views}
    _read_regions(root, by_id, study)
    _view_scores(root, sources, by_id, study)
    _exams(root, sources, views, study)
    return study


def _view(root: Path, src_path: Path, row: dict[str, str], n: int, i: int) -> ViewData:
    image_id = row["image_id"].strip()
    if not image_id or n < 1:
        raise DataError(f"{src_path}: line {i + 2}: empty image_id or n_slices < 1 ({row['image_id']!r}, {n})")
    npz = root / "views" / f"{safe_name(image_id)}.npz"
    if not npz.is_file():
        raise DataError(f"{npz}: missing (the view file of {image_id!r}, listed in {src_path})")
    return ViewData(image_id=image_id, exam_id=row["exam_id"].strip() or image_id,
                    laterality=row["laterality"].strip().upper() or "?", view=row["view"].strip().upper() or "?",
                    modality=row["modality"].strip().upper() or "?", n_slices=n, npz=npz,
                    path=str(row.get("path", "")))  # fmt: skip


def _read_regions(root: Path, by_id: dict[str, ViewData], study: Study) -> None:
    path = root / "regions.csv"
    if not path.is_file():
        study.notes.append("no regions.csv in the folder: no boxes are drawn")
        return
    df = read_table(path, REGION_COLUMNS)
    cols = {c: numbers(df, c, path) for c in ("slice", "score", "mx", "my", "mw", "mh")}
    first = numbers(df, "slice_first", path) if "slice_first" in df.columns else cols["slice"]
    last = numbers(df, "slice_last", path) if "slice_last" in df.columns else cols["slice"]
    region = numbers(df, "region", path) if "region" in df.columns else np.arange(len(df), dtype=float)
    for i, image_id in enumerate(df["image_id"].astype(str).str.strip()):
        view = by_id.get(image_id)
        if view is None:
            raise DataError(f"{path}: line {i + 2}: image_id {image_id!r} is not in sources.csv")
        a, b = int(first[i]), int(last[i])
        if not 0 <= a <= b < view.n_slices:
            raise DataError(f"{path}: line {i + 2}: slices {a}..{b} outside 0..{view.n_slices - 1} of {image_id!r}")
        view.boxes.append(Box(float(cols["mx"][i]), float(cols["my"][i]), float(cols["mw"][i]), float(cols["mh"][i]),
                              a, b, float(cols["score"][i]), int(region[i])))  # fmt: skip
    for view in by_id.values():
        view.boxes.sort(key=lambda b: -b.score)


def _view_scores(root: Path, sources: pd.DataFrame, by_id: dict[str, ViewData], study: Study) -> None:
    """Per view: its score, the slice curve (slices.csv) and the top slices offered as jump buttons."""
    slices_path, stacks_path, pred_path = root / "slices.csv", root / "stacks.csv", root / "predictions.csv"
    if "score" in sources.columns:  # the image/stack-level score the predictors put beside each source
        src_scores = numbers(sources, "score", root / "sources.csv", allow_empty=True)
        for image_id, score in zip(sources["image_id"].str.strip(), src_scores, strict=True):
            if not math.isnan(score):
                by_id[image_id].score, by_id[image_id].score_source = float(score), "sources.csv"
    if slices_path.is_file():
        df = read_table(slices_path, ("image_id", "slice", "score"))
        z, s = numbers(df, "slice", slices_path), numbers(df, "score", slices_path, allow_empty=True)
        for i, image_id in enumerate(df["image_id"].astype(str)):
            view = by_id.get(image_id)
            if view is None:
                continue  # a stack the viewer was not given pixels for: nothing to draw its curve beside
            if not 0 <= z[i] < view.n_slices:
                raise DataError(f"{slices_path}: line {i + 2}: slice {int(z[i])} outside 0..{view.n_slices - 1}")
            if view.curve is None:
                view.curve = [math.nan] * view.n_slices
            view.curve[int(z[i])] = float(s[i])
    if stacks_path.is_file():
        df = read_table(stacks_path, ("image_id", "score"))
        scores = numbers(df, "score", stacks_path, allow_empty=True)
        for i, image_id in enumerate(df["image_id"].astype(str)):
            if (view := by_id.get(image_id)) is not None:
                if not math.isnan(scores[i]):
                    view.score, view.score_source = float(scores[i]), "stacks.csv"
                tops = str(df["top_slices"].iloc[i]).strip() if "top_slices" in df.columns else ""
                try:
                    view.top = [int(t) for t in tops.split(";") if t.strip()]
                except ValueError:
                    raise DataError(f"{stacks_path}: line {i + 2}: top_slices {tops!r} is not a ';' list") from None
    if pred_path.is_file():
        _prediction_scores(pred_path, sources, by_id)
    for view in by_id.values():
        if math.isnan(view.score) and view.boxes:
            view.score, view.score_source = max(b.score for b in view.boxes), "best region"
        if not view.top and view.n_slices > 1:
            if view.curve is not None and not all(math.isnan(c) for c in view.curve):
                order = np.argsort(-np.nan_to_num(np.asarray(view.curve), nan=-1.0), kind="stable")
                view.top = [int(k) for k in order[:TOP_DEFAULT]]
            else:  # a detector's stack: the slices of its best boxes
                view.top = list(dict.fromkeys((b.first + b.last) // 2 for b in view.boxes))[:TOP_DEFAULT]
        view.top = [k for k in view.top if 0 <= k < view.n_slices]


def _prediction_scores(path: Path, sources: pd.DataFrame, by_id: dict[str, ViewData]) -> None:
    """View scores from a family's predictions.csv (the best of its rows' image score / malignancy / box score),
    for views that sources.csv and stacks.csv give none."""
    df = read_table(path)
    key = next((c for c in KEY_COLUMNS if c in df.columns), None)
    col = next((c for c in SCORE_COLUMNS if c in df.columns), None)
    if key is None or col is None:
        raise DataError(f"{path}: needs an image column ({' | '.join(KEY_COLUMNS)}) and a score column "
                        f"({' | '.join(SCORE_COLUMNS)}); has {list(df.columns)}")  # fmt: skip
    scores = numbers(df, col, path, allow_empty=True)  # mammography: an image without a region has an empty score
    lookup: dict[str, str] = {}
    if key != "image_id":  # the image's file as given: match sources.csv's path, else the file's stem
        for image_id, p in zip(sources["image_id"].str.strip(), sources.get("path", sources["image_id"]), strict=True):
            lookup.update({Path(p).stem: image_id, p: image_id, str(Path(p).resolve()): image_id})
    best: dict[str, float] = {}
    for i, name in enumerate(df[key].astype(str)):
        image_id = name if key == "image_id" else lookup.get(name, lookup.get(Path(name).stem, Path(name).stem))
        if image_id in by_id and not math.isnan(scores[i]):
            best[image_id] = max(best.get(image_id, -math.inf), float(scores[i]))
    for image_id, score in best.items():
        if math.isnan(by_id[image_id].score):  # a score of sources.csv / stacks.csv comes first
            by_id[image_id].score, by_id[image_id].score_source = score, f"predictions.csv {col}"


def _exams(root: Path, sources: pd.DataFrame, views: list[ViewData], study: Study) -> None:
    """Group views into exams (first-seen order) and attach the breast and exam scores."""
    breasts: dict[tuple[str, str], float] = {}
    exams: dict[str, float] = {}
    if (p := root / "breasts.csv").is_file():
        df = read_table(p, ("exam_id", "laterality", "score"))
        s = numbers(df, "score", p, allow_empty=True)
        breasts = {(e, lat.upper()): float(v) for e, lat, v in zip(df["exam_id"], df["laterality"], s, strict=True)}
    if (p := root / "exams.csv").is_file():
        df = read_table(p, ("exam_id", "score"))
        exams = dict(zip(df["exam_id"], numbers(df, "score", p, allow_empty=True).tolist(), strict=True))
    rank = {"R": 0, "L": 1}
    view_rank = {"CC": 0, "MLO": 1}
    identity = sources.set_index(sources["image_id"].str.strip())
    for exam_id in dict.fromkeys(v.exam_id for v in views):
        members = sorted((v for v in views if v.exam_id == exam_id),
                         key=lambda v: (view_rank.get(v.view, 2), v.view, rank.get(v.laterality, 2)))  # fmt: skip
        exam = ExamData(exam_id, members)
        for lat in sorted({v.laterality for v in members}, key=lambda x: rank.get(x, 2)):
            if (exam_id, lat) in breasts:
                exam.breasts[lat] = (breasts[(exam_id, lat)], "breasts.csv")
            else:
                vals = [v.score for v in members if v.laterality == lat and not math.isnan(v.score)]
                exam.breasts[lat] = (max(vals), "best view") if vals else (math.nan, "")
        if exam_id in exams:
            exam.score, exam.score_source = float(exams[exam_id]), "exams.csv"
        else:
            vals = [s for s, _ in exam.breasts.values() if not math.isnan(s)]
            exam.score, exam.score_source = (max(vals), "best breast") if vals else (math.nan, "")
        first = identity.loc[members[0].image_id]
        exam.identity = {k: str(first[k]) for k in DICOM_EXAM_KEYS if k in first.index and str(first[k]).strip()}
        study.exams.append(exam)
