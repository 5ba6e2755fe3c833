"""k-fold training of the report labeller, per breast side, and the fold ensemble (paper §3.2, §4.3).

Per side: the labelled training reports are split into k stratified folds; fold model f trains on the
other k − 1 folds. Its held-out predictions give the cross-validated metrics (the paper's Table 2:
average F1, weighted F1, accuracy at 0.5); the soft label of *every* report is the mean of the k fold
models' probabilities. Resumable: each finished fold stores its predictions (and, for transformers,
its weights) under ``work_dir/side_<S>/fold_<f>/``; a rerun skips folds whose predictions cover the
same reports.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from ..metrics import classification_report_metrics
from .text import SIDES


@dataclass
class LabelResult:
    """``labels``: one row per exam × side (``exam_id, laterality, soft_label, oof_prob, in_training,
    label``); ``metrics``: per side, ``cv`` (out-of-fold on the training reports) and ``heldout``
    (soft label vs truth on labelled reports outside training), each macro_f1 / weighted_f1 / accuracy."""

    labels: pd.DataFrame
    metrics: dict[str, Any] = field(default_factory=dict)


def _metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    if len(y) == 0:
        return {"n": 0}
    return {"n": int(len(y)), **classification_report_metrics(np.asarray(y, int), (np.asarray(p) >= 0.5).astype(int))}


def _fold_ids(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Stratified fold number (N,) of each training report."""
    from sklearn.model_selection import StratifiedKFold

    folds = np.zeros(len(y), int)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for f, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y)):
        folds[test] = f
    return folds


def _load_fold(path: Path, keys: list[str]) -> np.ndarray | None:
    done = path / "predictions.npz"
    if not done.is_file():
        return None
    with np.load(done, allow_pickle=False) as z:
        if list(z["keys"]) != keys:
            return None  # a different report set: recompute
        return z["prob"].astype(float)


def _save_fold(path: Path, keys: list[str], prob: np.ndarray, model: Any, meta: dict[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "save"):
        model.save(path / "model")
    tmp = path / "predictions.tmp.npz"
    np.savez(tmp, keys=np.asarray(keys), prob=prob)
    (path / "meta.json").write_text(json.dumps(meta, indent=1))
    tmp.replace(path / "predictions.npz")  # the marker of a finished fold, written last


def label_reports(
    examples: pd.DataFrame,
    make_labeller: Callable[[int, str], Any],
    k: int = 3,
    train_mask: np.ndarray | None = None,
    work_dir: str | Path | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> LabelResult:
    """Soft labels for every row of ``examples`` (from :func:`report_examples`).

    make_labeller(fold, side) → an object with ``fit(desc, imp, y)`` and ``predict_proba(desc, imp)``.
    train_mask (N,) bool: reports the labeller may learn from (default: every row with a label).
    """
    ex = examples.reset_index(drop=True)
    has_label = ex["label"].notna().to_numpy()
    train = has_label if train_mask is None else (np.asarray(train_mask, bool) & has_label)
    out = ex[["exam_id", "laterality"]].copy()
    out["soft_label"], out["oof_prob"] = np.nan, np.nan
    out["in_training"], out["label"] = train, ex["label"]
    metrics: dict[str, Any] = {}
    for side in SIDES:
        rows = np.flatnonzero(ex["laterality"].to_numpy() == side)
        if rows.size == 0:
            continue
        tr = rows[train[rows]]
        y = ex.loc[tr, "label"].to_numpy(int)
        if len(tr) < k or len(np.unique(y)) < 2 or np.bincount(y).min() < k:
            raise DataError(f"side {side}: {len(tr)} labelled training reports with classes {np.bincount(y)}: "
                            f"too few for {k}-fold cross-validation")  # fmt: skip
        folds = _fold_ids(y, k, seed)
        keys = (ex.loc[rows, "exam_id"] + "|" + side).tolist()
        desc, imp = ex.loc[rows, "description"].tolist(), ex.loc[rows, "impression"].tolist()
        pos_in_rows = np.searchsorted(rows, tr)
        probs = []
        oof = np.full(len(tr), np.nan)
        for f in range(k):
            fold_dir = Path(work_dir) / f"side_{side}" / f"fold_{f}" if work_dir else None
            prob = _load_fold(fold_dir, keys) if fold_dir else None
            if prob is None:
                if log:
                    log(f"side {side}: training fold {f + 1}/{k} on {int((folds != f).sum())} reports")
                model = make_labeller(f, side)
                fit_idx = pos_in_rows[folds != f]
                model.fit([desc[i] for i in fit_idx], [imp[i] for i in fit_idx], y[folds != f])
                prob = np.asarray(model.predict_proba(desc, imp), float)
                if fold_dir:
                    _save_fold(fold_dir, keys, prob, model, {"side": side, "fold": f, "n_train": int(len(fit_idx))})
            elif log:
                log(f"side {side}: fold {f + 1}/{k} already done, reusing its predictions")
            probs.append(prob)
            oof[folds == f] = prob[pos_in_rows[folds == f]]
        soft = np.mean(probs, axis=0)
        out.loc[rows, "soft_label"] = soft
        out.loc[tr, "oof_prob"] = oof
        held = rows[~train[rows] & has_label[rows]]
        metrics[side] = {
            "cv": _metrics(y, oof),
            "heldout": _metrics(ex.loc[held, "label"].to_numpy(int), out.loc[held, "soft_label"].to_numpy(float)),
        }
    return LabelResult(out, metrics)
