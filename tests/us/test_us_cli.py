"""CLI smoke: `breastssl experiment us-mean-teacher` on a tiny synthetic set, then `breastssl predict`."""

from __future__ import annotations

import json

import pandas as pd

from breastssl.cli import main


def test_experiment_then_predict(tmp_path):
    out = tmp_path / "exp"
    args = ["experiment", "us-mean-teacher", "--set", f"out_dir={out}", "--set", "synth_n=40",
            "--set", "detector.steps=3", "--set", "detector.freeze_steps=1", "--set", "recognition.max_steps=4",
            "--set", "recognition.eval_every=2", "--set", "recognition.batch_size=4", "--set", "recognition.width=4",
            "--set", "recognition.crop_size=16", "--set", "recognition.min_score=0"]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {r["arm"] for r in metrics["classification"]} == {"semi", "sup_basic", "sup_all"}
    assert {d["b"] for d in metrics["delong"]} == {"sup_basic", "sup_all"}
    assert any(k.startswith("independent") for k in metrics["detection"])
    assert "Table 2" in (out / "report.html").read_text()

    images = sorted((out / "data" / "images").rglob("*.npy"))[:2]
    pred = tmp_path / "pred"
    assert main(["predict", "--modality", "us", "--model", str(out / "us_model.pt"), *map(str, images),
                 "--out", str(pred)]) == 0  # fmt: skip
    df = pd.read_csv(pred / "predictions.csv")
    assert set(df["file"]) == set(map(str, images)) and df["p_malignant"].between(0, 1).all()
    assert len(list((pred / "overlays").glob("*.png"))) == 2
    assert main(["predict", "--modality", "xray", "--model", str(out / "us_model.pt"), str(images[0])]) == 2
