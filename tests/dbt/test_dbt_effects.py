"""Paired effects over seeds × test cases, the claims decided on them, and the powered eval sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from breastssl.experiments._dbt_data import SynthSpec, ensure_dbt_data
from breastssl.experiments._dbt_effects import claims_with_ci, paired_effects, setting_cis, weighted_auc
from breastssl.experiments._dbt_tables import LABELS
from breastssl.metrics import delong_ci


def _preds(effects: dict[str, float], seeds=range(5), n: int = 600, noise: float = 0.0) -> dict:
    """Scores = label × (1 + effect on the GE half) + N(0, 1); a seed adds ``noise`` to every effect."""
    out = {}
    label = (np.arange(n) % 3 == 0).astype(int)
    vendor = np.where(np.arange(n) < n // 2, "Hologic", "GE")
    for seed in seeds:
        for k, (setting, eff) in enumerate(effects.items()):
            rng = np.random.default_rng([seed, k])
            e = eff + noise * rng.normal()
            score = label * (1.0 + e * (vendor == "GE")) + rng.normal(0, 1, n)
            out[(seed, setting)] = pd.DataFrame({"exam_id": [f"e{i // 2}" for i in range(n)],
                                                 "laterality": ["L", "R"] * (n // 2), "score": score,
                                                 "label": label, "vendor": vendor})  # fmt: skip
    return out


def test_weighted_auc_is_the_mann_whitney_auc_with_ties_and_resampling_counts():
    rng = np.random.default_rng(0)
    s, y = np.round(rng.normal(size=200), 1), (rng.random(200) < 0.3).astype(int)  # many ties
    assert weighted_auc(s, y, np.ones((1, 200)))[0] == pytest.approx(delong_ci(y, s)[0])
    w = rng.integers(0, 3, size=200).astype(float)
    rep = np.repeat(np.arange(200), w.astype(int))  # counts = an explicit resample
    assert weighted_auc(s, y, w[None])[0] == pytest.approx(delong_ci(y[rep], s[rep])[0])


def test_a_real_effect_is_found_and_a_null_one_is_not():
    preds = _preds({"baseline": 0.0, "selective_kd": 0.8, "kd": 0.0}, noise=0.05)
    eff = paired_effects(preds, "breast", [("selective_kd", "baseline"), ("kd", "baseline")], n_boot=300)
    ge = eff[(eff["group"] == "GE")].set_index("a")
    assert ge.loc["selective_kd", "ci_low"] > 0 and ge.loc["selective_kd", "seeds_positive"] == 5
    assert ge.loc["kd", "ci_low"] < 0 < ge.loc["kd", "ci_high"]
    hol = eff[(eff["group"] == "Hologic")].set_index("a")
    assert hol.loc["selective_kd", "ci_low"] < 0 < hol.loc["selective_kd", "ci_high"]  # no effect there


def test_the_ci_widens_with_seed_variance():
    calm = paired_effects(_preds({"baseline": 0.0, "kd": 0.3}, noise=0.0), "breast", [("kd", "baseline")], 300)
    noisy = paired_effects(_preds({"baseline": 0.0, "kd": 0.3}, noise=2.0), "breast", [("kd", "baseline")], 300)
    width = {k: float((d["ci_high"] - d["ci_low"])[d["group"] == "GE"].iloc[0]) for k, d in
             {"calm": calm, "noisy": noisy}.items()}  # fmt: skip
    assert width["noisy"] > 1.5 * width["calm"]


def test_setting_cis_contain_the_mean_auc():
    preds = _preds({"baseline": 0.0, "kd": 0.5}, seeds=range(3))
    cis = setting_cis(preds, "breast", n_boot=200)
    row = cis[(cis["setting"] == "kd") & (cis["group"] == "overall")].iloc[0]
    mean = np.mean([delong_ci(preds[(s, "kd")]["label"], preds[(s, "kd")]["score"])[0] for s in range(3)])
    assert row["auc"] == pytest.approx(mean) and row["ci_low"] < mean < row["ci_high"]


def test_claims_hold_only_when_the_ci_excludes_zero():
    effects = {"baseline": 0.0, "kd": 0.0, "kd_weak": 0.0, "selective_kd": 0.5, "selective_kd_weak": 1.2}
    pairs = [
        ("selective_kd", "baseline"),
        ("selective_kd_weak", "baseline"),
        ("selective_kd_weak", "kd"),
        ("selective_kd_weak", "kd_weak"),
        ("selective_kd_weak", "selective_kd"),
        ("selective_kd", "kd"),
    ]
    eff = paired_effects(_preds(effects, n=1500), "breast", pairs, 300)
    claims = {c["claim"]: c for c in claims_with_ci(eff, LABELS, ["Hologic"])}
    assert all(c["holds"] is True for c in claims.values()), claims
    null = {k: 0.0 for k in effects}
    claims = {c["claim"]: c["holds"] for c in claims_with_ci(paired_effects(_preds(null), "breast", pairs, 300),
                                                            LABELS, ["Hologic"])}  # fmt: skip
    assert claims["SelectiveKD beats Baseline (overall)"] is False
    assert claims["Selection beats plain KD on the vendors without annotations"] is False


def test_powered_eval_sets_are_separate_enriched_and_vendor_balanced(tmp_path: Path):
    manifest = tmp_path / "d" / "manifest.csv"
    ensure_dbt_data(manifest, SynthSpec(n=12, val_exams=12, test_exams=60, eval_cancer_share=0.6), echo=lambda m: None)
    man = pd.read_csv(manifest, dtype=str)
    assert set(man["split"]) == {"train", "val", "test"}
    patients = man.groupby("split")["patient_id"].apply(set)
    assert not (patients["train"] & patients["test"]) and not (patients["val"] & patients["test"])
    assert man.loc[man["split"] == "test", "image_id"].str.startswith("test-").all()
    test = man[man["split"] == "test"]
    exams = test.groupby("exam_id").agg(
        vendor=("vendor", "first"), cancer=("breast_label", lambda b: "cancer" in set(b))
    )
    assert 0.4 < exams["cancer"].mean() < 0.8  # enriched: the training mix has 20% cancer exams
    assert exams["vendor"].value_counts().min() >= 10  # balanced: Hologic would be ~52% otherwise
    assert (
        tmp_path / "d" / "powered_test" / man.loc[man["split"] == "test", "path"].iloc[0].split("/", 1)[1]
    ).is_file()
    lesions = pd.read_csv(tmp_path / "d" / "lesions.csv", dtype=str)
    assert set(lesions["image_id"]) <= set(man["image_id"])


def test_analyse_compares_ablations_with_their_setting_the_baseline_and_students_with_a_control():
    from breastssl.experiments.dbt_selectivekd import analyse

    preds = _preds({"baseline": 0.0, "kd": 0.5, "selective_kd": 0.5}, seeds=range(3))
    for seed in range(3):  # a control run of a few seeds: as good as the students
        preds[(seed, "kd@continued")] = preds[(seed, "kd")].assign(score=lambda d: d["score"] + 0.01)
    res = analyse(preds, "breast", ["Hologic"], n_boot=100, controls=["continued"])
    pairs = set(zip(res["effects"]["a"], res["effects"]["b"], strict=True))
    assert {("kd@continued", "kd"), ("kd@continued", "baseline"), ("selective_kd", "kd@continued")} <= pairs
    same = res["effects"].query("a == 'kd@continued' and b == 'kd' and group == 'overall'").iloc[0]
    assert same["delta"] == 0.0  # a constant shift changes no AUC
    assert "kd@continued" not in set(res["aucs"]["setting"])  # per-seed DeLong tables: main runs only


def _curve_preds(aucs_of: dict[str, float], seeds=range(3), n: int = 900) -> dict:
    """(seed, 'setting@budget') predictions whose separation grows with ``aucs_of[key]`` (a shift of the positives)."""
    out = {}
    label = (np.arange(n) % 3 == 0).astype(int)
    vendor = np.where(np.arange(n) < n // 2, "Hologic", "GE")
    for seed in seeds:
        for k, (key, shift) in enumerate(aucs_of.items()):
            score = label * shift + np.random.default_rng([seed, k, 5]).normal(0, 1, n)
            out[(seed, key)] = pd.DataFrame({"exam_id": [f"e{i // 2}" for i in range(n)],
                                             "laterality": ["L", "R"] * (n // 2), "score": score,
                                             "label": label, "vendor": vendor})  # fmt: skip
    return out


def test_annotation_curve_points_effects_and_matching():
    """A student at 25% as good as the Baseline at 100%, a worse one that never gets there."""
    from breastssl.experiments._dbt_curve import analyse_curve, ci_matching

    shifts = {"baseline@10": 0.3, "baseline@25": 0.6, "baseline@100": 1.5,
              "selective_kd@10": 0.9, "selective_kd@25": 1.5, "selective_kd@100": 1.6,
              "selective_kd_weak@10": 0.1, "selective_kd_weak@25": 0.2, "selective_kd_weak@100": 0.3}  # fmt: skip
    res = analyse_curve(_curve_preds(shifts), "breast", "overall", n_boot=300)
    curve, eff = res["curve"], res["effects"]
    assert len(curve) == 9 and set(curve["budget"]) == {0.1, 0.25, 1.0}
    assert ((curve["ci_low"] <= curve["auc_mean"]) & (curve["auc_mean"] <= curve["ci_high"])).all()
    row = curve[(curve["setting"] == "baseline") & (curve["budget"] == 1.0)].iloc[0]
    assert row["auc_mean"] > 0.8 and row["seeds"] == 3 and row["auc_sd"] > 0
    same = eff[(eff["setting"] == "selective_kd") & (eff["budget"] == 0.1) & (eff["vs_budget"] == 0.1)].iloc[0]
    assert same["ci_low"] > 0 and same["seeds_positive"] == 3  # much better than its own budget's Baseline
    skd, weak = ci_matching(eff, "selective_kd"), ci_matching(eff, "selective_kd_weak")
    assert skd["not_below_full"] == 0.25  # 25% and 100% reach the full Baseline, 10% is below it
    assert skd["matches_baseline_at"]["0.25"] == 1.0 and skd["matches_baseline_at"]["0.1"] == 0.25
    assert weak["not_below_full"] is None and weak["matches_baseline_at"]["1"] == 0.1
    base = ci_matching(eff, "baseline")
    assert base["not_below_full"] == 1.0 and base["matches_baseline_at"] == {"0.1": 0.1, "0.25": 0.25, "1": 1.0}
