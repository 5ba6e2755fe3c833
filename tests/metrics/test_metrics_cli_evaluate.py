"""`breastssl evaluate` end to end on tiny fixtures: good input and every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from metrics_eval_fixtures import image_scores, make_dataset

from breastssl.cli import main


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    return make_dataset(tmp_path / "data")


def run(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str]:
    code = main(["evaluate", *[str(a) for a in args]])
    cap = capsys.readouterr()
    return code, cap.out + cap.err


def test_classification_compare_and_subgroups(dataset, tmp_path, capsys):
    mp, man = dataset
    image_scores(man, 1).to_csv(tmp_path / "A.csv", index=False)
    image_scores(man, 2, 0.3).to_parquet(tmp_path / "B.parquet", index=False)
    out = tmp_path / "out"
    code, text = run(
        capsys, tmp_path / "A.csv", tmp_path / "B.parquet", "--compare", "--manifest", mp, "--out", out,
        "--by", "vendor", "--level", "breast", "--agg", "topk", "--k", "2", "--n-boot", "50",
    )  # fmt: skip
    assert code == 0, text
    res = json.loads((out / "metrics.json").read_text())
    assert res["models"]["A"]["aggregation"] == "view→breast: top-2 mean"
    assert res["models"]["A"]["roc"]["n"] == 24 and res["models"]["A"]["roc"]["n_pos"] == 4
    assert {s["value"] for s in res["models"]["A"]["subgroups"]} == {"ge", "hologic"}
    (cmp,) = res["comparisons"]
    assert (cmp["a"], cmp["b"]) == ("A", "B") and 0 <= cmp["p"] <= 1 and cmp["ci_low"] < cmp["difference"]
    html = (out / "report.html").read_text()
    assert "view→breast: top-2 mean" in html and "data:image/png;base64," in html and "paired DeLong" in html
    assert "<script" not in html


def test_detection_2d_and_dbt(tmp_path, capsys):
    for modality in ("MG", "DBT"):
        mp, man = make_dataset(tmp_path / modality, modality=modality)
        les = pd.read_csv(mp.with_name("lesions.csv"))
        det = les[["image_id", "x", "y", "w", "h"]].assign(score=0.9)
        fp = pd.DataFrame({"image_id": man["image_id"], "x": 0.0, "y": 0.0, "w": 20.0, "h": 20.0, "score": 0.3})
        det = pd.concat([det, fp], ignore_index=True)
        if modality == "DBT":
            det = det.assign(z=19.0, depth=2.0)
        det.to_csv(tmp_path / f"{modality}.csv", index=False)
        out = tmp_path / f"out_{modality}"
        code, text = run(capsys, tmp_path / f"{modality}.csv", "--manifest", mp, "--out", out, "--by", "lesion_class")
        assert code == 0, text
        froc = json.loads((out / "metrics.json").read_text())["models"][modality]["froc"]
        if modality == "DBT":
            assert froc["kind"] == "dbt" and froc["overall"]["sensitivity_at_2_fps_all"] == 1.0
        else:
            assert froc["overall"]["sensitivity_at_1_fppi"] == 1.0 and froc["overall"]["n_images"] == len(man)
        assert {s["value"] for s in froc["subgroups"]} == {"benign", "malignant"}
        assert "FROC" in (out / "report.html").read_text()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: pd.concat([d, pd.DataFrame({"image_id": [f"ghost{i}" for i in range(7)], "score": 0.5})]),
         "7 image_id value.*not in the truth.*ghost0"),
        (lambda d: d.iloc[3:], "no prediction for 3 image_id"),
        (lambda d: d.assign(score=np.where(np.arange(len(d)) == 4, np.nan, d["score"])), "score must be finite.*row 6"),
        (lambda d: d.assign(score=np.where(np.arange(len(d)) == 0, np.inf, d["score"])), "NaN/inf.*row 2"),
        (lambda d: d.assign(colour="red"), "unknown column.*colour"),
        (lambda d: d.drop(columns="score"), "missing required column score"),
        (lambda d: d.rename(columns={"image_id": "img"}), "unknown column"),
        (lambda d: d.iloc[:0], "no prediction rows"),
        (lambda d: pd.concat([d, d.iloc[:2]]), "duplicated image_id"),
    ],
)  # fmt: skip
def test_bad_predictions_exit_2(dataset, tmp_path, capsys, mutate, message):
    mp, man = dataset
    mutate(image_scores(man, 1)).to_csv(tmp_path / "bad.csv", index=False)
    out = tmp_path / "out"
    code, text = run(capsys, tmp_path / "bad.csv", "--manifest", mp, "--out", out)
    assert code == 2
    assert "error:" in text and "Traceback" not in text
    import re

    assert re.search(message, text, re.S), text
    assert not out.exists()  # nothing half-written


def test_empty_and_missing_files_exit_2(dataset, tmp_path, capsys):
    mp, _ = dataset
    (tmp_path / "empty.csv").write_text("")
    assert run(capsys, tmp_path / "empty.csv", "--manifest", mp, "--out", tmp_path / "o")[0] == 2
    code, text = run(capsys, tmp_path / "nope.csv", "--manifest", mp, "--out", tmp_path / "o")
    assert code == 2 and "does not exist" in text
    code, text = run(capsys, tmp_path / "nope.csv", "--manifest", mp, "--out", tmp_path / "o", "--compare")
    assert code == 2


def test_bad_options_exit_2(dataset, tmp_path, capsys):
    mp, man = dataset
    image_scores(man, 1).to_csv(tmp_path / "A.csv", index=False)
    for extra, msg in ((["--by", "colour"], "no such column"), (["--level", "pixel"], "--level"),
                       (["--compare"], "at least two"), (["--agg", "median"], "--agg")):  # fmt: skip
        code, text = run(capsys, tmp_path / "A.csv", "--manifest", mp, "--out", tmp_path / "o", *extra)
        assert code == 2 and msg in text, text


def test_existing_output_needs_overwrite(dataset, tmp_path, capsys):
    mp, man = dataset
    image_scores(man, 1).to_csv(tmp_path / "A.csv", index=False)
    assert run(capsys, tmp_path / "A.csv", "--manifest", mp, "--out", tmp_path / "o", "--n-boot", "20")[0] == 0
    assert run(capsys, tmp_path / "A.csv", "--manifest", mp, "--out", tmp_path / "o")[0] == 2
    assert (
        run(capsys, tmp_path / "A.csv", "--manifest", mp, "--out", tmp_path / "o", "--overwrite", "--n-boot", "20")[0]
        == 0
    )
