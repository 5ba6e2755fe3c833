"""Benchmark: fast DeLong and DBT FROC against straightforward reference implementations.

Run: ``python benchmarks/bench_metrics.py [--max-ref-seconds 60]``. Prints one table of times and
speed-ups measured in a single run (DESIGN §8: ratios, not absolute times, are the result).

References, written here for comparison only:
* DeLong by its definition: the m × n matrix of pairwise comparisons, in row chunks, O(m·n).
* DBT FROC row by row: each prediction against each box of its view in a Python loop, then one pass
  over all predictions per threshold, O(P·T).
Where a reference would run longer than ``--max-ref-seconds`` (estimated from the previous size with
its complexity), it is not run and its time is extrapolated; such rows are marked "extrap.".
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import pandas as pd

from breastssl.metrics import delong_test, froc_dbt


def delong_reference(y: np.ndarray, a: np.ndarray, b: np.ndarray, chunk: int = 2000) -> tuple[float, float]:
    """(z, p) of the paired DeLong test from explicit structural components, O(m·n)."""
    from scipy.stats import norm

    pos, neg = y == 1, y == 0
    comps = []
    for s in (a, b):
        sp, sn = s[pos], s[neg]
        v10 = np.empty(sp.size)
        v01 = np.zeros(sn.size)
        for i in range(0, sp.size, chunk):
            k = (sp[i : i + chunk, None] > sn[None, :]) + 0.5 * (sp[i : i + chunk, None] == sn[None, :])
            v10[i : i + chunk] = k.mean(axis=1)
            v01 += k.sum(axis=0)
        comps.append((v10, v01 / sp.size))
    (v10a, v01a), (v10b, v01b) = comps
    var = np.var(v10a - v10b, ddof=1) / pos.sum() + np.var(v01a - v01b, ddof=1) / neg.sum()
    z = (v10a.mean() - v10b.mean()) / math.sqrt(var)
    return z, 2 * norm.sf(abs(z))


def dbt_reference(pred: pd.DataFrame, boxes: pd.DataFrame, labels: pd.DataFrame) -> dict[str, float]:
    """The challenge rule row by row (same semantics as ``froc_dbt``)."""
    by_view: dict[tuple, list] = {}
    for j, b in enumerate(boxes.itertuples(index=False)):
        by_view.setdefault((b.StudyUID, b.View), []).append((j, b))
    gtid = np.full(len(pred), -1)
    for i, p in enumerate(pred.itertuples(index=False)):
        cands = by_view.get((p.StudyUID, p.View), [])
        if not cands:
            continue
        offset = cands[0][1].VolumeSlices / 4
        px, py, pz = p.X + p.Width / 2, p.Y + p.Height / 2, p.Z + p.Depth / 2
        best, best_d = -1, math.inf
        for j, b in cands:
            dx, dy, dz = px - (b.X + b.Width / 2), py - (b.Y + b.Height / 2), pz - b.Slice
            radius = max(math.sqrt(b.Width**2 + b.Height**2) / 2, 100.0)
            if math.sqrt(dx * dx + dy * dy) <= radius and abs(dz) <= offset:
                d3 = math.sqrt(dx * dx + dy * dy + dz * dz)
                if d3 < best_d:
                    best, best_d = j, d3
        gtid[i] = best
    score = pred["Score"].to_numpy(float)
    tp = gtid >= 0
    thresholds = sorted([score.max() + 1, *score[tp], score.min() - 1], reverse=True)
    box_views = set(zip(boxes.StudyUID, boxes.View, strict=True))
    in_pos = np.array([k in box_views for k in zip(pred.StudyUID, pred.View, strict=True)])
    n_pos_vol = sum(k in box_views for k in zip(labels.StudyUID, labels.View, strict=True))

    def sweep(keep: np.ndarray, n_vol: int, rates: tuple) -> list[float]:
        fps, tpr = [], []
        for th in thresholds:
            sel = keep & (score >= th)
            fps.append(np.sum(sel & ~tp) / n_vol)
            tpr.append(len(set(gtid[sel & tp])) / len(boxes))
            if fps[-1] > max(rates):
                break
        return [float(np.interp(x, fps, tpr)) for x in rates]

    out = {"sensitivity_at_2_fps_all": sweep(np.ones(len(pred), bool), len(labels), (2.0,))[0]}
    pos = sweep(in_pos, n_pos_vol, (1.0, 2.0, 3.0, 4.0))
    out.update({f"sensitivity_at_{k}_fps_positive": v for k, v in zip((1, 2, 3, 4), pos, strict=True)})
    out["mean_sensitivity_positive"] = float(np.mean(pos))
    return out


def dbt_data(n_pred: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """~10 predictions per volume, half the volumes with 1–2 boxes, a third of predictions near a box."""
    rng = np.random.default_rng(seed)
    n_vol = max(n_pred // 10, 2)
    study, view = np.arange(n_vol) // 4, np.array(["lcc", "lmlo", "rcc", "rmlo"])[np.arange(n_vol) % 4]
    labels = pd.DataFrame({"StudyUID": study.astype(str), "View": view})
    pos = np.flatnonzero(rng.random(n_vol) < 0.5)
    owner = np.repeat(pos, rng.integers(1, 3, pos.size))
    nb = owner.size
    boxes = pd.DataFrame(
        {"StudyUID": study[owner].astype(str), "View": view[owner], "Slice": rng.integers(5, 55, nb)}
        | {"X": rng.uniform(0, 1500, nb), "Y": rng.uniform(0, 2000, nb), "Width": rng.uniform(20, 300, nb)}
        | {"Height": rng.uniform(20, 300, nb), "VolumeSlices": 60.0}
    )
    vol = rng.integers(0, n_vol, n_pred)
    near = rng.random(n_pred) < 0.33
    b = rng.integers(0, nb, n_pred)
    vol[near] = owner[b[near]]
    x = np.where(near, boxes["X"].to_numpy()[b] + rng.normal(0, 80, n_pred), rng.uniform(0, 1500, n_pred))
    y = np.where(near, boxes["Y"].to_numpy()[b] + rng.normal(0, 80, n_pred), rng.uniform(0, 2000, n_pred))
    z = np.where(near, boxes["Slice"].to_numpy()[b] + rng.normal(0, 10, n_pred), rng.uniform(0, 60, n_pred))
    pred = pd.DataFrame(
        {"StudyUID": study[vol].astype(str), "View": view[vol], "X": x, "Y": y, "Width": 50.0, "Height": 50.0}
        | {"Z": np.round(z), "Depth": 2.0, "Score": np.round(rng.random(n_pred) + 0.3 * near, 3)}
    )
    return pred, boxes, labels


def timed(fn, *args) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-ref-seconds", type=float, default=60.0)
    args = ap.parse_args()
    rows = []
    prev = None  # (size, seconds) of the last measured reference
    for n in (10**4, 10**5, 10**6):
        rng = np.random.default_rng(n)
        y = rng.integers(0, 2, n)
        a, b = np.round(rng.normal(size=n) + y, 3), np.round(rng.normal(size=n) + 0.8 * y, 3)
        t_fast, res = timed(delong_test, y, a, b)
        est = prev[1] * (n / prev[0]) ** 2 if prev else 0.0
        if est <= args.max_ref_seconds:
            t_ref, (z, _) = timed(delong_reference, y, a, b)
            note = f"measured; |Δz| = {abs(z - res.z):.1e}"
            prev = (n, t_ref)
        else:
            t_ref, note = est, "extrap. (quadratic, from the last measured size)"
        rows.append(("DeLong paired test", f"{n:,} cases", t_fast, t_ref, note))
    prev = None
    for n in (10**3, 10**4, 10**5):
        pred, boxes, labels = dbt_data(n)
        t_fast, res = timed(froc_dbt, pred, boxes, labels)
        est = prev[1] * (n / prev[0]) ** 2 if prev else 0.0
        if est <= args.max_ref_seconds:
            t_ref, ref = timed(dbt_reference, pred, boxes, labels)
            note = f"measured; max |Δ| = {max(abs(ref[k] - res[k]) for k in ref):.1e}"
            prev = (n, t_ref)
        else:
            t_ref, note = est, "extrap. (quadratic: thresholds × predictions, from the last measured size)"
        rows.append(("DBT FROC", f"{n:,} predictions", t_fast, t_ref, note))
    print(f"{'metric':<20} {'size':<20} {'ours (s)':>10} {'reference (s)':>14} {'speed-up':>10}  note")
    for name, size, tf, tr, note in rows:
        print(f"{name:<20} {size:<20} {tf:>10.3f} {tr:>14.2f} {tr / tf:>9.0f}x  {note}")


if __name__ == "__main__":
    main()
