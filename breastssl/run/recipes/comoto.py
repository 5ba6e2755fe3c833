"""The CoMoTo recipe (family ``comoto``: comoto_teacher, pretraining, image_kd, comoto; seed 003, DESIGN §5.4).

Two stages, each one ``breastssl train`` run:

1. ``comoto_teacher`` (``strategy.impa`` for ImPA): a RetinaNet trained on the mammograms of
   ``data.mammo.train_split`` with their lesion boxes; evaluated by a 2-D FROC on ``data.mammo.test_split``
   (a hit: IoU > ``eval.mammo_iou``; sensitivity at 0.1, 0.2, 0.5, 1 false positives per image and their mean).
2. A DBT student (``pretraining``, ``image_kd``, ``comoto`` = LsKD) from the teacher's run folder
   (``teacher.run``): it starts as a copy of the teacher (``teacher.student_init``; ``scratch`` with
   ``pretraining`` is the paper's DBT-only row) and trains on paired batches, DBT slices of fully annotated
   stacks (``data.fraction`` of the patients, positives repeated with ``data.balance``) each with an unpaired
   mammogram. Evaluated on every slice of the volumes of ``data.dbt.test_split``, boxes merged across slices,
   by the BCS-DBT FROC: mean sensitivity at 1–4 FP per positive volume, on BCS-DBT-scaled coordinates
   (primary) and on stored ones (``inference.comoto_predict``).

Both write ``predictions.csv`` (students: :data:`~breastssl.inference.comoto_predict.VOLUME_COLUMNS`;
teachers: ``image_id, x, y, w, h, score``, stored pixels) and a ``headline`` in metrics.json. The datasets,
sampler, detector and scoring are those of ``breastssl experiment comoto`` (``data.comoto``,
``models.comoto``, ``inference.comoto_predict``). Under ``torchrun`` the test split is scored by rank 0.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import Field
from torch import nn

from ...config import ImageSize, Section
from ...data.transforms import AugmentConfig
from ...errors import ConfigError, DataError, UserError
from ...models.comoto import DetectorConfig, detector_kwargs
from ...strategies.comoto_common import ComotoConfig
from ..config import RunConfigBase
from ..recipe import Built, augments_on_device

TEACHER = "comoto_teacher"


class SourceConfig(Section):
    """One boxed data source: a manifest, its lesions table and its split names."""

    manifest: str = Field(..., description="manifest CSV/Parquet with rows/columns; paths relative to its folder")
    lesions: str | None = Field(None, description="lesions table (x, y, w, h; DBT: slice); None = lesions.csv beside")
    train_split: str = "train"
    test_split: str = "test"


class DataConfig(Section):
    """The DBT and mammography data of a CoMoTo run, and how training slices are made."""

    dbt: SourceConfig = Field(default_factory=lambda: SourceConfig(manifest="data/comoto/dbt/manifest.csv"))
    mammo: SourceConfig = Field(default_factory=lambda: SourceConfig(manifest="data/comoto/mammo/manifest.csv"))
    image_size: ImageSize = Field((128, 96), description="(H, W) every DBT slice and mammogram is resized to")
    neg_stride: int = Field(4, ge=1, description="every neg_stride-th slice of normal DBT stacks is a negative")
    halfwidth: int = Field(1, ge=0, description="DBT positives: each lesion's key slice ± halfwidth")
    balance: bool = Field(True, description="repeat positive DBT slices so that about half hold boxes")
    fraction: float = Field(1.0, gt=0.0, le=1.0, description="fraction of DBT training patients (nested by seed)")
    hflip: bool = Field(True, description="random horizontal flips, seeded by (train.seed, epoch, index)")
    augment: AugmentConfig | None = Field(
        None, description="the full slice augmentation (flips, rotation, brightness/contrast, CLAHE, sharpen, noise, "
        "solarize) of DBT slices and mammograms, boxes following the geometry; replaces hflip. None = hflip alone "
        "(the measured CoMoTo runs)",
    )  # fmt: skip

    def augmentation(self) -> AugmentConfig:
        """What the run's augmentation draws: ``augment``, or hflip alone as an :class:`AugmentConfig`."""
        if self.augment is not None:
            return self.augment
        off = dict.fromkeys(("vflip", "rotate", "brightness_contrast", "noise", "sharpen", "clahe", "solarize"), 0.0)
        return AugmentConfig(enabled=self.hflip, hflip=0.5, **off)


