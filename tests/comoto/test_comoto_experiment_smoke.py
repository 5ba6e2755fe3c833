"""`breastssl experiment comoto` end to end at the smallest scale: synthesised data, every row, a report."""

from __future__ import annotations

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
    # a finished run is reused: seeds run as separate processes merge into one table without retraining
    first = (out / "seed0" / "frac1" / "lskd" / "result.json").stat().st_mtime_ns
    (out / "seed0" / "teacher_plain").rename(tmp_path / "gone")  # a retrained teacher would recreate it
    assert main(args) == 0
    assert (out / "seed0" / "frac1" / "lskd" / "result.json").stat().st_mtime_ns == first
    assert not (out / "seed0" / "teacher_plain").exists()
    assert pd.read_csv(out / "results.csv").equals(table)
