"""The HTML report of ``us-mean-teacher``: data, Table 2, Tables 3–4 per site, effects with CIs, claims, training."""

from __future__ import annotations

import warnings
from typing import Any

import pandas as pd

ARM_LABELS = {"semi": "Semi-supervised (mean teacher)", "sup_basic": "Supervised, basic set",
              "sup_all": "Supervised, basic + extended labels"}  # fmt: skip
METRIC_LABELS = {"auc": "AUC", "sensitivity": "sensitivity", "specificity": "specificity", "accuracy": "accuracy"}


def _ci(mean: float, lo: float, hi: float, signed: bool = False) -> str:
    f = "+.3f" if signed else ".3f"
    return f"{mean:{f}} [{lo:{f}}, {hi:{f}}]"


def detection_section(metrics: dict[str, Any]) -> tuple[str, str]:
    """Table 2: box IoU per set (mean ± std, share > 0.5) with bootstrap CIs over nodules on the test sets."""
    from ..reports.html import table

    cis = {r["set"]: r for r in metrics.get("effects", {}).get("detection", [])}
    rows = []
    for k, v in metrics["detection"].items():
        c = cis.get(k)
        rows.append([k, v["n"], f"{v['iou_mean']:.3f} ± {v['iou_std']:.3f}",
                     _ci(c["iou_mean"], c["ci_low"], c["ci_high"]) if c else "",
                     _ci(c["hit_rate_iou_0.5"], c["hit_ci_low"], c["hit_ci_high"]) if c else
                     f"{v['hit_rate_iou_0.5']:.3f}"])  # fmt: skip
    heads = ["set", "nodules", "IoU mean ± std", "IoU mean [95% CI]", "IoU > 0.5 [95% CI]"]
    return "Table 2: detection, box IoU (ASC); CIs: bootstrap over test nodules (one detector)", table(heads, rows)


def site_section(name: str, g: pd.DataFrame, preds: pd.DataFrame, thr: float) -> tuple[str, str]:
    """Tables 3–4 for one test site: seed means ± std, every seed with its DeLong CI, the first seed's ROC."""
    from ..metrics import roc_curve_points
    from ..reports.html import ci, table
    from ..reports.plots import roc_png

    keys = ["sensitivity", "specificity", "accuracy", "auc"]

    def pm(v: pd.Series) -> str:
        return f"{v.mean():.3f} ± {v.std(ddof=0):.3f}" if len(v) > 1 else f"{float(v.iloc[0]):.3f}"

    mean = [[ARM_LABELS.get(a, a), len(h), *[pm(h[k]) for k in keys]] for a, h in g.groupby("arm", sort=False)]
    per = [[ARM_LABELS.get(r.arm, r.arm), r.seed, r.sensitivity, r.specificity, r.accuracy,
            ci(r.auc, r.auc_low, r.auc_high)] for r in g.itertuples()]  # fmt: skip
    body = table(["method", "seeds", "sensitivity", "specificity", "accuracy", "AUC"], mean) + table(
        ["method", "seed", "sensitivity", "specificity", "accuracy", "AUC [95% CI, DeLong]"], per
    )
    try:
        from ..reports.html import figure

        curves = {}
        sub = preds[(preds["set_name"] == name) & (preds["seed"] == preds["seed"].min())]
        for arm, h in sub.groupby("arm", sort=False):
            fpr, tpr, _ = roc_curve_points(h["label"].to_numpy(), h["score"].to_numpy())
            curves[arm] = (fpr, tpr, float(g[(g.arm == arm) & (g.seed == h.seed.iloc[0])]["auc"].iloc[0]))
        body += f'<div class="figs">{figure(roc_png(curves, f"ROC, {name}"), name)}</div>'
    except Exception as exc:  # noqa: BLE001  (a figure is never worth failing the report)
        warnings.warn(f"ROC figure for {name} skipped: {type(exc).__name__}: {exc}", stacklevel=2)
    return f"Classification, {name} (threshold {thr})", body