class TeacherConfig(Section):
    """Where a student's mammography teacher comes from."""

    run: str | None = Field(None, description="run folder (train.out_dir) of a finished comoto_teacher run")
    student_init: Literal["teacher", "scratch"] = Field(
        "teacher", description="teacher: the student starts as a copy of it (paper); scratch: from model's init"
    )


class EvalConfig(Section):
    """How the test split is scored."""

    iou_merge: float = Field(0.3, gt=0.0, le=1.0, description="2-D IoU joining boxes of neighbouring slices")
    max_gap: int = Field(1, ge=1, description="slices a merged lesion may skip")
    max_per_volume: int = Field(20, ge=1, description="volume boxes kept per volume, best first")
    batch_size: int = Field(32, ge=1, description="slices / mammograms per forward pass")
    primary: Literal["scaled", "raw"] = Field("scaled", description="DBT FROC reading the headline leads with")
    mammo_iou: float = Field(0.2, ge=0.0, lt=1.0, description="teacher FROC: a box hits a lesion when IoU > this")


class RunConfig(RunConfigBase):
    """A CoMoTo run (``strategy.name``: comoto_teacher, pretraining, image_kd, comoto)."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: DetectorConfig = Field(default_factory=DetectorConfig)
    strategy: ComotoConfig = Field(default_factory=ComotoConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)


def card_kwargs(model: DetectorConfig) -> dict[str, Any]:
    """The detector's ``create_model`` kwargs as model.json stores them (JSON types; never downloading)."""
    kwargs = json.loads(json.dumps(detector_kwargs(model)))
    kwargs["pretrained"] = False  # loading a run never downloads: its own weights replace any
    return kwargs


def load_teacher(cfg: RunConfig) -> nn.Module | None:
    """The frozen teacher of a student run (None when it needs none), its run folder checked first.

    Loaded on the CPU like the student: the loop moves both (``strategy.to``), and a dry run computes its one
    loss where the batch is.
    """
    from ...strategies import strategy_class
    from ..folder import load_run, read_card, run_dir_of

    name, run = cfg.strategy.name, cfg.teacher.run
    if name == TEACHER:
        if run:
            raise ConfigError(f"teacher.run is set, but strategy {TEACHER} trains the teacher: unset it "
                              "(--set teacher.run=null)")  # fmt: skip
        return None
    distils = bool(strategy_class(name).uses_teacher)
    if not distils and cfg.teacher.student_init == "scratch":
        return None  # the DBT-only baseline: no teacher at all
    if not run:
        hint = " (or teacher.student_init=scratch for the DBT-only baseline)" if not distils else ""
        raise ConfigError(f"strategy {name!r} needs teacher.run: the run folder (train.out_dir) of a finished "
                          f"{TEACHER} run{hint}")  # fmt: skip
    if not Path(run).exists():
        raise ConfigError(f"teacher.run {run}: does not exist; train the teacher first (strategy.name={TEACHER})")
    try:
        card = read_card(run_dir_of(run)[0])
    except UserError as exc:
        raise ConfigError(f"teacher.run {run}: {exc}") from None
    if card.get("family") != "comoto" or card.get("strategy") != TEACHER:
        raise ConfigError(f"teacher.run {run}: a {card.get('strategy')!r} run (family {card.get('family')!r}), "
                          f"not a {TEACHER} run")  # fmt: skip
    theirs, mine = card["models"]["model"].get("kwargs", {}), card_kwargs(cfg.model)
    diff = [k for k in sorted(set(theirs) | set(mine)) if theirs.get(k) != mine.get(k)]
    if diff:
        where = ", ".join(f"model.{k}: {theirs.get(k)!r} there, {mine.get(k)!r} here" for k in diff)
        raise ConfigError(f"teacher.run {run}: the teacher is another detector ({where}); the student starts from "
                          "and distils from it, so set model to the teacher's settings")  # fmt: skip
    return load_run(run).model.requires_grad_(False)


