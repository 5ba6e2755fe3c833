"""The self-training paper's claims as paired FROC effects over seeds × test exams (DESIGN §11).

Input: ``dets[(seed, cell)]``, every run's :class:`Detections` on the same test images. A replicate resamples
the test **exams** with replacement, exams with a lesion and exams without apart (``case_weights`` with
positivity as strata), and gives each image its exam's count: the four images of an exam share a patient and,
for a lesioned breast, the same mass in two views, so resampling images alone would treat them as
independent and narrow the CI. Each run's sensitivity at 0.1/0.2/0.5/1 FPPI and their mean are computed
under every replicate from one sort (``weighted_froc``); the seeds are resampled independently with one set
of ``seed_draws`` shared by every comparison; ``seeds_cases_summary`` turns the per-seed Δ and their
replicates into mean Δ, 95% CI and the number of seeds with Δ > 0.

A claim holds when the CI of its Δ mean sensitivity excludes 0 in the paper's direction (``holds`` None:
a cell is missing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics.bootstrap import case_weights, seed_draws, seeds_cases_summary
from ..reports.html import effect
from ..strategies.self_training_detections import METRIC_NAMES, Detections, image_detections, weighted_froc

FRACTIONS = (10, 25, 50, 100)
TABLE3_PAIRS = [(f"full{p}_weak100", f"full{p}_weak0") for p in FRACTIONS]
SOFT = "full25_weak100"  # soft mask + soft NLP, all weak data
TABLE4_PAIRS = [(SOFT, f"{SOFT}_mask{m}_nlp{n}") for m, n in (("hard", "hard"), ("hard", "soft"), ("soft", "hard"))]
_FIG4 = ["full25_weak0", "full25_weak25", "full25_weak50", "full25_weak75", SOFT]
FIG4_PAIRS = [*zip(_FIG4[1:], _FIG4[:-1], strict=True), (SOFT, "full25_weak0")]
ALL_PAIRS = list(dict.fromkeys([*TABLE3_PAIRS, *TABLE4_PAIRS, *FIG4_PAIRS]))  # 25%: Table 3 = Fig. 4's 0→100
EFFECT_COLUMNS = ["a", "b", "metric", "seeds", "delta", "ci_low", "ci_high", "seeds_positive", "delta_sd"]


def exam_image_weights(
    exam_ids: np.ndarray, n_lesions: np.ndarray, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Image weights (n_boot, N): each image gets its exam's resampling count; exams drawn within lesion strata.

    exam_ids (N,) of the images, n_lesions (N,) their lesion counts.
    """
    exams, inverse = np.unique(np.asarray(exam_ids, str), return_inverse=True)
    positive = np.zeros(len(exams), int)
    np.maximum.at(positive, inverse, (np.asarray(n_lesions) > 0).astype(int))
    return case_weights(positive, n_boot, rng)[:, inverse]


def run_metrics(
    dets: Mapping[tuple[int, str], Detections], exam_of: Mapping[str, str], n_boot: int = 1000, seed: int = 0
) -> tuple[dict, dict, np.ndarray]:
    """Point values {run: (5,)} and replicates {run: (B, 5)} of every run (columns ``METRIC_NAMES``), and the
    seed draws (B, 64) shared by every comparison. ``exam_of``: image id → exam id of the test images."""
    first = next(iter(dets.values()))
    for k, d in dets.items():
        if not np.array_equal(d.image_ids, first.image_ids):
            raise ValueError(f"run {k}: detections on other test images (or another order) than {next(iter(dets))}")
    rng = np.random.default_rng([seed, 2002])
    exams = np.array([exam_of[i] for i in first.image_ids.tolist()])
    weights = exam_image_weights(exams, first.n_lesions, n_boot, rng)
    ones = np.ones((1, len(first.image_ids)))
    point = {k: weighted_froc(d, ones)[0] for k, d in dets.items()}
    boot = {k: weighted_froc(d, weights) for k, d in dets.items()}
    return point, boot, seed_draws(n_boot, rng)


