"""Evaluate saved predictions against a manifest: the numbers behind ``breastssl evaluate``.

Returns a JSON-ready dict; :mod:`breastssl.reports.evaluation_html` turns it into the HTML report.
Every table states the aggregation that produced its scores.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import metrics as M
from ..errors import DataError
from .inputs import check_ids, load_predictions

ORDER = {"image": 0, "breast": 1, "exam": 2}


@dataclass
class EvalOptions:
    """What ``breastssl evaluate`` computes; defaults are the CLI's."""

    level: str = "image"
    agg: str = "max"
    k: int = 3
    by: list[str] = field(default_factory=list)
    compare: bool = False
    split: str | None = None
    threshold: float = 0.5
    n_boot: int = 1000
    iou: float = 0.2
    criterion: str = "iou"
    positive: tuple[str, ...] = ("cancer",)
    seed: int = 0


def _unit_scores(pred: pd.DataFrame, kind: str, plevel: str, man: pd.DataFrame, o: EvalOptions) -> pd.DataFrame:
    """Scores at ``o.level`` with an ``aggregation`` column."""
    keys = M.aggregate.LEVEL_KEYS[o.level]
    if kind != "classification":  # an image scores as its best box; images without boxes score lowest
        img = pred.groupby("image_id", sort=True)["score"].max()
        low = float(img.min()) - 1.0
        img = img.reindex(man["image_id"].astype(str)).fillna(low)
        df = pd.DataFrame({"image_id": img.index, "score": img.to_numpy(), "aggregation": "box→image: max"})
        return M.to_level(df, man, o.level, o.agg, o.k)
    if plevel == "image":
        return M.to_level(pred[[c for c in ("image_id", "slice", "score") if c in pred]], man, o.level, o.agg, o.k)
    if plevel == o.level:
        return pred[keys + ["score"]].assign(aggregation=f"none ({plevel}-level predictions)")
    return M.aggregate_scores(pred, keys, o.agg, o.k, label="breast→exam")


def _with_groups(truth: pd.DataFrame, man: pd.DataFrame, lesions: pd.DataFrame | None, o: EvalOptions) -> pd.DataFrame:
    keys = M.aggregate.LEVEL_KEYS[o.level]
    for col in o.by:
        if col == "lesion_class":
            if lesions is None:
                raise DataError("--by lesion_class needs a lesions table")
            unit = man[list(dict.fromkeys(["image_id", *keys]))].astype(str)
            les = lesions[["image_id", "lesion_class"]].astype(str).merge(unit, on="image_id")
            sets = les.groupby(keys)["lesion_class"].agg(lambda s: "|".join(sorted(set(s)))).rename("lesion_class")
            truth = truth.merge(sets.reset_index(), on=keys, how="left")
        elif col not in man.columns:
            raise DataError(f"--by {col}: the manifest has no such column; has {list(man.columns)}")
        else:
            truth = truth.merge(man.groupby(keys)[col].first().astype(str).reset_index(), on=keys, how="left")
    return truth


def _subgroups(df: pd.DataFrame, by: list[str]) -> list[tuple[str, str, pd.DataFrame]]:
    out = []
    for col in by:
        if col == "lesion_class":  # positives with this lesion class against every negative
            classes = sorted({c for v in df[col].dropna() for c in v.split("|")})
            for c in classes:
                has = df[col].fillna("").str.split("|").apply(lambda s, c=c: c in s)
                out.append((col, c, df[(df["label"] == 0) | has]))
        else:
            out += [(col, str(v), g) for v, g in df.groupby(col, sort=True)]
    return out


