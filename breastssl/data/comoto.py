"""CoMoTo data (seed 003; DESIGN §5.4): boxed DBT and mammography sources, the students' paired training set and
the DBT test volumes in the BCS-DBT format. Shared by ``breastssl experiment comoto`` and the ``comoto`` run recipe
(which also holds their batch sampler, ``detection_sampler``: the data layer does not import the engine), so both
build the same batches from the same tables.

- :func:`read_boxed_source`: a manifest and its lesions table, validated for what a detector needs (stored image
  size, boxes), as :class:`~breastssl.errors.DataError` naming the file and column;
- :func:`balanced_positives`: positive DBT slices repeated so about half of the slices hold boxes;
- :func:`student_dataset`: the (optionally subsampled, balanced) DBT training slices, each paired with an
  unpaired mammogram (:class:`~breastssl.data.detection_slices.PairedDataset`);
- :func:`volume_truth`: test volumes, lesion boxes and labels as ``metrics.froc_dbt`` reads them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DataError

SIZE_COLUMNS = ("rows", "columns")  # stored image height and width: boxes are in stored pixels


def balanced_positives(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of a detection table with the positive ones repeated ⌈negatives / positives⌉ times (unchanged when
    there are no positives or no more negatives than positives)."""
    pos, neg = table[table["positive"]], table[~table["positive"]]
    if len(pos) == 0 or len(neg) <= len(pos):
        return table
    reps = int(math.ceil(len(neg) / len(pos)))
    return pd.concat([neg, *([pos] * reps)], ignore_index=True)


def student_dataset(
    dbt_train: pd.DataFrame,
    dbt_manifest: pd.DataFrame,
    dbt_root: str | Path,
    mammo: Any,
    size: tuple[int, int],
    fraction: float,
    seed: int,
    balance: bool = True,
    hflip: bool = True,
    augment: Any = None,
) -> tuple[Any, dict[str, int]]:
    """(PairedDataset, counts): DBT training slices of a ``fraction`` of the patients (nested per seed), balanced
    if asked, each item ``{"dbt": <slice (1, H, W) with boxes>, "mammo": <an unpaired mammogram of mammo>}``.

    ``counts``: slices, positive slices and stacks of the subsample before balancing. ``augment``: an
    ``AugmentConfig`` for the DBT slices (replaces ``hflip``; see ``DetectionDataset``).
    """
    from .detection_slices import DetectionDataset, PairedDataset, subsample_stacks

    table = subsample_stacks(dbt_train, fraction, seed)
    counts = {"dbt_slices": len(table), "dbt_positive_slices": int(table["positive"].sum()),
              "dbt_stacks": int(table["image_id"].nunique())}  # fmt: skip
    table = balanced_positives(table) if balance else table
    dbt = DetectionDataset(table, dbt_manifest, dbt_root, size, hflip, seed, augment)
    return PairedDataset(dbt, mammo, seed), counts


def volume_truth(
    manifest: pd.DataFrame, lesions: pd.DataFrame, split: str = "test"
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Test volumes in the BCS-DBT format: (manifest rows + StudyUID/View, boxes, labels).

    manifest: the rows of ``split`` (V) with ``StudyUID`` = exam id and ``View`` = laterality + view ("lcc");
    boxes: one row per lesion (G) in stored pixels, ``BOX_COLUMNS`` of ``froc_dbt``; labels: (V) StudyUID, View.
    """
    man = manifest[manifest["split"] == split]
    view = (man["laterality"].astype(str) + man["view"].astype(str)).str.lower()
    keyed = man.assign(StudyUID=man["exam_id"].astype(str), View=view.values)
    les = lesions.merge(keyed[["image_id", "StudyUID", "View", "n_slices", "rows"]], on="image_id")
    cols = {"StudyUID": "StudyUID", "View": "View", "Slice": "slice", "X": "x", "Y": "y", "Width": "w"}
    cols |= {"Height": "h", "VolumeSlices": "n_slices"}
    boxes = pd.DataFrame({k: les[v].to_numpy() for k, v in cols.items()})
    return keyed, boxes, keyed[["StudyUID", "View"]].reset_index(drop=True)


def _lesions_path(manifest: Path, lesions: str | Path | None, key: str) -> Path:
    if lesions:
        return Path(lesions)
    for name in ("lesions.parquet", "lesions.csv"):
        if (manifest.parent / name).is_file():
            return manifest.parent / name
    raise DataError(
        f"{manifest}: no lesions table beside it (lesions.csv or lesions.parquet) and {key}.lesions is not set; "
        "CoMoTo trains a detector, so it needs the lesion boxes (columns image_id, x, y, w, h, slice)"
    )


def _check_lesions(les: pd.DataFrame, path: Path, modality: str, manifest: pd.DataFrame) -> pd.DataFrame:
    """The schema's lesion checks on the columns a detector needs (boxes; the key slice of DBT lesions)."""
    from .schema import validate_lesions

    need = ["image_id", "x", "y", "w", "h"] + (["slice"] if modality == "DBT" else [])
    # no root: a detector reads no masks, so their files are not opened
    return validate_lesions(les, manifest, str(path), required=need).astype({"image_id": str})


def read_boxed_source(
    manifest: str | Path, lesions: str | Path | None, modality: str, key: str
) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """(manifest rows of ``modality``, their lesions, data root) of one boxed source, validated.

    ``lesions`` None: ``lesions.parquet`` / ``lesions.csv`` beside the manifest. ``key`` is the config section
    named in errors (e.g. ``data.dbt``). The manifest must give the stored image size (``rows``, ``columns``):
    lesion boxes (``x, y, w, h``, and the key ``slice`` of DBT lesions) are in stored pixels and every image is
    resized for the detector.
    """
    from .schema import read_table, validate_manifest

    path = Path(manifest)
    man = validate_manifest(read_table(path), path.parent, str(path))
    man = man.astype({"image_id": str, "patient_id": str, "exam_id": str})
    every = man  # lesions are checked against every row (a mixed manifest's other modality included)
    mine = man["modality"].astype(str) == modality
    if not mine.any():
        found = sorted(set(man["modality"].astype(str)))
        raise DataError(f"{path}: no {modality} rows (column modality has {found}); is {key}.manifest right?")
    man = man[mine].reset_index(drop=True)  # a mixed manifest: this source's modality only
    missing = [c for c in SIZE_COLUMNS if c not in man.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}: the stored image height and width, needed to map "
            "lesion boxes (stored pixels) onto the resized images"
        )
    dims = man[list(SIZE_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    bad = dims.isna().any(axis=1) | (dims < 1).any(axis=1)
    if bad.any():
        ids = list(man.loc[bad, "image_id"])[:5]
        raise DataError(f"{path}: columns rows and columns must be positive integers; bad for {ids}")
    les_path = _lesions_path(path, lesions, key)
    les = _check_lesions(read_table(les_path), les_path, modality, every)
    return man, les[les["image_id"].isin(set(man["image_id"]))].reset_index(drop=True), path.parent


def require_boxes(table: pd.DataFrame, source: str, split: str, what: str) -> None:
    """A DataError when a training table of ``split`` is empty or holds no lesion box."""
    if table.empty:
        raise DataError(f"{source}: no {what} in split {split!r} (check column split / annotation)")
    if not table["positive"].any():
        raise DataError(
            f"{source}: none of the {len(table)} {what} of split {split!r} has a lesion box in its lesions table; "
            "a detector cannot learn without boxes"
        )
