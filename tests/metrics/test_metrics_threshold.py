"""Operating-point metrics, bootstrap and aggregation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score

from breastssl.metrics import (
    accuracy,
    aggregate_scores,
    bootstrap_ci,
    classification_report_metrics,
    roc_auc,
    sensitivity,
    sensitivity_at_specificity,
    specificity,
    to_level,
    youden_threshold,
)

Y = np.array([0, 0, 0, 0, 1, 1, 1])
S = np.array([0.1, 0.4, 0.5, 0.7, 0.5, 0.8, 0.9])


def test_rates_at_threshold():
    assert sensitivity(Y, S, 0.5) == 1.0  # score >= threshold is positive
    assert specificity(Y, S, 0.5) == 0.5
    assert accuracy(Y, S, 0.5) == pytest.approx(5 / 7)
    assert sensitivity(Y, S, 0.85) == pytest.approx(1 / 3)


def test_sensitivity_at_specificity_and_youden():
    assert sensitivity_at_specificity(Y, S, 0.75) == pytest.approx(2 / 3)
    assert sensitivity_at_specificity(Y, S, 1.0) == pytest.approx(2 / 3)
    thr, j = youden_threshold(Y, S)
    assert thr == 0.8 and j == pytest.approx(2 / 3)  # sens 2/3, spec 1; beats 0.5 (J = 1 + 1/2 - 1)


def test_rate_without_its_class_is_nan():
    with pytest.warns(UserWarning, match="undefined"):
        assert np.isnan(sensitivity(np.zeros(3), np.arange(3), 1))
    with pytest.warns(RuntimeWarning):
        assert np.isnan(youden_threshold(np.zeros(3), np.arange(3))[0])


def test_classification_report_matches_sklearn():
    rng = np.random.default_rng(0)
    t = rng.choice(["pos", "neg", "unc"], 200)
    p = np.where(rng.random(200) < 0.7, t, rng.choice(["pos", "neg", "unc", "other"], 200))
    r = classification_report_metrics(t, p)
    assert r["accuracy"] == pytest.approx(accuracy_score(t, p))
    assert r["macro_f1"] == pytest.approx(f1_score(t, p, average="macro"))
    assert r["weighted_f1"] == pytest.approx(f1_score(t, p, average="weighted"))


def test_bootstrap_is_stratified_and_reproducible():
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(30), np.zeros(70)]
    s = rng.normal(size=100) + y
    a = bootstrap_ci(roc_auc, y, s, n=300, seed=5)
    assert a == bootstrap_ci(roc_auc, y, s, n=300, seed=5)
    assert a[1] < a[0] < a[2]
    seen = []
    bootstrap_ci(lambda yy, ss: seen.append(yy.sum()) or 0.0, y, s, n=50)
    assert set(seen) == {30}  # every stratified resample keeps the class counts
    with pytest.raises(ValueError, match="first dimension"):
        bootstrap_ci(roc_auc, y, s[:50])


def test_aggregation_states_itself():
    slices = pd.DataFrame(
        {"image_id": ["a"] * 4 + ["b"] * 2, "slice": [0, 1, 2, 3, 0, 1], "score": [1, 5, 3, 4, 2, 2.0]}
    )
    top2 = aggregate_scores(slices, ["image_id"], "topk", k=2, label="slice→stack")
    assert top2["score"].tolist() == [4.5, 2.0] and top2["aggregation"].iloc[0] == "slice→stack: top-2 mean"
    man = pd.DataFrame({"image_id": ["a", "b"], "exam_id": ["e", "e"], "laterality": ["L", "R"]})
    exam = to_level(slices, man, "exam", "mean")
    assert exam["score"].tolist() == [pytest.approx((13 / 4 + 2) / 2)]
    assert exam["aggregation"].iloc[0] == "slice→stack: mean; view→breast: mean; breast→exam: mean"
    with pytest.raises(ValueError, match="method"):
        aggregate_scores(slices, ["image_id"], "median")


def test_two_level_bootstrap_pieces_keep_strata_and_widen_with_seed_spread():
    from breastssl.metrics.bootstrap import case_weights, seed_draws, seeds_cases_summary

    rng = np.random.default_rng(0)
    strata = np.array([0] * 30 + [1] * 10)
    w = case_weights(strata, 200, rng)
    assert (w[:, :30].sum(axis=1) == 30).all() and (w[:, 30:].sum(axis=1) == 10).all()
    draws = seed_draws(2000, rng)
    case_noise = rng.normal(0, 0.01, (2000, 1))
    tight = seeds_cases_summary(np.full(5, 0.03), 0.03 + case_noise + np.zeros((1, 5)), draws)
    spread = np.array([-0.05, 0.0, 0.03, 0.06, 0.11])
    wide = seeds_cases_summary(spread, spread + case_noise, draws)
    assert tight["ci_low"] > 0 and tight["seeds_positive"] == 5 and tight["sd"] == 0
    assert wide["ci_low"] < 0 < wide["ci_high"] and wide["mean"] == pytest.approx(0.03)
