"""The ultrasound recipe's data: where it is, how its sets are made, and the checks that name what is missing.

Sets (the ``set`` column :func:`read_data` adds): ``basic`` = train rows annotated in full (``annotation ==
"full"``), or a random ``basic_fraction`` of the rows (the experiment's draw, same seed → same set);
``extended`` = the other train rows and the rows of ``unlabelled_split``; ``val`` (early stopping) = the val
rows, or, where the manifest has none, a ``val_fraction`` of the training patients drawn by patient; ``test``.
Boxes and classes come from the lesions table (``x, y, w, h``, ``lesion_class``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from ...config import Section, Seed
from ...errors import DataError

CLASSES = ("benign", "malignant")


class DataConfig(Section):
    """Where the ultrasound data is and how its sets are made."""

    manifest: str = Field("data/us/manifest.csv", description="manifest CSV/Parquet; paths relative to its folder")
    lesions: str | None = Field(None, description="nodule boxes and classes; None = lesions.csv beside the manifest")
    basic_fraction: float | None = Field(
        None, gt=0, lt=1, description="None: basic set = train rows with annotation 'full'; else this random share"
    )
    train_split: str = "train"
    val_split: str = Field("val", description="early stopping's split")
    test_split: str = "test"
    unlabelled_split: str | None = Field("unlabeled", description="its rows join the extended (unlabelled) set")
    val_fraction: float = Field(
        0.125, gt=0, lt=1, description="no val rows: this share of the training patients becomes val (0.125: the "
        "experiment's 70/10 of the 80% that is not test)",
    )  # fmt: skip
    split_seed: Seed = Field(0, description="seed of the basic_fraction draw and of the val patients")


def _sets(man: pd.DataFrame, d: DataConfig, source: str) -> tuple[pd.Series, dict[str, Any]]:
    """The set of every row ("" for rows of no set), and a note when val was drawn from the train rows."""
    from .us_stages import basic_mask, patient_uniform

    split = man["split"].astype(str)
    notes: dict[str, Any] = {}
    train = split == d.train_split
    if not train.any():
        raise DataError(f"{source}: no rows in split {d.train_split!r} (column split; data.train_split)")
    if not (split == d.val_split).any():  # e.g. BUSI: hold out whole patients, as the experiment does
        moved = train & (patient_uniform(man["patient_id"], d.split_seed) < d.val_fraction)
        split = split.where(~moved, d.val_split)
        notes["val_split"] = (f"no {d.val_split!r} rows in {source}: {int(moved.sum())} images of "
                              f"{man.loc[moved, 'patient_id'].nunique()} training patients drawn as val")  # fmt: skip
        train = split == d.train_split
    basic = basic_mask(man, d.basic_fraction, d.split_seed)
    unlabelled = split == d.unlabelled_split if d.unlabelled_split else pd.Series(False, index=man.index)
    conditions = [train & basic, train | unlabelled, split == d.val_split, split == d.test_split]
    return pd.Series(np.select(conditions, ["basic", "extended", "val", "test"], ""), index=man.index), notes


def read_data(d: DataConfig) -> tuple[pd.DataFrame, pd.DataFrame, Path, dict[str, Any]]:
    """(manifest rows of the four sets with a ``set`` column, lesions, data root, notes), checked for the method.

    Raises :class:`DataError` naming the file and what the method lacks: a basic set, boxes in it, labelled
    basic or val nodules, unlabelled images.
    """
    from ...data.schema import read_table, validate_lesions, validate_manifest

    path = Path(d.manifest)
    root, src = path.parent, str(path)
    man = validate_manifest(read_table(path), root, src).astype({"image_id": str})
    les_path = Path(d.lesions) if d.lesions else root / "lesions.csv"
    if not les_path.is_file():
        raise DataError(f"{les_path}: lesions file does not exist; the basic set's nodule boxes (x, y, w, h) and "
                        "classes (lesion_class) come from it (data.lesions names another file)")  # fmt: skip
    # no root: the method reads boxes, not masks, so mask files are not opened (a copied table may not have them)
    les = validate_lesions(read_table(les_path), man, str(les_path)).astype({"image_id": str})
    sets, notes = _sets(man, d, src)
    man = man.assign(set=sets)[sets != ""].reset_index(drop=True)
    basic_desc = "annotation 'full'" if d.basic_fraction is None else f"basic_fraction {d.basic_fraction}"
    ids = {s: set(man.loc[man["set"] == s, "image_id"]) for s in ("basic", "extended", "val")}
    boxed = set(les["image_id"])
    classed = set(les.loc[les["lesion_class"].isin(CLASSES), "image_id"])
    if not ids["basic"]:
        raise DataError(f"{src}: no training image is in the basic set (train rows with {basic_desc}); the "
                        "detector and the labelled crops come from it (set data.basic_fraction)")  # fmt: skip
    if not ids["basic"] & boxed:
        raise DataError(f"{les_path}: none of the {len(ids['basic'])} basic-set images (train rows of {src} with "
                        f"{basic_desc}) has a nodule box (x, y, w, h): the detector trains on those boxes")  # fmt: skip
    if not ids["basic"] & classed:
        raise DataError(f"{les_path}: no basic-set image has a nodule with lesion_class benign or malignant: the "
                        "recognition network would have no labelled crops")  # fmt: skip
    if not ids["extended"]:
        raise DataError(f"{src}: every training image is in the basic (annotated) set, so the mean teacher has no "
                        "unlabelled images; set data.basic_fraction (e.g. 0.15) to keep only that share labelled, or "
                        f"add rows of split {d.unlabelled_split!r}")  # fmt: skip
    if not ids["val"] & classed:
        raise DataError(f"{les_path}: no image of split {d.val_split!r} has a nodule with lesion_class benign or "
                        "malignant: early stopping has no labelled validation crops")  # fmt: skip
    return man, les, root, notes
