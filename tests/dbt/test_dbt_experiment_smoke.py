"""`experiment dbt-selectivekd` and `experiment annotation-efficiency` end to end at toy scale (real runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from breastssl.cli import app, main
from breastssl.commands.synth import run_synth
from breastssl.experiments.annotation_efficiency import budget_manifest

TINY = ["data.image_size=[32,24]", "train.steps=2", "train.batch_size=8", "train.ckpt_every=2",
        "train.tensorboard=false", "train.log_every=1"]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("dbt") / "data"
    run_synth("dbt", d, n=10, seed=0, fmt="npy", quiet=True)
    return d


def _sets(data: Path) -> str:
    items = [f"data.manifest={data / 'manifest.csv'}", *TINY]
    return "set=[" + ",".join(f'"{i}"' for i in items) + "]"


@pytest.fixture(scope="module")
def table1(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exp") / "t1"
    args = ["experiment", "dbt-selectivekd", "--set", f"out_dir={out}", "--set", "seeds=[0]",
            "--set", "settings=[baseline,selective_kd_weak]", "--set", _sets(data), "--set", "jobs=2"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return out


def test_table1_runs_teacher_then_student(table1):
    student = json.loads((table1 / "seed0" / "selective_kd_weak" / "metrics.json").read_text())
    assert student["strategy"] == "selective_kd_weak" and student["threshold"] == 0.1
    cfg = (table1 / "seed0" / "selective_kd_weak" / "config.yaml").read_text()
    assert f"teacher_checkpoint: {table1 / 'seed0' / 'baseline'}" in cfg
    aucs = pd.read_csv(table1 / "aucs.csv")
    assert set(aucs["setting"]) == {"baseline", "selective_kd_weak"}
    assert {"overall", "Hologic"} <= set(aucs["group"])
    tests = pd.read_csv(table1 / "tests.csv")
    assert set(zip(tests["a"], tests["b"], strict=True)) == {("selective_kd_weak", "baseline")}
    html = (table1 / "report.html").read_text()
    assert "SelectiveKD*" in html and "Seed 0: AUC" in html and "claims" in html


def test_finished_runs_are_not_trained_again(table1, data):
    ckpt = table1 / "seed0" / "baseline" / "metrics.json"
    before = ckpt.stat().st_mtime_ns
    args = ["experiment", "dbt-selectivekd", "--set", f"out_dir={table1}", "--set", "seeds=[0]",
            "--set", "settings=[baseline,selective_kd_weak]", "--set", _sets(data)]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "done before, skipped" in res.output and ckpt.stat().st_mtime_ns == before


def test_annotation_efficiency_reuses_full_budget(table1, data, tmp_path):
    out = tmp_path / "ae"
    args = ["experiment", "annotation-efficiency", "--set", f"out_dir={out}", "--set", "budgets=[0.5,1.0]",
            "--set", "settings=[baseline,selective_kd_weak]", "--set", _sets(data),
            "--set", f"reuse_from={table1}", "--set", "jobs=2"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "budget100/seed0/baseline: done before, skipped" in res.output  # the Table-1 run is the 100% point
    curve = pd.read_csv(out / "curve.csv")
    assert sorted(curve["budget"].unique()) == [0.5, 1.0]
    man = pd.read_csv(out / "budget050" / "manifest.csv")
    assert (man["annotation"] == "full").sum() < (pd.read_csv(data / "manifest.csv")["annotation"] == "full").sum()
    assert (out / "report.html").is_file() and json.loads((out / "matching_budget.json").read_text())["target"]


def test_bad_settings_fail_before_training(tmp_path, data, capsys):
    args = ["experiment", "dbt-selectivekd", "--set", f"out_dir={tmp_path / 'x'}", "--set", "settings=[selectve_kd]",
            "--set", _sets(data)]  # fmt: skip
    assert main(args) == 2
    assert "selectve_kd" in capsys.readouterr().err
    assert not (tmp_path / "x" / "seed0").exists()


def test_budget_manifest_keeps_breast_labels(data):
    man = pd.read_csv(data / "manifest.csv")
    sub, counts = budget_manifest(man, data, 0.25, seed=0)
    dropped = (man["annotation"] == "full") & (sub["annotation"] == "weak")
    assert dropped.any() and (sub.loc[dropped, "breast_label"] == man.loc[dropped, "breast_label"]).all()
    assert counts["annotated exams"] < counts["of"]
    assert all(Path(p).is_absolute() for p in sub["path"])
