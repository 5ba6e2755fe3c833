"""`breastssl train` end to end on a tiny synthetic DBT set: a teacher, then a SelectiveKD student."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from breastssl.cli import main
from breastssl.commands.synth import run_synth

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "dbt_selectivekd_demo.yaml"


@pytest.fixture(scope="module")
def dbt(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "dbt"
    run_synth("dbt", out, n=12, seed=0, fmt="npy", quiet=True)
    return out


def train(dbt: Path, out: Path, *extra: str) -> int:
    common = [
        f"data.manifest={dbt / 'manifest.csv'}", "data.image_size=[40,32]", "train.steps=4", "train.batch_size=8",
        "train.ckpt_every=2", "train.progress=false", "train.tensorboard=false", f"train.out_dir={out}",
        "model.decoder_width=8",
    ]  # fmt: skip
    args = ["train", "--config", str(CONFIG)]
    for item in [*common, *extra]:
        args += ["--set", item]
    return main(args)


def test_teacher_then_selective_kd_student(dbt, tmp_path):
    teacher = tmp_path / "teacher"
    assert train(dbt, teacher) == 0
    for name in ["config.yaml", "metrics.jsonl", "metrics.json", *(f"predictions_{k}.csv" for k in
                 ("slice", "stack", "breast", "exam"))]:  # fmt: skip
        assert (teacher / name).is_file(), name
    assert sorted(p.name for p in (teacher / "checkpoints").iterdir()) == ["step_00000002.pt", "step_00000004.pt"]
    metrics = json.loads((teacher / "metrics.json").read_text())
    assert metrics["strategy"] == "supervised" and set(metrics["levels"]) == {"stack", "breast", "exam"}
    assert "Hologic" in metrics["levels"]["stack"]["per_vendor"]

    student = tmp_path / "student"
    code = train(
        dbt, student, "strategy.name=selective_kd", f"strategy.teacher_checkpoint={teacher}", "strategy.threshold=0.0"
    )
    assert code == 0
    metrics = json.loads((student / "metrics.json").read_text())
    assert metrics["strategy"] == "selective_kd" and metrics["threshold"] == 0.0
    assert metrics["train_slices"].get("kd_only", 0) > 0  # T = 0: every pool slice is selected
    scores = pd.read_csv(student / "teacher_scores.csv")
    assert scores["score"].between(0, 1).all()
    slices = pd.read_csv(student / "predictions_slice.csv")
    assert {"image_id", "slice", "score"} <= set(slices.columns)
    logged = [json.loads(line) for line in (student / "metrics.jsonl").read_text().splitlines()]
    assert {"loss_kd_cls", "loss_kd_seg", "selected_fraction"} <= set(logged[-1])


def test_a_kd_strategy_without_a_teacher_is_a_clear_error(dbt, tmp_path):
    assert train(dbt, tmp_path / "x", "strategy.name=kd") == 2
