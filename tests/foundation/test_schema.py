"""Manifest and lesions validation: errors name missing columns, bad values, missing files."""

from __future__ import annotations

import pandas as pd
import pytest

from breastssl.data.schema import MANIFEST_COLUMNS, load_dataset, validate_lesions, validate_manifest
from breastssl.errors import DataError


def _row(i: int, **kw) -> dict:
    row = {
        "image_id": f"img{i}",
        "patient_id": f"p{i}",
        "exam_id": f"e{i}",
        "laterality": "L",
        "view": "CC",
        "modality": "DBT",
        "vendor": "Hologic",
        "site": "s",
        "path": f"img{i}.npy",
        "n_slices": 4,
        "breast_label": "normal",
        "annotation": "full",
        "split": "train",
    }
    row.update(kw)
    return row


def test_valid_manifest_passes(tmp_path):
    for i in range(3):
        (tmp_path / f"img{i}.npy").write_bytes(b"x")
    df = pd.DataFrame([_row(i) for i in range(3)])
    assert validate_manifest(df, tmp_path) is df


def test_missing_columns_named():
    df = pd.DataFrame([_row(0)]).drop(columns=["vendor", "split"])
    with pytest.raises(DataError, match="missing required column.*vendor, split"):
        validate_manifest(df, check_files=False)


def test_bad_values_listed_with_rows_and_count():
    rows = [_row(i, laterality="X" if i % 2 else "L") for i in range(14)]
    with pytest.raises(DataError) as err:
        validate_manifest(pd.DataFrame(rows), check_files=False)
    msg = str(err.value)
    assert "laterality" in msg and "row 3" in msg and "(7 in all)" in msg


def test_missing_files_listed(tmp_path):
    with pytest.raises(DataError, match=r"do not exist: row 2: img0.npy"):
        validate_manifest(pd.DataFrame([_row(0)]), tmp_path)


def test_patient_in_two_splits_rejected():
    rows = [_row(0), _row(1, patient_id="p0", split="test")]
    with pytest.raises(DataError, match="splits must be by patient.*p0"):
        validate_manifest(pd.DataFrame(rows), check_files=False)


def test_duplicate_ids_and_bad_slices():
    rows = [_row(0), _row(0, n_slices=0)]
    with pytest.raises(DataError) as err:
        validate_manifest(pd.DataFrame(rows), check_files=False)
    assert "image_id must be unique" in str(err.value) and "n_slices" in str(err.value)


def test_lesions_validation():
    manifest = pd.DataFrame([_row(0)])
    ok = {
        "image_id": "img0",
        "exam_id": "e0",
        "laterality": "L",
        "view": "CC",
        "lesion_id": "a",
        "slice": 1,
        "x": 1,
        "y": 2,
        "w": 3,
        "h": 4,
        "mask_path": "",
        "lesion_class": "malignant",
    }
    validate_lesions(pd.DataFrame([ok]), manifest)
    with pytest.raises(DataError, match="not in the manifest: ghost"):
        validate_lesions(pd.DataFrame([{**ok, "image_id": "ghost"}]), manifest)
    with pytest.raises(DataError, match="w and h must be positive"):
        validate_lesions(pd.DataFrame([{**ok, "w": 0}]), manifest)
    with pytest.raises(DataError, match="lesion_class"):
        validate_lesions(pd.DataFrame([{**ok, "lesion_class": "weird"}]), manifest)


def test_load_dataset_unreadable(tmp_path):
    p = tmp_path / "manifest.parquet"
    p.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="manifest.parquet: cannot be read"):
        load_dataset(p)


def test_schema_has_design_columns():
    for col in [
        "patient_id",
        "exam_id",
        "laterality",
        "view",
        "modality",
        "vendor",
        "site",
        "path",
        "n_slices",
        "breast_label",
        "annotation",
        "split",
    ]:
        assert col in MANIFEST_COLUMNS