def _roc_row(y: np.ndarray, s: np.ndarray, o: EvalOptions) -> dict:
    auc, low, high = M.delong_ci(y, s)
    row = {"n": int(y.size), "n_pos": int(y.sum()), "auc": auc, "auc_low": low, "auc_high": high}
    for name, fn in (("sensitivity", M.sensitivity), ("specificity", M.specificity)):

        def metric(yy: np.ndarray, ss: np.ndarray, fn=fn) -> float:
            return fn(yy, ss, o.threshold)

        est, lo, hi = M.bootstrap_ci(metric, y, s, n=o.n_boot, seed=o.seed)
        row.update({name: est, f"{name}_low": lo, f"{name}_high": hi})
    row["youden_threshold"] = M.youden_threshold(y, s)[0]
    return row


def _froc_frames(pred: pd.DataFrame, lesions: pd.DataFrame, man: pd.DataFrame) -> tuple:
    ids = man["image_id"].astype(str)
    les = lesions[lesions["image_id"].astype(str).isin(set(ids))].reset_index(drop=True)
    return pred.reset_index(drop=True), les, ids


def _froc_2d(pred: pd.DataFrame, les: pd.DataFrame, ids: pd.Series, o: EvalOptions) -> tuple[dict, tuple]:
    r = M.froc_2d(pred, les, list(ids), o.iou, o.criterion)
    d = {"n_images": r.n_images, "n_lesions": r.n_lesions, "mean_sensitivity": r.mean_sensitivity}
    d.update({f"sensitivity_at_{k:g}_fppi": v for k, v in r.sensitivity_at.items()})
    return d, (r.fppi.tolist(), r.sensitivity.tolist())


def _dbt_frames(pred: pd.DataFrame, les: pd.DataFrame, man: pd.DataFrame) -> tuple:
    n_slices = man.set_index(man["image_id"].astype(str))["n_slices"]
    p = pd.DataFrame(
        {"StudyUID": pred["image_id"], "View": "-", "X": pred["x"], "Y": pred["y"], "Width": pred["w"]}
        | {"Height": pred["h"], "Z": pred["z"], "Depth": pred["depth"], "Score": pred["score"]}
    )
    b = pd.DataFrame(
        {"StudyUID": les["image_id"].astype(str), "View": "-", "Slice": les["slice"], "X": les["x"], "Y": les["y"]}
        | {"Width": les["w"], "Height": les["h"], "VolumeSlices": n_slices.reindex(les["image_id"].astype(str)).values}
    )
    return p, b, pd.DataFrame({"StudyUID": man["image_id"].astype(str), "View": "-"})


def _froc_dbt(pred: pd.DataFrame, les: pd.DataFrame, man: pd.DataFrame) -> tuple[dict, tuple]:
    p, b, lab = _dbt_frames(pred, les, man)
    res = M.froc_dbt(p, b, lab)
    res.update(n_volumes=len(lab), n_lesions=len(b))
    fps, tpr = M.froc_dbt_curves(p, b, lab)["positive"]
    return res, (fps.tolist(), tpr.tolist())


def _detection(pred: pd.DataFrame, kind: str, man: pd.DataFrame, lesions: pd.DataFrame, o: EvalOptions) -> dict:
    pred, les, ids = _froc_frames(pred, lesions, man)
    run = _froc_dbt if kind == "dbt" else _froc_2d
    overall, curve = run(pred, les, man) if kind == "dbt" else run(pred, les, ids, o)
    subs = []
    for col in o.by:
        if col == "lesion_class":
            if kind == "dbt":
                gt = M.match_dbt(*_dbt_frames(pred, les, man)[:2])[1]
                pairs = (np.flatnonzero(gt >= 0), gt[gt >= 0])
            else:
                pairs = M.match_2d(pred, les, list(ids), o.iou, o.criterion)
            cls = les["lesion_class"].astype(str).to_numpy()
            for c in sorted(set(cls)):
                other = np.setdiff1d(pairs[0][cls[pairs[1]] != c], pairs[0][cls[pairs[1]] == c])
                keep_p = np.setdiff1d(np.arange(len(pred)), other)  # hits of other classes are ignored
                sub_les = les[cls == c].reset_index(drop=True)
                args = (pred.iloc[keep_p], sub_les, man) if kind == "dbt" else (pred.iloc[keep_p], sub_les, ids, o)
                subs.append({"by": col, "value": c, **run(*args)[0]})
            continue
        for v, m in man.groupby(man[col].astype(str), sort=True):
            sp = pred[pred["image_id"].isin(set(m["image_id"].astype(str)))]
            sl = les[les["image_id"].astype(str).isin(set(m["image_id"].astype(str)))]
            args = (sp, sl, m) if kind == "dbt" else (sp, sl, m["image_id"].astype(str), o)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                subs.append({"by": col, "value": v, **run(*args)[0]})
    return {"kind": kind, "overall": overall, "curve": curve, "subgroups": subs}


