"""The powered ultrasound benchmark: separately generated val/test sets, effects with CIs, reused runs, a smoke run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from breastssl.config import load_config
from breastssl.errors import ConfigError
from breastssl.experiments._us_data import USPoweredSpec, ensure_us_data
from breastssl.experiments._us_effects import claims, detection_cis, effects_tables
from breastssl.experiments._us_mean_teacher_impl import USExperimentConfig, run
from breastssl.metrics import roc_auc


def test_powered_sets_are_generated_apart_with_the_asked_sizes(tmp_path):
    spec = USPoweredSpec(val_nodules=6, test_nodules=10)
    manifest = ensure_us_data(tmp_path / "d", 16, 3, [], spec, echo=lambda _: None)
    man = pd.read_csv(manifest, dtype=str)
    les = pd.read_csv(tmp_path / "d" / "lesions.csv", dtype=str)
    by_split = {s: g for s, g in man.groupby("split")}
    assert set(by_split) == {"train", "val", "test"} and len(by_split["train"]) == 16
    for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:  # no image or patient in two splits
        for col in ("image_id", "patient_id"):
            assert not set(by_split[a][col]) & set(by_split[b][col]), (a, b, col)
    assert set(by_split["train"]["site"]) == {"site-A"} == set(by_split["val"]["site"])
    assert by_split["val"]["image_id"].str.startswith("val-").all() and len(by_split["val"]) == 6
    test = by_split["test"]
    assert test.groupby("site").size().to_dict() == {"site-A": 10, "site-B": 10}
    assert test["image_id"].str.startswith("test-site-").all() and test["patient_id"].is_unique
    # every evaluation image is a nodule with a class (normal images could not count)
    classed = set(les.loc[les["lesion_class"].isin(["malignant", "benign"]), "image_id"])
    assert set(test["image_id"]) | set(by_split["val"]["image_id"]) <= classed
    assert all((tmp_path / "d" / p).is_file() for p in man["path"])
    with pytest.raises(ConfigError, match="another data spec"):
        ensure_us_data(tmp_path / "d", 16, 3, [], USPoweredSpec(val_nodules=6, test_nodules=11))


def hand_preds(n: int = 600, seeds: int = 5, copy_all: bool = False) -> pd.DataFrame:
    """A site's predictions: semi (noise 1) clearly better than sup_basic (noise 3); sup_all as good as semi
    (independent noise of the same size), or, with ``copy_all``, semi's very scores."""
    rng = np.random.default_rng(0)
    y = (np.arange(n) % 5 < 2).astype(int)
    rows = []
    for s in range(seeds):
        semi = y + rng.normal(0, 1.0, n)
        scores = {"semi": semi, "sup_basic": y + rng.normal(0, 3.0, n),
                  "sup_all": semi.copy() if copy_all else y + rng.normal(0, 1.0, n)}  # fmt: skip
        for arm, sc in scores.items():
            rows.append(pd.DataFrame({"image_id": [f"i{i}" for i in range(n)], "set_name": "test site-A", "label": y,
                                      "arm": arm, "seed": s, "score": 1 / (1 + np.exp(-(sc - 0.5)))}))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def effect(tables: dict, b: str, metric: str = "auc") -> dict:
    return next(r for r in tables["effects"] if r["b"] == b and r["metric"] == metric)


def test_effects_find_a_better_arm_and_no_difference_between_equals():
    preds = hand_preds()
    t = effects_tables(preds, None, 0.5, n_boot=400)
    better, equal = effect(t, "sup_basic"), effect(t, "sup_all")
    assert better["ci_low"] > 0.05 and better["seeds_positive"] == 5 and better["seeds"] == 5
    assert equal["ci_low"] < 0 < equal["ci_high"] and equal["ci_high"] - equal["ci_low"] < 0.1
    assert effect(t, "sup_basic", "accuracy")["ci_low"] > 0  # the threshold metrics get CIs too
    # an arm's mean AUC is the plain AUC averaged over seeds, inside its CI
    semi = preds[preds["arm"] == "semi"]
    plain = np.mean([roc_auc(g["label"], g["score"]) for _, g in semi.groupby("seed")])
    row = next(r for r in t["arms"] if r["arm"] == "semi" and r["metric"] == "auc")
    assert row["mean"] == pytest.approx(plain) and row["ci_low"] < plain < row["ci_high"]
    dl = {d["b"]: d for d in t["ensemble_delong"]}
    assert dl["sup_basic"]["p"] < 1e-6 and dl["sup_basic"]["seeds"] == 5
    verdict = {(c["claim"]): c["holds"] for c in claims(t)}
    assert verdict["semi-supervised beats sup_basic (auc)"] is True


