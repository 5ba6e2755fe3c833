"""The DBT slice recipe (SelectiveKD family: supervised, kd, kd_weak, selective_kd, selective_kd_weak).

Manifest → slice roles → (KD strategies) the frozen teacher from its run folder → (selective strategies) the
pool scored once by the teacher on non-augmented slices, cached in the run folder → training slices with loss
flags and the composed batch sampler → :func:`breastssl.engine.fit` → test split scored, slice / stack / breast /
exam predictions and AUC with DeLong 95% CI per vendor and overall. Under ``torchrun`` scoring is sharded over
ranks and rank 0 writes the files.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field
from torch import nn

from ...config import ImageSize, Section
from ...data.transforms import AugmentConfig
from ...errors import ConfigError, DataError
from ...models.config import ModelConfig, build_model
from ...strategies.distill import StrategyConfig
from ..config import RunConfigBase
from ..recipe import Built, augments_on_device

TEACHER_SCORES = "teacher_scores.csv"
LEVELS = ("stack", "breast", "exam")


class DataConfig(Section):
    """Where the DBT data is and how slices are made from it."""

    manifest: str = Field("data/manifest.csv", description="manifest CSV/Parquet; paths relative to its folder")
    lesions: str | None = Field(None, description="lesions table; None = lesions.csv next to the manifest")
    image_size: ImageSize = Field((896, 640), description="(height, width) slices are resized to")
    neg_stride: int = Field(2, ge=1, description="stride of slices taken from cancer-negative stacks (paper: 2)")
    pos_halfwidth: int = Field(1, ge=0, description="annotated positives: key slice ± this (paper: 1)")
    train_split: str = "train"
    test_split: str = "test"
    cache_mb: float = Field(2048.0, gt=0, description="memory for loaded stacks (least recently used evicted)")
    cache: str | None = Field(
        None, description="a `breastssl cache --mode dbt` folder of this manifest at image_size: training slices "
        "are read from it one at a time instead of decoding the stacks' files (JPEG 2000 DBT: ~14 slices/s/core)",
    )  # fmt: skip
    augment: AugmentConfig = Field(default_factory=AugmentConfig)


class EvalConfig(Section):
    """How the test split is scored after training."""

    aggregation: str = Field("max", pattern="^(max|mean|topk)$", description="slice → stack → breast → exam")
    topk: int = Field(3, ge=1)
    level: str = Field("breast", pattern="^(stack|breast|exam)$", description="the level metrics.json leads with")


class RunConfig(RunConfigBase):
    """A DBT slice run (``strategy.name``: supervised, kd, kd_weak, selective_kd, selective_kd_weak)."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)


def load_teacher(path: str | Path, device: Any = "cpu") -> nn.Module:
    """A frozen teacher from a DBT run folder (its newest checkpoint) or a checkpoint file of one.

    The architecture comes from the run's ``config.yaml``; weights from the checkpoint's ``model``.
    """
    from ...engine import latest_checkpoint, load_checkpoint
    from ..config import run_config_of

    path = Path(path)
    ckpt = latest_checkpoint(path) if path.is_dir() else path
    if ckpt is None or not ckpt.is_file():
        raise ConfigError(f"strategy.teacher_checkpoint {path}: no checkpoint found")
    run_dir = ckpt.parent.parent
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"teacher checkpoint {ckpt}: no config.yaml in its run dir {run_dir}")
    model_cfg = run_config_of(run_dir).model.model_copy(update={"pretrained": False})  # type: ignore[attr-defined]
    teacher = build_model(model_cfg)
    teacher.load_state_dict(load_checkpoint(ckpt)["model"])
    return teacher.to(device).eval().requires_grad_(False)


def read_data(cfg: RunConfig) -> tuple[pd.DataFrame, pd.DataFrame | None, Path]:
    """(manifest, lesions or None, data root) of a DBT run, validated (a named ``data.lesions`` must exist)."""
    from ...data.schema import read_table, validate_lesions, validate_manifest

    manifest_path = Path(cfg.data.manifest)
    root = manifest_path.parent
    manifest = validate_manifest(read_table(manifest_path), root, str(manifest_path))
    lesions_path = Path(cfg.data.lesions) if cfg.data.lesions else root / "lesions.csv"
    lesions = None
    if cfg.data.lesions or lesions_path.is_file():
        # key slices within their stacks, boxes and masks checked before anything is built or written
        lesions = validate_lesions(read_table(lesions_path), manifest, str(lesions_path), root)
        lesions["image_id"] = lesions["image_id"].astype(str)
    return manifest, lesions, root


def _teacher_scores(strategy: Any, table: pd.DataFrame, store: Any, cfg: RunConfig, ctx: Any, out_dir: Path):
    """Teacher scores of every slice of the stacks holding pool slices: computed once, then read back."""
    from ...data.dbt_slices import score_slices
    from ...data.prior import shift_probabilities
    from ...data.sampling import POOL_ROLES
    from ...data.schema import write_table
    from ...engine import barrier
    from ...fsutil import atomic_file

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
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp:
            write_table(scores, tmp)  # a suffix-less temporary name: written as CSV
    barrier(ctx)
    return scores


