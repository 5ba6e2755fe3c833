"""Tune stage of the self-training experiment: settings the paper leaves open, chosen on validation (DESIGN §11).

Two settings change what every cell measures and are not fixed by the paper:

* ``full_share`` of ``PosNegSampler``: None draws each batch's positives and negatives from the pooled full +
  weak images (the paper's literal reading); a share s takes round(s·n) of them from the fully labelled
  images, so the few annotated lesions keep their pixel supervision when hundreds of weak images join;
* ``lesion_threshold`` t: where the map's regions start, for mining (mask-positive) and the FROC alike.

Each candidate (full_share × t) trains the tune cell (default ``full25_weak100``, the setting of Table 4 and
Fig. 4) for each tune seed and is scored on the **val** split only (mean FROC sensitivity at 0.1–1 FPPI,
averaged over seeds); the test split is never passed to a tune run. The highest mean wins; a tie keeps the
earlier candidate, and the candidates are listed with the paper's literal setting first, so a choice away
from it needs a measured gain. The choice, every candidate's per-seed values and the reason go to
``tune.json`` and every main run uses the choice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TuneSpec:
    """Candidates and where they are measured."""

    full_shares: tuple[float | None, ...] = (None, 0.5)
    thresholds: tuple[float, ...] = (0.25, 0.15, 0.35)
    seeds: tuple[int, ...] = (0, 1)
    cell: str = "full25_weak100"

    @property
    def candidates(self) -> list[tuple[float | None, float]]:
        """(full_share, lesion_threshold) of every candidate, full_share-major, in the order given."""
        return [(fs, t) for fs in self.full_shares for t in self.thresholds]


def candidate_name(full_share: float | None, threshold: float) -> str:
    """Run-directory name of a candidate, e.g. ``share-pooled_t0.25`` or ``share0.5_t0.15``."""
    return f"share{'-pooled' if full_share is None else f'{full_share:g}'}_t{threshold:g}"


# a tune run: (seed, full_share, lesion_threshold, run directory) → the run's val metrics (``mean``, ``sens``)
TrainOnVal = Callable[[int, float | None, float, Path], dict[str, Any]]


def choose(scores: dict[tuple[float | None, float], list[float]]) -> tuple[float | None, float]:
    """The candidate with the highest mean of its per-seed val scores; the first listed wins a tie."""
    best, best_mean = None, -np.inf
    for cand, vals in scores.items():
        m = float(np.mean(vals))
        if m > best_mean + 1e-12:
            best, best_mean = cand, m
    if best is None:
        raise ValueError("tune: no candidate has a score")
    return best


def run_tune(spec: TuneSpec, train_on_val: TrainOnVal, out: Path, n_val_images: int) -> dict[str, Any]:
    """Train and score every candidate on val; write and return ``tune.json``'s dict.

    Runs live in ``out/tune/seedS/CANDIDATE`` and are reused when finished (the caller's run function reads a
    finished ``metrics.json`` back).
    """
    scores: dict[tuple[float | None, float], list[float]] = {}
    rows = []
    for fs, t in spec.candidates:
        per_seed = [train_on_val(s, fs, t, out / "tune" / f"seed{s}" / candidate_name(fs, t)) for s in spec.seeds]
        scores[(fs, t)] = [float(r["mean"]) for r in per_seed]
        rows.append({"full_share": fs, "lesion_threshold": t, "val_mean": float(np.mean(scores[(fs, t)])),
                     "val_sd": float(np.std(scores[(fs, t)], ddof=1)) if len(per_seed) > 1 else float("nan"),
                     "per_seed": scores[(fs, t)]})  # fmt: skip
    fs, t = choose(scores)
    first = spec.candidates[0]
    why = (f"highest mean FROC sensitivity (0.1–1 FPPI) on the val split ({n_val_images} images) over seeds "
           f"{list(spec.seeds)} in cell {spec.cell}: {np.mean(scores[(fs, t)]):.3f}"
           + ("" if (fs, t) == first else f" vs {np.mean(scores[first]):.3f} for the paper's literal setting "
              f"(full_share {first[0]}, t {first[1]:g})"))  # fmt: skip
    summary = {"choice": {"full_share": fs, "lesion_threshold": t}, "why": why, "split": "val",
               "spec": asdict(spec), "candidates": rows}  # fmt: skip
    (out / "tune.json").write_text(json.dumps(summary, indent=1))
    return summary


def parse_shares(text: str) -> tuple[float | None, ...]:
    """``"none,0.5"`` → (None, 0.5); ``none`` (or ``pooled``) is the pooled draw."""
    return tuple(None if v.strip().lower() in {"none", "pooled"} else float(v) for v in text.split(",") if v.strip())


def parse_floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def parse_ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def tune_spec(shares: str, thresholds: str, seeds: str, cell: str) -> TuneSpec:
    """A :class:`TuneSpec` from the CLI's comma-separated lists (raises ValueError on a bad number)."""
    return TuneSpec(parse_shares(shares), parse_floats(thresholds), parse_ints(seeds), cell)
