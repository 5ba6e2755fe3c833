"""AUC and DeLong: pROC golden values, sklearn agreement, degenerate and malformed input."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from breastssl.metrics import delong_ci, delong_test, roc_auc

ASAH = Path(__file__).resolve().parents[3] / "shared/reference/aSAH.csv"

# pROC's own test suite (shared/reference/README.md)
GOLDEN = [
    ("wfns", "s100b", 0.823678861788618, 0.731368563685637, 2.20898359144091, 0.0271757822291882),
    ("wfns", "ndka", 0.823678861788618, 0.611957994579946, 2.79777591868904, 0.00514557970691098),
    ("ndka", "s100b", 0.611957994579946, 0.731368563685637, -1.39077002573558, 0.164295175223054),
]


@pytest.fixture(scope="module")
def asah() -> pd.DataFrame:
    if not ASAH.is_file():
        pytest.skip(f"reference data not found at {ASAH} (clone shared/ beside the repository)")
    return pd.read_csv(ASAH)


@pytest.mark.parametrize(("a", "b", "auc_a", "auc_b", "z", "p"), GOLDEN)
def test_delong_matches_proc(asah: pd.DataFrame, a: str, b: str, auc_a: float, auc_b: float, z: float, p: float):
    t = delong_test(asah["outcome"], asah[a], asah[b])
    assert t.auc_a == pytest.approx(auc_a, abs=1e-9)
    assert t.auc_b == pytest.approx(auc_b, abs=1e-9)
    assert t.z == pytest.approx(z, abs=1e-9)
    assert t.p == pytest.approx(p, abs=1e-9)
    assert roc_auc(asah["outcome"], asah[a]) == pytest.approx(auc_a, abs=1e-12)


def test_delong_difference_ci_matches_proc(asah: pd.DataFrame):
    t = delong_test(asah["outcome"], asah["wfns"], asah["s100b"])
    # pROC prints the CI to 8 digits
    assert t.ci_low == pytest.approx(0.01040618, abs=5e-9)
    assert t.ci_high == pytest.approx(0.17421442, abs=5e-9)
    assert t.difference == pytest.approx(0.823678861788618 - 0.731368563685637, abs=1e-12)


def test_delong_ci_matches_proc_ci_auc(asah: pd.DataFrame):
    auc, low, high = delong_ci(asah["outcome"], asah["wfns"])
    # pROC's ci.auc on wfns prints about 0.7486-0.8988 (4 digits; not a golden value of the README)
    assert auc == pytest.approx(0.823678861788618, abs=1e-12)
    assert (low, high) == (pytest.approx(0.7486, abs=2e-4), pytest.approx(0.8988, abs=2e-4))


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_with_ties(seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.normal(size=500) + y, 1)  # rounding makes many ties, within and across classes
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_delong_variance_matches_quadratic_definition():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    a, b = np.round(rng.normal(size=60) + y, 1), rng.integers(0, 4, 60).astype(float)
    pos, neg = y == 1, y == 0

    def psi(s):  # structural components straight from DeLong et al. (1988), O(m n)
        k = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        return k.mean(1), k.mean(0)

    (v10a, v01a), (v10b, v01b) = psi(a), psi(b)
    var = (np.var(v10a - v10b, ddof=1) / pos.sum()) + (np.var(v01a - v01b, ddof=1) / neg.sum())
    t = delong_test(y, a, b)
    assert t.z == pytest.approx((v10a.mean() - v10b.mean()) / np.sqrt(var), rel=1e-10)


def test_ci_is_clipped_to_unit_interval():
    y = np.r_[np.zeros(5), np.ones(5)]
    auc, low, high = delong_ci(y, np.r_[np.arange(5), np.arange(5) + 4.5])
    assert auc == 1.0 and high == 1.0 and 0.0 <= low <= 1.0


def test_one_class_gives_nan_with_warning():
    with pytest.warns(RuntimeWarning, match="single class"):
        assert np.isnan(roc_auc(np.ones(5), np.arange(5)))
    with pytest.warns(RuntimeWarning):
        assert all(np.isnan(v) for v in delong_ci(np.zeros(5), np.arange(5)))
    with pytest.warns(RuntimeWarning):
        assert np.isnan(delong_test(np.zeros(4), np.arange(4), np.arange(4)).p)


def test_identical_scores_have_undefined_test():
    y = np.array([0, 1, 0, 1, 1, 0])
    s = np.array([0.1, 0.8, 0.3, 0.4, 0.9, 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = delong_test(y, s, s)
    assert t.auc_a == t.auc_b and np.isnan(t.z) and np.isnan(t.p)


def test_malformed_input_raises_value_error():
    with pytest.raises(ValueError, match=r"\(3,\)"):
        roc_auc([0, 1, 0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="binary labels.*rows 2"):
        roc_auc([0, 1, 2, 1], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="NaN/inf at rows 1"):
        delong_test([0, 1, 0], [0.1, np.nan, 0.2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="1-D"):
        roc_auc(np.zeros((2, 2)), np.zeros((2, 2)))


@pytest.mark.slow
def test_delong_and_bootstrap_cover_true_auc():
    from scipy.stats import norm

    from breastssl.metrics import bootstrap_ci

    rng = np.random.default_rng(2024)
    d, m, n = 1.0, 60, 90
    true_auc = norm.cdf(d / np.sqrt(2))
    y = np.r_[np.ones(m), np.zeros(n)]
    hits_delong, hits_boot, n_sim, n_boot_sim = 0, 0, 1000, 200
    for i in range(n_sim):
        s = np.r_[rng.normal(d, 1, m), rng.normal(0, 1, n)]
        _, lo, hi = delong_ci(y, s)
        hits_delong += lo <= true_auc <= hi
        if i < n_boot_sim:
            _, lo, hi = bootstrap_ci(roc_auc, y, s, n=500, seed=i)
            hits_boot += lo <= true_auc <= hi
    assert 0.93 <= hits_delong / n_sim <= 0.97
    assert 0.90 <= hits_boot / n_boot_sim <= 0.985
