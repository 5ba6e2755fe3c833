"""Prior-shift calibration of slice scores (DESIGN §5.1): what a probability means after oversampling.

A model trained on batches in which positives are over-represented (``composition.positive_fraction``,
fixed group shares) learns the batch prior, not the data's: at 25% positive slots against a natural ~2%
its odds are ~16× too high, so a threshold such as the SelectiveKD paper's T = 0.7 or 0.1 no longer means
what the paper meant. Under the usual label-shift assumption (p(x | y) is the same in batches and in the
data; only P(y) differs) Bayes' rule gives the exact correction as a constant shift of the logit::

    logit p_natural(x) = logit p_batch(x) + log(π / (1 − π)) − log(ρ / (1 − ρ))

where ρ is the expected positive share of the supervised classification slots in a batch and π the
share of positives among the same slices when drawn as they come (the paper's plain sampling: every
annotated positive and every strided negative once). With uniform sampling ρ = π and the shift is 0.

For a teacher this is exact (every slot is supervised). A student's batches also hold KD-only slots,
whose targets are the teacher's raw probabilities, i.e. on the teacher's batch prior; with the same
composition recipe that is the student's own batch prior, so its shift from the supervised slots is the
right one to a good approximation. It is recorded the same way so every run's scores are on one scale.

Where it is applied: to the teacher's scores before a selection threshold T (``strategy.calibrate``), to
every score a run writes (test predictions) and to every score ``breastssl predict`` reports. Not to KD
targets: those must stay on the prior the student's labels are drawn with.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CALIBRATION_FILE = "calibration.json"


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


def prior_shift(plan: pd.DataFrame, members: Mapping[str, np.ndarray], counts: Mapping[str, int]) -> dict[str, float]:
    """Natural vs batch prior of the supervised classification slots, and the logit shift between them.

    plan: the training table (``sup_cls`` flag, ``label``); members: row indices of each batch group;
    counts: slots per batch of each group (``ComposedBatchSampler.members`` / ``.counts``).
    Returns ``natural_prior`` π, ``train_prior`` ρ and ``logit_shift`` = logit π − logit ρ (0 when there
    is no supervised positive or negative to compare).
    """
    sup = plan["sup_cls"].to_numpy(float)
    pos = sup * np.nan_to_num(plan["label"].to_numpy(float))
    natural = float(pos.sum() / sup.sum()) if sup.sum() > 0 else math.nan
    exp_pos = exp_sup = 0.0
    for group, n in counts.items():
        idx = np.asarray(members[group], dtype=np.int64)
        if len(idx):
            exp_pos += n * float(pos[idx].mean())
            exp_sup += n * float(sup[idx].mean())
    train = exp_pos / exp_sup if exp_sup > 0 else math.nan
    ok = all(0 < v < 1 for v in (natural, train) if not math.isnan(v)) and not (
        math.isnan(natural) or math.isnan(train)
    )
    shift = _logit(natural) - _logit(train) if ok else 0.0
    return {"natural_prior": natural, "train_prior": train, "logit_shift": float(shift)}


def write_calibration(out_dir: Path, calib: Mapping[str, Any]) -> None:
    """``calibration.json`` of a run (written atomically)."""
    from ..fsutil import atomic_file

    with atomic_file(Path(out_dir) / CALIBRATION_FILE) as tmp:
        tmp.write_text(json.dumps(dict(calib), indent=2))


def read_logit_shift(run_dir: Path) -> float:
    """The run's logit shift; 0 for a run made before calibration was recorded (its scores stay as trained)."""
    path = Path(run_dir) / CALIBRATION_FILE
    if not path.is_file():
        return 0.0
    return float(json.loads(path.read_text())["logit_shift"])


def run_dir_of(path: Path) -> Path:
    """A run folder from itself or one of its checkpoint files (``RUN/checkpoints/step_*.pt``)."""
    path = Path(path)
    return path if path.is_dir() else path.parent.parent


def shift_probabilities(p: np.ndarray, shift: float) -> np.ndarray:
    """σ(logit p + shift), elementwise, for probabilities already computed (float64, clipped away from 0/1)."""
    if shift == 0:
        return np.asarray(p, dtype=np.float64)  # exactly the scores as trained
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return 1.0 / (1.0 + np.exp(-(np.log(q / (1 - q)) + shift)))
