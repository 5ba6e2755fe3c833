"""`breastssl train` with the ultrasound recipe (family us: detector, then recognition by mean teacher) on 40
synthetic images, then `predict --run` and `export --run` of the one run folder it writes; the shipped recipes;
data the method cannot train on."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from breastssl.cli import app, main

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "us_mean_teacher_run_demo.yaml"
PAPER = ROOT / "configs" / "us_mean_teacher_run_paper.yaml"
runner = CliRunner()
# a few seconds: the detector 3 steps at 64 px, the recognition CNN (width 4, 16 px crops) 4 steps of 2 + 2 crops,
# evaluated on val every 2 steps; basic set = the 6 train images annotated in full
TINY = ["data.basic_fraction=null", "detector.steps=3", "detector.freeze_steps=1", "detector.batch_size=2",
        "detector.min_size=64", "detector.max_size=96", "recognition.eval_every=2", "recognition.crop_size=16",
        "recognition.min_score=0", "model.width=4", "train.steps=4", "train.batch_size=4", "train.log_every=1",
        "train.progress=false"]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """40 synthetic ultrasound images: site A (train 24, 6 annotated in full; val 2; test 7), site B (test 7)."""
    from breastssl.commands.synth import run_synth

    root = tmp_path_factory.mktemp("us") / "data"
    run_synth("us", root, n=40, seed=0, fmt="npy", quiet=True, workers=1)
    return root


def _sets(data: Path, out: Path, *extra: str) -> list[str]:
    items = [f"data.manifest={data / 'manifest.csv'}", f"train.out_dir={out}", *extra]
    return [arg for s in items for arg in ("--set", s)]


def _files(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "us"
    result = runner.invoke(app, ["train", "-c", str(DEMO), *_sets(data, out, *TINY)])
    assert result.exit_code == 0, result.output
    assert "test AUC" in result.output and "detector IoU" in result.output
    return out


def test_dry_run_builds_one_batch_and_writes_nothing(data, tmp_path):
    """(a) the CLI's dry run: sets, ground-truth crops, one two-view batch, one loss; no detector, no file."""
    before, out = _files(data), tmp_path / "run"
    result = runner.invoke(app, ["train", "-c", str(DEMO), *_sets(data, out, *TINY), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "nothing was trained or written" in result.output and "ground-truth boxes" in result.output
    summary = json.loads(result.output[result.output.index("{") : result.output.rindex("}") + 1])
    assert summary["family"] == "us" and summary["images"] == {"basic": 6, "extended": 18, "val": 2, "test": 14}
    assert summary["per_step"] == {"labelled": 2, "unlabelled": 2} and summary["unlabelled_crops"] == 18
    assert {"image: (4, 1, 16, 16) float32", "image_teacher: (4, 1, 16, 16) float32"} <= set(summary["batch"])
    assert summary["first_loss"]["loss"] > 0
    assert not out.exists() and _files(data) == before and not list(tmp_path.iterdir())


def test_training_writes_one_run_folder(run):
    """(b) detector and recognition in one folder: model.json, weights/, metrics.json with per-site test metrics
    and the early-stopping record, predictions.csv; the kept recognition weights are the chosen teacher."""
    from breastssl.run.folder import load_run

    for rel in ("model.json", "weights/detector.pt", "weights/recognition.pt", "metrics.json", "predictions.csv",
                "config.yaml", "detector/checkpoints/step_00000003.pt", "checkpoints/step_00000004.pt"):  # fmt: skip
        assert (run / rel).is_file(), rel
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["family"] == "us" and metrics["steps"] == 4 and metrics["headline"].startswith("test AUC")
    assert set(metrics["test"]["per_site"]) == {"site-A", "site-B"}
    overall = metrics["test"]["overall"]
    assert overall["n"] == 10 and overall["auc_low"] <= overall["auc"] <= overall["auc_high"]
    assert 0 <= overall["iou_mean"] <= 1 and {"sensitivity", "specificity", "accuracy"} <= set(overall)
    assert [s for s, _ in metrics["early_stopping"]["history"]] == [2, 4]
    preds = pd.read_csv(run / "predictions.csv")
    assert {"image_id", "x0", "y0", "x1", "y1", "det_score", "p_malignant", "label", "iou", "site"} <= set(preds)
    assert len(preds) == 14 and preds["p_malignant"].between(0, 1).all()
    best = torch.load(run / "early_stopping_best.pt", weights_only=True)
    kept = torch.load(run / "weights" / "recognition.pt", weights_only=True)["model"]
    assert all(torch.equal(kept[k], best["teacher"][k]) for k in kept)  # evaluate_with: teacher
    loaded = load_run(run)
    assert set(loaded.models) == {"detector", "recognition"}
    assert loaded.card["models"]["recognition"]["input_size"] == [16, 16] and loaded.card["input"]["size"] == [64, 64]
    assert (run / "config.yaml").read_text().count("name: mean_teacher") == 1  # the run config, not a chunk's


def test_rerun_resumes_to_the_same_result(run, data):
    """A second `breastssl train` into the finished folder reads the detector and the recognition run back."""
    before = pd.read_csv(run / "predictions.csv")
    result = runner.invoke(app, ["train", "-c", str(DEMO), *_sets(data, run, *TINY)])
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_csv(run / "predictions.csv"), before)


def test_predict_run_matches_the_evaluation_and_the_bundle_path(run, data, tmp_path):
    """(c) `predict --run` scores frames as the run's evaluation did; the experiment's bundle of the same networks
    (`predict --modality us --model`) gives the same table through the same code."""
    from breastssl.experiments._us_mean_teacher_impl import USExperimentConfig, save_bundle
    from breastssl.run.folder import load_run

    images = [data / "images" / "us-e000001" / "us-000001.npy", data / "images" / "us-e000002" / "us-000002.npy"]
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", "--run", str(run), *map(str, images), "--out", str(out)])
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out / "predictions.csv")
    assert set(df["file"]) == set(map(str, images)) and len(list((out / "overlays").glob("*.png"))) == 2
    top = df.loc[df.groupby("file")["det_score"].idxmax()].set_index(df["file"].map(lambda f: Path(f).stem))
    evaluated = pd.read_csv(run / "predictions.csv").set_index("image_id").loc[top.index]
    assert (top["p_malignant"] - evaluated["p_malignant"]).abs().max() < 1e-5
    assert runner.invoke(app, ["predict", "--run", str(run), str(images[0]), "--out", str(out)]).exit_code != 0

    loaded = load_run(run)
    cfg = USExperimentConfig.model_validate({"detector": {"min_size": 64, "max_size": 96},
                                             "recognition": {"width": 4, "crop_size": 16}})  # fmt: skip
    save_bundle(tmp_path / "us_model.pt", loaded.models["detector"], loaded.models["recognition"], cfg)
    args = ["predict", "--modality", "us", "--model", str(tmp_path / "us_model.pt"), *map(str, images)]
    assert main([*args, "--out", str(tmp_path / "bundle")]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "bundle" / "predictions.csv"), df)


