"""Manifests and lesions tables that used to crash or silently damage a run (issue 17) are named errors.

Each case is a :class:`DataError` naming the file, the rows and what is wrong; through ``breastssl train`` it exits 2
without a traceback and leaves no run folder behind, also when the failure comes after the data was read (a config
error found late, a broken stack met by the first batch). A resumable run folder keeps working.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import breast, enhanced_dbt, save
from PIL import Image

from breastssl.cli import main
from breastssl.data.schema import load_dataset, validate_lesions, validate_manifest
from breastssl.errors import DataError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DEPTH = 6  # slices of every test stack


def _row(i: int, side: str = "L", **kw) -> dict:
    label = "cancer" if side == "R" else "normal"
    row = {"image_id": f"s{i}{side}", "patient_id": f"p{i}", "exam_id": f"e{i}", "laterality": side, "view": "CC",
           "modality": "DBT", "vendor": "V", "site": "S", "path": f"s{i}{side}.npy", "n_slices": DEPTH,
           "breast_label": label, "annotation": "full", "split": "train", "rows": 40, "columns": 32}  # fmt: skip
    return {**row, **kw}


def _lesion(i: int = 0, **kw) -> dict:
    les = {"image_id": f"s{i}R", "exam_id": f"e{i}", "laterality": "R", "view": "CC", "lesion_id": f"s{i}R-0",
           "slice": 2, "x": 4, "y": 5, "w": 6, "h": 7, "mask_path": f"s{i}R_m.png",
           "lesion_class": "malignant"}  # fmt: skip
    return {**les, **kw}


@pytest.fixture
def dbt(tmp_path: Path) -> Path:
    """Two patients, each with a normal left and an annotated cancer right stack (6 × 40 × 32): a valid dataset."""
    rng = np.random.default_rng(0)
    rows = [_row(p, side) for p in range(2) for side in ("L", "R")]
    for r in rows:
        np.save(tmp_path / r["path"], rng.random((DEPTH, 40, 32), dtype=np.float32))
    for p in range(2):
        Image.fromarray(np.zeros((40, 32), np.uint8)).save(tmp_path / f"s{p}R_m.png")
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    pd.DataFrame([_lesion(0), _lesion(1)]).to_csv(tmp_path / "lesions.csv", index=False)
    return tmp_path


def _edit(table: Path, row: int, **values) -> None:
    """Set cells of one table row (0-based; file line row + 2)."""
    df = pd.read_csv(table, dtype=str, keep_default_na=False)
    for col, value in values.items():
        df[col] = df[col].astype(object)
        df.loc[row, col] = value
    df.to_csv(table, index=False)


def _error(dbt: Path, check_files: bool = True) -> str:
    with pytest.raises(DataError) as err:
        load_dataset(dbt / "manifest.csv", check_files=check_files)
    return str(err.value)


def test_the_fixture_is_valid(dbt):
    manifest, lesions = load_dataset(dbt / "manifest.csv")
    assert len(manifest) == 4 and len(lesions) == 2


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_path_is_named(dbt, value):
    _edit(dbt / "manifest.csv", 1, path=value)
    msg = _error(dbt)
    assert "manifest.csv is invalid" in msg and "column path must not be empty; empty at row 3 (1)" in msg


def test_empty_image_ids_do_not_break_the_listing(dbt):
    _edit(dbt / "manifest.csv", 0, image_id="")
    _edit(dbt / "manifest.csv", 2, image_id="")
    msg = _error(dbt, check_files=False)
    assert "column image_id must not be empty; empty at row 2, row 4 (2)" in msg and "duplicated" not in msg


def test_empty_patient_id_is_an_error_not_a_skipped_leak_check(dbt):
    _edit(dbt / "manifest.csv", 3, patient_id="")
    assert "column patient_id must not be empty" in _error(dbt) and "row 5" in _error(dbt)


@pytest.mark.parametrize("value", ["inf", "1e20", "1.5", "0", "-3", "many", "nan"])
def test_n_slices_must_be_a_whole_number_in_range(dbt, value):
    _edit(dbt / "manifest.csv", 0, n_slices=value)
    msg = _error(dbt, check_files=False)
    assert "n_slices must be a whole number from 1 to 10000; bad at row 2" in msg


def test_n_slices_beyond_the_npy_frames(dbt):
    _edit(dbt / "manifest.csv", 1, n_slices="9")
    assert f"n_slices exceeds the frames the file holds: row 3: n_slices 9 > {DEPTH} frames in 's0R.npy'" in _error(dbt)


def test_n_slices_beyond_the_dicom_frames(dbt):
    save(enhanced_dbt(np.stack([breast()] * 3), [(2000.0, 4000.0)] * 3), dbt / "stack.dcm")
    _edit(dbt / "manifest.csv", 0, path="stack.dcm", n_slices="5")
    assert "row 2: n_slices 5 > 3 frames in 'stack.dcm'" in _error(dbt)


def test_path_too_long_is_named_not_an_oserror(dbt):
    _edit(dbt / "manifest.csv", 2, path="a" * 300 + ".npy")
    assert "files named in column path cannot be opened: row 4: 'aaaa" in _error(dbt)
    _edit(dbt / "manifest.csv", 2, path="d/" * 3000 + "x.npy")
    assert "is too long for a file name" in _error(dbt)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("9999", "slice of a DBT lesion must be its key slice, 0 <= slice < n_slices of its stack; bad at row 3: "
                 "9999 of 6"),
        ("6", "row 3: 6 of 6"),
        ("", "row 3: nan of 6"),  # a DBT lesion without its key slice (NaN slice used to raise IntCastingNaNError)
        ("1.5", "slice must be a whole number (-1 for a 2-D image); bad at row 3: 1.5"),
        ("nan", "row 3: nan of 6"),
        ("-2", "slice must be a whole number (-1 for a 2-D image); bad at row 3: -2"),
    ],
)  # fmt: skip
def test_lesion_slice_checked_against_its_stack(dbt, value, expected):
    _edit(dbt / "lesions.csv", 1, slice=value)
    msg = _error(dbt)
    assert "lesions.csv is invalid" in msg and expected in msg


@pytest.mark.parametrize(
    ("col", "value", "expected"),
    [
        ("x", "nan", "x and y must be finite numbers >= 0 (pixels); bad at row 2"),
        ("y", "-4", "x and y must be finite numbers >= 0"),
        ("x", "inf", "x and y must be finite numbers >= 0"),
        ("w", "inf", "w and h must be positive finite numbers (pixels); bad at row 2"),
        ("h", "0", "w and h must be positive"),
        ("x", "32", "boxes start outside their image (x >= columns or y >= rows of the manifest); bad at row 2"),
    ],
)
def test_lesion_boxes_checked(dbt, col, value, expected):
    _edit(dbt / "lesions.csv", 0, **{col: value})
    assert expected in _error(dbt)


def test_lesion_slice_on_a_2d_image(dbt):
    _edit(dbt / "manifest.csv", 1, modality="MG", n_slices="1", path="flat.png")
    Image.fromarray(np.zeros((40, 32), np.uint8)).save(dbt / "flat.png")
    _edit(dbt / "lesions.csv", 0, slice="5")
    assert "slice of a lesion on a 2-D image must be -1 (or empty); bad at row 2: 5" in _error(dbt)
    _edit(dbt / "lesions.csv", 0, slice="-1")
    load_dataset(dbt / "manifest.csv")


def test_mask_path_must_be_an_image_of_a_sane_name(dbt):
    _edit(dbt / "lesions.csv", 0, mask_path="notes.txt")
    suffixes = ".bmp, .dcm, .gif, .jpeg, .jpg, .png, .tif, .tiff"
    assert f"mask_path must name an image ({suffixes}); bad at row 2: 'notes.txt'" in _error(dbt)
    (dbt / "text.png").write_text("not an image")
    _edit(dbt / "lesions.csv", 0, mask_path="text.png")
    unusable = "mask files named in column mask_path are not usable: row 2: text.png is not an image"
    assert f"{unusable} (UnidentifiedImageError)" in _error(dbt)
    _edit(dbt / "lesions.csv", 0, mask_path="gone.png")
    assert "row 2: gone.png does not exist" in _error(dbt)
    _edit(dbt / "lesions.csv", 0, mask_path="m" * 5000 + ".png")
    assert "mask_path is too long for a file name; at row 2 (1)" in _error(dbt)


def test_many_bad_rows_are_listed_first_few_and_counted(dbt):
    lesions = pd.DataFrame([_lesion(i % 2, slice=9000 + i) for i in range(12)])
    manifest = pd.read_csv(dbt / "manifest.csv")
    with pytest.raises(DataError) as err:
        validate_lesions(lesions, manifest, "les.csv")
    msg = str(err.value)
    assert "row 2: 9000 of 6" in msg and "row 6: 9004 of 6 ... (12 in all)" in msg and "row 7:" not in msg


def test_validate_manifest_survives_odd_cell_types():
    """Mixed types (a Parquet file may hold them) are reported, not a TypeError in sorting or grouping."""
    df = pd.DataFrame([_row(0, image_id=None, patient_id=3), _row(1, image_id=None, patient_id="p1", n_slices=True)])
    with pytest.raises(DataError) as err:
        validate_manifest(df, check_files=False)
    msg = str(err.value)
    assert "image_id must not be empty; empty at row 2, row 3 (2)" in msg and "n_slices must be a whole number" in msg


# ---- the recipes validate the lesions table -------------------------------------------------------------------


def test_every_recipe_reader_validates_lesions(dbt):
    """DBT (read_data), comoto (read_boxed_source) and ultrasound (us_data.read_data) readers all reject a key
    slice outside its stack with the lesions file named; mammography reads through load_dataset (tested above)."""
    from breastssl.data.comoto import read_boxed_source
    from breastssl.run.recipes.dbt import RunConfig, read_data
    from breastssl.run.recipes.us_data import DataConfig
    from breastssl.run.recipes.us_data import read_data as us_read_data

    _edit(dbt / "lesions.csv", 1, slice="9999")
    cfg = RunConfig.model_validate({"data": {"manifest": str(dbt / "manifest.csv")}})
    readers = [lambda: read_data(cfg), lambda: read_boxed_source(dbt / "manifest.csv", None, "DBT", "data.dbt"),
               lambda: us_read_data(DataConfig(manifest=str(dbt / "manifest.csv")))]  # fmt: skip
    for read in readers:
        with pytest.raises(DataError, match=r"lesions.csv is invalid:\n  slice of a DBT lesion .* row 3: 9999 of 6"):
            read()


# ---- through `breastssl train`: exit 2, the file and row named, nothing left behind -----------------------------


def _train(dbt: Path, out: Path, capsys, *sets: str) -> tuple[int, str]:
    base = [f"data.manifest={dbt / 'manifest.csv'}", "data.image_size=[32,24]", "train.steps=1", "train.device=cpu",
            "train.progress=false", "train.batch_size=4", "train.tensorboard=false", "data.test_split=none",
            f"train.out_dir={out}", *sets]  # fmt: skip
    code = main(["train", "-c", str(CONFIGS / "dbt_selectivekd_demo.yaml"), *(a for s in base for a in ("--set", s))])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_train_rejects_a_bad_lesions_table(dbt, tmp_path, capsys):
    _edit(dbt / "lesions.csv", 0, slice="9999")
    code, err = _train(dbt, tmp_path / "run", capsys)
    assert code == 2 and "lesions.csv is invalid" in err and "row 2: 9999 of 6" in err
    assert not (tmp_path / "run").exists()


def test_train_rejects_a_bad_manifest(dbt, tmp_path, capsys):
    _edit(dbt / "manifest.csv", 2, n_slices="inf")
    code, err = _train(dbt, tmp_path / "run", capsys)
    assert (
        code == 2 and "manifest.csv is invalid" in err and "n_slices must be a whole number" in err and "row 4" in err
    )
    assert not (tmp_path / "run").exists()


def test_failures_after_reading_the_data_leave_no_run_folder(dbt, tmp_path, capsys):
    """A config error found late (fp16 on a CPU, after the plan was written) and a broken stack met by the first
    batch (after config.yaml was written): the folders the run created are removed, an empty one is left empty."""
    code, err = _train(dbt, tmp_path / "new" / "run", capsys, "train.amp=fp16")
    assert code == 2 and "train.amp=fp16 needs CUDA" in err and not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    code, _ = _train(dbt, tmp_path / "empty", capsys, "train.amp=fp16")
    assert code == 2 and list((tmp_path / "empty").iterdir()) == []
    for stack in dbt.glob("*.npy"):
        stack.write_bytes(b"not a numpy file" * 8)  # unreadable header: validation cannot tell, the reader does
    code, err = _train(dbt, tmp_path / "run", capsys)
    assert code == 2 and ".npy: cannot be read" in err and not (tmp_path / "run").exists()


def test_an_existing_run_folder_keeps_working(dbt, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(dbt, out, capsys)[0] == 0
    with pytest.warns(UserWarning, match="changed train config: steps"):  # resumed from its checkpoint
        assert _train(dbt, out, capsys, "train.steps=2")[0] == 0
    kept = sorted(p.name for p in out.iterdir())
    code, err = _train(dbt, out, capsys, "train.steps=3", "train.amp=fp16")
    assert code == 2 and "fp16" in err and sorted(p.name for p in out.iterdir()) == kept
    assert {"config.yaml", "checkpoints", "metrics.json", "train_slices.csv"} <= set(kept)


def test_out_dir_under_a_file(dbt, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, err = _train(dbt, tmp_path / "file" / "run", capsys)
    assert code == 2 and "is a file, not a folder" in err
