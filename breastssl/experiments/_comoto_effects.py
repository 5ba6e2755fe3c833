"""Effects of the CoMoTo table with 95% CIs over training seeds × test volumes (DESIGN §11).

Input: ``runs[(seed, fraction, row)]`` = a run's volume predictions (BCS-DBT format, stored pixels), every run
scored on the same test volumes. The reading is the DBT FROC's mean sensitivity at 1–4 FP per positive volume,
primary on coordinates scaled to BCS-DBT pixels, secondary on the raw ones. Each bootstrap replicate resamples the
test exams (those with a lesion and the others apart; a volume carries its exam's count, so the two views of a
breast stay together) and, independently, the seeds; one exam resample serves every run of a replicate, so the
comparisons are paired. A run is matched once and every replicate is a weighted FROC of its per-volume counts
(``metrics.froc_dbt.weighted_froc_dbt``). Claims are decided on the primary reading's CI: a claim holds when its
CI excludes 0 in the paper's direction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..inference.comoto_predict import bcs_scaled
from ..metrics.bootstrap import case_weights, seed_draws, seeds_cases_summary
from ..metrics.froc_dbt import dbt_volume_counts, weighted_froc_dbt
from ..reports.html import effect

METRIC = "mean_sensitivity_positive"
READINGS = {"scaled": "BCS scale (primary)", "raw": "raw px (secondary)"}
LABELS = {"dbt_only": "DBT-only", "pretraining": "pretraining", "image_kd": "image-level KD", "lskd": "LsKD",
          "lskd_impa": "LsKD + ImPA"}  # fmt: skip
PAIRS = (("lskd", "pretraining"), ("lskd", "image_kd"), ("lskd_impa", "lskd"), ("lskd_impa", "pretraining"),
         ("lskd_impa", "image_kd"), ("pretraining", "dbt_only"))  # fmt: skip
GAIN = ("lskd_impa", "pretraining")  # the low-data claim: CoMoTo's gain over pretraining, low fraction minus full
# (LsKD's gain over pretraining is given beside it in effects.csv, not as a claim)
EFFECT_COLUMNS = ["reading", "fraction", "a", "b", "seeds", "delta", "ci_low", "ci_high", "seeds_positive", "delta_sd"]
RunKey = tuple[int, float, str]  # (seed, fraction, row)


@dataclass
class ComotoEffects:
    """rows: mean per (reading, fraction, row) with its CI; effects: paired Δ (EFFECT_COLUMNS); claims: verdicts."""

    rows: pd.DataFrame
    effects: pd.DataFrame
    claims: pd.DataFrame


def volume_weights(labels: pd.DataFrame, boxes: pd.DataFrame, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Resampling counts (n_boot, V) of the volumes of labels: exams resampled, lesion exams and the others apart."""
    exams, volume_exam = np.unique(labels["StudyUID"].astype(str), return_inverse=True)
    with_lesion = np.isin(exams, boxes["StudyUID"].astype(str).unique())
    return case_weights(with_lesion, n_boot, rng)[:, volume_exam]


def run_readings(
    pred: pd.DataFrame, truth: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame], weights: np.ndarray
) -> dict[str, np.ndarray]:
    """{reading: (1 + B,)}: the run's mean sensitivity (unit weights, = ``froc_dbt``), then each replicate's."""
    man, boxes, labels = truth
    w = np.vstack([np.ones(weights.shape[1]), weights])
    out = {}
    for reading in READINGS:
        p, b = bcs_scaled(pred, boxes, man) if reading == "scaled" else (pred, boxes)
        out[reading] = weighted_froc_dbt(dbt_volume_counts(p, b, labels), w)[METRIC]
    return out


def _summary(point: list[float], boot: list[np.ndarray], draws: np.ndarray) -> dict:
    return seeds_cases_summary(np.array(point), np.stack(boot, axis=1), draws)


def _effect_row(reading: str, fraction: str, a: str, b: str, s: dict) -> dict:
    return {"reading": reading, "fraction": fraction, "a": a, "b": b, "seeds": s["seeds"], "delta": s["mean"],
            "ci_low": s["ci_low"], "ci_high": s["ci_high"], "seeds_positive": s["seeds_positive"],
            "delta_sd": s["sd"]}  # fmt: skip


def _tables(values: Mapping[RunKey, np.ndarray], reading: str, draws: np.ndarray) -> tuple[list[dict], list[dict]]:
    """Rows (mean and CI per fraction and row) and paired effects of one reading; values: (1 + B,) per run."""
    seeds = sorted({s for s, _, _ in values})
    fractions = sorted({f for _, f, _ in values}, reverse=True)
    rows, effects = [], []
    for f in fractions:
        for row in dict.fromkeys(r for _, ff, r in values if ff == f):
            have = [s for s in seeds if (s, f, row) in values]
            summ = _summary([values[(s, f, row)][0] for s in have], [values[(s, f, row)][1:] for s in have], draws)
            rows.append({"reading": reading, "fraction": f"{f:g}", "row": row, **summ})
        for a, b in PAIRS:
            both = [s for s in seeds if (s, f, a) in values and (s, f, b) in values]
            if both:
                d = [values[(s, f, a)] - values[(s, f, b)] for s in both]
                effects.append(_effect_row(reading, f"{f:g}", a, b, _summary([x[0] for x in d], [x[1:] for x in d],
                                                                               draws)))  # fmt: skip
    hi, lo = fractions[0], fractions[-1]
    for a, b in (GAIN, ("lskd", "pretraining")) if len(fractions) > 1 else ():  # gain at lo minus gain at hi
        both = [s for s in seeds if all((s, f, r) in values for f in (hi, lo) for r in (a, b))]
        if both:
            d = [(values[(s, lo, a)] - values[(s, lo, b)]) - (values[(s, hi, a)] - values[(s, hi, b)]) for s in both]
            summ = _summary([x[0] for x in d], [x[1:] for x in d], draws)
            effects.append(_effect_row(reading, f"{lo:g} − {hi:g}", a, b, summ))
    return rows, effects


