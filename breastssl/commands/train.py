"""`breastssl train --config C [--set a.b=v ...]`: train a DBT slice model with a registered strategy.

One run: read the manifest → slice roles → (KD strategies) load the frozen teacher → (selective
strategies) score the pool once with the teacher on non-augmented slices, cached in the run dir →
training slices with loss flags → :func:`breastssl.engine.fit` → score the test split and write
slice / stack / breast / exam predictions and ``metrics.json`` (AUC + DeLong 95% CI per vendor and
overall). Works under ``torchrun``: scoring is sharded over ranks, rank 0 writes the files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import typer

from ..errors import ConfigError, DataError

if TYPE_CHECKING:
    from torch import nn
from .common import SetOpt, console

TEACHER_SCORES = "teacher_scores.csv"
LEVELS = ("stack", "breast", "exam")


def load_teacher(path: str | Path, device: Any = "cpu") -> nn.Module:
    """A frozen teacher from a run dir (its newest checkpoint) or a checkpoint file of a run.

    The architecture comes from the run's ``config.yaml``; weights from the checkpoint's ``model``.
    """
    from ..config import load_config
    from ..engine import latest_checkpoint, load_checkpoint
    from ..models import build_model
    from ..run_config import RunConfig

    path = Path(path)
    ckpt = latest_checkpoint(path) if path.is_dir() else path
    if ckpt is None or not ckpt.is_file():
        raise ConfigError(f"strategy.teacher_checkpoint {path}: no checkpoint found")
    run_dir = ckpt.parent.parent
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"teacher checkpoint {ckpt}: no config.yaml in its run dir {run_dir}")
    model_cfg = load_config(RunConfig, run_dir / "config.yaml").model.model_copy(update={"pretrained": False})
    teacher = build_model(model_cfg)
    teacher.load_state_dict(load_checkpoint(ckpt)["model"])
    return teacher.to(device).eval().requires_grad_(False)


def _read_data(cfg: Any) -> tuple[pd.DataFrame, pd.DataFrame | None, Path]:
    from ..data.schema import read_table, validate_manifest

    manifest_path = Path(cfg.data.manifest)
    root = manifest_path.parent
    manifest = validate_manifest(read_table(manifest_path), root, str(manifest_path))
    lesions_path = Path(cfg.data.lesions) if cfg.data.lesions else root / "lesions.csv"
    lesions = read_table(lesions_path) if lesions_path.is_file() else None
    if lesions is not None:
        lesions["image_id"] = lesions["image_id"].astype(str)
    return manifest, lesions, root


def _teacher_scores(strategy: Any, table: pd.DataFrame, store: Any, cfg: Any, ctx: Any, out_dir: Path) -> pd.DataFrame:
    """Teacher scores of every slice of the stacks holding pool slices: computed once, then read back."""
    from ..data.dbt_slices import score_slices
    from ..data.prior import shift_probabilities
    from ..data.sampling import POOL_ROLES
    from ..data.schema import write_table
    from ..engine import barrier
    from ..fsutil import atomic_file

    ids = sorted(table.loc[table["role"].isin(POOL_ROLES), "image_id"].unique())
    path = out_dir / TEACHER_SCORES
    shift = float(strategy.teacher_logit_shift)
    if path.is_file():  # a resumed run selects exactly the slices it selected before
        cached = pd.read_csv(path, dtype={"image_id": str})
        if set(ids) <= set(cached["image_id"]) and "score_raw" in cached:
            if not math.isclose(float(cached["logit_shift"].iloc[0]), shift):  # calibration toggled: re-derive
                cached["score"], cached["logit_shift"] = shift_probabilities(cached["score_raw"], shift), shift
            return cached
    scores = score_slices(strategy.teacher, store, ids, cfg.strategy.score_batch_size, ctx.device, ctx)
    # score_raw: the teacher as trained; score: prior-corrected (what T thresholds, data/prior.py)
    scores = scores.rename(columns={"score": "score_raw"})
    scores["score"] = shift_probabilities(scores["score_raw"].to_numpy(), shift)
    scores["logit_shift"] = shift
    if ctx.is_main:
        with atomic_file(path) as tmp:
            write_table(scores, tmp)  # a suffix-less temporary name: written as CSV
    barrier(ctx)
    return scores


def _auc_block(df: pd.DataFrame) -> dict[str, Any]:
    import warnings

    from ..metrics import delong_ci

    n_pos = int(df["label"].sum())
    out: dict[str, Any] = {"n": len(df), "n_pos": n_pos}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one class only → NaN; stated in the JSON as null
        auc, lo, hi = delong_ci(df["label"].to_numpy(), df["score"].to_numpy())
    out.update({k: (None if math.isnan(v) else v) for k, v in {"auc": auc, "ci_low": lo, "ci_high": hi}.items()})
    return out


def evaluate_split(slice_scores: pd.DataFrame, manifest: pd.DataFrame, cfg: Any) -> tuple[dict, dict]:
    """Predictions per level (DataFrames with label and vendor) and metrics per vendor and overall."""
    from ..metrics import to_level, truth_at_level
    from ..metrics.aggregate import LEVEL_KEYS

    preds: dict[str, pd.DataFrame] = {}
    metrics: dict[str, Any] = {}
    meta = manifest.astype({"image_id": str, "exam_id": str})
    for level in LEVELS:
        keys = LEVEL_KEYS[level]
        df = to_level(slice_scores, meta, level, cfg.eval.aggregation, cfg.eval.topk)
        df = df.merge(truth_at_level(meta, level), on=keys, how="inner")
        df = df.merge(meta.groupby(keys)["vendor"].first().reset_index(), on=keys, how="left")
        preds[level] = df
        metrics[level] = {
            "overall": _auc_block(df),
            "per_vendor": {str(v): _auc_block(g) for v, g in df.groupby("vendor")},
            "aggregation": str(df["aggregation"].iloc[0]) if len(df) else "",
        }
    return preds, metrics


def run_train(cfg: Any, quiet: bool = False) -> dict[str, Any]:
    """Train, checkpoint, score the test split; returns the metrics dict (also in ``metrics.json``)."""
    from ..data.dbt_slices import SliceDataset, StackStore, score_slices
    from ..data.prior import prior_shift, write_calibration
    from ..data.sampling import ComposedBatchSampler, slice_table
    from ..data.schema import write_table
    from ..data.selection import selection_sweep
    from ..engine import barrier, fit, init_distributed
    from ..fsutil import atomic_file
    from ..models import build_model
    from ..strategies import create_strategy, strategy_class

    ctx = init_distributed(cfg.train.device)
    out_dir = Path(cfg.train.out_dir)
    manifest, lesions, root = _read_data(cfg)
    cls = strategy_class(cfg.strategy.name)
    teacher = None
    if cls.uses_teacher or cfg.strategy.student_init == "teacher":
        if not cfg.strategy.teacher_checkpoint:
            raise ConfigError(f"strategy {cfg.strategy.name!r} needs strategy.teacher_checkpoint")
        teacher = load_teacher(cfg.strategy.teacher_checkpoint, ctx.device)
    import torch

    torch.manual_seed(cfg.train.seed)  # the student's initial weights follow train.seed, in every fresh process
    student = build_model(cfg.model)
    if cfg.strategy.student_init == "teacher":
        try:
            student.load_state_dict(teacher.state_dict())
        except RuntimeError as exc:
            raise ConfigError(f"student_init=teacher needs the teacher's architecture: {exc}") from None
    strategy = create_strategy(cfg.strategy.name, student, teacher if cls.uses_teacher else None, cfg.strategy)
    if cls.uses_teacher and cfg.strategy.calibrate:
        from ..data.prior import read_logit_shift, run_dir_of

        strategy.teacher_logit_shift = read_logit_shift(run_dir_of(Path(cfg.strategy.teacher_checkpoint)))

    size = tuple(cfg.data.image_size)
    store = StackStore(manifest, root, size, lesions, cfg.data.pos_halfwidth, cfg.data.cache_mb)
    train_rows = manifest[manifest["split"].astype(str) == cfg.data.train_split]
    if train_rows.empty:
        raise DataError(f"{cfg.data.manifest}: no rows in split {cfg.data.train_split!r}")
    table = slice_table(
        train_rows, lesions, weak_labels=cls.weak_labels, neg_stride=cfg.data.neg_stride,
        pos_halfwidth=cfg.data.pos_halfwidth, weak_negatives=cfg.strategy.weak_negatives,
    )  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    scores = _teacher_scores(strategy, table, store, cfg, ctx, out_dir) if cls.selective else None
    plan = strategy.plan(table, scores)
    if ctx.is_main:
        with atomic_file(out_dir / "train_slices.csv") as tmp:
            plan.to_csv(tmp, index=False)
    sampler = ComposedBatchSampler(
        plan["group"], cfg.train.batch_size, cfg.strategy.composition, seed=cfg.train.seed, rank=ctx.rank,
        world_size=ctx.world_size, positive=(plan["role"] == "annotated_pos").to_numpy(),
    )  # fmt: skip
    calibration = prior_shift(plan, sampler.members, sampler.counts)
    sweep = selection_sweep(table, scores, lesions, halfwidth=cfg.data.pos_halfwidth) if scores is not None else None
    if ctx.is_main:
        write_calibration(out_dir, calibration)
        if sweep is not None:
            with atomic_file(out_dir / "selection_sweep.csv") as tmp:
                sweep.to_csv(tmp, index=False)
    dataset = SliceDataset(plan, store, cfg.data.augment, seed=cfg.train.seed)
    result = fit(student, strategy, dataset, cfg.train, batch_sampler=sampler, run_config=cfg, dist_ctx=ctx)

    test_rows = manifest[manifest["split"].astype(str) == cfg.data.test_split]
    preds: dict[str, pd.DataFrame] = {}
    metrics: dict[str, Any] = {level: {"overall": {"n": 0, "auc": None}, "per_vendor": {}} for level in LEVELS}
    slice_scores = None
    if test_rows.empty:  # training alone is a valid use; there is just nothing to evaluate
        console.print(f"[yellow]no rows in test split {cfg.data.test_split!r}: no test predictions or AUC")
    else:
        slice_scores = score_slices(student, store, test_rows["image_id"].astype(str).tolist(),
                                    cfg.strategy.score_batch_size, ctx.device, ctx,
                                    logit_shift=calibration["logit_shift"])  # fmt: skip
        preds, metrics = evaluate_split(slice_scores, test_rows, cfg)
    groups = plan["group"].value_counts().to_dict()
    summary = {
        **strategy.describe(),
        "steps": result.step,
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "train_slices": {str(k): int(v) for k, v in groups.items()},
        "selected_pool": int((plan["role"].isin(("weak_pos", "unannotated"))).sum()),
        "composition": sampler.counts,
        "composition_mode": cfg.strategy.composition.mode,
        "student_init": cfg.strategy.student_init,
        "calibration": calibration,
        "primary_level": cfg.eval.level,
        "auc": metrics[cfg.eval.level]["overall"]["auc"],
        "levels": metrics,
    }
    if ctx.is_main:
        for name, df in ({"slice": slice_scores, **preds} if slice_scores is not None else {}).items():
            with atomic_file(out_dir / f"predictions_{name}.csv") as tmp:
                write_table(df, tmp)
        with atomic_file(out_dir / "metrics.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=2))
    barrier(ctx)
    return summary


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        config: Path = typer.Option(..., "--config", "-c", help="run config YAML (see configs/dbt_selectivekd_*.yaml)"),
        set_: list[str] = SetOpt,
    ) -> None:
        """Train a DBT model with a strategy (supervised, kd, kd_weak, selective_kd, selective_kd_weak).

        Writes checkpoints, config.yaml, metrics.jsonl, test predictions (slice, stack, breast, exam) and
        metrics.json (AUC with DeLong 95% CI per vendor and overall) into train.out_dir. Resumes from
        the newest checkpoint there. Launch with torchrun for several processes or GPUs.
        """
        from ..config import load_config
        from ..engine import cleanup_distributed
        from ..run_config import RunConfig

        cfg = load_config(RunConfig, config, set_)
        try:
            summary = run_train(cfg)
        finally:
            cleanup_distributed()
        level = summary["primary_level"]
        overall = summary["levels"][level]["overall"]
        console.print(f"[bold]{summary['strategy']}[/] {summary['steps']} steps → {cfg.train.out_dir}")
        console.print(f"{level}-level AUC {overall['auc']} [{overall['ci_low']}, {overall['ci_high']}]")
