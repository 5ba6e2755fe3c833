"""`breastssl train` with the mammography self-training recipe (family mammo) on 8 synthetic exams, then
`predict --run` and `export --run` of the run folder it writes; the shipped demo recipe's dry run; bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mammo_fixtures import synth_mammo_with_labels
from typer.testing import CliRunner

from breastssl.cli import app, main

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "mammo_self_training_run_demo.yaml"
SIZE = (48, 32)
runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """8 synthetic exams (32 images: 4 fully annotated + 20 weak train images, 4 test) and soft labels per exam × side
    written from the truth (0.97 / 0.03: the test is of the recipe, not of the report labeller)."""
    return synth_mammo_with_labels(tmp_path_factory.mktemp("mammo") / "data")


def _data_sets(data: Path, out: Path) -> list[str]:
    return ["--set", f"data.manifest={data / 'manifest.csv'}", "--set", f"data.labels={data / 'labels.csv'}",
            "--set", f"train.out_dir={out}"]  # fmt: skip


def _tiny(*extra: str) -> list[str]:
    """A few seconds of training: 48×32 images, 2 batches of 6 per epoch, 1 + 1 × 2 epochs, mining every epoch."""
    sets = [f"data.image_size=[{SIZE[0]},{SIZE[1]}]", "data.steps_per_epoch=2", "strategy.stage1_epochs=1",
            "strategy.rounds=1", "strategy.round_epochs=2", "strategy.p0_every=1", "strategy.crf.backend=numpy",
            "strategy.crf.workers=1", "train.batch_size=6", "train.ckpt_every=2", "train.log_every=1",
            "train.progress=false", "train.steps=3", *extra]  # fmt: skip
    return [arg for s in sets for arg in ("--set", s)]


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "st"
    result = runner.invoke(app, ["train", "-c", str(DEMO), *_data_sets(data, out), *_tiny()])
    assert result.exit_code == 0, result.output
    assert "FROC mean sensitivity" in result.output and "4 images" in result.output
    return out


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_demo_recipe_dry_run_validates_and_writes_nothing(data, tmp_path):
    """(a) + (f): the shipped demo recipe on the tiny data: one batch, one loss, the steps planned; nothing written."""
    before = _files(data)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "-c", str(DEMO), *_data_sets(data, out), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "nothing was trained or written" in result.output
    assert '"train_steps": 560' in result.output and '"round_steps": 40' in result.output  # (16 + 2 × 6) × 20
    assert "image: (12, 1, 96, 64)" in result.output and '"weak": 20' in result.output
    assert not out.exists() and _files(data) == before and not list(tmp_path.iterdir())
    # without weak images no labels file is needed
    alone = runner.invoke(app, ["train", "-c", str(DEMO), *_data_sets(data, out), "--set", "data.labels=null",
                                "--set", "data.use_weak=false", "--dry-run"])  # fmt: skip
    assert alone.exit_code == 0, alone.output
    assert '"weak": 0' in alone.output and '"full": 4' in alone.output and not out.exists()


def test_training_writes_the_run_folder(run):
    """(b): model.json (the one run-folder format), metrics.json with the FROC and the mining, the predictions."""
    from breastssl.run.folder import load_run

    card = json.loads((run / "model.json").read_text())
    assert card["format"] == "breastssl-run/1" and card["family"] == "mammo" and card["strategy"] == "self_training"
    assert card["input"] == {"size": list(SIZE), "channels": 1, "views": ["image", "contralateral"]}
    assert card["models"]["model"]["name"] == "bilateral_two_view" and card["lesion_threshold"] == 0.25
    assert {"logits", "mask_logits"} <= set(card["outputs"]) and card["mask"]["crf"]["backend"] == "numpy"
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["sens"]) == {"0.1", "0.2", "0.5", "1"} and 0 <= metrics["mean"] <= 1
    assert metrics["steps"] == metrics["train_steps"] == 6 and metrics["round_steps"] == 2  # (1 + 1 × 2) × 2
    assert "train.steps=3 replaced by 6" in metrics["steps_note"]
    assert [h["p0"] for h in metrics["mining"]] == [0.95, 0.85] and "lesions_below_threshold" in metrics
    assert metrics["headline"].startswith("FROC mean sensitivity") and metrics["images"]["test"] == 4
    regions = pd.read_csv(run / "predictions_regions.csv")
    assert {"image_id", "x", "y", "w", "h", "score", "image_score"} <= set(regions.columns)
    assert regions["image_id"].nunique() == 4 and (run / "test_detections.npz").is_file()
    loaded = load_run(run)
    assert loaded.checkpoint is not None and loaded.checkpoint.name.endswith("6.pt")
    config = (run / "config.yaml").read_text()
    assert "steps: 6" in config and "round_steps: 2" in config and "name: adam" in config


def test_predict_run_writes_maps_and_regions(run, data, tmp_path):
    """(c): `breastssl predict --run RUN IMAGES`: one probability map and CRF mask per image, predictions.csv."""
    images = sorted((data / "images" / "mg-e000006").glob("*.npy"))
    out = tmp_path / "pred"
    assert main(["predict", "--run", str(run), *map(str, images), "--out", str(out)]) == 0
    df = pd.read_csv(out / "predictions.csv")
    assert set(df["image"]) == set(map(str, images)) and df["image_score"].between(0, 1).all()
    for f in images:
        assert np.load(out / f"{f.stem}_prob.npy").shape == SIZE and (out / f"{f.stem}_mask.png").is_file()
    # an occupied output folder is kept unless --overwrite
    assert main(["predict", "--run", str(run), str(images[0]), "--out", str(out)]) == 2
    assert len(pd.read_csv(out / "predictions.csv")) == len(df)


def test_export_run_to_onnx(run, tmp_path):
    """(d): `breastssl export --run RUN`: two inputs (image, contralateral aux), outputs as the torch model's."""
    import torch

    from breastssl.export import OnnxModel
    from breastssl.run.folder import load_run

    out = tmp_path / "onnx"
    result = runner.invoke(app, ["export", "--run", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "export.json").read_text())
    (entry,) = meta["models"]
    assert meta["run_type"] == "mammo" and entry["inputs"] == ["image", "aux"]
    assert entry["input_shape"][1:] == [1, *SIZE] and entry["parity"]["max_abs_diff"] < 1e-4
    gen = torch.Generator().manual_seed(5)
    x, aux = torch.rand(3, 1, *SIZE, generator=gen), torch.rand(3, 1, *SIZE, generator=gen)
    with torch.no_grad():
        ref = load_run(run).model(x, aux)["mask_logits"]
    assert (OnnxModel(out / "model.onnx")(x, aux)["mask_logits"] - ref).abs().max() < 1e-4


