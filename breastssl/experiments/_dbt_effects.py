"""Paired effects over training seeds with a CI that holds both seed and test-case variance (DESIGN §11).

Input: ``preds[(seed, setting)]`` = a run's level predictions (keys, ``score``, ``label``, ``vendor``), every
run of every seed scored on the same test cases. For a pair (a, b) and a group (overall or a vendor) the
effect is the mean over seeds of AUC_a − AUC_b. Its 95% CI comes from a two-level bootstrap: each
replicate resamples the test cases (positives and negatives separately, so every replicate has both) and,
independently, the seeds, both with replacement; the percentile interval of the replicated mean Δ
then widens with either source of variance. One case resample serves every pair and seed of a replicate,
so the cost is one rank computation per replicate and group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from ..metrics.aggregate import LEVEL_KEYS
from ..metrics.bootstrap import case_weights, seed_draws, seeds_cases_summary
from ..reports.html import effect

EFFECT_COLUMNS = ["a", "b", "group", "seeds", "delta", "ci_low", "ci_high", "seeds_positive", "delta_sd"]


def _auc_rows(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mann–Whitney AUC (ties ½) of each row of scores (R, n) against labels (n,) in {0, 1}."""
    pos = labels.astype(bool)
    n1, n0 = int(pos.sum()), int((~pos).sum())
    ranks = rankdata(scores, axis=1)
    return (ranks[:, pos].sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def weighted_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC (ties ½) of one score vector (n,) under each row of case weights (B, n): (B,).

    A bootstrap replicate is a vector of resampling counts, so one sort of the scores serves every
    replicate: with cases in score order, AUC_w = Σ_pos w_i (W_neg below s_i + ½ W_neg tied) / (W_pos W_neg).
    """
    order = np.argsort(scores, kind="stable")
    s, y, w = scores[order], labels[order].astype(bool), weights[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # first case of each run of tied scores
    neg = np.add.reduceat(w * ~y, starts, axis=1)
    pos = np.add.reduceat(w * y, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    return (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def _matrix(preds: Mapping[tuple[int, str], pd.DataFrame], keys: Sequence[str]) -> tuple[pd.DataFrame, dict]:
    """Cases (keys, label, vendor) in one order and the score vector of every (seed, setting) in that order."""
    first = next(iter(preds.values()))
    cases = first[[*keys, "label", "vendor"]].sort_values(list(keys)).reset_index(drop=True)
    vectors = {}
    for k, df in preds.items():
        m = cases[list(keys)].merge(df[[*keys, "score"]], on=list(keys), how="left", validate="one_to_one")
        if m["score"].isna().any() or len(df) != len(cases):
            raise ValueError(f"run {k}: scored on other cases than {next(iter(preds))}")
        vectors[k] = m["score"].to_numpy(float)
    return cases, vectors


def paired_effects(
    preds: Mapping[tuple[int, str], pd.DataFrame],
    level: str,
    pairs: Sequence[tuple[str, str]],
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (pair, group): mean Δ AUC over seeds, its 95% CI over seeds × cases, per-seed signs.

    Columns: a, b, group, seeds, delta, ci_low, ci_high, seeds_positive (seeds with Δ > 0), delta_sd
    (over seeds). Pairs whose settings are missing are skipped; only seeds that have both settings count.
    """
    keys = LEVEL_KEYS[level]
    cases, vec = _matrix(preds, keys)
    rng = np.random.default_rng([seed, 2024])
    groups = [("overall", np.ones(len(cases), bool))]
    groups += [(str(v), (cases["vendor"] == v).to_numpy()) for v in sorted(cases["vendor"].dropna().unique())]
    runs = sorted(vec)
    rows = []
    for group, sel in groups:
        y = cases["label"].to_numpy(int)[sel]
        if y.min() == y.max():
            continue
        S = np.stack([vec[k][sel] for k in runs])  # (runs, cases of the group)
        point = dict(zip(runs, _auc_rows(S, y), strict=True))
        weights = case_weights(y, n_boot, rng)  # resampling counts, positives and negatives apart
        boot = np.stack([weighted_auc(S[i], y, weights) for i in range(len(runs))], axis=1)
        col = {k: i for i, k in enumerate(runs)}
        draws = seed_draws(n_boot, rng)  # the same seed resamples for every pair of this group
        for a, b in pairs:
            seeds = sorted(s for s, st in runs if st == a and (s, b) in col)
            if not seeds:
                continue
            d_point = np.array([point[(s, a)] - point[(s, b)] for s in seeds])
            d_boot = np.stack([boot[:, col[(s, a)]] - boot[:, col[(s, b)]] for s in seeds], axis=1)
            r = seeds_cases_summary(d_point, d_boot, draws)
            rows.append({"a": a, "b": b, "group": group, "seeds": r["seeds"], "delta": r["mean"],
                         "ci_low": r["ci_low"], "ci_high": r["ci_high"], "seeds_positive": r["seeds_positive"],
                         "delta_sd": r["sd"]})  # fmt: skip
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


def setting_cis(
    preds: Mapping[tuple[int, str], pd.DataFrame], level: str, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Mean AUC over seeds per (setting, group) with the same seeds × cases bootstrap CI.

    Implemented as the effect of each setting against a constant-score reference (AUC 0.5), so both tables
    share one resampling scheme.
    """
    settings = sorted({st for _, st in preds})
    ref = {}
    for (s, _), df in preds.items():
        ref[(s, "_chance")] = df.assign(score=0.0)
    eff = paired_effects({**preds, **ref}, level, [(st, "_chance") for st in settings], n_boot, seed)
    eff = eff.assign(auc=eff["delta"] + 0.5, ci_low=eff["ci_low"] + 0.5, ci_high=eff["ci_high"] + 0.5)
    return eff.rename(columns={"a": "setting"})[["setting", "group", "seeds", "auc", "ci_low", "ci_high"]]


def _row(eff: pd.DataFrame, a: str, b: str, group: str) -> pd.Series | None:
    r = eff[(eff["a"] == a) & (eff["b"] == b) & (eff["group"] == group)]
    return r.iloc[0] if len(r) else None


def claims_with_ci(eff: pd.DataFrame, labels: Mapping[str, str], annotated: Sequence[str]) -> list[dict]:
    """The paper's four Table-1 claims decided on the paired effects: a claim holds when its ΔAUC CI
    (seeds × test cases) excludes 0 in the paper's direction; ``holds`` is None when a figure is missing."""
    groups = sorted(set(eff["group"]) - {"overall"}) if len(eff) else []
    other = [v for v in groups if v not in annotated]
    out = []

    def add(claim: str, rows: dict[str, pd.Series | None], ok) -> None:
        present = [r for r in rows.values() if r is not None]
        holds = None if len(present) < len(rows) or not rows else bool(ok(rows))
        figures = "; ".join(f"{k}: {effect(r)}" for k, r in rows.items())
        out.append({"claim": claim, "holds": holds, "figures": figures})

    def sig(r: pd.Series) -> bool:
        return r["ci_low"] > 0

    add("SelectiveKD beats Baseline (overall)",
        {"SelectiveKD − Baseline": _row(eff, "selective_kd", "baseline", "overall")},
        lambda rows: all(sig(r) for r in rows.values()))  # fmt: skip
    rivals = ("baseline", "kd", "kd_weak", "selective_kd")
    add("SelectiveKD* is best overall",
        {f"SelectiveKD* − {labels[b]}": _row(eff, "selective_kd_weak", b, "overall") for b in rivals},
        lambda rows: all(sig(r) for r in rows.values()))  # fmt: skip
    gains = {f"SelectiveKD* − Baseline, {v}": _row(eff, "selective_kd_weak", "baseline", v) for v in groups}

    def largest(rows: dict) -> bool:
        ann = [rows[f"SelectiveKD* − Baseline, {v}"]["delta"] for v in annotated if v in groups]
        oth = [rows[f"SelectiveKD* − Baseline, {v}"] for v in other]
        return bool(ann and oth) and all(r["delta"] > max(ann) and sig(r) for r in oth)

    add("Largest SelectiveKD* gains on the vendors without annotations", gains, largest)
    sel = {f"{labels[a]} − {labels[b]}, {v}": _row(eff, a, b, v)
           for a, b in (("selective_kd", "kd"), ("selective_kd_weak", "kd_weak")) for v in other}  # fmt: skip
    add("Selection beats plain KD on the vendors without annotations", sel,
        lambda rows: all(sig(r) for r in rows.values()))  # fmt: skip
    return out


def negative_means(preds: Mapping[tuple[int, str], pd.DataFrame]) -> pd.DataFrame:
    """Mean calibrated score of the cancer-negative and the cancer cases per setting and vendor, over seeds.

    A vendor-wide offset (a student that learnt "this vendor's look → negative") shows here, while a
    per-vendor AUC cannot see it and an overall AUC only as a loss."""
    rows = []
    for (seed, setting), df in preds.items():
        for vendor, g in df.groupby("vendor"):
            rows.append({"setting": setting, "vendor": str(vendor), "seed": seed,
                         "neg_mean": float(g.loc[g["label"] == 0, "score"].mean()),
                         "pos_mean": float(g.loc[g["label"] == 1, "score"].mean())})  # fmt: skip
    df = pd.DataFrame(rows)
    return df.groupby(["setting", "vendor"])[["neg_mean", "pos_mean"]].mean().reset_index() if len(df) else df
