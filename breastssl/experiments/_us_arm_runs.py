"""The ultrasound experiment's arms as ``breastssl train`` runs of the ``us`` recipe, for the one scheduler.

Each (seed, arm) is one run in ``out_dir/arms/<arm>_s<seed>/`` (config.yaml, checkpoints, weights, predictions,
metrics.json; ``breastssl predict --run`` / ``export --run`` work on each). The experiment's sets are written once
as a manifest (``out_dir/sets/manifest.csv``: basic rows ``annotation = full``, the other training rows ``none``,
val and test as they are), so every run reads exactly the experiment's sets. The first run (first seed, first arm)
trains the detector with the first seed, as the experiment always has; every other run reuses it
(``detector.run``) and waits for it. A finished run whose saved config differs from the one asked for now
(another recipe in the same ``out_dir``) is deleted and trained again; an unfinished one resumes.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CROP_FIELDS = ("crop_size", "margin", "min_score", "flip", "translate", "contrast", "eval_every")
VOLATILE = {"train": {"out_dir", "progress", "device"}}  # settings that do not change a finished run's result


def write_sets_manifest(man: pd.DataFrame, les: pd.DataFrame, root: Path, folder: Path) -> Path:
    """``folder/manifest.csv`` (absolute paths; split train/val/test, annotation full for the basic set) and the
    lesions of its images beside it; returns the manifest's path."""
    from ..data.schema import resolve_path
    from ..fsutil import atomic_file

    folder.mkdir(parents=True, exist_ok=True)
    rows = man[man["set"].isin(["basic", "extended", "val", "test"])].copy()
    rows["split"] = np.where(rows["set"].isin(["basic", "extended"]), "train", rows["set"])
    rows["annotation"] = np.where(rows["set"] == "basic", "full", np.where(rows["set"] == "extended", "none",
                                                                           rows["annotation"]))  # fmt: skip
    rows["path"] = [str(resolve_path(root, str(p)).resolve()) for p in rows["path"]]
    rows = rows.drop(columns=["set"])
    keep = les[les["image_id"].astype(str).isin(set(rows["image_id"]))].copy() if len(les) else les
    if "mask_path" in keep:  # masks are not read by this method; absolute so the table stays valid where it is
        keep["mask_path"] = [str(resolve_path(root, str(p)).resolve()) if isinstance(p, str) and p else p
                             for p in keep["mask_path"]]  # fmt: skip
    with atomic_file(folder / "lesions.csv") as tmp:
        keep.to_csv(tmp, index=False)
    with atomic_file(folder / "manifest.csv") as tmp:
        rows.to_csv(tmp, index=False)
    return folder / "manifest.csv"


def arm_dir(out: Path, arm: str, seed: int) -> Path:
    return out / "arms" / f"{arm}_s{seed}"


def arm_run_dict(cfg: Any, manifest: Path, arm: str, seed: int, run_dir: Path, detector_run: Path | None) -> dict:
    """The ``us`` recipe mapping of one arm and seed of the experiment ``cfg`` (a USExperimentConfig)."""
    r = cfg.recognition
    strategy = {**r.mean_teacher.model_dump(mode="json"), "name": "mean_teacher"}
    if arm != "semi":  # a supervised arm evaluates its student; its EMA control the EMA teacher (no consistency)
        strategy.update(consistency_weight=0.0, evaluate_with="teacher" if arm.endswith("_ema") else "student")
    return {
        "data": {"manifest": str(manifest), "lesions": str(manifest.parent / "lesions.csv"), "basic_fraction": None,
                 "train_split": "train", "val_split": "val", "test_split": "test", "unlabelled_split": None},
        "detector": {**cfg.detector.model_dump(mode="json"), "run": str(detector_run) if detector_run else None},
        "recognition": {**{k: getattr(r, k) for k in CROP_FIELDS}, "arm": arm.removesuffix("_ema"),
                        "equal_labelled_exposure": r.equal_labelled_exposure},
        "model": {"name": r.model, "width": r.width, "dropout": r.dropout, "backbone": r.backbone},
        "strategy": strategy,
        "eval": {"threshold": cfg.threshold},
        "train": {"steps": r.max_steps, "batch_size": r.batch_size, "seed": seed, "device": cfg.device,
                  "out_dir": str(run_dir), "optim": {"name": "adam", "lr": r.lr, "weight_decay": 0.0},
                  "schedule": {"name": "constant"}, "progress": False, "tensorboard": False, "log_every": 50,
                  "ckpt_every": 10**9, "keep_last": 1},
    }  # fmt: skip


def _stale(spec: Any) -> bool:
    """A finished run whose saved config is not the one asked for now."""
    from ..run.config import run_config_of

    if not spec.done:
        return False
    saved = run_config_of(spec.out_dir).model_dump(mode="json", exclude=VOLATILE)
    return saved != spec.cfg.model_dump(mode="json", exclude=VOLATILE)


def arm_specs(cfg: Any, manifest: Path, out: Path) -> list[Any]:
    """RunSpecs of every (seed, arm); the first trains the detector the others reuse. Stale finished runs are
    deleted here (all of them when the detector's run is stale), so the scheduler trains them again."""
    from ._runs import spec_from_mapping

    specs: list[Any] = []
    for seed in cfg.seeds:
        for arm in cfg.arms:
            owner = specs[0] if specs else None
            mapping = arm_run_dict(cfg, manifest, arm, seed, arm_dir(out, arm, seed), owner.out_dir if owner else None)
            specs.append(spec_from_mapping(f"{arm}_s{seed}", mapping, "us-mean-teacher", [owner.name] if owner else []))
    stale = [s for s in specs if _stale(s)]
    for s in specs if specs and specs[0] in stale else stale:
        if s.out_dir.exists():
            shutil.rmtree(s.out_dir)
    return specs


def run_results(spec: Any, seed: int, arm: str, done_before: bool) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(test predictions: image_id, score of the labelled test nodules, in the run's order; the run's summary row
    for the report) of a finished arm run."""
    import json

    metrics = json.loads((spec.out_dir / "metrics.json").read_text())
    pred = pd.read_csv(spec.out_dir / "predictions.csv", dtype={"image_id": str})
    pred = pred[pred["label"] >= 0]
    early = metrics.get("early_stopping", {})
    per = metrics.get("per_step", {})
    row = {"arm": arm, "seed": seed, "n_labelled": metrics.get("labelled_crops"),
           "n_unlabelled": metrics.get("unlabelled_crops"),
           "labelled_per_step": per.get("labelled"), "unlabelled_per_step": per.get("unlabelled"),
           "steps": early.get("stopped_at", metrics.get("steps")), "best_step": early.get("best_step"),
           "best_value": early.get("best_val_accuracy"), "history": early.get("history"), "reused": done_before,
           "run": str(spec.out_dir)}  # fmt: skip
    row["labelled_seen"] = (row["labelled_per_step"] or 0) * (row["steps"] or 0)
    return pred[["image_id", "p_malignant"]].rename(columns={"p_malignant": "score"}), row