def _auc_block(df: pd.DataFrame) -> dict[str, Any]:
    from ...metrics import delong_ci

    n_pos = int(df["label"].sum())
    out: dict[str, Any] = {"n": len(df), "n_pos": n_pos}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one class only → NaN; stated in the JSON as null
        auc, lo, hi = delong_ci(df["label"].to_numpy(), df["score"].to_numpy())
    out.update({k: (None if math.isnan(v) else v) for k, v in {"auc": auc, "ci_low": lo, "ci_high": hi}.items()})
    return out


def evaluate_split(slice_scores: pd.DataFrame, manifest: pd.DataFrame, cfg: Any) -> tuple[dict, dict]:
    """Predictions per level (DataFrames with label and vendor) and metrics per vendor and overall."""
    from ...metrics import to_level, truth_at_level
    from ...metrics.aggregate import LEVEL_KEYS

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


def _student_and_strategy(cfg: RunConfig, ctx: Any) -> tuple[nn.Module, Any]:
    import torch

    from ...strategies import create_strategy, strategy_class

    cls = strategy_class(cfg.strategy.name)
    teacher = None
    if cls.uses_teacher or cfg.strategy.student_init == "teacher":
        if not cfg.strategy.teacher_checkpoint:
            raise ConfigError(f"strategy {cfg.strategy.name!r} needs strategy.teacher_checkpoint")
        teacher = load_teacher(cfg.strategy.teacher_checkpoint, ctx.device)
    torch.manual_seed(cfg.train.seed)  # the student's initial weights follow train.seed, in every fresh process
    student = build_model(cfg.model)
    if cfg.strategy.student_init == "teacher":
        try:
            student.load_state_dict(teacher.state_dict())
        except RuntimeError as exc:
            raise ConfigError(f"student_init=teacher needs the teacher's architecture: {exc}") from None
    strategy = create_strategy(cfg.strategy.name, student, teacher if cls.uses_teacher else None, cfg.strategy)
    if cls.uses_teacher and cfg.strategy.calibrate:
        from ...data.prior import read_logit_shift, run_dir_of

        strategy.teacher_logit_shift = read_logit_shift(run_dir_of(Path(cfg.strategy.teacher_checkpoint)))
    return student, strategy


def _nothing_selected(table: pd.DataFrame) -> pd.DataFrame:
    """Scores that select no pool slice: what a dry run plans with instead of scoring the pool."""
    from ...data.sampling import POOL_ROLES

    return table.loc[table["role"].isin(POOL_ROLES), ["image_id", "slice"]].assign(score=-1.0)


def _write_plan(out_dir: Path, plan: pd.DataFrame, calibration: dict, sweep: pd.DataFrame | None, ctx: Any) -> None:
    from ...data.prior import write_calibration
    from ...fsutil import atomic_file

    if not ctx.is_main:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_file(out_dir / "train_slices.csv") as tmp:
        plan.to_csv(tmp, index=False)
    write_calibration(out_dir, calibration)
    if sweep is not None:
        with atomic_file(out_dir / "selection_sweep.csv") as tmp:
            sweep.to_csv(tmp, index=False)


def open_dbt_cache(path: str, size: tuple[int, int], manifest: pd.DataFrame) -> Any:
    """The ``breastssl cache`` folder ``path``, checked to hold ``load_stack``'s stacks (mode dbt) at ``size`` for
    every row of ``manifest`` (a config or data error naming what differs)."""
    from .caches import open_cache

    return open_cache(path, "dbt", size, manifest, "DBT")


