"""Effects of the ultrasound experiment with CIs over training seeds × test cases, and the paper's claims.

Input: ``preds`` with one row per (test image, arm, seed): ``image_id``, ``set_name`` (a test site), ``label``
(0/1), ``arm``, ``seed``, ``score``; every run scored on the same test images of a site. Per site, as
:func:`breastssl.experiments._dbt_effects.paired_effects` does for DBT: one set of case resamples (counts per
case, malignant and benign apart) and one set of seed resamples serve every arm and pair; a metric per run is
computed under every case resample (AUC by :func:`weighted_auc`, the threshold metrics as weighted rates), and
:func:`seeds_cases_summary` turns the per-seed replicates into the mean over seeds with a CI that widens with
either source of variance. Beside it, the paired DeLong test of the seed ensembles (mean score over seeds).

The detector is trained once (the first seed), so its box IoU gets a one-level bootstrap over test nodules.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from ..metrics.bootstrap import case_weights, seed_draws, seeds_cases_summary
from ._dbt_effects import weighted_auc

METRICS = ("auc", "sensitivity", "specificity", "accuracy")
PAIRS = (("semi", "sup_basic"), ("semi", "sup_all"), ("semi", "sup_basic_ema"), ("sup_basic_ema", "sup_basic"))
# the paper's Tables 3 (internal test set A) and 4 (independent test set B): semi, supervisor_a, supervisor_b
PAPER = {
    "internal": {"semi": {"auc": 0.937, "accuracy": 0.888}, "sup_basic": {"auc": 0.833, "accuracy": 0.738},
                 "sup_all": {"auc": 0.942, "accuracy": 0.896}},
    "independent": {"semi": {"auc": 0.920, "accuracy": 0.859}, "sup_basic": {"auc": 0.818, "accuracy": 0.719},
                    "sup_all": {"auc": 0.923, "accuracy": 0.869}},
}  # fmt: skip
PAPER_IOU = 0.85  # Table 2: "the mean value of ASC is above 0.85" (0.88 on A, 0.86 on B)


def replicate_metrics(score: np.ndarray, y: np.ndarray, w: np.ndarray, thr: float) -> dict[str, np.ndarray]:
    """Each metric of one run's scores (n,) against labels (n,) under case weights (B, n): name → (B,).

    Weights of ones give the plain metric. Sensitivity and specificity are weighted rates among the
    malignant and the benign cases; accuracy among all (a row of counts sums to n).
    """
    pos = y.astype(bool)
    hit = score >= thr
    return {"auc": weighted_auc(score, y, w),
            "sensitivity": w @ (pos & hit) / (w @ pos),
            "specificity": w @ (~pos & ~hit) / (w @ ~pos),
            "accuracy": w @ (hit == pos) / w.sum(axis=1)}  # fmt: skip


def _site_runs(g: pd.DataFrame) -> tuple[np.ndarray, dict[tuple[int, str], np.ndarray]]:
    """Labels (n,) of a site's test images in image order and every run's scores (n,) in that order."""
    wide = g.pivot_table(index="image_id", columns=["seed", "arm"], values="score", aggfunc="first").sort_index()
    if wide.isna().any().any():
        raise ValueError(f"{g['set_name'].iloc[0]}: runs scored on different test images")
    y = g.groupby("image_id")["label"].first().loc[wide.index].to_numpy(int)
    return y, {(int(s), str(a)): wide[(s, a)].to_numpy(float) for s, a in wide.columns}


def site_effects(g: pd.DataFrame, thr: float, n_boot: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(arm rows, effect rows) of one test site; see the module doc.

    Arm rows: set, arm, metric, seeds, mean, ci_low, ci_high, sd. Effect rows: set, a, b, metric, seeds,
    delta, ci_low, ci_high, seeds_positive, delta_sd (only seeds that ran both arms count).
    """
    name = str(g["set_name"].iloc[0])
    y, runs = _site_runs(g)
    if y.min() == y.max():
        return [], []
    rng = np.random.default_rng([seed, 2024])
    weights = case_weights(y, n_boot, rng)  # (B, n) resampling counts, malignant and benign apart
    draws = seed_draws(n_boot, rng)  # the same seed resamples for every arm and pair of this site
    ones = np.ones((1, len(y)))
    point = {k: {m: float(v[0]) for m, v in replicate_metrics(s, y, ones, thr).items()} for k, s in runs.items()}
    boot = {k: replicate_metrics(s, y, weights, thr) for k, s in runs.items()}
    order = ("semi", "sup_basic", "sup_all")
    arms = sorted({a for _, a in runs}, key=lambda a: (order.index(a) if a in order else len(order), a))
    arm_rows, eff_rows = [], []
    for arm in arms:
        seeds = sorted(s for s, a in runs if a == arm)
        for m in METRICS:
            r = seeds_cases_summary([point[(s, arm)][m] for s in seeds],
                                    np.stack([boot[(s, arm)][m] for s in seeds], axis=1), draws)  # fmt: skip
            arm_rows.append({"set": name, "arm": arm, "metric": m, "seeds": r["seeds"], "mean": r["mean"],
                             "ci_low": r["ci_low"], "ci_high": r["ci_high"], "sd": r["sd"]})  # fmt: skip
    for a, b in PAIRS:
        seeds = sorted(s for s, arm in runs if arm == a and (s, b) in runs)
        for m in METRICS if seeds else ():
            d_point = np.array([point[(s, a)][m] - point[(s, b)][m] for s in seeds])
            d_boot = np.stack([boot[(s, a)][m] - boot[(s, b)][m] for s in seeds], axis=1)  # (B, seeds)
            r = seeds_cases_summary(d_point, d_boot, draws)
            eff_rows.append({"set": name, "a": a, "b": b, "metric": m, "seeds": r["seeds"], "delta": r["mean"],
                             "ci_low": r["ci_low"], "ci_high": r["ci_high"], "seeds_positive": r["seeds_positive"],
                             "delta_sd": r["sd"]})  # fmt: skip
    return arm_rows, eff_rows


