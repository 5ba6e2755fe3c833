"""Finished recognition runs of ``us-mean-teacher`` are reused: adding seeds or rerunning trains only what is missing.

A run (one arm, one seed) lives in ``out_dir/runs/<arm>_s<seed>/``. When it finishes it writes the evaluation
model's weights (``model.pt``), its test scores (``test_scores.csv``: image_id, score) and, last,
``result.json`` (its training summary and the run key). A later run with the same key and the same test
images is loaded instead of trained. The key hashes every setting that changes a run's result (data,
detector, recognition, threshold) and none that do not (seeds, arms, device, out_dir, the bootstrap). An
unfinished run, or one with another key, is deleted and trained from scratch: the early-stopping state is
not checkpointed, so resuming mid-run would not repeat the uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

# settings that do not change a single run's result
KEY_EXCLUDE = {"seeds", "arms", "device", "out_dir", "n_boot", "noninferiority_margin"}


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def run_key(cfg: Any) -> str:
    """A 16-hex-digit hash of the settings that determine a run (``cfg``: USExperimentConfig).

    The detector is trained with the first seed and makes the crops, so that seed counts too."""
    return _hash({**cfg.model_dump(mode="json", exclude=KEY_EXCLUDE), "detector_seed": cfg.seeds[0]})


def detector_key(cfg: Any) -> str:
    """Hash of the settings that determine the detector: data, detector section, first seed."""
    data = cfg.model_dump(mode="json", include={"manifest", "synth_n", "synth_seed", "synth_set", "powered",
                                                "basic_fraction", "detector"})  # fmt: skip
    return _hash({**data, "seed": cfg.seeds[0]})


def fresh_dir(path: Path, key: str) -> None:
    """Delete ``path`` if it holds a run made with another key (its checkpoint would be resumed); mark it ``key``.

    A folder without a key (made before keys existed) is kept as it is."""
    mark = path / "run_key.txt"
    if mark.is_file() and mark.read_text().strip() != key:
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    mark.write_text(key)


def load_finished(run_dir: Path, key: str, test_ids: list[str]) -> tuple[dict, np.ndarray] | None:
    """(summary, test scores (n,) in ``test_ids`` order) of a finished run with ``key``, or None."""
    result, scores = run_dir / "result.json", run_dir / "test_scores.csv"
    if not (result.is_file() and scores.is_file() and (run_dir / "model.pt").is_file()):
        return None
    res = json.loads(result.read_text())
    df = pd.read_csv(scores, dtype={"image_id": str})
    if res.get("key") != key or df["image_id"].tolist() != list(test_ids):
        return None
    return res["summary"], df["score"].to_numpy(float)


def save_finished(run_dir: Path, key: str, summary: dict, model: torch.nn.Module, test_ids: list[str],
                  scores: np.ndarray) -> None:  # fmt: skip
    """Write a finished run: weights and scores first, ``result.json`` (the completion mark) last."""
    from ..fsutil import atomic_file

    with atomic_file(run_dir / "model.pt", "wb") as tmp:
        torch.save(model.state_dict(), tmp)
    with atomic_file(run_dir / "test_scores.csv") as tmp:
        pd.DataFrame({"image_id": test_ids, "score": scores}).to_csv(tmp, index=False)
    with atomic_file(run_dir / "result.json") as tmp:
        tmp.write_text(json.dumps({"key": key, "summary": summary}, default=float))


def run_arm_cached(arm: str, seed: int, cfg: Any, crops: dict, out: Path) -> tuple[torch.nn.Module, dict, np.ndarray]:
    """(evaluation model, training summary, test scores (n,)) of one run: loaded if finished, else trained.

    ``crops``: as built by ``_us_mean_teacher_impl.run`` (``train``, ``val``, ``test`` tables and ``*_x`` arrays).
    """
    from ..run.early_stopping import predict_proba
    from ._us_mean_teacher_impl import recognition_model, train_arm

    run_dir = out / "runs" / f"{arm}_s{seed}"
    key, test_ids = run_key(cfg), crops["test"]["image_id"].astype(str).tolist()
    done = load_finished(run_dir, key, test_ids)
    if done is not None:
        model = recognition_model(cfg.recognition)
        model.load_state_dict(torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True))
        return model.eval(), {**done[0], "reused": True}, done[1]
    if run_dir.exists():  # unfinished or stale: start clean (the engine would otherwise resume its checkpoint)
        shutil.rmtree(run_dir)
    model, summary = train_arm(arm, seed, cfg, crops, out)
    scores = predict_proba(model, torch.from_numpy(crops["test_x"]))
    save_finished(run_dir, key, summary, model, test_ids, scores)
    return model, {**summary, "reused": False}, scores
