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


def test_tune_on_val_then_table1_with_an_ablation(data, tmp_path):
    """The tune stage picks composition / student_init on val; an ablation re-trains with one change."""
    out = tmp_path / "tuned"
    args = ["experiment", "dbt-selectivekd", "--set", f"out_dir={out}", "--set", "seeds=[0]",
            "--set", "settings=[baseline,selective_kd_weak]", "--set", _sets(data), "--set", "jobs=2",
            "--set", "tune={seeds: [0], composition: [fixed, capped], student_init: [model], "
                     "thresholds: {selective_kd_weak: [0.1, 0.3]}}",
            "--set", "ablations=[{name: nocal, settings: [selective_kd_weak], set: [strategy.calibrate=false]}]",
            "--set", "n_boot=100"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    tune = pd.read_csv(out / "tune.csv")
    cands = tune[tune["setting"] != "baseline"]
    assert set(cands["composition"]) == {"fixed", "capped"} and set(cands["setting"]) == {"selective_kd_weak"}
    assert (out / "tune" / "seed0" / "baseline_val.json").is_file()  # the teacher's val AUC, the reference
    for mode in ("fixed", "capped"):  # candidates are scored on val, never on test
        cand = (out / "tune" / "seed0" / "selective_kd_weak" / f"{mode}-model" / "config.yaml").read_text()
        assert "test_split: val" in cand and f"mode: {mode}" in cand
    choice = json.loads((out / "tune_choice.json").read_text())["selective_kd_weak"]
    assert choice["threshold"] in (0.1, 0.3)  # T is chosen on val too, with the chosen composition
    assert "threshold: 0.3" in (out / "tune" / "seed0" / "selective_kd_weak" / f"{choice['composition']}-model-T0.3"
                                / "config.yaml").read_text()  # fmt: skip
    main_cfg = (out / "seed0" / "selective_kd_weak" / "config.yaml").read_text()
    assert f"mode: {choice['composition']}" in main_cfg and "test_split: test" in main_cfg
    assert f"threshold: {choice['threshold']}" in main_cfg
    ablated = out / "ablation" / "nocal" / "seed0" / "selective_kd_weak"
    assert "calibrate: false" in (ablated / "config.yaml").read_text()
    shift = json.loads((out / "seed0" / "baseline" / "calibration.json").read_text())["logit_shift"]
    calibrated = pd.read_csv(out / "seed0" / "selective_kd_weak" / "teacher_scores.csv")
    raw = pd.read_csv(ablated / "teacher_scores.csv")
    assert calibrated["logit_shift"].eq(shift).all() and raw["logit_shift"].eq(0.0).all()
    assert raw["score"].to_numpy() == pytest.approx(raw["score_raw"].to_numpy(), rel=1e-6)  # float32 vs 64 text
    assert calibrated["score_raw"].to_numpy() == pytest.approx(raw["score_raw"].to_numpy(), abs=1e-6)
    effects = pd.read_csv(out / "effects.csv")
    assert list(effects.columns[:3]) == ["a", "b", "group"]
    assert (out / "sweeps.csv").is_file() and (out / "calibration.csv").is_file()
    html = (out / "report.html").read_text()
    assert "Choices made on the validation split" in html and "What T admits" in html and "Ablation nocal" in html


def test_annotation_budgets_without_students_at_full_train_only_the_target_there(data, tmp_path):
    from breastssl.experiments.annotation_efficiency import AnnotationEfficiencyConfig, curve_specs

    sets = [f"data.manifest={data / 'manifest.csv'}", *TINY]
    cfg = AnnotationEfficiencyConfig(out_dir=str(tmp_path), set=sets, budgets=[0.5, 1.0], seeds=[0, 1],
                                     students_at_full=False)  # fmt: skip
    specs, _ = curve_specs(cfg, tmp_path)
    names = [s.name for s in specs]
    assert "budget100/seed1/baseline" in names and not any(n.startswith("budget100/seed0/selective") for n in names)
    assert len(names) == 2 * (3 + 1)  # per seed: 3 settings at 50%, the Baseline at 100%
    assert names.index("budget100/seed0/baseline") < names.index("budget050/seed1/baseline")  # seed-major
