"""`breastssl train` with the CoMoTo recipe (family comoto): a tiny mammography teacher, an LsKD student from it
(the experiment's numbers, through the same code), `predict --run` and `export --run` on the student, the dry runs
of the shipped recipes, and the config and data errors a user meets first."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from breastssl.cli import app, main
from breastssl.inference.comoto_predict import IMAGE_COLUMNS, VOLUME_COLUMNS
from breastssl.inference.dbt_merge import PRED_COLUMNS

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TEACHER_DEMO, STUDENT_DEMO = CONFIGS / "comoto_run_teacher_demo.yaml", CONFIGS / "comoto_run_student_demo.yaml"
runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """10 synthetic DBT exams (a test split with 2 lesion volumes) and 6 mammography exams (train + val)."""
    from breastssl.commands.synth import run_synth

    base = tmp_path_factory.mktemp("comoto_data")
    run_synth("dbt", base / "dbt", n=10, seed=0, fmt="npy", quiet=True)
    run_synth("mammo", base / "mammo", n=6, seed=0, fmt="npy", quiet=True)
    return base


def data_sets(data: Path, out: Path) -> list[str]:
    """--set arguments pointing a shipped recipe at the test data and a fresh out_dir (6 mammography exams have
    no test split: the teacher is scored on val)."""
    dbt, mammo = data / "dbt" / "manifest.csv", data / "mammo" / "manifest.csv"
    sets = [f"data.dbt.manifest={dbt}", f"data.mammo.manifest={mammo}", "data.mammo.test_split=val",
            f"train.out_dir={out}"]  # fmt: skip
    return [a for s in sets for a in ("--set", s)]


def tiny(data: Path, out: Path) -> list[str]:
    """data_sets + 3 steps of 4 items at 48×40 (no warm-up: as the experiment's schedule at 3 steps)."""
    sets = ["data.image_size=[48,40]", "train.steps=3", "train.batch_size=4", "train.log_every=1",
            "train.progress=false", "train.schedule.warmup_steps=0"]  # fmt: skip
    return data_sets(data, out) + [a for s in sets for a in ("--set", s)]


def train(*args: object) -> None:
    result = runner.invoke(app, ["train", *map(str, args)])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"


@pytest.fixture(scope="module")
def teacher(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "teacher"
    train("-c", TEACHER_DEMO, *tiny(data, out))
    return out


@pytest.fixture(scope="module")
def student(data, teacher) -> Path:
    out = teacher.parent / "student"
    train("-c", STUDENT_DEMO, *tiny(data, out), "--set", f"teacher.run={teacher}")
    return out


def test_teacher_run_folder(teacher):
    """comoto_teacher: mammography detection with ImPA; model.json, metrics.json (2-D FROC), predictions.csv."""
    from breastssl.run.folder import load_run

    card = json.loads((teacher / "model.json").read_text())
    assert card["family"] == "comoto" and card["strategy"] == "comoto_teacher" and card["modality"] == "MG"
    entry = card["models"]["model"]
    assert entry["name"] == "retinanet" and entry["kwargs"]["pretrained"] is False
    assert entry["kwargs"]["score_thresh"] == 0.001 and entry["kwargs"]["detections_per_img"] == 20
    assert card["input"] == {"size": [48, 40], "channels": 1, "views": ["image"]} and card["classes"] == {"0": "lesion"}
    metrics = json.loads((teacher / "metrics.json").read_text())
    assert metrics["evaluation"] == "mammo_froc" and metrics["test_images"] == 8 and metrics["test_lesions"] > 0
    assert 0 <= metrics["mean_sensitivity"] <= 1 and "mammography FROC" in metrics["headline"]
    assert metrics["impa"] is True and metrics["steps"] == 3
    pred = pd.read_csv(teacher / "predictions.csv")
    assert list(pred.columns) == IMAGE_COLUMNS and pred["image_id"].str.startswith("mg-").all()
    log = pd.read_json(teacher / "metrics.jsonl", lines=True)
    assert "loss_impa" in log.columns
    assert type(load_run(teacher).model).__name__ == "RetinaNetDetector"


def test_student_run_folder(student, teacher, data):
    """comoto (LsKD) from the teacher: paired batches, every test slice scored and merged, BCS-DBT FROC."""
    card = json.loads((student / "model.json").read_text())
    assert card["strategy"] == "comoto" and card["modality"] == "DBT"
    assert card["teacher"] == {"run": str(teacher.resolve()), "student_init": "teacher"}
    assert card["outputs"]["merge"] == {"iou": 0.3, "max_gap": 1, "max_per_volume": 20}
    metrics = json.loads((student / "metrics.json").read_text())
    assert metrics["evaluation"] == "dbt_froc" and metrics["test_volumes"] == 4 and metrics["test_lesion_volumes"] == 2
    assert metrics["batches"].startswith("paired") and metrics["dbt_positive_slices"] > 0
    keys = list(metrics["froc"])
    assert keys[0].startswith("scaled_") and keys[-1] == "raw_mean_sensitivity_positive"  # primary reading first
    assert metrics["mean_sensitivity"] == metrics["froc"]["scaled_mean_sensitivity_positive"]
    assert "BCS scale" in metrics["headline"]
    pred = pd.read_csv(student / "predictions.csv", dtype={"StudyUID": str})
    manifest = pd.read_csv(data / "dbt" / "manifest.csv").set_index("image_id")
    assert list(pred.columns) == VOLUME_COLUMNS and len(pred)
    assert (manifest.loc[pred["image_id"], "split"] == "test").all()
    assert (pred["Z"] + pred["Depth"] <= manifest.loc[pred["image_id"], "n_slices"].to_numpy()).all()
    log = pd.read_json(student / "metrics.jsonl", lines=True)
    assert {"loss_lskd", "lskd_teacher_entropy"} <= set(log.columns)


def test_student_equals_the_experiment_row(student, data, tmp_path):
    """The recipe's teacher + LsKD student are `experiment comoto`'s ImPA teacher + lskd_impa row: same batches,
    initial weights, training and scoring (shared code), so the same volume predictions on the same seed."""
    from breastssl.config import load_config
    from breastssl.experiments.comoto import ComotoExperimentConfig, run_comoto

    sets = [f"out_dir={tmp_path / 'exp'}", f"dbt_dir={data / 'dbt'}", f"mammo_dir={data / 'mammo'}",
            "rows=[lskd_impa]", "fractions=[1.0]", "teacher_steps=3", "student_steps=3", "batch_size=4",
            "size=[48,40]", "n_boot=10"]  # fmt: skip
    cfg = load_config(ComotoExperimentConfig, CONFIGS / "comoto_demo.yaml", sets)
    assert cfg.device == "auto"
    table = run_comoto(cfg)
    exp = pd.read_csv(tmp_path / "exp" / "seed0" / "frac1" / "lskd_impa" / "predictions_volume.csv")
    ours = pd.read_csv(student / "predictions.csv")
    pd.testing.assert_frame_equal(exp, ours[PRED_COLUMNS])
    froc = json.loads((student / "metrics.json").read_text())["froc"]
    assert table["scaled_mean_sensitivity_positive"].iloc[0] == pytest.approx(froc["scaled_mean_sensitivity_positive"])


def test_predict_and_export_the_student(student, data, tmp_path):
    """`predict --run` scores DBT volumes of a manifest like the run's own evaluation; `export --run` writes ONNX."""
    manifest = pd.read_csv(data / "dbt" / "manifest.csv")
    two = manifest[manifest["split"] == "test"].head(2)
    two = two.assign(path=[str(data / "dbt" / p) for p in two["path"]]).drop(columns=["rows", "columns"])
    two.to_csv(tmp_path / "two.csv", index=False)  # no rows/columns: the predictor reads the stored size itself
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", "--run", str(student), str(tmp_path / "two.csv"), "--out", str(out)])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    pred = pd.read_csv(out / "predictions.csv", dtype={"StudyUID": str})
    assert list(pred.columns) == VOLUME_COLUMNS and set(pred["image_id"]) <= set(two["image_id"])
    own = pd.read_csv(student / "predictions.csv", dtype={"StudyUID": str})
    own = own[own["image_id"].isin(set(two["image_id"]))].reset_index(drop=True)
    pd.testing.assert_frame_equal(pred, own, atol=1e-4, rtol=1e-5)
    assert {p.stem for p in (out / "overlays").glob("*.png")} == set(pred["image_id"])
    assert json.loads((out / "info.json").read_text())["volumes"] == 2

    onnx = tmp_path / "onnx"
    result = runner.invoke(app, ["export", "--run", str(student), "--out", str(onnx)])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    meta = json.loads((onnx / "export.json").read_text())
    (entry,) = meta["models"]
    assert meta["run_type"] == "comoto" and entry["input_shape"] == [1, 1, 48, 40]
    assert entry["parity"]["max_abs_diff"] < 1e-4


@pytest.mark.parametrize(
    "recipe,extra",
    [
        ("teacher", []),
        ("student", []),
        ("student", ["strategy.name=image_kd"]),
        ("student", ["strategy.name=pretraining", "teacher.student_init=scratch", "teacher.run=null"]),
    ],
    ids=["teacher", "comoto", "image_kd", "dbt_only"],
)
def test_dry_runs_of_the_shipped_recipes(recipe, extra, data, teacher, tmp_path):
    """The demo recipes with only the data paths (and teacher.run) set: valid, one batch, nothing written."""
    out = tmp_path / "dry"
    config = TEACHER_DEMO if recipe == "teacher" else STUDENT_DEMO
    args = ["train", "-c", str(config), "--dry-run", *data_sets(data, out)]
    if recipe == "student":
        args += ["--set", f"teacher.run={teacher}"]  # the tiny teacher has the demo's detector (only smaller images)
    args += [a for s in extra for a in ("--set", s)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert "nothing was trained or written" in result.output and "first_loss" in result.output
    assert ("dbt." if recipe == "student" else "image:") in result.output  # paired batches name their halves
    assert not out.exists()


def test_paper_recipe_is_valid():
    """The paper's settings type-check (a dry run would download ResNet-50 weights and needs 2048×1024 images)."""
    from breastssl.run.config import load_run_config

    cfg = load_run_config(CONFIGS / "comoto_run_paper.yaml")
    assert cfg.family == "comoto" and cfg.strategy.name == "comoto" and cfg.model.backbone == "resnet50"
    assert tuple(cfg.data.image_size) == (2048, 1024) and cfg.model.anchor_sizes is None and not cfg.model.fpn
    assert (cfg.strategy.temperature, cfg.strategy.alpha, cfg.strategy.impa_beta) == (4.0, 2.0, 2.0)
    assert cfg.train.optim.name == "sgd" and cfg.train.optim.lr == 0.01 and cfg.train.batch_size == 8


def test_errors_name_the_key_or_file(data, teacher, student, tmp_path, capsys):
    """A student without teacher.run, a teacher.run that is no teacher or another detector, data without boxes:
    exit 2 with one line naming the key or file, before anything is trained or written."""
    out = tmp_path / "never"
    base = ["train", "-c", str(STUDENT_DEMO), "--dry-run", *data_sets(data, out)]

    def error(*sets: str) -> str:
        code = main([*base, *(a for s in sets for a in ("--set", s))])
        err = capsys.readouterr().err
        assert code == 2, err
        return err

    err = error("teacher.run=null")
    assert "needs teacher.run" in err and "comoto_teacher" in err
    assert "not a comoto_teacher run" in error(f"teacher.run={student}")
    assert "does not exist" in error(f"teacher.run={tmp_path / 'nowhere'}")
    assert "model.width: 8 there, 4 here" in error(f"teacher.run={teacher}", "model.width=4")
    # no boxes: an empty lesions table, a lesions file that is not there, a manifest without the stored size
    (tmp_path / "empty.csv").write_text("image_id,slice,x,y,w,h\n")
    err = error(f"teacher.run={teacher}", f"data.dbt.lesions={tmp_path / 'empty.csv'}")
    assert "manifest.csv" in err and "has a lesion box" in err
    assert "does not exist" in error(f"teacher.run={teacher}", f"data.mammo.lesions={tmp_path / 'gone.csv'}")
    manifest = pd.read_csv(data / "dbt" / "manifest.csv")
    manifest.drop(columns=["rows"]).to_csv(data / "dbt" / "no_rows.csv", index=False)
    err = error(f"teacher.run={teacher}", f"data.dbt.manifest={data / 'dbt' / 'no_rows.csv'}")
    assert "no_rows.csv" in err and "missing column(s) rows" in err
    assert not out.exists()
