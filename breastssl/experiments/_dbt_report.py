"""HTML reports of the DBT SelectiveKD experiments (Table 1 and the annotation-efficiency curve)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..reports.html import ci, fmt, page, table
from ._dbt_tables import LABELS, OVERALL


def _nan(fn, values) -> float:
    """``fn`` (np.nanmean / np.nanmin) of ``values``, NaN without a warning when every value is NaN."""
    arr = np.asarray(values, float)
    return float(fn(arr)) if np.isfinite(arr).any() else math.nan


def _groups(df: pd.DataFrame) -> list[str]:
    return [OVERALL, *sorted(set(df["group"]) - {OVERALL})]


def _settings(df: pd.DataFrame, col: str = "setting") -> list[str]:
    return [s for s in LABELS if s in set(df[col])]


def _p(p: float) -> str:
    return "–" if p is None or (isinstance(p, float) and math.isnan(p)) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _summary_table(summ: pd.DataFrame) -> str:
    groups = _groups(summ)
    rows = []
    for s in _settings(summ):
        row: list[object] = [LABELS[s]]
        for g in groups:
            r = summ[(summ["setting"] == s) & (summ["group"] == g)].iloc[0]
            cell = fmt(r["auc_mean"]) + ("" if math.isnan(r["auc_sd"]) else f" ± {r['auc_sd']:.3f}")
            if s != "baseline" and "better" in r and not pd.isna(r["better"]):
                sig = f"↑{int(r['better'])} ↓{int(r['worse'])} of {r['seeds']}"
                cell += f" <span class='note'>(p&lt;0.05: {sig})</span>"
            row.append(cell)
        rows.append(row)
    return table(["setting", *groups], rows)


def _ci_table(aucs: pd.DataFrame, tests: pd.DataFrame, seed: Any) -> str:
    a = aucs[aucs["seed"] == seed]
    t = tests[(tests["seed"] == seed) & (tests["b"] == "baseline")] if len(tests) else tests
    groups = _groups(a)
    rows = []
    for s in _settings(a):
        row: list[object] = [LABELS[s]]
        for g in groups:
            r = a[(a["setting"] == s) & (a["group"] == g)].iloc[0]
            cell = ci(r["auc"], r["ci_low"], r["ci_high"])
            if s != "baseline" and len(t):
                p = t[(t["a"] == s) & (t["group"] == g)]["p"]
                cell += f" <span class='note'>p={_p(float(p.iloc[0]))}</span>" if len(p) else ""
            row.append(cell)
        rows.append(row)
    n = a[a["setting"] == "baseline"].set_index("group")
    head = [f"{g} (n={int(n.loc[g, 'n'])}, pos={int(n.loc[g, 'n_pos'])})" if g in n.index else g for g in groups]
    return table(["setting", *head], rows)


def _pairs_table(tests: pd.DataFrame) -> str:
    if not len(tests):
        return "<p class='note'>no paired tests</p>"
    rows = []
    for (a, b, g), grp in tests.groupby(["a", "b", "group"], sort=False):
        d = grp["difference"].to_numpy(float)
        sig = int(((grp["p"] < 0.05) & (grp["difference"] > 0)).sum()), int(((grp["p"] < 0.05) & (d < 0)).sum())
        ps = ", ".join(_p(float(p)) for p in grp["p"])
        counts = f"↑{sig[0]} ↓{sig[1]} of {len(grp)}"
        rows.append([f"{LABELS[a]} − {LABELS[b]}", g, f"{_nan(np.nanmean, d):+.3f}", ps, counts])
    return table(["comparison", "group", "mean ΔAUC", "p per seed (DeLong, paired)", "p<0.05"], rows)


def _bar_png(summ: pd.DataFrame, title: str) -> str:
    from ..reports.plots import figure_png, plt

    groups, settings = _groups(summ), _settings(summ)
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    width = 0.8 / max(len(settings), 1)
    for i, s in enumerate(settings):
        rows = [summ[(summ["setting"] == s) & (summ["group"] == g)].iloc[0] for g in groups]
        x = np.arange(len(groups)) + (i - (len(settings) - 1) / 2) * width
        sd = [0.0 if math.isnan(r["auc_sd"]) else r["auc_sd"] for r in rows]
        ax.bar(x, [r["auc_mean"] for r in rows], width, yerr=sd, capsize=2, label=LABELS[s])
    lo = _nan(np.nanmin, summ["auc_mean"]) if len(summ) else 0.5
    lo = 0.5 if math.isnan(lo) else lo
    ax.set(xticks=np.arange(len(groups)), xticklabels=groups, ylim=(max(0.0, lo - 0.1), 1.0), ylabel="AUC",
           title=title)  # fmt: skip
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=len(settings), loc="upper center", bbox_to_anchor=(0.5, -0.1))
    return figure_png(fig)


def _recipe_lines(recipe: Any) -> list[str]:
    m, tr, st, d = recipe.model, recipe.train, recipe.strategy, recipe.data
    return [
        f"Data: {d.manifest}, slices {tuple(d.image_size)}, negative stride {d.neg_stride}, positives key ± "
        f"{d.pos_halfwidth}; model {m.name} {m.backbone or ''} (pretrained {m.pretrained})",
        f"Training: {tr.steps} steps × batch {tr.batch_size}, {tr.optim.name} lr {tr.optim.lr}, {tr.schedule.name}; "
        f"α_clf {st.alpha_clf}, α_seg {st.alpha_seg}; T: selective_kd 0.7, selective_kd_weak 0.1 unless set "
        f"({st.threshold}); composition {st.composition.model_dump()}",
    ]


def _claims_html(claims: list[dict[str, Any]]) -> str:
    mark = {True: "holds", False: "does NOT hold", None: "n/a"}
    return table(["paper's claim", "here", "figures"],
                 [[c["claim"], mark[c["holds"]], c["figures"]] for c in claims])  # fmt: skip


def table1_html(cfg: Any, recipe: Any, res: dict[str, Any]) -> str:
    """The Table-1 report."""
    summ, aucs, tests = res["summary"], res["aucs"], res["tests"]
    from ._dbt_report_power import power_sections

    sections = [
        ("The paper's claims (decided on the paired ΔAUC CI over seeds × test cases)", _claims_html(res["claims"])),
        *(power_sections(cfg, res) if "effects" in res else []),
        (f"{cfg.level}-level AUC, mean ± SD over seeds {cfg.seeds}", _summary_table(summ)
         + f"<div class='figs'><img src='data:image/png;base64,{_bar_png(summ, 'AUC per vendor')}' width='720'></div>"),
        ("Paired comparisons", _pairs_table(tests)),
    ]  # fmt: skip
    if len(res["ensemble_aucs"]):
        sections.append(("Seed ensemble (mean score of the seeds per case): AUC [95% CI], p vs Baseline",
                         _ci_table(res["ensemble_aucs"], res["ensemble_tests"], "ensemble")))  # fmt: skip
    for seed in cfg.seeds:
        sections.append((f"Seed {seed}: AUC [DeLong 95% CI], p vs Baseline", _ci_table(aucs, tests, seed)))
    for ab in getattr(cfg, "ablations", []):
        sections.append((f"Ablation {ab.name}", f"<p>{ab.description} (settings {ab.settings}, set {ab.set})</p>"))
    meta = [
        "SelectiveKD (Dillard et al., arXiv:2409.16581), Table 1: Baseline (teacher), KD, KD*, SelectiveKD, "
        "SelectiveKD* (* = weak breast labels). Annotated vendors: " + ", ".join(cfg.annotated_vendors),
        *_recipe_lines(recipe),
    ]
    return page("SelectiveKD: Table 1", meta, sections)


def curve_png(curve: pd.DataFrame, full: float, title: str) -> str:
    """AUC vs annotation budget per setting: mean over seeds with its 95% CI (seeds × test cases) as a band."""
    from ..reports.plots import figure_png, plt

    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    for s in _settings(curve):
        c = curve[curve["setting"] == s].sort_values("budget")
        x = 100 * c["budget"].to_numpy(float)
        ax.plot(x, c["auc_mean"], marker="o", lw=1.6, label=LABELS[s])
        ax.fill_between(x, c["ci_low"], c["ci_high"], alpha=0.15)
    ax.axhline(full, ls=":", c="0.4", lw=1, label="Baseline, 100% annotated")
    ax.set(xlabel="annotated exams (%)", ylabel="AUC", title=title, xlim=(0, 102))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return figure_png(fig)


def _delta(r: pd.Series) -> str:
    return f"{r['delta']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] ({int(r['seeds_positive'])}/{int(r['seeds'])})"


def _effects_tables(effects: pd.DataFrame) -> tuple[str, str]:
    """Δ against the Baseline of the same budget, and the matrix of every setting@budget vs Baseline@budget."""
    same = effects[(effects["budget"] == effects["vs_budget"]) & (effects["setting"] != "baseline")]
    rows = [[LABELS[r["setting"]], f"{100 * r['budget']:.0f}%", _delta(r)]
            for _, r in same.sort_values(["setting", "budget"]).iterrows()]  # fmt: skip
    vs = sorted(effects["vs_budget"].unique())
    matrix = []
    for (s, b), g in effects.groupby(["setting", "budget"], sort=False):
        cells = {float(r["vs_budget"]): _delta(r) for _, r in g.iterrows()}
        matrix.append([LABELS[s], f"{100 * b:.0f}%", *(cells.get(float(v), "–") for v in vs)])
    matrix.sort(key=lambda r: (list(LABELS.values()).index(r[0]), float(r[1][:-1])))
    head = ["setting", "budget", *(f"− Baseline {100 * v:.0f}%" for v in vs)]
    return table(["student", "budget", "Δ AUC − Baseline at the same budget [95% CI] (seeds > 0)"], rows), table(
        head, matrix
    )


def curve_html(
    cfg: Any, recipe: Any, curve: pd.DataFrame, match: dict[str, Any], budgets: pd.DataFrame, effects: pd.DataFrame
) -> str:
    """The annotation-efficiency report."""
    rows = []
    for s in _settings(curve):
        for _, r in curve[curve["setting"] == s].sort_values("budget").iterrows():
            rows.append([LABELS[s], f"{100 * r['budget']:.0f}%", ci(r["auc_mean"], r["ci_low"], r["ci_high"]),
                         fmt(r["auc_sd"]), int(r["seeds"])])  # fmt: skip

    def pct(b: float | None) -> str:
        return "not reached" if b is None else f"{100 * b:.0f}%"

    def matches(s: str) -> str:
        return "; ".join(f"{100 * float(k):.0f}% → {pct(v)}" for k, v in match["ci"][s]["matches_baseline_at"].items())

    match_rows = [[LABELS[s], pct(b), pct(match["ci"][s]["not_below_full"]), matches(s)]
                  for s, b in match["budget"].items()]  # fmt: skip
    same, matrix = _effects_tables(effects)
    figure = curve_png(curve, match["target"], f"{cfg.level}-level AUC vs annotation budget ({cfg.group})")
    sections = [
        ("AUC vs annotated fraction", f"<div class='figs'><img src='data:image/png;base64,{figure}'></div>"),
        (f"Budget at which each setting reaches the Baseline trained on all annotations (AUC {match['target']:.3f})",
         table(["setting", "mean curve (linear interpolation)", "not significantly below it from",
                "largest Baseline budget it is not significantly below, per budget"], match_rows)),
        ("Does distillation help at each budget? Paired effects, seeds × test cases", same),
        ("Every point: mean AUC over seeds [95% CI over seeds × test cases]",
         table(["setting", "budget", "AUC", "SD over seeds", "seeds"], rows)),
        ("Every setting and budget against the Baseline at every budget (Δ AUC [95% CI], seeds with Δ > 0)", matrix),
        ("Budgets: annotated training exams per stratum", table(list(budgets.columns), budgets.values.tolist())),
    ]  # fmt: skip
    meta = [
        "SelectiveKD paper §3.5 / Fig. 2: nested budgets, stratified by cancer / benign / normal exams; the "
        "annotations of the other exams are ignored (they keep their breast labels, used by SelectiveKD*).",
        f"Metric group: {cfg.group}; seeds {cfg.seeds}; CIs: two-level bootstrap over seeds × test cases "
        f"({cfg.n_boot} replicates). Students' composition / initialisation / T: "
        + ("the validated choice" if cfg.choice else "the recipe's"),
        *_recipe_lines(recipe),
    ]
    return page("SelectiveKD: annotation efficiency", meta, sections)