class DBTRecipe:
    family = "dbt"
    config = RunConfig
    device_augment = True  # honours train.augment_on=device (the loop augments each batch: data/device_augment.py)

    def build(self, cfg: RunConfig, ctx: Any, dry_run: bool = False) -> Built:
        from ...data.dbt_slices import SliceDataset, StackStore
        from ...data.device_augment import BatchAugment
        from ...data.prior import prior_shift
        from ...data.sampling import ComposedBatchSampler, slice_table
        from ...data.selection import selection_sweep

        manifest, lesions, root = read_data(cfg)
        student, strategy = _student_and_strategy(cfg, ctx)
        train_rows = manifest[manifest["split"].astype(str) == cfg.data.train_split]
        cache = open_dbt_cache(cfg.data.cache, tuple(cfg.data.image_size), manifest) if cfg.data.cache else None
        store = StackStore(manifest, root, tuple(cfg.data.image_size), lesions, cfg.data.pos_halfwidth,
                           cfg.data.cache_mb, cache)  # fmt: skip
        if train_rows.empty:
            raise DataError(f"{cfg.data.manifest}: no rows in split {cfg.data.train_split!r}")
        cls = type(strategy)
        table = slice_table(
            train_rows, lesions, weak_labels=cls.weak_labels, neg_stride=cfg.data.neg_stride,
            pos_halfwidth=cfg.data.pos_halfwidth, weak_negatives=cfg.strategy.weak_negatives,
        )  # fmt: skip
        out_dir = Path(cfg.train.out_dir)
        scores = None
        if cls.selective and not dry_run:
            scores = _teacher_scores(strategy, table, store, cfg, ctx, out_dir)
        elif cls.selective:  # a dry run does not score the pool (the teacher would run over every pool stack)
            scores = _nothing_selected(table)
        plan = strategy.plan(table, scores)
        sampler = ComposedBatchSampler(
            plan["group"], cfg.train.batch_size, cfg.strategy.composition, seed=cfg.train.seed, rank=ctx.rank,
            world_size=ctx.world_size, positive=(plan["role"] == "annotated_pos").to_numpy(),
        )  # fmt: skip
        calibration = prior_shift(plan, sampler.members, sampler.counts)
        sweep = None
        if scores is not None and not dry_run:
            sweep = selection_sweep(table, scores, lesions, halfwidth=cfg.data.pos_halfwidth)
        if not dry_run:
            _write_plan(out_dir, plan, calibration, sweep, ctx)
        groups = plan["group"].value_counts().to_dict()
        summary = {
            **strategy.describe(),
            "train_slices": {str(k): int(v) for k, v in groups.items()},
            "selected_pool": int((plan["role"].isin(("weak_pos", "unannotated"))).sum()),
            "composition": sampler.counts,
            "composition_mode": cfg.strategy.composition.mode,
            "student_init": cfg.strategy.student_init,
            "calibration": calibration,
        }
        if dry_run and cls.selective:
            summary["note"] = "dry run: the pool is not scored by the teacher, so no slice is selected"
        on_device = augments_on_device(cfg, ctx) and cfg.data.augment.enabled
        # augment_on=device: the loader yields plain slices and the loop augments each batch on the training device
        dataset = SliceDataset(plan, store, None if on_device else cfg.data.augment, seed=cfg.train.seed,
                               compact=on_device)  # fmt: skip
        summary["augment_on"] = "device" if on_device else "loader"
        state = {"manifest": manifest, "store": store, "calibration": calibration}
        transform = BatchAugment(cfg.data.augment, cfg.train.seed, ctx.rank) if on_device else None
        return Built(student, strategy, dataset, sampler, None, summary, state, batch_transform=transform)

    def finish(self, cfg: RunConfig, built: Built, ctx: Any) -> None:
        return None

    def evaluate(self, cfg: RunConfig, built: Built, ctx: Any) -> dict[str, Any]:
        from ...console import console
        from ...data.dbt_slices import score_slices
        from ...data.schema import write_table
        from ...fsutil import atomic_file

        manifest, out_dir = built.state["manifest"], Path(cfg.train.out_dir)
        test_rows = manifest[manifest["split"].astype(str) == cfg.data.test_split]
        metrics: dict[str, Any] = {level: {"overall": {"n": 0, "auc": None}, "per_vendor": {}} for level in LEVELS}
        if test_rows.empty:  # training alone is a valid use; there is just nothing to evaluate
            console.print(f"[yellow]no rows in test split {cfg.data.test_split!r}: no test predictions or AUC")
        else:
            slice_scores = score_slices(built.model, built.state["store"], test_rows["image_id"].astype(str).tolist(),
                                        cfg.strategy.score_batch_size, ctx.device, ctx,
                                        logit_shift=built.state["calibration"]["logit_shift"])  # fmt: skip
            preds, metrics = evaluate_split(slice_scores, test_rows, cfg)
            if ctx.is_main:
                for name, df in {"slice": slice_scores, **preds}.items():
                    with atomic_file(out_dir / f"predictions_{name}.csv") as tmp:
                        write_table(df, tmp)
        return {"primary_level": cfg.eval.level, "auc": metrics[cfg.eval.level]["overall"]["auc"], "levels": metrics}

    def card(self, cfg: RunConfig, built: Built) -> dict[str, Any]:
        from ..folder import model_entry

        kwargs = cfg.model.model_dump(exclude={"name"})
        kwargs["pretrained"] = False  # loading a run never downloads: its own weights replace any
        return {
            "models": {"model": model_entry(cfg.model.name, _model_kwargs(cfg.model, kwargs))},
            "input": {"size": list(cfg.data.image_size), "channels": cfg.model.in_chans, "views": ["image"]},
            "preprocessing": {"slices": "each DBT slice resized to input.size, intensities as data/preprocess.py"},
            "classes": {"0": "no cancer in the slice", "1": "cancer (lesion) in the slice"},
            "calibration": {"logit_shift": built.state["calibration"]["logit_shift"]},
            "outputs": {"logits": "(B,) slice cancer logit", "mask_logits": "(B, 1, H, W) lesion map logits",
                        "aggregation": {"method": cfg.eval.aggregation, "topk": cfg.eval.topk}},
        }  # fmt: skip


def _model_kwargs(model_cfg: ModelConfig, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The factory kwargs ``build_model`` would pass (settings the factory does not take dropped)."""
    import inspect

    from ...models.registry import model_entry as registry_entry

    params = inspect.signature(registry_entry(model_cfg.name).factory).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


RECIPE = DBTRecipe()
