"""`breastssl predict --run RUN` for DBT on a tiny synthetic set and a 2-step tiny CNN run.

What matters: a DICOM folder and its manifest give the same slice scores, and both equal the training
code's own scoring (``score_slices`` on ``StackStore``), so predictions are made on the pixels the model
was trained on; outputs are complete; bad inputs exit 2 and leave no output folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from breastssl.cli import main
from breastssl.commands.synth import run_synth
from breastssl.config import load_config
from breastssl.data.dbt_slices import StackStore, load_stack, score_slices
from breastssl.data.prior import read_logit_shift
from breastssl.inference.dbt_predict import predict_dbt
from breastssl.run.recipes.dbt import RunConfig, load_teacher
from breastssl.run.train import run_train

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "dbt_selectivekd_demo.yaml"
SIZE = (32, 24)
CSV_COLUMNS = {
    "slices": ["image_id", "slice", "score"],
    "stacks": ["image_id", "exam_id", "laterality", "view", "path", "n_slices", "score", "top_slices"],
    "breasts": ["exam_id", "laterality", "score", "aggregation"],
    "exams": ["exam_id", "score", "aggregation"],
}


@pytest.fixture(scope="module")
def dbt(tmp_path_factory) -> Path:
    """4 synthetic DBT exams (16 stacks) as Breast Tomosynthesis DICOM + manifest.csv."""
    out = tmp_path_factory.mktemp("synth") / "dbt"
    run_synth("dbt", out, n=4, seed=0, fmt="dicom")
    return out


@pytest.fixture(scope="module")
def run_dir(dbt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "teacher"
    overrides = [
        f"data.manifest={dbt / 'manifest.csv'}", f"data.image_size=[{SIZE[0]},{SIZE[1]}]", "train.steps=2",
        "train.batch_size=8", "train.ckpt_every=2", "train.progress=false", "train.tensorboard=false",
        f"train.out_dir={out}", "model.decoder_width=8",
        "data.test_split=train",  # 4 exams all land in train; the run's final scoring needs some stacks
    ]  # fmt: skip
    run_train(load_config(RunConfig, CONFIG, overrides))
    return out


@pytest.fixture(scope="module")
def outputs(run_dir, dbt, tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("pred")
    folder, manifest = base / "from_folder", base / "from_manifest"
    predict_dbt(run_dir, [dbt / "images"], folder)
    predict_dbt(run_dir, [dbt / "manifest.csv"], manifest)
    return {"folder": folder, "manifest": manifest}


def one_stack_manifest(dbt: Path, folder: Path) -> Path:
    """A manifest of the first stack only, elsewhere, with an absolute path (fast CLI runs)."""
    row = pd.read_csv(dbt / "manifest.csv").iloc[:1]
    folder.mkdir(parents=True, exist_ok=True)
    row.assign(path=[str(dbt / p) for p in row["path"]]).to_csv(folder / "one.csv", index=False)
    return folder / "one.csv"


def slice_scores(out: Path) -> pd.DataFrame:
    """Slice scores keyed by the stack's file path (the folder path pseudonymises image IDs)."""
    paths = pd.read_csv(out / "stacks.csv")[["image_id", "path"]]
    return pd.read_csv(out / "slices.csv").merge(paths, on="image_id").sort_values(["path", "slice"])


def test_folder_and_manifest_give_identical_scores_equal_to_training_scoring(outputs, run_dir, dbt):
    a, b = slice_scores(outputs["folder"]), slice_scores(outputs["manifest"])
    assert len(a) == len(b) == pd.read_csv(dbt / "manifest.csv")["n_slices"].sum()
    assert list(a["path"]) == list(b["path"]) and list(a["slice"]) == list(b["slice"])
    np.testing.assert_array_equal(a["score"].to_numpy(), b["score"].to_numpy())

    manifest = pd.read_csv(dbt / "manifest.csv", dtype={"image_id": str})
    store = StackStore(manifest, dbt, SIZE)
    shift = read_logit_shift(run_dir)  # predict reports probabilities on the natural prior, as training scores
    assert shift < 0  # the demo recipe oversamples positives, so its raw scores are inflated
    assert json.loads((outputs["manifest"] / "predictions.json").read_text())["logit_shift"] == shift
    ref = score_slices(load_teacher(run_dir), store, manifest["image_id"].tolist(), batch_size=64, logit_shift=shift)
    got = pd.read_csv(outputs["manifest"] / "slices.csv", dtype={"image_id": str})
    run_preds = pd.read_csv(run_dir / "predictions_slice.csv", dtype={"image_id": str})  # the run's test scoring
    both = run_preds.merge(got, on=["image_id", "slice"], suffixes=("_run", "_predict"))
    assert len(both) == len(run_preds)
    np.testing.assert_array_equal(*(both[c].to_numpy(np.float32) for c in ("score_run", "score_predict")))
    merged = ref.merge(got, on=["image_id", "slice"], suffixes=("_train", "_predict"), validate="one_to_one")
    assert len(merged) == len(ref)
    # bit-identical float32 (the CSV holds the shortest float32 repr, so compare as float32)
    predicted, trained = (merged[c].to_numpy(np.float32) for c in ("score_predict", "score_train"))
    np.testing.assert_array_equal(predicted, trained)