def detection_sampler(n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> Any:
    """Shuffled global batches of ``batch_size`` over ``n`` items, this rank's share keyed (epoch, index) so that
    flips and mammography pairings follow the epoch (a resumed run draws the same ones). Also the experiment's."""
    from ...data.detection_slices import EpochKeyedSampler
    from ...engine import ShardedBatchSampler

    return EpochKeyedSampler(ShardedBatchSampler(n, batch_size, seed=seed, rank=rank, world_size=world_size))


def _sampler(n: int, cfg: RunConfig, ctx: Any, what: str) -> Any:
    if cfg.train.batch_size % ctx.world_size:
        raise ConfigError(f"train.batch_size {cfg.train.batch_size} does not split over {ctx.world_size} ranks")
    if n < cfg.train.batch_size:
        raise DataError(f"{n} training {what} cannot fill one batch of train.batch_size={cfg.train.batch_size}")
    return detection_sampler(n, cfg.train.batch_size, cfg.train.seed, ctx.rank, ctx.world_size)


def _finite(value: Any) -> Any:
    """NaN (a reading without lesions) as None, so metrics.json stays JSON."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


class ComotoRecipe:
    family = "comoto"
    config = RunConfig
    device_augment = True  # augment_on=device: DetectionBatchAugment (data/device_augment.py)

    def build(self, cfg: RunConfig, ctx: Any, dry_run: bool = False) -> Built:
        import torch

        from ...data.comoto import read_boxed_source, require_boxes, student_dataset
        from ...data.detection_slices import DetectionDataset, dbt_detection_table, mammo_detection_table
        from ...data.device_augment import DetectionBatchAugment
        from ...models.comoto import comoto_detector
        from ...strategies import create_strategy
        from ...strategies.comoto_common import student_from_teacher

        name, seed, size = cfg.strategy.name, cfg.train.seed, tuple(cfg.data.image_size)
        teacher = load_teacher(cfg)  # config errors before any data is read
        src = cfg.data.mammo
        mammo_man, mammo_les, mammo_root = read_boxed_source(src.manifest, src.lesions, "MG", "data.mammo")
        mammo_table = mammo_detection_table(mammo_man, mammo_les, src.train_split)
        require_boxes(mammo_table, src.manifest, src.train_split, "mammograms")
        on_device = augments_on_device(cfg, ctx)
        # augment_on=device: the datasets yield plain slices, the loop augments each batch (boxes following)
        hflip, augment = (False, None) if on_device else (cfg.data.hflip, cfg.data.augment)
        mammo = DetectionDataset(mammo_table, mammo_man, mammo_root, size, hflip, seed, augment)
        summary: dict[str, Any] = {"mammograms": len(mammo_table), "mammo_positive": int(mammo_table["positive"].sum())}
        state: dict[str, Any] = {"mammo": (mammo_man, mammo_les, mammo_root)}
        if name == TEACHER:
            torch.manual_seed(seed)  # the detector's initial weights follow train.seed
            model = comoto_detector(cfg.model)
            dataset, summary["batches"] = mammo, "mammography detection"
        else:
            src = cfg.data.dbt
            dbt_man, dbt_les, dbt_root = read_boxed_source(src.manifest, src.lesions, "DBT", "data.dbt")
            dbt_train = dbt_detection_table(dbt_man, dbt_les, src.train_split, cfg.data.halfwidth, cfg.data.neg_stride)
            require_boxes(dbt_train, src.manifest, src.train_split, "slices of fully annotated DBT stacks")
            dataset, counts = student_dataset(dbt_train, dbt_man, dbt_root, mammo, size, cfg.data.fraction, seed,
                                              cfg.data.balance, hflip, augment)  # fmt: skip
            torch.manual_seed(seed)  # as the experiment: seed, then the student (a copy of the teacher, or fresh)
            fresh = teacher is None or cfg.teacher.student_init == "scratch"
            model = comoto_detector(cfg.model) if fresh else student_from_teacher(teacher)
            state["dbt"] = (dbt_man, dbt_les, dbt_root)
            summary |= {**counts, "batches": "paired: DBT slice + unpaired mammogram",
                        "teacher_run": cfg.teacher.run if teacher is not None else None,
                        "student_init": "scratch" if fresh else "teacher"}  # fmt: skip
        strategy = create_strategy(name, model, teacher, cfg.strategy)
        sampler = _sampler(len(dataset), cfg, ctx, "mammograms" if name == TEACHER else "DBT slices")
        summary = {**strategy.describe(), **summary, "image_size": list(size)}
        summary["augment_on"] = "device" if on_device else "loader"
        transform = DetectionBatchAugment(cfg.data.augmentation(), seed, ctx.rank) if on_device else None
        return Built(model, strategy, dataset, sampler, _collate(), summary, state, batch_transform=transform)

    def finish(self, cfg: RunConfig, built: Built, ctx: Any) -> None:
        return None  # the newest checkpoint's student is the run's model

    def evaluate(self, cfg: RunConfig, built: Built, ctx: Any) -> dict[str, Any]:
        from ...fsutil import atomic_file

        model = built.model.to(ctx.device).eval()
        if not ctx.is_main:  # rank 0 scores the test split and writes the files
            return {}
        if cfg.strategy.name == TEACHER:
            metrics, pred = _evaluate_mammo(cfg, built.state["mammo"], model)
        else:
            metrics, pred = _evaluate_dbt(cfg, built.state["dbt"], model)
        with atomic_file(Path(cfg.train.out_dir) / "predictions.csv") as tmp:
            pred.to_csv(tmp, index=False)
        if (
            cfg.strategy.name != TEACHER
        ):  # the volumes' boxes keyed by the manifest's image_id, for `breastssl evaluate`
            boxes = pred[["image_id"]].assign(x=pred["X"], y=pred["Y"], w=pred["Width"], h=pred["Height"],
                                              z=pred["Z"], depth=pred["Depth"], score=pred["Score"])  # fmt: skip
            with atomic_file(Path(cfg.train.out_dir) / "predictions_boxes.csv") as tmp:
                boxes.to_csv(tmp, index=False)
        return metrics

    def card(self, cfg: RunConfig, built: Built) -> dict[str, Any]:
        from ..folder import model_entry

        teacher, ev = cfg.strategy.name == TEACHER, cfg.eval
        card: dict[str, Any] = {
            "models": {"model": model_entry("retinanet", card_kwargs(cfg.model))},
            "input": {"size": list(cfg.data.image_size), "channels": 1, "views": ["image"]},
            "modality": "MG" if teacher else "DBT",
            "preprocessing": {
                "images": "each mammogram / DBT slice read with its manifest window (else scaled by its range) "
                "to [0, 1] and resized to input.size (bilinear, antialiased)",
                "boxes": "lesion boxes in stored pixels, scaled by input.size / (rows, columns)",
            },
            "classes": {"0": "lesion"},
            "outputs": {
                "boxes": "(N, 4) xyxy in input pixels per image or slice",
                "scores": "(N,) lesion probability",
                "merge": {"iou": ev.iou_merge, "max_gap": ev.max_gap, "max_per_volume": ev.max_per_volume},
            },
        }
        if not teacher:
            run = built.summary.get("teacher_run")  # None: the DBT-only baseline had no teacher
            card["teacher"] = {"run": str(Path(run).resolve()) if run else None,
                               "student_init": built.summary.get("student_init")}  # fmt: skip
        return card


def _collate() -> Any:
    from ...data.detection_slices import detection_collate

    return detection_collate


def _evaluate_dbt(cfg: RunConfig, data: tuple, model: nn.Module) -> tuple[dict[str, Any], pd.DataFrame]:
    """Every slice of the DBT test volumes scored, boxes merged, BCS-DBT FROC readings (scaled, raw)."""
    from ...console import console
    from ...data.comoto import volume_truth
    from ...data.dbt_slices import load_stack
    from ...inference.comoto_predict import VOLUME_COLUMNS, froc_readings, score_volumes

    man, les, root = data
    split, size = cfg.data.dbt.test_split, tuple(cfg.data.image_size)
    truth = volume_truth(man, les, split)
    out: dict[str, Any] = {"evaluation": "dbt_froc", "test_split": split, "test_volumes": len(truth[0]),
                           "test_lesion_volumes": int(truth[0]["image_id"].isin(set(les["image_id"])).sum()),
                           "test_lesions": len(truth[1])}  # fmt: skip
    if truth[0].empty:  # training alone is a valid use; there is just nothing to evaluate
        console.print(f"[yellow]no rows in DBT test split {split!r}: no test predictions or FROC")
        return {**out, "headline": f"no DBT volumes in test split {split!r}: nothing scored"}, pd.DataFrame(
            columns=VOLUME_COLUMNS
        )

    def load(r: dict) -> tuple[Any, tuple[float, float]]:
        return load_stack(r, root, size), (size[1] / float(r["columns"]), size[0] / float(r["rows"]))

    ev = cfg.eval
    pred = score_volumes(model, truth[0].to_dict("records"), load, ev.iou_merge, ev.max_gap, ev.max_per_volume,
                         ev.batch_size)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no lesion volume → NaN, stated as null
        readings = {k: _finite(float(v)) for k, v in froc_readings(pred, truth).items()}
    key = "mean_sensitivity_positive"
    scaled, raw = readings[f"scaled_{key}"], readings[f"raw_{key}"]
    headline = (f"DBT FROC mean sensitivity at 1-4 FP/volume: {_fmt(scaled)} (BCS scale) / {_fmt(raw)} (raw px), "
                f"primary {ev.primary}; {out['test_volumes']} test volumes, {out['test_lesions']} lesions")  # fmt: skip
    primary = readings[f"{ev.primary}_{key}"]
    return {**out, "primary_reading": ev.primary, "mean_sensitivity": primary, "froc": readings,
            "headline": headline}, pred  # fmt: skip


def _evaluate_mammo(cfg: RunConfig, data: tuple, model: nn.Module) -> tuple[dict[str, Any], pd.DataFrame]:
    """The teacher on the mammography test split: 2-D FROC (IoU > eval.mammo_iou) at 0.1–1 FP per image."""
    from ...console import console
    from ...data.dbt_slices import load_stack
    from ...inference.comoto_predict import IMAGE_COLUMNS, detect_images
    from ...metrics import froc_2d

    man, les, root = data
    split, size = cfg.data.mammo.test_split, tuple(cfg.data.image_size)
    test = man[man["split"] == split]
    test_les = les[les["image_id"].isin(set(test["image_id"]))]
    out: dict[str, Any] = {"evaluation": "mammo_froc", "test_split": split, "test_images": len(test),
                           "test_lesions": len(test_les), "hit": f"IoU > {cfg.eval.mammo_iou}"}  # fmt: skip
    if test.empty:
        console.print(f"[yellow]no rows in mammography test split {split!r}: no test predictions or FROC")
        return {**out, "headline": f"no mammograms in test split {split!r}: nothing scored"}, pd.DataFrame(
            columns=IMAGE_COLUMNS
        )

    def load(r: dict) -> tuple[Any, tuple[float, float]]:
        return load_stack(r, root, size), (size[1] / float(r["columns"]), size[0] / float(r["rows"]))

    pred = detect_images(model, test.to_dict("records"), load, cfg.eval.batch_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no lesion → NaN, stated as null
        res = froc_2d(pred, test_les, test["image_id"].tolist(), iou_threshold=cfg.eval.mammo_iou)
    at = {f"{k:g}": _finite(float(v)) for k, v in res.sensitivity_at.items()}
    mean = _finite(float(res.mean_sensitivity))
    headline = (f"mammography FROC mean sensitivity at 0.1/0.2/0.5/1 FP per image: {_fmt(mean)}; "
                f"{len(test)} test mammograms, {len(test_les)} lesions")  # fmt: skip
    return {**out, "sensitivity_at_fppi": at, "mean_sensitivity": mean, "headline": headline}, pred


RECIPE = ComotoRecipe()