def test_export_run_writes_both_networks(run, tmp_path):
    """(d) `export --run`: the detector (dynamic frame size) and the recognition network, each checked by parity."""
    out = tmp_path / "onnx"
    result = runner.invoke(app, ["export", "--run", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "export.json").read_text())
    assert meta["run_type"] == "us"
    kinds = {m["file"]: (m["kind"], m["input_shape"]) for m in meta["models"]}
    assert kinds == {"detector.onnx": ("faster_rcnn", [1, 1, 64, 64]),
                     "recognition.onnx": ("recognition_cnn", [2, 1, 16, 16])}  # fmt: skip
    assert all(m["parity"]["max_abs_diff"] < 1e-4 for m in meta["models"])


def _copy(data: Path, where: Path, lesions: pd.DataFrame | None = None, **columns: str) -> Path:
    """The manifest (absolute paths, ``columns`` replaced) and lesions (default: as generated) under ``where``."""
    man = pd.read_csv(data / "manifest.csv", dtype=str)
    man = man.assign(path=[str(data / p) for p in man["path"]], **columns)
    where.mkdir()
    man.to_csv(where / "manifest.csv", index=False)
    if lesions is not None:
        lesions.to_csv(where / "lesions.csv", index=False)
    return where / "manifest.csv"


@pytest.mark.parametrize("case", ["no_boxes", "no_lesions_file", "no_unlabelled"])
def test_data_the_method_cannot_use_exits_2_naming_the_file(data, tmp_path, capsys, case):
    """(e) a basic set without boxes, no lesions file, no unlabelled image: exit 2 before anything is written."""
    les = pd.read_csv(data / "lesions.csv", dtype=str)
    man = pd.read_csv(data / "manifest.csv", dtype=str)
    basic = man.loc[(man["split"] == "train") & (man["annotation"] == "full"), "image_id"]
    if case == "no_boxes":
        manifest = _copy(data, tmp_path / "d", les[~les["image_id"].isin(basic)])
        named, what = tmp_path / "d" / "lesions.csv", "has a nodule box"
    elif case == "no_lesions_file":
        manifest = _copy(data, tmp_path / "d")
        named, what = tmp_path / "d" / "lesions.csv", "lesions file does not exist"
    else:
        manifest = _copy(data, tmp_path / "d", les, annotation="full")
        named, what = manifest, "no unlabelled images"
    out = tmp_path / "run"
    args = ["train", "-c", str(DEMO), "--set", f"data.manifest={manifest}", "--set", f"train.out_dir={out}",
            "--set", "data.basic_fraction=null"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(named) in err.replace("\n", "") and what in err.replace("\n", " ") and "Traceback" not in err
    assert not out.exists()


def test_shipped_recipes_validate(data, tmp_path):
    """(f) the demo recipe's dry run on the user's manifest (only data.manifest set); the paper recipe's keys; a
    cosine schedule (which chunked early stopping would restart every chunk) is a config error."""
    from breastssl.errors import ConfigError
    from breastssl.run.config import load_run_config

    result = runner.invoke(app, ["train", "-c", str(DEMO), "--set", f"data.manifest={data / 'manifest.csv'}",
                                 "--set", f"train.out_dir={tmp_path / 'run'}", "--dry-run"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "image_teacher: (32, 1, 32, 32)" in result.output and not (tmp_path / "run").exists()
    paper = load_run_config(PAPER)
    assert paper.family == "us" and paper.detector.backbone == "vgg16" and paper.train.batch_size == 128
    assert paper.strategy.labelled_fraction == 0.5 and paper.recognition.crop_size == 96
    with pytest.raises(ConfigError, match="cosine"):
        load_run_config(DEMO, ["train.schedule.name=cosine"])


def test_val_drawn_by_patient_when_the_manifest_has_none(data, tmp_path):
    """A manifest without val rows (e.g. BUSI): a share of the training patients becomes val, said in the summary."""
    from breastssl.run.config import load_run_config
    from breastssl.run.train import run_train

    sets = [f"data.manifest={data / 'manifest.csv'}", f"train.out_dir={tmp_path / 'run'}", "data.val_split=held_out",
            "data.val_fraction=0.3", *TINY]  # fmt: skip
    summary = run_train(load_run_config(DEMO, sets), dry=True)
    assert "training patients drawn as val" in summary["val_split"] and summary["images"]["val"] > 0
    assert summary["images"]["basic"] + summary["images"]["extended"] + summary["images"]["val"] == 24
    assert not (tmp_path / "run").exists()
