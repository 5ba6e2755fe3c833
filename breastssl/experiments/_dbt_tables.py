"""The statistics of the SelectiveKD experiments from per-run prediction tables (pure functions, no training).

Input everywhere: ``preds[(seed, setting)]`` = a run's ``predictions_<level>.csv`` (keys, ``score``,
``label``, ``vendor``). Every comparison is paired: two settings of the same seed are scored on the same
test cases, so the DeLong test of seed 000's Table 1 applies. Across seeds we report mean ± SD of the AUC
and how many seeds reach p < 0.05, and an ensemble (the mean score of the seeds per case), whose AUC has a
DeLong CI and a paired p-value like a single model's.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..metrics import delong_ci, delong_test
from ..metrics.aggregate import LEVEL_KEYS

LABELS = {  # setting → the paper's Table 1 row name
    "baseline": "Baseline",
    "kd": "KD",
    "kd_weak": "KD*",
    "selective_kd": "SelectiveKD",
    "selective_kd_weak": "SelectiveKD*",
}
STRATEGY = {"baseline": "supervised", **{k: k for k in LABELS if k != "baseline"}}
PAIRS = [  # (a, b): the comparisons the paper's claims rest on
    ("selective_kd", "baseline"),
    ("selective_kd_weak", "baseline"),
    ("kd", "baseline"),
    ("kd_weak", "baseline"),
    ("selective_kd", "kd"),
    ("selective_kd_weak", "kd_weak"),
    ("selective_kd_weak", "selective_kd"),
]
OVERALL = "overall"


def _groups(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """'overall' plus one table per vendor."""
    out = {OVERALL: df}
    out.update({str(v): g for v, g in df.groupby("vendor", sort=True)})
    return out


def _quiet(fn: Any, *args: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one-class groups give NaN; the table shows "–"
        return fn(*args)


def auc_rows(preds: Mapping[tuple[int, str], pd.DataFrame]) -> pd.DataFrame:
    """One row per (seed, setting, group): n, n_pos, auc, ci_low, ci_high (DeLong 95%)."""
    rows = []
    for (seed, setting), df in preds.items():
        for group, g in _groups(df).items():
            auc, lo, hi = _quiet(delong_ci, g["label"].to_numpy(), g["score"].to_numpy())
            rows.append({"seed": seed, "setting": setting, "group": group, "n": len(g),
                         "n_pos": int(g["label"].sum()), "auc": auc, "ci_low": lo, "ci_high": hi})  # fmt: skip
    return pd.DataFrame(rows)


def _paired(a: pd.DataFrame, b: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    m = a.merge(b[[*keys, "score"]], on=list(keys), suffixes=("_a", "_b"), validate="one_to_one")
    if len(m) != len(a) or len(m) != len(b):
        raise ValueError(f"paired comparison over different cases: {len(a)} vs {len(b)}, {len(m)} shared")
    return m


def pair_tests(
    preds: Mapping[tuple[int, str], pd.DataFrame], level: str, pairs: Sequence[tuple[str, str]] = PAIRS
) -> pd.DataFrame:
    """Paired DeLong tests a − b per seed and group: auc_a, auc_b, difference, its CI, z, p."""
    keys = LEVEL_KEYS[level]
    rows = []
    for seed in sorted({s for s, _ in preds}):
        for a, b in pairs:
            if (seed, a) not in preds or (seed, b) not in preds:
                continue
            m = _paired(preds[(seed, a)], preds[(seed, b)], keys)
            for group, g in _groups(m).items():
                t = _quiet(delong_test, g["label"].to_numpy(), g["score_a"].to_numpy(), g["score_b"].to_numpy())
                rows.append({"seed": seed, "a": a, "b": b, "group": group, "auc_a": t.auc_a, "auc_b": t.auc_b,
                             "difference": t.auc_a - t.auc_b, "diff_ci_low": t.ci_low, "diff_ci_high": t.ci_high,
                             "z": t.z, "p": t.p})  # fmt: skip
    return pd.DataFrame(rows)


def ensemble(preds: Mapping[tuple[int, str], pd.DataFrame], level: str) -> dict[tuple[str, str], pd.DataFrame]:
    """Per setting the mean score over seeds per case, keyed ('ensemble', setting) for the functions above."""
    keys = LEVEL_KEYS[level]
    out: dict[tuple[str, str], pd.DataFrame] = {}
    for setting in sorted({s for _, s in preds}):
        frames = [df for (_, s), df in preds.items() if s == setting]
        stacked = pd.concat(frames, ignore_index=True)
        mean = stacked.groupby(keys, sort=True).agg(score=("score", "mean"), label=("label", "first"),
                                                    vendor=("vendor", "first"), n=("score", "size"))  # fmt: skip
        if (mean["n"] != len(frames)).any():
            raise ValueError(f"setting {setting}: the seeds were scored on different cases")
        out[("ensemble", setting)] = mean.drop(columns="n").reset_index()
    return out


def summary(aucs: pd.DataFrame, tests: pd.DataFrame) -> pd.DataFrame:
    """Mean ± SD over seeds per (setting, group), with the count of seeds where p < 0.05 against the baseline."""
    g = aucs.groupby(["setting", "group"])["auc"]
    out = pd.DataFrame({"auc_mean": g.mean(), "auc_sd": g.std(ddof=1), "seeds": g.size()}).reset_index()
    if len(tests):
        vs = tests[tests["b"] == "baseline"].assign(better=lambda t: (t["p"] < 0.05) & (t["difference"] > 0))
        vs = vs.assign(worse=lambda t: (t["p"] < 0.05) & (t["difference"] < 0))
        counts = vs.groupby(["a", "group"])[["better", "worse"]].sum().reset_index().rename(columns={"a": "setting"})
        out = out.merge(counts, on=["setting", "group"], how="left")
    return out


def matching_budget(curve: pd.DataFrame, setting: str, target: float) -> float | None:
    """The smallest budget whose mean AUC of ``setting`` reaches ``target``, linearly interpolated.

    curve: columns setting, budget, auc_mean. None when the setting never reaches the target.
    """
    c = curve[curve["setting"] == setting].sort_values("budget")
    b, a = c["budget"].to_numpy(float), c["auc_mean"].to_numpy(float)
    for i in range(len(b)):
        if a[i] >= target:
            if i == 0 or a[i] == a[i - 1]:
                return float(b[i])
            return float(b[i - 1] + (target - a[i - 1]) * (b[i] - b[i - 1]) / (a[i] - a[i - 1]))
    return None


def stratified_budget(exams: pd.DataFrame, fraction: float, seed: int) -> set[str]:
    """Exam ids of a nested, stratified annotation budget (paper §3.5).

    exams: one row per annotated training exam with ``exam_id`` and ``stratum`` (cancer / benign / normal).
    Each stratum is walked in one seeded permutation, and a budget takes its first ceil(f·n) exams, so
    the 20% set contains the 10% set and every stratum keeps its share.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"an annotation budget must be in (0, 1], got {fraction}")
    keep: set[str] = set()
    for k, (_, g) in enumerate(sorted(exams.groupby("stratum"), key=lambda t: str(t[0]))):
        ids = sorted(g["exam_id"].astype(str).unique())
        rng = np.random.default_rng([seed, k, 7919])
        order = [ids[i] for i in rng.permutation(len(ids))]
        keep.update(order[: int(math.ceil(fraction * len(order) - 1e-9))])
    return keep
