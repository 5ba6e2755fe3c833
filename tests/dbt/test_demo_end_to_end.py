"""`breastssl demo` end to end at toy scale: DICOM data → read back → Table 1 runs → report → DBT predictions."""

from __future__ import annotations

import pandas as pd

from breastssl.cli import main


def test_demo_runs_every_step(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(
        [
            "demo",
            "--out",
            str(out),
            "--n",
            "3",
            "--exams",
            "10",
            "--steps",
            "2",
            "--jobs",
            "2",
            "--seeds",
            "1",
            "--test-exams",
            "12",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    for setting in ("baseline", "kd", "kd_weak", "selective_kd", "selective_kd_weak"):
        assert (out / "dbt_selectivekd" / "seed0" / setting / "metrics.json").is_file(), setting
    assert (out / "dbt_selectivekd" / "report.html").is_file() and "report:" in printed
    exams = pd.read_csv(out / "dbt_predictions" / "exams.csv")
    assert len(exams) == 3 and exams["score"].between(0, 1).all()
    assert list((out / "dbt_predictions" / "heatmaps").glob("*.png"))