def evaluate_predictions(
    paths: list[Path], manifest: pd.DataFrame, lesions: pd.DataFrame | None, o: EvalOptions
) -> dict:
    """All metrics of all prediction files, as a JSON-ready dict."""
    if o.level not in ORDER:
        raise DataError(f"--level must be image, breast or exam, not {o.level!r}")
    man = manifest if o.split is None else manifest[manifest["split"].astype(str) == o.split]
    if man.empty:
        raise DataError(f"the manifest has no rows with split {o.split!r}")
    man = man.assign(image_id=man["image_id"].astype(str), exam_id=man["exam_id"].astype(str))
    keys = M.aggregate.LEVEL_KEYS[o.level]
    truth = _with_groups(M.truth_at_level(man, o.level, o.positive), man, lesions, o)
    out: dict = {"level": o.level, "split": o.split, "positive": list(o.positive), "threshold": o.threshold}
    out["models"], aligned = {}, {}
    names = [p.stem if [q.stem for q in paths].count(p.stem) == 1 else str(p) for p in paths]
    for name, path in zip(names, paths, strict=True):
        pred, kind, plevel = load_predictions(path)
        if ORDER[plevel] > ORDER[o.level]:
            raise DataError(f"{path}: predictions are {plevel}-level; they cannot be evaluated at --level {o.level}")
        pkeys = M.aggregate.LEVEL_KEYS[plevel]
        check_ids(pred, man, pkeys, str(path), complete=kind == "classification")
        if kind != "classification" and lesions is None:
            raise DataError(f"{path}: detection predictions need a lesions table (--lesions or lesions.csv)")
        scores = _unit_scores(pred, kind, plevel, man, o)
        df = truth.merge(scores, on=keys, how="inner")
        y, s = df["label"].to_numpy(int), df["score"].to_numpy(float)
        entry = {"file": str(path), "kind": kind, "aggregation": str(scores["aggregation"].iloc[0])}
        entry["roc"] = _roc_row(y, s, o)
        fpr, tpr, _ = M.roc_curve_points(y, s)
        entry["roc"]["curve"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # single-class subgroups report NaN
            entry["subgroups"] = [
                {"by": c, "value": v, **_roc_row(g["label"].to_numpy(int), g["score"].to_numpy(float), o)}
                for c, v, g in _subgroups(df, o.by)
            ]
        if kind != "classification":
            entry["froc"] = _detection(pred, kind, man, lesions, o)
        out["models"][name] = entry
        aligned[name] = df.set_index(keys)[["label", "score"]]
    out["aggregation"] = sorted({m["aggregation"] for m in out["models"].values()})
    out["comparisons"] = _compare(aligned) if o.compare else []
    if o.compare and len(paths) < 2:
        raise DataError("--compare needs at least two prediction files")
    return out


def _compare(aligned: dict[str, pd.DataFrame]) -> list[dict]:
    rows = []
    for a, b in itertools.combinations(aligned, 2):
        both = aligned[a].join(aligned[b], how="inner", lsuffix="_a", rsuffix="_b")
        t = M.delong_test(both["label_a"].to_numpy(int), both["score_a"].to_numpy(), both["score_b"].to_numpy())
        rows.append({"a": a, "b": b, "n": len(both), **t.to_dict()})
    return rows