def effects_section(eff: dict[str, Any]) -> tuple[str, str]:
    """Each arm's metrics and the paired effects, means over seeds with seeds × cases CIs; ensemble DeLong."""
    from ..reports.html import fmt, table

    arms = pd.DataFrame(eff["arms"])
    body = ""
    if len(arms):
        wide = [[s, ARM_LABELS.get(a, a), int(h["seeds"].iloc[0]),
                 *[_ci(*h.loc[h.metric == m, ["mean", "ci_low", "ci_high"]].iloc[0]) for m in METRIC_LABELS]]
                for (s, a), h in arms.groupby(["set", "arm"], sort=False)]  # fmt: skip
        body += table(["set", "method", "seeds", *[f"{v} [95% CI]" for v in METRIC_LABELS.values()]], wide)
    rows = [[r["set"], f"{r['a']} − {r['b']}", METRIC_LABELS[r["metric"]], _ci(r["delta"], r["ci_low"], r["ci_high"],
             True), f"{r['seeds_positive']}/{r['seeds']}", fmt(r["delta_sd"])] for r in eff["effects"]]  # fmt: skip
    body += table(["set", "effect", "metric", "mean Δ [95% CI]", "seeds with Δ > 0", "Δ sd over seeds"], rows)
    dl = [[d["set"], f"{d['a']} − {d['b']}", d["seeds"], d["auc_a"], d["auc_b"], d["difference"],
           f"[{fmt(d['ci_low'])}, {fmt(d['ci_high'])}]", d["p"]] for d in eff["ensemble_delong"]]  # fmt: skip
    body += table(["set", "effect", "seeds", "AUC a", "AUC b", "Δ AUC", "95% CI", "p"], dl)
    title = ("Effects over seeds × test cases (bootstrap: test cases by class and seeds resampled together); "
             "paired DeLong on the seed ensembles (mean score over seeds)")  # fmt: skip
    return title, body


def claims_section(claims: list[dict]) -> tuple[str, str]:
    from ..reports.html import table

    verdict = {True: "holds", False: "does not hold", None: "n/a"}
    rows = [[c["set"], c["claim"], c["rule"], verdict[c["holds"]], c["figures"]] for c in claims]
    return "The paper's claims, decided on the CIs", table(["set", "claim", "rule", "verdict", "figures"], rows)


def render(metrics: dict[str, Any], preds: pd.DataFrame) -> str:
    """The HTML report (see the module doc)."""
    from ..reports.html import fmt, page, table

    cfg = metrics["config"]
    rc = cfg["recognition"]
    counts = [[k, v, metrics.get("nodules", {}).get(k, "")] for k, v in metrics["counts"].items()]
    secs = [("Data", table(["set", "images", "nodules with a class"], counts)), detection_section(metrics)]
    cls = pd.DataFrame(metrics["classification"])
    for name, g in cls.groupby("set", sort=False):
        secs.append(site_section(name, g, preds, cfg["threshold"]))
    if metrics.get("effects"):
        secs += [effects_section(metrics["effects"]), claims_section(metrics["claims"])]
    dl = [[d["set"], d["seed"], f"semi − {d['b']}", d["difference"], f"[{fmt(d['ci_low'])}, {fmt(d['ci_high'])}]",
           d["p"]] for d in metrics["delong"]]  # fmt: skip
    secs.append(("Paired DeLong tests per seed", table(["set", "seed", "difference", "AUC diff", "95% CI", "p"], dl)))
    runs = [[r["arm"], r["seed"], r["n_labelled"], r["n_unlabelled"], r["labelled_per_step"], r["unlabelled_per_step"],
             r["steps"], r["best_step"], r["best_value"], "yes" if r.get("reused") else "no"]
            for r in metrics["runs"]]  # fmt: skip
    heads = ["arm", "seed", "labelled", "unlabelled", "labelled / step", "unlabelled / step", "steps", "best step",
             "best val acc", "reused"]  # fmt: skip
    secs.append(("Training (early stopping on validation accuracy)", table(heads, runs)))
    return page("Ultrasound: detection + mean-teacher classification", _meta(cfg, rc), secs)


def _meta(cfg: dict[str, Any], rc: dict[str, Any]) -> list[str]:
    pw = cfg.get("powered")
    data = (f"val ({pw['val_nodules']} nodules) and test sets ({pw['test_nodules']} nodules per site) generated apart "
            "from the training set (other seeds, prefixed ids); early stopping chooses on val only"
            if pw else "val and test: the generator's own split of the same set (patients apart)")  # fmt: skip
    return [f"detector: {cfg['detector']['backbone']} Faster R-CNN, {cfg['detector']['steps']} steps; "
            f"recognition: {rc['model']}; seeds {cfg['seeds']}",
            "two-stage method of seed 004: basic set = labelled, extended set = unlabelled (semi)", data,
            "labelled exposure: " + ("equal (supervised arms take the semi arm's labelled crops per step)"
                                     if rc["equal_labelled_exposure"] else "full batch (supervised arms: batch_size "
                                     "labelled crops per step)"),
            f"augmentation per view: flip {rc['flip']}, shift ±{rc['translate']} px, contrast ±{rc['contrast']}; "
            "student and teacher views drawn independently",
            f"effect CIs: {cfg.get('n_boot', '')} replicates; non-inferiority margin "
            f"{cfg.get('noninferiority_margin', '')}"]  # fmt: skip