def paired_effects(point: dict, boot: dict, draws: np.ndarray, pairs: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """One row per (pair, metric): mean Δ over the seeds that have both cells, 95% CI over seeds × exams.

    Columns ``EFFECT_COLUMNS``; pairs with a missing cell are skipped.
    """
    rows = []
    for a, b in pairs:
        seeds = sorted(s for s, c in point if c == a and (s, b) in point)
        if not seeds:
            continue
        for m, metric in enumerate(METRIC_NAMES):
            d_point = np.array([point[(s, a)][m] - point[(s, b)][m] for s in seeds])
            d_boot = np.stack([boot[(s, a)][:, m] - boot[(s, b)][:, m] for s in seeds], axis=1)
            r = seeds_cases_summary(d_point, d_boot, draws)
            rows.append({"a": a, "b": b, "metric": metric, "seeds": r["seeds"], "delta": r["mean"],
                         "ci_low": r["ci_low"], "ci_high": r["ci_high"], "seeds_positive": r["seeds_positive"],
                         "delta_sd": r["sd"]})  # fmt: skip
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


def cell_cis(point: dict, boot: dict, draws: np.ndarray) -> pd.DataFrame:
    """Mean over seeds of every cell's sensitivities with the same seeds × exams CI: cell, metric, seeds, value,
    ci_low, ci_high."""
    rows = []
    for cell in sorted({c for _, c in point}):
        seeds = sorted(s for s, c in point if c == cell)
        for m, metric in enumerate(METRIC_NAMES):
            r = seeds_cases_summary(np.array([point[(s, cell)][m] for s in seeds]),
                                    np.stack([boot[(s, cell)][:, m] for s in seeds], axis=1), draws)  # fmt: skip
            rows.append({"cell": cell, "metric": metric, "seeds": r["seeds"], "value": r["mean"],
                         "ci_low": r["ci_low"], "ci_high": r["ci_high"]})  # fmt: skip
    return pd.DataFrame(rows, columns=["cell", "metric", "seeds", "value", "ci_low", "ci_high"])


def _mean_row(eff: pd.DataFrame, a: str, b: str) -> pd.Series | None:
    r = eff[(eff["a"] == a) & (eff["b"] == b) & (eff["metric"] == "mean")] if len(eff) else eff
    return r.iloc[0] if len(r) else None


def _claim(claim: str, rows: dict[str, pd.Series | None], rule) -> dict:
    """holds: None when a figure is missing, else ``rule(rows)``; figures: every Δ with its CI."""
    holds = None if not rows or any(r is None for r in rows.values()) else bool(rule(rows))
    return {"claim": claim, "holds": holds, "figures": "; ".join(f"{k}: {effect(r)}" for k, r in rows.items())}


def claims_with_ci(eff: pd.DataFrame) -> list[dict]:
    """Tables 3 and 4 and Fig. 4 of the paper decided on the CIs of Δ mean FROC sensitivity."""
    above = lambda rows: all(r["ci_low"] > 0 for r in rows.values())  # noqa: E731
    t3 = {f"{p}% labelled: with − without weak": _mean_row(eff, a, b)
          for p, (a, b) in zip(FRACTIONS, TABLE3_PAIRS, strict=True)}  # fmt: skip
    out = [_claim("Table 3: weak data improves detection at every labelled fraction (10/25/50/100%)", t3, above)]
    out += [_claim(f"Table 3: weak data improves detection at {k.split(':')[0]}", {k: r}, above) for k, r in t3.items()]
    t4 = dict(zip(("soft/soft − hard/hard", "soft/soft − hard mask/soft NLP", "soft/soft − soft mask/hard NLP"),
                  (_mean_row(eff, a, b) for a, b in TABLE4_PAIRS), strict=True))  # fmt: skip
    out.append(_claim("Table 4: soft mask + soft NLP labels beat hard ones", {k: t4[k] for k in list(t4)[:1]}, above))
    out.append(_claim("Table 4: each soft label helps (soft mask; soft NLP)", {k: t4[k] for k in list(t4)[1:]}, above))
    steps = {f"weak {b.split('weak')[1]}→{a.split('weak')[1]}%": _mean_row(eff, a, b) for a, b in FIG4_PAIRS[:-1]}
    total = {"weak 0→100%": _mean_row(eff, *FIG4_PAIRS[-1])}

    def more_helps(rows: dict) -> bool:  # the whole gain significant, and no step significantly down
        return rows["weak 0→100%"]["ci_low"] > 0 and all(rows[k]["ci_high"] > 0 for k in steps)

    out.append(_claim("Fig. 4: more weak data helps (0→100% significant, no step significantly down)",
                      {**total, **steps}, more_helps))  # fmt: skip
    return out


def load_detections(run_dir: Path, masks: np.ndarray, image_ids: Sequence[str], threshold: float) -> Detections:
    """A run's ``test_detections.npz``; a run finished before they were saved is re-read from its
    ``test_maps.npz`` (stored as float16, so a region's score may differ from the run's own in the 4th digit)."""
    path = run_dir / "test_detections.npz"
    if path.is_file():
        return Detections.load(path)
    with np.load(run_dir / "test_maps.npz") as z:
        maps = z["maps"].astype(np.float32)
    det = image_detections(maps, masks, threshold, image_ids)
    det.save(path)
    return det


def effects_summary(
    dets: Mapping[tuple[int, str], Detections], exam_of: Mapping[str, str], n_boot: int, seed: int = 0
) -> dict:
    """results.json's ``effects`` (paired Δ per pair and metric), ``cell_cis`` and ``claims``, all over seeds ×
    test exams with ``n_boot`` replicates."""
    point, boot, draws = run_metrics(dets, exam_of, n_boot, seed)
    eff = paired_effects(point, boot, draws, ALL_PAIRS)
    return {"n_boot": n_boot, "effects": eff.to_dict("records"), "cell_cis": cell_cis(point, boot, draws).to_dict(
        "records"), "claims": claims_with_ci(eff)}  # fmt: skip


def effects_sections(summary: dict) -> list[tuple[str, str]]:
    """HTML sections of the report: tune choice, cells with CIs, paired effects, claims (absent parts skipped)."""
    from ..reports.html import table

    sections = []
    tune = summary.get("tune")
    if tune:
        rows = [["pooled" if r["full_share"] is None else r["full_share"], r["lesion_threshold"], r["val_mean"],
                 r["val_sd"], ", ".join(f"{v:.3f}" for v in r["per_seed"])] for r in tune["candidates"]]  # fmt: skip
        sections.append((f"Tune on the val split: chosen {tune['choice']} — {tune['why']}",
                         table(["full_share", "t", "val mean sens.", "SD", "per seed"], rows)))  # fmt: skip
    eff = summary.get("effects")
    if not eff:
        return sections
    n = eff["n_boot"]
    cells = [[r["cell"], r["metric"], r["seeds"], r["value"], f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]"]
             for r in eff["cell_cis"]]  # fmt: skip
    sections.append((f"Every cell: sensitivity over seeds, 95% CI over seeds × test exams ({n} replicates)",
                     table(["cell", "FPPI / mean", "seeds", "sensitivity", "95% CI"], cells)))  # fmt: skip
    pairs = [[r["a"], r["b"], r["metric"], r["seeds"], r["delta"], f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]",
              r["seeds_positive"]] for r in eff["effects"]]  # fmt: skip
    sections.append(("Paired effects Δ = a − b (Tables 3, 4, Fig. 4)",
                     table(["a", "b", "FPPI / mean", "seeds", "Δ", "95% CI", "seeds Δ > 0"], pairs)))  # fmt: skip
    claims = [[c["claim"], {True: "holds", False: "does not hold", None: "n/a"}[c["holds"]], c["figures"]]
              for c in eff["claims"]]  # fmt: skip
    sections.append(("The paper's claims, decided on the CIs of Δ mean sensitivity", table(["claim", "", "Δ"], claims)))
    return sections