def ensemble_delong(g: pd.DataFrame) -> list[dict]:
    """Paired DeLong test of each pair's seed ensembles (mean score over the seeds that ran both) on one site."""
    from ..metrics import delong_test

    y, runs = _site_runs(g)
    rows = []
    for a, b in PAIRS:
        seeds = sorted(s for s, arm in runs if arm == a and (s, b) in runs)
        if not seeds:
            continue
        ens_a = np.mean([runs[(s, a)] for s in seeds], axis=0)
        ens_b = np.mean([runs[(s, b)] for s in seeds], axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = delong_test(y, ens_a, ens_b)
        rows.append({"set": str(g["set_name"].iloc[0]), "a": a, "b": b, "seeds": len(seeds), **t.to_dict()})
    return rows


def detection_cis(det: pd.DataFrame, n_boot: int, seed: int = 0) -> list[dict]:
    """Box IoU per test set (rows with a GT box): mean, std, share > 0.5, and bootstrap 95% CIs over nodules."""
    rows = []
    rng = np.random.default_rng([seed, 2025])
    for name, g in det[det["iou"].notna() & (det["set"] == "test")].groupby("set_name"):
        iou = g["iou"].to_numpy(float)
        w = case_weights(np.zeros(len(iou)), n_boot, rng)  # (B, n): nodules resampled with replacement
        mean_b, hit_b = w @ iou / len(iou), w @ (iou > 0.5) / len(iou)
        lo, hi = np.percentile(mean_b, [2.5, 97.5])
        hlo, hhi = np.percentile(hit_b, [2.5, 97.5])
        rows.append({"set": name, "n": len(iou), "iou_mean": float(iou.mean()), "ci_low": float(lo),
                     "ci_high": float(hi), "iou_std": float(iou.std()), "hit_rate_iou_0.5": float((iou > 0.5).mean()),
                     "hit_ci_low": float(hlo), "hit_ci_high": float(hhi)})  # fmt: skip
    return rows


def effects_tables(preds: pd.DataFrame, det: pd.DataFrame | None, thr: float, n_boot: int = 2000) -> dict:
    """Every table of the effects: ``arms``, ``effects``, ``ensemble_delong``, ``detection`` (lists of rows)."""
    arms, effects, delong = [], [], []
    for _, g in preds.groupby("set_name", sort=True):
        a, e = site_effects(g, thr, n_boot)
        arms += a
        effects += e
        delong += ensemble_delong(g) if g["label"].nunique() == 2 else []
    detection = detection_cis(det, n_boot) if det is not None else []
    return {"arms": arms, "effects": effects, "ensemble_delong": delong, "detection": detection}


def _paper_table(set_name: str) -> str:
    return "independent" if set_name.startswith("independent") else "internal"


def _effect(effects: list[dict], set_name: str, a: str, b: str, metric: str) -> dict | None:
    hits = [r for r in effects if (r["set"], r["a"], r["b"], r["metric"]) == (set_name, a, b, metric)]
    return hits[0] if hits else None


def _figures(r: dict | None, paper: float) -> str:
    if r is None:
        return f"n/a (paper {paper:+.3f})"
    return (f"{r['delta']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}], {r['seeds_positive']}/{r['seeds']} seeds > 0"
            f" (paper {paper:+.3f})")  # fmt: skip


def claims(tables: dict[str, Any], margin: float = 0.02) -> list[dict]:
    """The paper's claims per test site, decided on the seeds × cases CIs; ``holds`` None when a figure is missing.

    Superiority (semi − supervised-basic, Tables 3–4): the CI lies above 0. Similarity (semi − supervised-all;
    the paper: −0.003 to −0.010, "similar accuracy"): non-inferiority, the CI lies above −``margin``.
    Detection (Table 2, a level, not a comparison): the IoU CI lies above 0.85.
    """
    out = []
    sets = sorted({r["set"] for r in tables["effects"]} | {r["set"] for r in tables["arms"]})
    for s in sets:
        paper = PAPER[_paper_table(s)]
        for metric in ("auc", "accuracy"):
            for b, rule, bound in (("sup_basic", "CI > 0", 0.0), ("sup_all", f"CI > −{margin:g}", -margin)):
                r = _effect(tables["effects"], s, "semi", b, metric)
                verb = "beats" if b == "sup_basic" else "is non-inferior to"
                out.append({"set": s, "claim": f"semi-supervised {verb} {b} ({metric})", "rule": rule,
                            "holds": None if r is None else bool(r["ci_low"] > bound),
                            "figures": _figures(r, paper["semi"][metric] - paper[b][metric])})  # fmt: skip
    for r in tables["detection"]:
        figures = f"{r['iou_mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] (paper ≥ {PAPER_IOU})"
        out.append({"set": r["set"], "claim": f"detector box IoU above {PAPER_IOU}", "rule": f"CI > {PAPER_IOU}",
                    "holds": bool(r["ci_low"] > PAPER_IOU), "figures": figures})  # fmt: skip
    return out
