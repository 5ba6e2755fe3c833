"""``--format folder``: an in-house archive as a folder tree of DICOM files.

Every DICOM file under the root is parsed (its pixel data left on disk). Files are grouped by SeriesInstanceUID:

- a multi-frame file is one item (a DBT stack, or an ultrasound cine);
- a mammography series of several single-frame files that share laterality and view and either say
  TOMO in ImageType or have distinct ImagePositionPatient values is a legacy DBT series: one item whose
  ``path`` is the series folder and whose ``series_uid`` column (a pseudonym) selects its files;
- any other file (FFDM images, single ultrasound frames) is one item.

Every file gets the reader's checks without a pixel decode (:func:`~breastssl.data.dicom_check.check_file`:
complete file, PixelData present and long enough, decoder installed, well-formed header), or a full decode
with ``verify_pixels``; a file that fails is skipped (``skip_bad``) or raises a DataError naming it.
Objects that are not breast images (modality other than MG, DBT, US) are skipped the same way.

Laterality and view come from the tags; a mammogram without a laterality tag is read and its
laterality inferred from the image; ultrasound without one (common) gets laterality ``U``.
``patient_id`` and ``site`` are keyed pseudonyms (HMAC-SHA256 under the project key, see
:mod:`breastssl.data.pseudonyms`) of PatientID and InstitutionName; ``image_id``, ``exam_id`` and
``series_uid`` are SHA-256 pseudonyms of the (unguessable) UIDs, which the reader can match without the key.
The manifest carries no identifier from the files. An optional labels CSV is joined
on one of: ``path``, ``sop_instance_uid``, ``study_instance_uid`` (+ ``laterality``), ``patient_id``
(+ ``laterality``); its ``breast_label``, ``annotation``, ``split`` and any other columns are copied.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from ...errors import DataError
from ..dicom import read_image
from ..dicom_check import check_file
from ..dicom_pixels import is_dicom_file
from ..pseudonyms import PseudonymKey, load_key
from ..schema import read_table
from .common import Ingested, Skipper, pseudonym, rel

JOIN_KEYS = ["path", "sop_instance_uid", "study_instance_uid", "patient_id"]
BREAST_MODALITIES = {"MG", "DBT", "US"}


def file_header(path: Path, key: PseudonymKey, verify_pixels: bool = False) -> dict[str, Any]:
    """Header metadata of a file the reader accepts, with its keyed patient and site pseudonyms."""
    ds, meta = check_file(path, verify_pixels)
    # PatientID and InstitutionName can be guessed and enumerated: keyed; the study UID stands in for a
    # missing PatientID (one pseudonymous patient per study)
    meta["patient_key"] = key.pseudonym(str(ds.get("PatientID", "") or "").strip() or meta["study_uid"], "p")
    institution = str(ds.get("InstitutionName", "") or "").strip()
    meta["site_key"] = key.pseudonym(institution, "site") if institution else ""
    meta["file"] = path
    return meta


def _is_legacy_stack(metas: list[dict[str, Any]]) -> bool:
    if len(metas) < 3 or any(m["n_frames"] > 1 for m in metas) or metas[0]["modality"] not in {"MG", "DBT"}:
        return False
    if len({(m["laterality_tag"], m["view_tag"]) for m in metas}) != 1 or len({m["file"].parent for m in metas}) != 1:
        return False
    tomo = all(any("TOMO" in t.upper() for t in m["image_type"]) for m in metas)
    positions = {tuple(m["image_position"]) for m in metas if m["image_position"]}
    return tomo or len(positions) == len(metas)


def manifest_row(m: dict[str, Any], root: Path, n_slices: int, path: Path, series: bool) -> dict[str, Any]:
    modality = "DBT" if series else m["modality"]
    if modality not in BREAST_MODALITIES:
        raise DataError(
            f"{m['file']}: not a breast image (Modality {m['dicom_modality'] or '?'}, SOP class "
            f"{m['sop_class_name']}); the folder format takes MG, DBT and US"
        )
    lat, view = m["laterality_tag"], m["view_tag"]
    if modality == "US":
        # ultrasound archives rarely tag laterality, and the image cannot tell it: U (unknown)
        view, lat = "US", lat or "U"
    elif lat is None:
        lat = read_image(path).meta.get("laterality")
    if lat not in ("L", "R", "U"):
        raise DataError(f"{m['file']}: no laterality in the tags (ImageLaterality, Laterality) or from the image")
    if view is None:
        raise DataError(f"{m['file']}: no view in the tags (ViewPosition, ViewCodeSequence)")
    return {
        "image_id": pseudonym(m["series_uid"] if series else m["sop_uid"] or m["file"], "i"),
        "patient_id": m["patient_key"],
        "exam_id": pseudonym(m["study_uid"], "e"),
        "laterality": lat,
        "view": view,
        "modality": modality,
        "vendor": m["manufacturer"] or "unknown",
        "site": m["site_key"] or "unknown",
        "path": rel(path, root),
        "n_slices": n_slices,
        "breast_label": "unknown",
        "annotation": "none",
        "split": "unlabeled",
        "series_uid": pseudonym(m["series_uid"], "s"),
        "sop_class": m["sop_class_name"],
        "rows": m["rows"],
        "columns": m["columns"],
        "_sop": m["sop_uid"],
        "_study": m["study_uid"],
        "_patient": m["patient_key"],
    }


def _join_labels(rows: list[dict[str, Any]], labels: pd.DataFrame, source: Path, pkey: PseudonymKey) -> None:
    key = next((k for k in JOIN_KEYS if k in labels.columns), None)
    if key is None:
        raise DataError(f"{source}: labels need one of the columns {', '.join(JOIN_KEYS)} to join on")
    by_lat = "laterality" in labels.columns and key in {"study_instance_uid", "patient_id"}
    table: dict[tuple, dict[str, Any]] = {}
    for rec in labels.to_dict("records"):
        value = str(rec[key])
        if key == "patient_id":
            value = pkey.pseudonym(value.strip(), "p")  # the labels' PatientID, keyed as in the rows
        table[(value, str(rec["laterality"]) if by_lat else "")] = rec
    field = {"path": "path", "sop_instance_uid": "_sop", "study_instance_uid": "_study", "patient_id": "_patient"}[key]
    for row in rows:
        rec = table.get((str(row[field]), row["laterality"] if by_lat else ""))
        if rec is None:
            continue
        for col, val in rec.items():
            if col in {key, "laterality", "patient_id", "path"} or pd.isna(val):
                continue
            row[col] = val
        if "breast_label" in rec and "annotation" not in rec:
            row["annotation"] = "weak"
        if "split" not in rec or pd.isna(rec.get("split")):
            row["split"] = "train"
    # splits are by patient: a patient's unlabelled images follow its labelled ones
    split_of = {r["patient_id"]: r["split"] for r in rows if r["split"] != "unlabeled"}
    for row in rows:
        row["split"] = split_of.get(row["patient_id"], row["split"])


def ingest(
    root: Path,
    labels: Path | None = None,
    skip_bad: bool = False,
    *,
    key: PseudonymKey | None = None,
    verify_pixels: bool = False,
) -> Ingested:
    """Walk ``root`` and build manifest rows (see module docstring).

    ``key`` pseudonymises patient and site (default: the project key, created on first use); ``verify_pixels``
    decodes every file in full instead of checking its header and pixel-data length.
    """
    if not root.is_dir():
        raise DataError(f"{root}: --root must be an existing folder")
    key = key if key is not None else load_key()
    out = Ingested()
    skip = Skipper(out, skip_bad)
    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    files = sorted(p for p in root.rglob("*") if p.is_file() and is_dicom_file(p))
    if not files:
        raise DataError(f"{root}: no DICOM files found (looked for *.dcm, *.dicom and files with the DICM magic)")
    for f in files:
        try:
            m = file_header(f, key, verify_pixels)
            series[m["series_uid"] or str(f)].append(m)
        except DataError as exc:
            skip.bad(f, exc)
    for metas in series.values():
        if _is_legacy_stack(metas):
            try:
                out.manifest.append(manifest_row(metas[0], root, len(metas), metas[0]["file"].parent, series=True))
            except DataError as exc:
                skip.bad(metas[0]["file"].parent, exc)
            continue
        for m in metas:
            try:
                out.manifest.append(manifest_row(m, root, m["n_frames"], m["file"], series=False))
            except DataError as exc:
                skip.bad(m["file"], exc)
    if labels is not None:
        _join_labels(out.manifest, read_table(labels), labels, key)
    for row in out.manifest:
        for k in ("_sop", "_study", "_patient"):
            row.pop(k, None)
    return out