def test_outputs_are_complete_and_consistent(outputs, dbt):
    out = outputs["manifest"]
    tables = {name: pd.read_csv(out / f"{name}.csv", dtype={"image_id": str, "exam_id": str}) for name in CSV_COLUMNS}
    for name, cols in CSV_COLUMNS.items():
        assert set(cols) <= set(tables[name].columns), name
    manifest = pd.read_csv(dbt / "manifest.csv")
    assert len(tables["stacks"]) == len(manifest) and len(tables["exams"]) == manifest["exam_id"].nunique()
    # the run aggregates by max: every level's score is the max of the slices below it
    top = tables["slices"].groupby("image_id")["score"].max()
    np.testing.assert_allclose(tables["stacks"].set_index("image_id")["score"].loc[top.index], top, atol=1e-7)
    by_exam = tables["stacks"].groupby("exam_id")["score"].max()
    np.testing.assert_allclose(tables["exams"].set_index("exam_id")["score"].loc[by_exam.index], by_exam, atol=1e-7)

    doc = json.loads((out / "predictions.json").read_text())
    assert doc["step"] == 2 and doc["image_size"] == list(SIZE) and doc["aggregation"] == "max"
    stacks = [s for e in doc["exams"] for b in e["breasts"] for s in b["stacks"]]
    assert len(stacks) == len(manifest) and all(len(s["top_slices"]) == 3 for s in stacks)
    pngs = sorted((out / "heatmaps").glob("*.png"))
    assert len(pngs) == 3 * len(manifest)
    assert {str(out / t["heatmap"]) for s in stacks for t in s["top_slices"]} == {str(p) for p in pngs}
    best = stacks[0]["top_slices"]
    assert best[0]["score"] == pytest.approx(stacks[0]["score"]) and best[0]["score"] >= best[1]["score"]


def test_a_caller_model_that_is_not_a_module(run_dir, dbt, outputs, tmp_path):
    """The ONNX-runtime contract: a plain callable returning numpy arrays, with no .eval() or .to()."""
    net = load_teacher(run_dir)

    class Plain:
        def __call__(self, x):
            out = net(x)
            return {"logits": out["logits"].numpy(), "mask_logits": out["mask_logits"].numpy()}

    stacks = predict_dbt(run_dir, [one_stack_manifest(dbt, tmp_path)], tmp_path / "out", model=Plain())
    got = pd.read_csv(tmp_path / "out" / "slices.csv", dtype={"image_id": str})
    ref = pd.read_csv(outputs["manifest"] / "slices.csv", dtype={"image_id": str})
    ref = ref[ref["image_id"] == stacks["image_id"].iloc[0]]
    np.testing.assert_allclose(got["score"], ref["score"], rtol=0, atol=1e-7)
    assert json.loads((tmp_path / "out" / "predictions.json").read_text())["model_object"] == "Plain"


