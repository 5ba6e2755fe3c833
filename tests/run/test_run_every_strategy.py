"""Every registered strategy trains through ``breastssl train`` (issue 16), generated from the registry.

For each strategy: 2 optimiser steps of its family's demo recipe on tiny synthetic data read from a manifest,
then ``breastssl predict --run``, ``breastssl export --run`` and ``breastssl evaluate`` (on the run's own test
predictions) on the run folder it wrote. A strategy whose
family has no entry in ``FAMILIES`` fails here, so a new method cannot land without this path working.
Distilling strategies get their teacher from a supervised (``dbt``) or ``comoto_teacher`` run made once.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from breastssl.cli import app
from breastssl.strategies import list_strategies, strategy_class
from breastssl.strategies.registry import strategy_entry

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
runner = CliRunner()
COMMON = ["train.steps=2", "train.log_every=1", "train.ckpt_every=2", "train.progress=false", "train.tensorboard=false"]
FAMILIES = {  # family → (demo recipe, --set items making it tiny)
    "dbt": ("dbt_selectivekd_demo.yaml", ["data.image_size=[32,24]", "train.batch_size=8", "data.test_split=val"]),
    "mammo": ("mammo_self_training_run_demo.yaml", [
        "data.image_size=[48,32]", "data.steps_per_epoch=1", "strategy.stage1_epochs=1", "strategy.rounds=1",
        "strategy.round_epochs=1", "strategy.p0_every=1", "strategy.crf.backend=numpy", "strategy.crf.workers=1",
        "train.batch_size=6"]),
    "us": ("us_mean_teacher_run_demo.yaml", [
        "data.basic_fraction=null", "detector.steps=2", "detector.freeze_steps=1", "detector.batch_size=2",
        "detector.min_size=64", "detector.max_size=96", "recognition.eval_every=2", "recognition.crop_size=16",
        "recognition.min_score=0", "model.width=4", "train.batch_size=4"]),
    "comoto": ("comoto_run_student_demo.yaml", [
        "data.image_size=[48,40]", "data.mammo.test_split=val", "train.batch_size=4",
        "train.schedule.warmup_steps=0"]),
}  # fmt: skip


EVALUATE = {
    "dbt": "predictions_breast.csv",
    "mammo": "predictions_image.csv",
    "us": "predictions_image.csv",
    "comoto": "predictions_boxes.csv",
}  # the run's prediction file `breastssl evaluate` reads
MANIFEST = {"dbt": "dbt", "mammo": "mammo", "us": "us", "comoto": "dbt"}
SPLIT = {"dbt": "val", "mammo": "test", "us": "test", "comoto": "test"}


def sets(items: list[str]) -> list[str]:
    return [a for s in items for a in ("--set", s)]


def train(recipe: str, items: list[str]) -> None:
    result = runner.invoke(app, ["train", "-c", str(CONFIGS / recipe), *sets(items)])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Tiny synthetic sets: DBT (8 exams), mammography (8 exams + soft labels from the truth), ultrasound (40)."""
    from breastssl.commands.synth import run_synth

    base = tmp_path_factory.mktemp("every_strategy")
    run_synth("dbt", base / "dbt", n=8, seed=0, fmt="npy", quiet=True)
    run_synth("mammo", base / "mammo", n=8, seed=0, fmt="npy", quiet=True)
    run_synth("us", base / "us", n=40, seed=0, fmt="npy", quiet=True, workers=1)
    man = pd.read_csv(base / "mammo" / "manifest.csv", dtype=str)
    sides = man.groupby(["exam_id", "laterality"])["mass_label"].agg(lambda s: (s == "positive").any())
    labels = sides.rename("positive").reset_index()
    labels["soft_label"] = np.where(labels["positive"], 0.97, 0.03)  # the recipe is tested, not the labeller
    labels[["exam_id", "laterality", "soft_label"]].to_csv(base / "mammo" / "labels.csv", index=False)
    return {"root": base, "dbt": base / "dbt", "mammo": base / "mammo", "us": base / "us"}


def data_items(family: str, data: dict[str, Path]) -> list[str]:
    """The --set items pointing a family's recipe at the tiny data."""
    if family == "dbt":
        return [f"data.manifest={data['dbt'] / 'manifest.csv'}"]
    if family == "mammo":
        return [f"data.manifest={data['mammo'] / 'manifest.csv'}", f"data.labels={data['mammo'] / 'labels.csv'}"]
    if family == "us":
        return [f"data.manifest={data['us'] / 'manifest.csv'}"]
    return [
        f"data.dbt.manifest={data['dbt'] / 'manifest.csv'}",
        f"data.mammo.manifest={data['mammo'] / 'manifest.csv'}",
    ]


