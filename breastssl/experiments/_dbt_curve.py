"""The statistics of the annotation-efficiency curve (SelectiveKD paper Fig. 2) with the power of DESIGN §11.

Input: ``preds[(seed, "setting@budget")]`` = a run's level predictions, every run scored on the same test
cases (budgets in percent, e.g. ``selective_kd@25``). Every point of the curve is the mean AUC over
seeds with a 95% CI over seeds × test cases, and every comparison is a paired ΔAUC with the same two-level
bootstrap (``_dbt_effects``): each student against the Baseline of its own budget (does distillation help
at this budget?) and every setting at every budget against the Baseline at every other budget (which
Baseline budget does it match?). The matching budget is then read three ways: from the mean curve
(linear interpolation, the paper's reading), as the smallest budget from which a setting is not
significantly below the full-annotation Baseline (its Δ CI reaches 0), and as the largest Baseline
budget that a setting significantly exceeds or matches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ._dbt_effects import paired_effects, setting_cis

BASE = "baseline"


def point(setting: str, budget: int) -> str:
    """The key of one curve point: ``selective_kd@25`` (budget in percent)."""
    return f"{setting}@{budget}"


def split_point(key: str) -> tuple[str, int]:
    setting, _, budget = key.partition("@")
    return setting, int(budget)


def _split(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """A copy with ``setting`` and ``budget`` (percent) columns split from the 'setting@budget' keys in ``column``."""
    keys = [split_point(k) for k in df[column]]
    return df.assign(setting=[k[0] for k in keys], budget=[k[1] for k in keys])


def curve_pairs(settings: Sequence[str], budgets: Sequence[int]) -> list[tuple[str, str]]:
    """Every (setting@b, baseline@b') pair: the same budget and every other Baseline budget."""
    return [(point(s, b), point(BASE, c)) for s in settings for b in budgets for c in budgets
            if not (s == BASE and b == c)]  # fmt: skip


def curve_points(cis: pd.DataFrame, per_seed: pd.DataFrame, group: str) -> pd.DataFrame:
    """One row per (setting, budget): auc_mean, auc_sd (over seeds), ci_low, ci_high (seeds × cases), seeds.

    cis: ``setting_cis`` rows (setting = 'name@budget'); per_seed: ``auc_rows`` (one AUC per seed and group).
    A point whose test group has one class only has NaN figures rather than no row.
    """
    g = per_seed[per_seed["group"] == group].groupby("setting")["auc"]
    out = pd.DataFrame({"auc_mean": g.mean(), "auc_sd": g.std(ddof=1), "seeds": g.size()}).reset_index()
    boot = cis[cis["group"] == group].set_index("setting")
    out = out.assign(ci_low=[boot["ci_low"].get(k, np.nan) for k in out["setting"]],
                     ci_high=[boot["ci_high"].get(k, np.nan) for k in out["setting"]])  # fmt: skip
    out["auc_mean"] = [boot["auc"].get(k, m) for k, m in zip(out["setting"], out["auc_mean"], strict=True)]
    out = _split(out, "setting").assign(budget=lambda d: d["budget"] / 100)
    out = out[["setting", "budget", "auc_mean", "auc_sd", "ci_low", "ci_high", "seeds"]]
    return out.sort_values(["setting", "budget"]).reset_index(drop=True)


def budget_effects(effects: pd.DataFrame, group: str) -> pd.DataFrame:
    """The paired effects of one group with a, b split into setting / budget columns (budgets as fractions)."""
    e = _split(effects[effects["group"] == group], "a")
    e["vs_budget"] = [split_point(k)[1] / 100 for k in e["b"]]
    e["budget"] = e["budget"] / 100
    return e[["setting", "budget", "vs_budget", "seeds", "delta", "ci_low", "ci_high", "seeds_positive"]]


def ci_matching(eff: pd.DataFrame, setting: str) -> dict[str, float | None]:
    """Two CI readings of where ``setting`` meets the Baseline (eff: ``budget_effects`` rows).

    ``not_below_full``: the smallest budget from which every larger budget's Δ against the full Baseline has a
    CI reaching 0 (never significantly below it). ``matches_baseline_at``, per budget: the largest Baseline
    budget that this setting is not significantly below (ci_high ≥ 0).
    """
    e = eff[eff["setting"] == setting]
    top = float(eff["vs_budget"].max()) if len(eff) else 1.0
    full = e[e["vs_budget"] == top]
    not_below = None
    for b in sorted(set(e["budget"]) | ({top} if setting == BASE else set()), reverse=True):
        row = full[full["budget"] == b]
        if len(row) and float(row["ci_high"].iloc[0]) < 0:  # the full Baseline against itself has no row
            break
        not_below = float(b)
    matches = {}
    own = {float(b) for b in e["budget"]} | ({top} if setting == BASE else set())
    for b in sorted(own):
        ok = [float(v) for v in e[(e["budget"] == b) & (e["ci_high"] >= 0)]["vs_budget"]]
        ok += [b] if setting == BASE else []  # the Baseline at a budget matches itself (no row compares them)
        matches[f"{b:g}"] = max(ok) if ok else None
    return {"not_below_full": not_below, "matches_baseline_at": matches}


def analyse_curve(
    preds: Mapping[tuple[int, str], pd.DataFrame], level: str, group: str, n_boot: int = 1000
) -> dict[str, pd.DataFrame]:
    """The curve (``curve_points``) and every paired effect (``budget_effects``) of one test group."""
    from ._dbt_tables import auc_rows

    keys = sorted({split_point(k) for _, k in preds})
    settings = sorted({s for s, _ in keys}, key=lambda s: (s != BASE, s))
    budgets = sorted({b for _, b in keys})
    per_seed = auc_rows(preds)
    if group not in set(per_seed["group"]):
        from ..errors import UserError

        raise UserError(f"test group {group!r} not found; the runs have {sorted(set(per_seed['group']))}")
    cis = setting_cis(preds, level, n_boot)
    effects = paired_effects(preds, level, curve_pairs(settings, budgets), n_boot)
    return {"curve": curve_points(cis, per_seed, group), "effects": budget_effects(effects, group)}