def test_identical_arms_give_a_zero_effect_and_the_similarity_claim_holds():
    t = effects_tables(hand_preds(copy_all=True), None, 0.5, n_boot=200)
    same = effect(t, "sup_all")
    assert same["delta"] == same["ci_low"] == same["ci_high"] == 0.0 and same["seeds_positive"] == 0
    verdict = {(c["claim"]): c["holds"] for c in claims(t, margin=0.02)}
    assert verdict["semi-supervised is non-inferior to sup_all (auc)"] is True


def test_detection_cis_cover_the_mean_iou():
    det = pd.DataFrame({"set": ["test"] * 200 + ["basic"], "set_name": ["test site-A"] * 200 + ["basic"],
                        "iou": list(np.linspace(0.3, 0.9, 200)) + [0.1]})  # fmt: skip
    (r,) = detection_cis(det, n_boot=300)
    assert r["set"] == "test site-A" and r["n"] == 200 and r["iou_mean"] == pytest.approx(0.6)
    assert 0.55 < r["ci_low"] < 0.6 < r["ci_high"] < 0.65 and r["hit_ci_low"] < r["hit_rate_iou_0.5"] < r["hit_ci_high"]


def test_smoke_powered_run_writes_the_effect_tables_and_reuses_runs(tmp_path):
    sets = [f"out_dir={tmp_path / 'exp'}", "synth_n=30", "basic_fraction=0.3", "detector.steps=2",
            "detector.freeze_steps=1", "recognition.max_steps=2", "recognition.eval_every=2",
            "recognition.batch_size=4", "recognition.width=4", "recognition.crop_size=16", "recognition.min_score=0",
            "n_boot=50", "powered={'val_nodules': 8, 'test_nodules': 12}"]  # fmt: skip
    m = run(load_config(USExperimentConfig, None, [*sets, "seeds=[0, 1]"]))
    out = tmp_path / "exp"
    assert m["nodules"]["test site-A"] == 12 and m["nodules"]["independent site-B"] == 12
    eff = pd.read_csv(out / "effects.csv")
    assert set(eff["set"]) == {"test site-A", "independent site-B"} and set(eff["b"]) == {"sup_basic", "sup_all"}
    assert set(eff["metric"]) == {"auc", "sensitivity", "specificity", "accuracy"} and (eff["seeds"] == 2).all()
    assert len(pd.read_csv(out / "effects_arms.csv")) == 2 * 3 * 4
    assert len(pd.read_csv(out / "claims.csv")) == 2 * 5  # 4 classification claims + detection, per site
    assert len(json.loads((out / "metrics.json").read_text())["effects"]["ensemble_delong"]) == 4
    assert "claims" in (out / "report.html").read_text()
    again = run(load_config(USExperimentConfig, None, [*sets, "seeds=[0, 1, 2]"]))
    assert [r["reused"] for r in again["runs"]] == [True] * 6 + [False] * 3  # seeds 0, 1 loaded; seed 2 trained
    assert {r["seeds"] for r in again["effects"]["effects"]} == {3}
    # each arm is a run folder of the us recipe; the first trained the detector, the others reuse it
    from breastssl.run.config import run_config_of

    assert run_config_of(out / "arms" / "sup_all_s2").detector.run == str(out / "arms" / "semi_s0")
    assert (out / "arms" / "semi_s0" / "detector").is_dir() and not (out / "arms" / "sup_all_s2" / "detector").exists()
    # another recipe in the same out_dir: the finished runs made with the old one are trained again
    changed = run(load_config(USExperimentConfig, None, [*sets, "seeds=[0]", "recognition.lr=0.01"]))
    assert [r["reused"] for r in changed["runs"]] == [False] * 3