@pytest.mark.parametrize(
    "edit,expected",
    [
        (lambda df: df.rename(columns={"soft_label": "prob"}), ["missing column(s) soft_label"]),
        (lambda df: df.assign(soft_label=df["soft_label"].where(df.index != 3, 1.7)), ["soft_label", "line(s) 5"]),
        (lambda df: pd.concat([df, df.iloc[[0]]]), ["must be unique"]),
    ],
    ids=["missing_column", "out_of_range", "duplicate"],
)
def test_bad_labels_file_is_a_user_error(data, tmp_path, capsys, edit, expected):
    """(e): exit code 2, a message naming the labels file and the column (or line), nothing written."""
    bad = tmp_path / "bad_labels.csv"
    edit(pd.read_csv(data / "labels.csv", dtype={"exam_id": str})).to_csv(bad, index=False)
    out = tmp_path / "run"
    args = ["train", "-c", str(DEMO), *_data_sets(data, out), "--set", f"data.labels={bad}", "--dry-run"]
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())  # the console wraps long lines
    assert str(bad) in err and all(e in err for e in expected), err
    assert not out.exists()


def test_missing_labels_and_no_full_images_are_user_errors(data, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "-c", str(DEMO), *_data_sets(data, out), "--dry-run"]
    assert main([*base, "--set", "data.labels=null"]) == 2
    assert "need report soft labels" in capsys.readouterr().err
    assert main([*base, "--set", f"data.labels={tmp_path / 'nope.csv'}"]) == 2
    assert "nope.csv" in capsys.readouterr().err
    assert main([*base, "--set", "data.full_annotation=weak"]) == 2
    assert "no fully annotated image" in " ".join(capsys.readouterr().err.split())
    assert not out.exists()


def test_full_and_weak_fractions_draw_nested_exam_subsets(data):
    """data.full_fraction / weak_fraction: a smaller share's exams are part of every larger one's, drawn per
    subset_seed; weak_fraction 0 uses no weak image."""
    from breastssl.run.recipes.mammo import DataConfig
    from breastssl.run.recipes.mammo_data import read_mammo_data

    def exams(**kw):
        d = read_mammo_data(DataConfig(manifest=str(data / "manifest.csv"), labels=str(data / "labels.csv"),
                                       image_size=SIZE, **kw))  # fmt: skip
        t = d.pairs.table["exam_id"].astype(str).to_numpy()
        return set(t[d.full_idx]), set(t[d.weak_idx])

    all_full, all_weak = exams()
    half_full, half_weak = exams(full_fraction=0.5, weak_fraction=0.5)
    assert half_full <= all_full and half_weak < all_weak and half_full and half_weak  # one full exam: kept
    small_full, small_weak = exams(full_fraction=0.25, weak_fraction=0.25)
    assert small_full <= half_full and small_weak <= half_weak  # nested
    assert exams(full_fraction=0.5, weak_fraction=0.5, subset_seed=0) == (half_full, half_weak)  # reproducible
    assert exams(weak_fraction=0.0)[1] == set()
