"""The statistics behind `experiment dbt-selectivekd` / `annotation-efficiency`, on hand-built tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from breastssl.experiments import _dbt_tables as t
from breastssl.metrics import delong_ci, delong_test


def _preds(seed: int, setting: str, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 80
    label = (np.arange(n) % 4 == 0).astype(int)
    vendor = np.where(np.arange(n) < 40, "Hologic", "GE")
    score = label * (1.0 + shift * (vendor == "GE")) + rng.normal(0, 1, n)
    return pd.DataFrame({"exam_id": [f"e{i // 2}" for i in range(n)], "laterality": ["L", "R"] * (n // 2),
                         "score": score, "label": label, "vendor": vendor})  # fmt: skip


@pytest.fixture()
def preds() -> dict:
    shifts = {"baseline": 0.0, "kd": 0.3, "selective_kd": 0.8, "kd_weak": 0.4, "selective_kd_weak": 1.2}
    return {(seed, s): _preds(seed * 10 + k, s, v) for seed in (0, 1) for k, (s, v) in enumerate(shifts.items())}


def test_auc_rows_match_delong_per_group(preds):
    rows = t.auc_rows(preds)
    df = preds[(1, "kd")]
    ge = df[df["vendor"] == "GE"]
    got = rows[(rows["seed"] == 1) & (rows["setting"] == "kd") & (rows["group"] == "GE")].iloc[0]
    assert (got["auc"], got["ci_low"], got["ci_high"]) == pytest.approx(delong_ci(ge["label"], ge["score"]))
    assert got["n"] == 40 and got["n_pos"] == int(ge["label"].sum())
    assert set(rows["group"]) == {"overall", "Hologic", "GE"}


def test_pair_tests_are_paired_delong(preds):
    tests = t.pair_tests(preds, "breast")
    row = tests[(tests["seed"] == 0) & (tests["a"] == "selective_kd") & (tests["b"] == "kd")]
    row = row[row["group"] == "overall"].iloc[0]
    a, b = preds[(0, "selective_kd")], preds[(0, "kd")]
    ref = delong_test(a["label"], a["score"], b["score"])
    assert row["p"] == pytest.approx(ref.p) and row["difference"] == pytest.approx(ref.auc_a - ref.auc_b)


def test_pair_tests_refuse_different_cases(preds):
    broken = dict(preds)
    broken[(0, "kd")] = preds[(0, "kd")].iloc[:-2]
    with pytest.raises(ValueError, match="different cases"):
        t.pair_tests(broken, "breast")


def test_ensemble_is_mean_score_over_seeds(preds):
    ens = t.ensemble(preds, "breast")[("ensemble", "kd")]
    a, b = preds[(0, "kd")], preds[(1, "kd")]
    m = a.merge(b, on=["exam_id", "laterality"])
    expect = ((m["score_x"] + m["score_y"]) / 2).to_numpy()
    got = ens.merge(m[["exam_id", "laterality"]], on=["exam_id", "laterality"])["score"].to_numpy()
    np.testing.assert_allclose(np.sort(got), np.sort(expect))


def test_summary_means_and_sds(preds):
    aucs = t.auc_rows(preds)
    summ = t.summary(aucs, t.pair_tests(preds, "breast"))
    base = aucs[(aucs["setting"] == "baseline") & (aucs["group"] == "GE")]["auc"]
    row = summ[(summ["setting"] == "baseline") & (summ["group"] == "GE")].iloc[0]
    assert row["auc_mean"] == pytest.approx(base.mean()) and row["auc_sd"] == pytest.approx(base.std(ddof=1))


def test_matching_budget_interpolates():
    curve = pd.DataFrame({"setting": ["s"] * 3, "budget": [0.1, 0.5, 1.0], "auc_mean": [0.6, 0.7, 0.9]})
    assert t.matching_budget(curve, "s", 0.8) == pytest.approx(0.75)
    assert t.matching_budget(curve, "s", 0.5) == pytest.approx(0.1)
    assert t.matching_budget(curve, "s", 0.95) is None


def test_stratified_budgets_are_nested_and_proportional():
    exams = pd.DataFrame({"exam_id": [f"e{i}" for i in range(100)],
                          "stratum": ["cancer"] * 20 + ["benign"] * 30 + ["normal"] * 50})  # fmt: skip
    sets = {f: t.stratified_budget(exams, f, seed=3) for f in (0.1, 0.2, 0.5, 1.0)}
    assert sets[0.1] <= sets[0.2] <= sets[0.5] <= sets[1.0] == set(exams["exam_id"])
    strat = exams.set_index("exam_id")["stratum"]
    assert strat[sorted(sets[0.1])].value_counts().to_dict() == {"cancer": 2, "benign": 3, "normal": 5}
    assert sets[0.5] != t.stratified_budget(exams, 0.5, seed=4)
    with pytest.raises(ValueError):
        t.stratified_budget(exams, 0.0, seed=0)


def test_a_validated_choice_is_read_inline_or_from_a_yaml_file(tmp_path):
    from breastssl.errors import UserError
    from breastssl.experiments._dbt_tune import choice_overrides, resolve_choice

    inline = {"selective_kd": {"composition": "fixed", "student_init": "teacher", "threshold": 0.3}}
    assert resolve_choice(inline) is inline and resolve_choice(None) is None
    f = tmp_path / "validated.yaml"
    f.write_text("choice:\n  selective_kd: {composition: fixed, student_init: teacher, threshold: 0.3}\n")
    assert resolve_choice(str(f)) == inline
    assert "strategy.threshold=0.3" in choice_overrides(resolve_choice(str(f)), "selective_kd")
    with pytest.raises(UserError, match="not a file"):
        resolve_choice(str(tmp_path / "missing.yaml"))
    (tmp_path / "empty.yaml").write_text("tune: {}\n")
    with pytest.raises(UserError, match="no `choice:`"):
        resolve_choice(str(tmp_path / "empty.yaml"))
