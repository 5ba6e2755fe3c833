"""Render the metrics of :func:`breastssl.reports.evaluation.evaluate_predictions` as ``report.html``."""

from __future__ import annotations

from .. import __version__
from .html import ci, figure, page, table
from .plots import froc_png, roc_png

FPPI_KEYS = ["0.1", "0.2", "0.5", "1"]
DBT_KEYS = [
    ("sensitivity_at_2_fps_all", "sens @2 FP/vol (all)"),
    ("sensitivity_at_1_fps_positive", "@1 (pos)"),
    ("sensitivity_at_2_fps_positive", "@2 (pos)"),
    ("sensitivity_at_3_fps_positive", "@3 (pos)"),
    ("sensitivity_at_4_fps_positive", "@4 (pos)"),
    ("mean_sensitivity_positive", "mean (pos)"),
]


def _roc_cells(r: dict) -> list:
    return [
        r["n"],
        r["n_pos"],
        ci(r["auc"], r["auc_low"], r["auc_high"]),
        ci(r["sensitivity"], r["sensitivity_low"], r["sensitivity_high"]),
        ci(r["specificity"], r["specificity_low"], r["specificity_high"]),
        r["youden_threshold"],
    ]


def _froc_cells(kind: str, d: dict) -> list:
    if kind == "dbt":
        return [d.get("n_volumes", "–"), d.get("n_lesions", "–"), *[d[k] for k, _ in DBT_KEYS]]
    return [d["n_images"], d["n_lesions"], *[d[f"sensitivity_at_{k}_fppi"] for k in FPPI_KEYS], d["mean_sensitivity"]]


def render(res: dict, title: str = "breastssl evaluation") -> str:
    """The whole report as an HTML string."""
    thr = res["threshold"]
    agg = " | ".join(res["aggregation"])
    meta = [
        f"Level: {res['level']} · aggregation: {agg}",
        f"Truth: breast_label in {res['positive']} is positive · split: {res['split'] or 'all'} · "
        f"sensitivity/specificity at score ≥ {thr:g}",
        f"breastssl {__version__}",
    ]
    models = res["models"]
    roc_head = ["model", "aggregation", "n", "positives", "AUC (95% CI, DeLong)", f"sensitivity @{thr:g} (95% CI)"]
    roc_head += [f"specificity @{thr:g} (95% CI)", "Youden threshold"]
    sections = [
        (
            "ROC analysis",
            table(roc_head, [[n, m["aggregation"], *_roc_cells(m["roc"])] for n, m in models.items()])
            + '<p class="note">AUC CI: DeLong (Sun &amp; Xu 2014), clipped to [0, 1]; sensitivity and specificity CIs: '
            "stratified percentile bootstrap.</p>",
        )
    ]
    if res["comparisons"]:
        head = ["model A", "model B", "n", "AUC A", "AUC B", "difference (95% CI)", "z", "p (two-sided)"]
        rows = [
            [c["a"], c["b"], c["n"], c["auc_a"], c["auc_b"], ci(c["difference"], c["ci_low"], c["ci_high"])]
            + [c["z"], f"{c['p']:.4g}"]
            for c in res["comparisons"]
        ]
        sections.append(("Pairwise comparison (paired DeLong test)", table(head, rows)))
    sub = [[n, s["by"], s["value"], *_roc_cells(s)] for n, m in models.items() for s in m["subgroups"]]
    if sub:
        head = ["model", "by", "value", *roc_head[2:]]
        sections.append((f"ROC by subgroup (aggregation: {agg})", table(head, sub)))
    curves = {n: (m["roc"]["curve"]["fpr"], m["roc"]["curve"]["tpr"], m["roc"]["auc"]) for n, m in models.items()}
    figs = [figure(roc_png(curves, f"ROC ({res['level']} level)"), "ROC curves")]
    det = {n: m["froc"] for n, m in models.items() if "froc" in m}
    for kind in ("detection", "dbt"):
        these = {n: d for n, d in det.items() if d["kind"] == kind}
        if not these:
            continue
        if kind == "dbt":
            head = ["model", "volumes", "lesions", *[label for _, label in DBT_KEYS]]
            name, xlabel, marks = (
                "DBT FROC (BCS-DBT challenge rule)",
                "false positives per volume (positive)",
                (1, 2, 3, 4),
            )
        else:
            head = ["model", "images", "lesions", *[f"sens @{k} FPPI" for k in FPPI_KEYS], "mean"]
            name, xlabel, marks = "FROC (2D)", "false positives per image", (0.1, 0.2, 0.5, 1.0)
        rows = [[n, *_froc_cells(kind, d["overall"])] for n, d in these.items()]
        rows += [
            [f"{n} · {s['by']}={s['value']}", *_froc_cells(kind, s)] for n, d in these.items() for s in d["subgroups"]
        ]
        sections.append((name, table(head, rows)))
        figs.append(figure(froc_png({n: d["curve"] for n, d in these.items()}, name, xlabel, marks), name))
    sections.append(("Curves", f'<div class="figs">{"".join(figs)}</div>'))
    return page(title, meta, sections)
