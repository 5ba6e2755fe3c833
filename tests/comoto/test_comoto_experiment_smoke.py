"""`breastssl experiment comoto` end to end at the smallest scale: synthesised data, every row, a report."""

from __future__ import annotations

import math

import pandas as pd

from breastssl.cli import main


def test_experiment_runs_every_row_and_writes_the_report(tmp_path):
    out = tmp_path / "run"
    args = ["experiment", "comoto", "--config", "configs/comoto_demo.yaml"]
    sets = [f"out_dir={out}", f"dbt_dir={tmp_path / 'dbt'}", f"mammo_dir={tmp_path / 'mammo'}", "synth_n=[10,6]",
            "teacher_steps=2", "student_steps=2", "batch_size=4", "size=[48,40]", "fractions=[1.0,0.5]",
            "n_boot=50"]  # fmt: skip
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    table = pd.read_csv(out / "results.csv")
    assert set(table["row"]) == {"dbt_only", "pretraining", "image_kd", "lskd", "lskd_impa"}
    assert len(table) == 10 and table["scaled_mean_sensitivity_positive"].between(0, 1).all()
    assert "LsKD" in (out / "report.html").read_text() or "lskd" in (out / "report.html").read_text()
    assert (out / "seed0" / "frac1" / "lskd" / "predictions_volume.csv").is_file()
    # the BCS-scale reading is the primary one: first in results.csv and in the report's table
    sens = [c for c in table.columns if c.endswith("mean_sensitivity_positive")]
    assert sens == ["scaled_mean_sensitivity_positive", "raw_mean_sensitivity_positive"]
    report = (out / "report.html").read_text()
    assert report.index("(BCS scale, primary)") < report.index("(raw px, secondary)")
    # LsKD runs log the teacher's 9-point entropy and the LsKD loss per logged step, and the run's mean of both
    log = pd.read_json(out / "seed0" / "frac1" / "lskd" / "metrics.jsonl", lines=True)
    assert {"loss_lskd", "lskd_teacher_entropy", "lskd_entropy_max"} <= set(log.columns)
    entropy = log["lskd_teacher_entropy"].dropna()  # absent on a step whose mammography batch has no box
    assert len(entropy) and (entropy <= math.log(9) + 1e-6).all()
    assert ((log["lskd_entropy_max"] - math.log(9)).abs() < 1e-6).all()  # logged as float32
    lskd = table[table["row"].isin(["lskd", "lskd_impa"])]
    assert lskd["train_mean_lskd_teacher_entropy"].between(0, math.log(9) + 1e-6).all()
    assert (lskd["train_mean_loss_lskd"] >= 0).all()
    assert table.loc[table["row"] == "dbt_only", "train_mean_lskd_teacher_entropy"].isna().all()
    assert "teacher 9-point entropy" in report
    # the effects: each row's mean over seeds with a seeds × test-exams CI, the paired effects, the claims
    rows_ci = pd.read_csv(out / "rows_ci.csv", dtype={"fraction": str})
    assert len(rows_ci) == 20 and set(rows_ci["reading"]) == {"scaled", "raw"}
    assert (rows_ci["ci_low"] <= rows_ci["ci_high"] + 1e-12).all()
    scaled = rows_ci[rows_ci["reading"] == "scaled"].set_index(["fraction", "row"])["mean"]  # one seed: the run
    runs = table.assign(fraction=table["fraction"].map("{:g}".format)).set_index(["fraction", "row"])
    assert (scaled - runs["scaled_mean_sensitivity_positive"]).abs().max() < 1e-9
    effects = pd.read_csv(out / "effects.csv", dtype={"fraction": str})
    assert {"0.5 − 1"} <= set(effects["fraction"]) and set(effects["reading"]) == {"scaled", "raw"}
    claims = pd.read_csv(out / "claims.csv")
    assert len(claims) == 7 and claims["holds"].isna().all()  # one seed: no seed variance, nothing decided
    assert claims["verdict"].str.startswith("undecided").all()
    assert "claims (decided on the BCS-scale CI)" in report and "seeds × test exams" in report
    # a finished run is reused: seeds run as separate processes merge into one table without retraining
    first = (out / "seed0" / "frac1" / "lskd" / "result.json").stat().st_mtime_ns
    (out / "seed0" / "teacher_plain").rename(tmp_path / "gone")  # a retrained teacher would recreate it
    assert main(args) == 0
    assert (out / "seed0" / "frac1" / "lskd" / "result.json").stat().st_mtime_ns == first
    assert not (out / "seed0" / "teacher_plain").exists()
    assert pd.read_csv(out / "results.csv").equals(table)
    # another detector in the same out_dir would reuse these runs and resume their checkpoints: refused
    assert main([*args, "--set", "dilate_c5=false"]) == 2


def test_powered_data_two_seeds_give_decided_claims(tmp_path):
    """dbt_synth: a test split generated apart; two seeds of two rows give a seeds × exams CI and a verdict."""
    out = tmp_path / "run"
    sets = [f"out_dir={out}", f"dbt_dir={tmp_path / 'dbt'}", f"mammo_dir={tmp_path / 'mammo'}", "synth_n=[4,6]",
            "dbt_synth={n: 8, seed: 0, test_exams: 4}", "min_test_lesion_volumes=2", "seeds=[0,1]",
            "rows=[image_kd,lskd]", "fractions=[1.0]", "teacher_steps=2", "student_steps=2", "batch_size=4",
            "size=[48,40]", "n_boot=50"]  # fmt: skip
    args = ["experiment", "comoto", "--config", "configs/comoto_demo.yaml"] + [a for s in sets for a in ("--set", s)]
    assert main(args) == 0
    pred = pd.read_csv(out / "seed1" / "frac1" / "lskd" / "predictions_volume.csv", dtype={"StudyUID": str})
    assert pred["StudyUID"].str.startswith("test-").all()  # scored on the separately generated split only
    claims = pd.read_csv(out / "claims.csv")
    decided = claims[claims["claim"] == "LsKD beats image-level KD (100% of the DBT training set)"]
    assert decided["primary"].str.endswith("/2 seeds > 0").all() and decided["holds"].notna().all()
    assert "generated apart from the training data" in (out / "report.html").read_text()
    assert main([*args, "--set", "min_test_lesion_volumes=1000"]) == 2  # too small a test split is refused
