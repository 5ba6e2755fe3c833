"""`breastssl experiment comoto` end to end at the smallest scale: synthesised data, every row, a report."""

from __future__ import annotations

import math

import pandas as pd

from breastssl.cli import main


def test_experiment_runs_every_row_and_writes_the_report(tmp_path):
    out = tmp_path / "run"
    args = ["experiment", "comoto", "--config", "configs/comoto_demo.yaml"]
    sets = [f"out_dir={out}", f"dbt_dir={tmp_path / 'dbt'}", f"mammo_dir={tmp_path / 'mammo'}", "synth_n=[10,6]",
            "teacher_steps=2", "student_steps=2", "batch_size=4", "size=[48,40]", "fractions=[1.0,0.5]"]  # fmt: skip
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
    # a finished run is reused: seeds run as separate processes merge into one table without retraining
    first = (out / "seed0" / "frac1" / "lskd" / "result.json").stat().st_mtime_ns
    (out / "seed0" / "teacher_plain").rename(tmp_path / "gone")  # a retrained teacher would recreate it
    assert main(args) == 0
    assert (out / "seed0" / "frac1" / "lskd" / "result.json").stat().st_mtime_ns == first
    assert not (out / "seed0" / "teacher_plain").exists()
    assert pd.read_csv(out / "results.csv").equals(table)
    # another detector in the same out_dir would reuse these runs and resume their checkpoints: refused
    assert main([*args, "--set", "dilate_c5=false"]) == 2
