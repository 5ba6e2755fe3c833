"""The CoMoTo experiment as a list of ``breastssl train`` runs for the one scheduler (:mod:`._runs`).

Per seed, the mammography teachers the table's rows need (``seed{s}/teacher_plain``, ``seed{s}/teacher_impa``:
strategy ``comoto_teacher``), then per DBT fraction one student per row (``seed{s}/frac{f}/{row}``), each
needing its teacher. Every run is the ``comoto`` run recipe (``run/recipes/comoto.py``) with the experiment's
settings spelled out as a run config (:func:`run_config_dict`), so ``breastssl train -c`` on a run's saved
``config.yaml`` retrains exactly that cell. A finished student gets a ``result.json`` (its results row) and a
``predictions_volume.csv``, as the experiment has always written; cells with a ``result.json`` are not run again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

ROWS = {  # row → (strategy, teacher the student starts from / distils from: none | plain | impa)
    "dbt_only": ("pretraining", "none"),
    "pretraining": ("pretraining", "plain"),
    "image_kd": ("image_kd", "plain"),
    "lskd": ("comoto", "plain"),
    "lskd_impa": ("comoto", "impa"),
}
MODEL_FIELDS = ("backbone", "width", "stages", "pretrained", "fpn", "dilate_c5", "anchor_sizes")


def teacher_dir(out: Path, seed: int, kind: str) -> Path:
    return out / f"seed{seed}" / f"teacher_{kind}"


def student_dir(out: Path, seed: int, fraction: float, row: str) -> Path:
    return out / f"seed{seed}" / f"frac{fraction:g}" / row


def run_config_dict(cfg: Any, run_dir: Path, seed: int, strategy: str, **extra: Any) -> dict[str, Any]:
    """The run config (a ``comoto`` recipe mapping) of one cell of the experiment ``cfg``.

    extra: ``impa`` (teachers), ``fraction`` / ``teacher_run`` / ``student_init`` (students).
    """
    steps = cfg.teacher_steps if strategy == "comoto_teacher" else cfg.student_steps
    source = {"train_split": "train", "test_split": "test"}
    return {
        "data": {
            "dbt": {"manifest": str(Path(cfg.dbt_dir) / "manifest.csv"), **source},
            "mammo": {"manifest": str(Path(cfg.mammo_dir) / "manifest.csv"), **source},
            "image_size": list(cfg.size), "neg_stride": cfg.neg_stride, "balance": cfg.balance,
            "fraction": extra.get("fraction", 1.0), "hflip": True,
        },
        "model": {k: getattr(cfg, k) for k in MODEL_FIELDS},
        "strategy": {"name": strategy, "impa": extra.get("impa", False), "temperature": cfg.temperature,
                     "alpha": cfg.alpha, "impa_beta": cfg.impa_beta},
        "teacher": {"run": extra.get("teacher_run"), "student_init": extra.get("student_init", "teacher")},
        "eval": {"iou_merge": cfg.iou_merge},
        "train": {
            "steps": steps, "batch_size": cfg.batch_size, "seed": seed, "device": cfg.device, "out_dir": str(run_dir),
            "progress": False, "tensorboard": False, "ckpt_every": steps, "log_every": max(steps // 5, 1),
            "keep_last": 1, "clip_grad_norm": 10.0,
            "optim": {"name": cfg.optimizer, "lr": cfg.lr, "momentum": 0.9, "weight_decay": 1e-4},
            "schedule": {"name": "cosine", "warmup_steps": min(20, steps // 10)},
        },
    }  # fmt: skip


def comoto_specs(cfg: Any, out: Path) -> list[Any]:
    """RunSpecs of every cell without a ``result.json`` and of the teachers those cells need."""
    from ._runs import spec_from_mapping as _spec

    specs, teachers = [], {}
    for seed in cfg.seeds:
        for fraction in cfg.fractions:
            for row in cfg.rows:
                run_dir = student_dir(out, seed, fraction, row)
                if (run_dir / "result.json").is_file():
                    continue  # finished by this or an earlier version of the experiment
                strategy, kind = ROWS[row]
                needs, extra = [], {"fraction": fraction}
                if kind == "none":
                    extra["student_init"] = "scratch"
                else:
                    t_name = f"seed{seed}/teacher_{kind}"
                    if t_name not in teachers:
                        t_dir = teacher_dir(out, seed, kind)
                        mapping = run_config_dict(cfg, t_dir, seed, "comoto_teacher", impa=kind == "impa")
                        teachers[t_name] = _spec(t_name, mapping, "comoto")
                    needs, extra["teacher_run"] = [t_name], str(teacher_dir(out, seed, kind))
                name = f"seed{seed}/frac{fraction:g}/{row}"
                specs.append(_spec(name, run_config_dict(cfg, run_dir, seed, strategy, **extra), "comoto", needs))
    return [*teachers.values(), *specs]


def write_result(run_dir: Path, seed: int, fraction: float, row: str) -> dict[str, Any]:
    """The results row of a finished student run (``result.json``) and its ``predictions_volume.csv``.

    Columns as the experiment has always written them: seed, fraction, row, the DBT counts, the FROC readings
    (``scaled_*`` / ``raw_*``), the last logged value of each loss (``train_loss*``) and, for LsKD rows, the mean
    over the logged steps of ``loss_lskd`` and of the teacher's 9-point entropy.
    """
    from ..engine.logger import METRICS_FILE
    from ..inference.dbt_merge import PRED_COLUMNS

    metrics = json.loads((run_dir / "metrics.json").read_text())
    pred = pd.read_csv(run_dir / "predictions.csv", dtype={"StudyUID": str, "View": str})
    pred[PRED_COLUMNS].to_csv(run_dir / "predictions_volume.csv", index=False)
    counts = {k: metrics[k] for k in ("dbt_slices", "dbt_positive_slices", "dbt_stacks") if k in metrics}
    res: dict[str, Any] = {"seed": seed, "fraction": fraction, "row": row, **counts, **metrics.get("froc", {})}
    log_path = run_dir / METRICS_FILE
    if log_path.is_file():
        log = pd.read_json(log_path, lines=True)
        for k in (c for c in log.columns if c.startswith("loss") and log[c].notna().any()):
            res[f"train_{k}"] = float(log[k].dropna().iloc[-1])
        for k in ("loss_lskd", "lskd_teacher_entropy"):
            if k in log and log[k].notna().any():
                res[f"train_mean_{k}"] = float(log[k].mean())
    (run_dir / "result.json").write_text(json.dumps(res, indent=1))
    return res
