"""The powered self-training experiment at toy scale: separate val/test data, tune on val only, effects."""

from __future__ import annotations

import json

import pandas as pd

from breastssl.cli import main
from breastssl.experiments._selftrain_data import MammoSplits, ensure_mammo_data, is_powered


def test_eval_splits_are_generated_apart(tmp_path):
    root = ensure_mammo_data(tmp_path / "d", MammoSplits(n=12, seed=0, val_exams=4, test_exams=5), echo=lambda m: None)
    man = pd.read_csv(root / "manifest.csv", dtype=str)
    les = pd.read_csv(root / "lesions.csv", dtype=str)
    assert is_powered(man) and set(man["split"]) == {"train", "val", "test"}
    by = {s: g for s, g in man.groupby("split")}
    assert by["val"]["exam_id"].nunique() == 4 and by["test"]["exam_id"].nunique() == 5
    assert by["val"]["exam_id"].str.startswith("val-").all() and by["test"]["patient_id"].str.startswith("test-").all()
    for col in ("patient_id", "exam_id", "image_id"):  # no patient, exam or image in two splits
        sets = [set(g[col]) for g in by.values()]
        assert all(not (a & b) for i, a in enumerate(sets) for b in sets[i + 1 :])
    # the training set is the plain generator's train rows, same ids (so `synth mammo --n 12 --seed 0` matches)
    train_set = pd.read_csv(root / "train_set" / "manifest.csv", dtype=str)
    assert set(by["train"]["image_id"]) == set(train_set.loc[train_set["split"] == "train", "image_id"])
    for rel in [*man["path"], *man["report_path"], *les["mask_path"]]:
        assert (root / rel).is_file(), rel
    assert set(les["image_id"]) <= set(man["image_id"]) and les["lesion_id"].is_unique


def test_powered_experiment_tunes_on_val_and_reports_effects(tmp_path):
    """Tune runs are scored on val images only, main runs on test with the chosen settings; effects with CIs.

    Every cell is a `breastssl train` run of the mammo recipe: its config.yaml says which split scored it."""
    from breastssl.run.config import run_config_of

    out = tmp_path / "exp"
    args = ["experiment", "mammo-self-training", "--out", str(out), "--n-exams", "120", "--val-exams", "6",
            "--test-exams", "8", "--labeller", "tfidf", "--steps-per-epoch", "1", "--stage1-epochs", "1",
            "--round-epochs", "2", "--p0-every", "1", "--only", "full25_weak0$,full25_weak100$", "--seeds", "0,1",
            "--tune", "--tune-full-shares", "none,0.5", "--tune-thresholds", "0.25", "--tune-seeds", "0",
            "--n-boot", "40"]  # fmt: skip
    assert main(args) == 0
    tune_runs = [run_config_of(d) for d in sorted((out / "tune" / "seed0").iterdir())]
    main_runs = [run_config_of(d) for d in sorted((out / "runs").glob("seed*/*"))]
    assert len(tune_runs) == 2 and all(c.data.test_split == "val" for c in tune_runs)  # test never scored in tuning
    assert {c.strategy.full_share for c in tune_runs} == {None, 0.5}
    assert len(main_runs) == 4 and all(c.data.test_split == "test" for c in main_runs)
    seen = [(None, None, c.strategy.full_share) for c in main_runs]
    res = json.loads((out / "results.json").read_text())
    choice = res["tune"]["choice"]
    assert all(s[2] == choice["full_share"] for s in seen) and res["settings"]["full_share"] == choice["full_share"]
    assert res["settings"]["test_exams"] == 8 and res["settings"]["powered_data"] is True
    eff = res["effects"]
    pair = [r for r in eff["effects"] if (r["a"], r["b"], r["metric"]) == ("full25_weak100", "full25_weak0", "mean")]
    assert len(pair) == 1 and pair[0]["seeds"] == 2 and pair[0]["ci_low"] <= pair[0]["delta"] <= pair[0]["ci_high"]
    assert {c["claim"] for c in eff["claims"]} and (out / "effects.csv").is_file()
    assert (out / "runs" / "seed1" / "full25_weak0" / "test_detections.npz").is_file()
    html = (out / "report.html").read_text()
    assert "Tune on the val split" in html and "Paired effects" in html