@pytest.fixture(scope="module")
def teachers(data) -> dict[str, Path]:
    """A supervised DBT run (the KD teachers) and a comoto_teacher run (the CoMoTo students' teacher)."""
    runs = data["root"] / "teachers"
    recipe, tiny = FAMILIES["dbt"]
    train(recipe, [*data_items("dbt", data), *tiny, *COMMON, f"train.out_dir={runs / 'dbt'}"])
    train("comoto_run_teacher_demo.yaml", [*data_items("comoto", data), *FAMILIES["comoto"][1], *COMMON,
                                           f"train.out_dir={runs / 'comoto'}"])  # fmt: skip
    return {"dbt": runs / "dbt", "comoto": runs / "comoto"}


def teacher_items(name: str, teachers: dict[str, Path]) -> list[str]:
    family = strategy_entry(name).family
    if family == "dbt" and (strategy_class(name).uses_teacher):
        return [f"strategy.teacher_checkpoint={teachers['dbt']}"]
    if family == "comoto":
        return ["teacher.run=null"] if name == "comoto_teacher" else [f"teacher.run={teachers['comoto']}"]
    return []


def predict_inputs(family: str, data: dict[str, Path]) -> list[str]:
    """What predict reads: DBT volumes through their manifest, mammograms and ultrasound frames as files."""
    if family in ("dbt", "comoto"):
        man = pd.read_csv(data["dbt"] / "manifest.csv", dtype=str)
        one = data["root"] / "predict_dbt.csv"
        man.head(2).assign(path=[str(data["dbt"] / p) for p in man.head(2)["path"]]).to_csv(one, index=False)
        return [str(one)]
    folder = data[family]
    return [str(p) for p in sorted(folder.rglob("*.npy"))[:2]]


@pytest.mark.parametrize("name", list_strategies())
def test_every_strategy_trains_predicts_and_exports(name, data, teachers, tmp_path):
    family = strategy_entry(name).family
    assert family in FAMILIES, f"strategy {name!r}: family {family!r} has no demo recipe in this test"
    recipe, tiny = FAMILIES[family]
    recipe = "comoto_run_teacher_demo.yaml" if name == "comoto_teacher" else recipe
    out = tmp_path / "run"
    items = [*data_items(family, data), *tiny, *COMMON, f"strategy.name={name}", f"train.out_dir={out}"]
    train(recipe, [*items, *teacher_items(name, teachers)])
    card = json.loads((out / "model.json").read_text())
    assert card["format"] == "breastssl-run/1" and card["family"] == family and card["strategy"] == name
    assert (out / "metrics.json").is_file() and (out / "config.yaml").is_file()

    pred = runner.invoke(app, ["predict", "--run", str(out), "--out", str(tmp_path / "pred"),
                               *predict_inputs(family, data)])  # fmt: skip
    assert pred.exit_code == 0, f"{pred.output}\n{pred.exception!r}"
    exported = runner.invoke(app, ["export", "--run", str(out), "--out", str(tmp_path / "onnx")])
    assert exported.exit_code == 0, f"{exported.output}\n{exported.exception!r}"
    meta = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert meta["run_type"] == family and meta["models"]

    preds, manifest, split = EVALUATE[family], data[MANIFEST[family]] / "manifest.csv", SPLIT[family]
    if name == "comoto_teacher":  # its test split is mammography (val here, as the recipe was told)
        preds, manifest, split = "predictions.csv", data["mammo"] / "manifest.csv", "val"
    args = [
        "evaluate",
        str(out / preds),
        "--manifest",
        str(manifest),
        "--out",
        str(tmp_path / "eval"),
        "--split",
        split,
    ]
    evaluated = runner.invoke(app, [*args, "--level", "breast"] if family == "dbt" else args)
    assert evaluated.exit_code == 0, f"{evaluated.output}\n{evaluated.exception!r}"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_trains_with_augment_on_device(family, data, teachers, tmp_path):
    """train.augment_on=device through `breastssl train`: each family's batches augmented by its device transform
    (DBT slices, mammography pairs in the strategy, ultrasound crop views, CoMoTo DBT/mammography pairs + boxes)."""
    recipe, tiny = FAMILIES[family]
    name = {"dbt": "selective_kd", "mammo": "self_training", "us": "mean_teacher", "comoto": "comoto"}[family]
    out = tmp_path / "run"
    items = [*data_items(family, data), *tiny, *COMMON, f"strategy.name={name}", f"train.out_dir={out}",
             "train.augment_on=device"]  # fmt: skip
    if family == "comoto":  # the full augmentation (rotation, photometry), boxes following
        items += ["data.augment.rotate=0.5", "data.augment.vflip=0.5"]
    train(recipe, [*items, *teacher_items(name, teachers)])
    metrics = json.loads((out / "metrics.json").read_text())
    assert str(metrics["augment_on"]).startswith("device"), metrics.get("augment_on")
