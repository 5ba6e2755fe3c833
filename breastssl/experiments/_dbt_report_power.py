"""Report sections of the powered SelectiveKD benchmark: effects with seeds × cases CIs, the validation
choices, the prior correction and what T admits (tables from ``dbt_selectivekd.analyse`` and its run tables)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ..reports.html import ci, fmt, table
from ._dbt_tables import LABELS


def label(setting: str) -> str:
    """'SelectiveKD*' for a main setting, 'SelectiveKD* [nocal]' for an ablation run."""
    base, _, ab = setting.partition("@")
    return LABELS.get(base, base) + (f" [{ab}]" if ab else "")


def _groups(df: pd.DataFrame) -> list[str]:
    return ["overall", *sorted(set(df["group"]) - {"overall"})]


def auc_ci_table(cis: pd.DataFrame) -> str:
    """Mean AUC over seeds [95% CI over seeds × test cases] per setting and group."""
    if not len(cis):
        return "<p class='note'>no runs</p>"
    groups = _groups(cis)
    rows = []
    for setting in sorted(set(cis["setting"]), key=lambda s: (("@" in s), list(LABELS).index(s.split("@")[0]), s)):
        c = cis[cis["setting"] == setting].set_index("group")
        rows.append([label(setting), *(ci(c.loc[g, "auc"], c.loc[g, "ci_low"], c.loc[g, "ci_high"])
                                       if g in c.index else "–" for g in groups)])  # fmt: skip
    return table(["setting", *groups], rows)


def effects_table(eff: pd.DataFrame) -> str:
    """Mean paired ΔAUC [95% CI], seeds with Δ > 0, per comparison and group."""
    if not len(eff):
        return "<p class='note'>no paired effects</p>"
    groups = _groups(eff)
    rows = []
    for (a, b), g in eff.groupby(["a", "b"], sort=False):
        if b == "_chance":
            continue
        c = g.set_index("group")
        cells = []
        for grp in groups:
            if grp not in c.index:
                cells.append("–")
                continue
            r = c.loc[grp]
            mark = " ✓" if r["ci_low"] > 0 else (" ✗" if r["ci_high"] < 0 else "")
            cells.append(f"{r['delta']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]{mark} "
                         f"<span class='note'>{int(r['seeds_positive'])}/{int(r['seeds'])}</span>")  # fmt: skip
        rows.append([f"{label(a)} − {label(b)}", *cells])
    return table(["comparison (✓ CI > 0, ✗ CI < 0; seeds with Δ > 0)", *groups], rows)


def tune_html(tune: pd.DataFrame, choice: dict | None) -> str:
    if tune is None or not len(tune):
        return "<p class='note'>no tune stage: every student used the recipe's composition and student_init</p>"
    tune = tune.assign(threshold=tune.get("threshold", pd.Series(index=tune.index, dtype=float)))
    keys = ["setting", "composition", "student_init", "threshold"]
    m = tune.fillna({"threshold": -1}).groupby(keys, sort=False)["val_auc"].agg(["mean", "size"]).reset_index()
    rows = []
    for _, r in m.iterrows():
        c = (choice or {}).get(r["setting"], {})
        th = None if r["threshold"] == -1 else float(r["threshold"])
        chosen = (c.get("composition") == r["composition"] and c.get("student_init") == r["student_init"]
                  and (th is None or c.get("threshold", th) == th))  # fmt: skip
        note = "chosen" if chosen else ("the teacher (reference)" if r["setting"] == "baseline" else "")
        rows.append([label(r["setting"]), r["composition"], r["student_init"], "–" if th is None else f"{th:g}",
                     fmt(r["mean"]), int(r["size"]), note])  # fmt: skip
    return table(["setting", "composition", "student_init", "T", "val AUC (mean)", "seeds", ""], rows)


def calibration_html(calib: pd.DataFrame) -> str:
    if not len(calib):
        return "<p class='note'>no calibration recorded</p>"
    rows = [[r["run"], fmt(r["natural_prior"], 4), fmt(r["train_prior"], 4), f"{r['logit_shift']:+.3f}",
             f"×{math.exp(-r['logit_shift']):.1f}", str(r.get("selected_pool", ""))]
            for _, r in calib.iterrows() if r["run"].startswith("seed")]  # fmt: skip
    return table(["run", "natural prior π", "batch prior ρ", "logit shift", "odds inflation", "pool slices trained"],
                 rows)  # fmt: skip


def sweep_html(sweeps: pd.DataFrame) -> str:
    if not len(sweeps):
        return "<p class='note'>no selective run</p>"
    first = sorted(sweeps["run"].unique())
    rows = []
    for run in first:
        s = sweeps[sweeps["run"] == run]
        if not run.split("/")[0].startswith("seed") or run.split("/")[0] != first[0].split("/")[0]:
            continue  # one seed: the sweep depends on the teacher only through its scores
        for _, r in s.iterrows():
            raw = (f"{int(r['selected_raw'])} ({fmt(r['near_lesion_share_raw'])})" if "selected_raw" in r
                   and not pd.isna(r.get("selected_raw")) else "–")  # fmt: skip
            rows.append([run, r["vendor"], r["threshold"], int(r["pool"]), int(r["selected"]),
                         fmt(r["near_lesion_share"]), fmt(r["pool_near_lesion_share"]), raw])  # fmt: skip
    head = ["run", "vendor", "T", "pool slices", "selected (calibrated)", "share near a lesion", "pool share near",
            "selected uncalibrated (share near)"]  # fmt: skip
    return table(head, rows)


def score_means_html(means: pd.DataFrame) -> str:
    if not len(means):
        return ""
    rows = [[label(r["setting"]), r["vendor"], fmt(r["neg_mean"], 4), fmt(r["pos_mean"], 4)]
            for _, r in means.iterrows()]  # fmt: skip
    return table(["setting", "vendor", "mean score, negatives", "mean score, cancers"], rows)


def power_sections(cfg: Any, res: dict[str, Any]) -> list[tuple[str, str]]:
    """The sections the powered benchmark adds to the Table-1 report."""
    n = len(cfg.seeds)
    return [
        (f"AUC, mean over {n} seeds [95% CI over seeds × test cases]", auc_ci_table(res["setting_cis"])),
        ("Paired effects: mean ΔAUC over seeds [95% CI over seeds × test cases]", effects_table(res["effects"])),
        ("Choices made on the validation split", tune_html(res.get("tune"), res.get("choice"))),
        ("Prior correction of every run (data/prior.py)", calibration_html(res["calibration"])),
        ("What T admits: pool slices selected and the share within ±1 slice of a cancer's key slice",
         sweep_html(res["sweeps"])),
        ("Mean calibrated breast score per vendor (a vendor-wide offset shows here)",
         score_means_html(res["score_means"])),
    ]  # fmt: skip