def test_cli_writes_outputs_and_refuses_to_overwrite(run_dir, dbt, tmp_path, capsys):
    manifest, out = one_stack_manifest(dbt, tmp_path), tmp_path / "out"
    assert main(["predict", "--run", str(run_dir), str(manifest), "--out", str(out), "--top-slices", "1"]) == 0
    assert "1 stacks of 1 exams" in capsys.readouterr().out and len(list((out / "heatmaps").iterdir())) == 1
    assert main(["predict", "--run", str(run_dir), str(manifest), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["predict", "--run", str(run_dir), str(manifest), "--out", str(out), "--overwrite"]) == 0
    assert len(list((out / "heatmaps").iterdir())) == 3


def mammogram(path: Path) -> Path:
    """A single-frame Digital Mammography DICOM: a valid image, but not a DBT stack."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1.2", generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "MG"
    ds.ImageLaterality, ds.ViewPosition, ds.PhotometricInterpretation = "L", "CC", "MONOCHROME2"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PixelRepresentation = 16, 12, 1, 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelData = np.arange(16 * 12, dtype=np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def bad_case(case: str, run_dir: Path, dbt: Path, tmp: Path) -> tuple[list[str], str]:
    """CLI arguments (before --out) of one bad invocation, and a fragment its error message must hold."""
    good = str(one_stack_manifest(dbt, tmp / "good"))
    if case == "run without config":
        (tmp / "norun").mkdir()
        return ["--run", str(tmp / "norun"), good], "no model.json or config.yaml"
    if case == "run without checkpoint":
        (tmp / "nockpt").mkdir()
        shutil.copy(run_dir / "config.yaml", tmp / "nockpt" / "config.yaml")
        return ["--run", str(tmp / "nockpt"), good], "no checkpoint"
    if case == "empty folder":
        (tmp / "empty").mkdir()
        return ["--run", str(run_dir), str(tmp / "empty")], "no DICOM files"
    if case == "manifest without n_slices":
        pd.read_csv(good).drop(columns="n_slices").to_csv(tmp / "m.csv", index=False)
        return ["--run", str(run_dir), str(tmp / "m.csv")], "missing required column(s) n_slices"
    if case == "mammogram file":
        return ["--run", str(run_dir), str(mammogram(tmp / "mg.dcm"))], "not a DBT stack"
    if case == "folder of mammograms":
        mammogram(tmp / "study" / "a" / "mg.dcm")
        return ["--run", str(run_dir), str(tmp / "study")], "no DBT stack"
    if case == "damaged DBT file":
        (tmp / "bad").mkdir()
        data = (dbt / pd.read_csv(good)["path"].iloc[0]).read_bytes()
        (tmp / "bad" / "x.dcm").write_bytes(data[: len(data) // 2])  # truncated pixel data
        return ["--run", str(run_dir), str(tmp / "bad")], "x.dcm"
    if case == "malformed header in a folder":  # a mammogram with NumberOfFrames "1A" beside a good stack
        (tmp / "malformed").mkdir()
        shutil.copy(dbt / pd.read_csv(good)["path"].iloc[0], tmp / "malformed" / "s.dcm")
        ds = pydicom.dcmread(mammogram(tmp / "malformed" / "mg.dcm"))
        ds._dict[Tag("NumberOfFrames")] = RawDataElement(Tag("NumberOfFrames"), "IS", 2, b"1A", 0, False, True)
        ds.save_as(tmp / "malformed" / "mg.dcm")
        return ["--run", str(run_dir), str(tmp / "malformed")], "mg.dcm: malformed header attribute"
    if case == "both --model and --run":
        return ["--run", str(run_dir), "--model", good, good], "give either --run"
    return ["--run", str(run_dir), "--modality", "us", good], "--modality 'us' does not apply"


@pytest.mark.parametrize(
    "case",
    ["run without config", "run without checkpoint", "empty folder", "manifest without n_slices", "mammogram file",
     "folder of mammograms", "damaged DBT file", "malformed header in a folder", "both --model and --run",
     "us with --run"],
)  # fmt: skip
def test_bad_inputs_exit_2_and_leave_no_output(case, run_dir, dbt, tmp_path, capsys):
    args, message = bad_case(case, run_dir, dbt, tmp_path)
    out = tmp_path / "out"
    assert main(["predict", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_load_stack_takes_the_file_window_and_photometric_through_read_image(dbt, tmp_path):
    """Without a manifest window the DICOM's per-frame VOI is used (the synthetic one equals the manifest's);
    a MONOCHROME1 file comes out inverted either way, so bright means dense for training and predict."""
    row = pd.read_csv(dbt / "manifest.csv").iloc[0].to_dict()
    with_window = load_stack(row, dbt, SIZE)
    no_window = {k: v for k, v in row.items() if not k.startswith("window_")}
    np.testing.assert_array_equal(load_stack(no_window, dbt, SIZE), with_window)
    ds = pydicom.dcmread(dbt / row["path"])
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "m1.dcm")
    for r in ({**row, "path": str(tmp_path / "m1.dcm")}, {**no_window, "path": str(tmp_path / "m1.dcm")}):
        np.testing.assert_allclose(load_stack(r, dbt, SIZE), 1.0 - with_window, atol=1e-6)