def comoto_effects(
    runs: Mapping[RunKey, pd.DataFrame],
    truth: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
    n_boot: int = 1000,
    seed: int = 0,
) -> ComotoEffects:
    """Row CIs, paired effects and the paper's claims for the runs, on the test truth ``(man, boxes, labels)``.

    The same exam resamples and seed resamples serve every row, pair and reading.
    """
    rng = np.random.default_rng([seed, 3])
    weights = volume_weights(truth[2], truth[1], n_boot, rng)
    draws = seed_draws(n_boot, rng)
    per_run = {k: run_readings(pred, truth, weights) for k, pred in runs.items()}
    rows, effects = [], []
    for reading in READINGS:
        r, e = _tables({k: v[reading] for k, v in per_run.items()}, reading, draws)
        rows += r
        effects += e
    eff = pd.DataFrame(effects, columns=EFFECT_COLUMNS)
    return ComotoEffects(pd.DataFrame(rows), eff, claims(eff))


def _find(eff: pd.DataFrame, reading: str, fraction: str, a: str, b: str) -> pd.Series | None:
    hit = eff[(eff["reading"] == reading) & (eff["fraction"] == fraction) & (eff["a"] == a) & (eff["b"] == b)]
    return hit.iloc[0] if len(hit) else None


def _verdict(r: pd.Series | None) -> tuple[bool | None, str]:
    if r is None:
        return None, "n/a (runs missing)"
    if r["seeds"] < 2:  # the CI would hold test-exam variance only
        return None, "undecided (one seed: no seed variance)"
    if r["ci_low"] > 0:
        return True, "holds (CI above 0)"
    if r["ci_high"] < 0:
        return False, "reversed (CI below 0)"
    return False, "not separable from 0 (CI holds 0)"


def claims(eff: pd.DataFrame) -> pd.DataFrame:
    """The paper's claims, each decided on its primary (BCS-scale) effect's CI, the raw reading beside it.

    ``holds``: True when the CI lies above 0 (the paper's direction), False when it holds or lies below 0, None
    when runs are missing or there is one seed.
    """
    fractions = [f for f in dict.fromkeys(eff["fraction"]) if "−" not in f]
    items = []
    for f in fractions:
        pct = f"{float(f) * 100:g}% of the DBT training set"
        items += [(f"LsKD beats pretraining ({pct})", f, "lskd", "pretraining"),
                  (f"LsKD beats image-level KD ({pct})", f, "lskd", "image_kd"),
                  (f"LsKD + ImPA beats LsKD ({pct})", f, "lskd_impa", "lskd")]  # fmt: skip
    for f in (f for f in dict.fromkeys(eff["fraction"]) if "−" in f):
        lo, hi = (float(x) * 100 for x in f.split(" − "))
        items.append((f"LsKD + ImPA's gain over pretraining is larger at {lo:g}% than at {hi:g}%", f, *GAIN))
    out = []
    for claim, f, a, b in items:
        primary = _find(eff, "scaled", f, a, b)
        holds, verdict = _verdict(primary)
        out.append({"claim": claim, "holds": holds, "verdict": verdict, "fraction": f, "a": a, "b": b,
                    "primary": effect(primary), "raw": effect(_find(eff, "raw", f, a, b))})  # fmt: skip
    return pd.DataFrame(out, columns=["claim", "holds", "verdict", "fraction", "a", "b", "primary", "raw"])


def effect_sections(res: ComotoEffects) -> list[tuple[str, str]]:
    """Report sections: claims, row means with CIs, paired effects (HTML tables)."""
    from ..reports.html import table

    ci = "95% CI over seeds × test exams"
    claim_rows = [[r["claim"], r["verdict"], r["primary"], r["raw"]] for _, r in res.claims.iterrows()]
    rows = [[READINGS[r["reading"]], r["fraction"], LABELS.get(r["row"], r["row"]), int(r["seeds"]),
             f"{r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"] for _, r in res.rows.iterrows()]  # fmt: skip
    effs = [[READINGS[r["reading"]], r["fraction"], f"{LABELS.get(r['a'], r['a'])} − {LABELS.get(r['b'], r['b'])}",
             effect(r)] for _, r in res.effects.iterrows()]  # fmt: skip
    return [
        ("The paper's claims (decided on the BCS-scale CI)",
         table(["claim", "verdict", f"Δ mean sens 1–4 FP/vol, BCS scale [{ci}]", "Δ raw px (secondary)"],
               claim_rows)),
        (f"Mean sensitivity 1–4 FP/vol per row, mean over seeds [{ci}]",
         table(["reading", "DBT fraction", "row", "seeds", "mean [CI]"], rows)),
        (f"Paired effects (Δ mean sensitivity 1–4 FP/vol) [{ci}]",
         table(["reading", "DBT fraction", "a − b", "Δ [CI], seeds with Δ > 0"], effs)),
    ]  # fmt: skip


def write_effects(out: Path, res: ComotoEffects) -> None:
    """rows_ci.csv, effects.csv and claims.csv into the experiment's out_dir."""
    res.rows.to_csv(out / "rows_ci.csv", index=False)
    res.effects.to_csv(out / "effects.csv", index=False)
    res.claims.to_csv(out / "claims.csv", index=False)
