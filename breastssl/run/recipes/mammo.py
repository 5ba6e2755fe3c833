"""The mammography self-training recipe (family ``mammo``: strategy ``self_training``, seed 002, DESIGN §5.2).

Manifest + lesions table + report soft labels (``breastssl label-reports``) → bilateral pairs (every image with
the other breast's image of the same view; chest wall left, cropped to the breast, resized to
``data.image_size``) → the train split's fully annotated images (``annotation == data.full_annotation``, trained
with their lesion masks) and weak images (the other train images that have a soft label, mined) → the BTV model
and the strategy attached to them, 1:5 positive : negative batches → :func:`breastssl.engine.fit` (stage 1, then
Q rounds, each starting with the CRF mining of the weak images) → the test split's lesion maps: FROC (IoU > 0.2,
regions at the strategy's ``lesion_threshold``), ``test_detections.npz`` and ``predictions_regions.csv``.

Steps are the strategy's: ``train.steps`` = (stage1_epochs + rounds × round_epochs) × data.steps_per_epoch and
``train.round_steps`` = p0_every × steps_per_epoch. ``build`` sets both on the config; a ``train.steps`` the user
gave that differs is replaced and ``summary["steps_note"]`` says so (not an error: the schedule is stated in
epochs, and a run's own config.yaml, holding the replaced value, must stay a valid recipe after an epoch change).

``train`` keys left unset take this family's defaults (:data:`TRAIN_DEFAULTS`: Adam 1e-3, the classification
branch at 10× the learning rate, constant schedule, batch 12), not the DBT-oriented ones of ``TrainConfig``.
The training code is :mod:`breastssl.run.self_training`'s, shared with the experiment.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from ...config import ImageSize, Section
from ...errors import ConfigError
from ...strategies.self_training import SelfTrainingConfig
from ...strategies.self_training_lesions import FROC_GRID
from ..config import RunConfigBase
from ..recipe import Built
from .mammo_data import MammoData, read_mammo_data

TRAIN_DEFAULTS: dict[str, Any] = {
    "batch_size": 12,
    "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0, "lr_mult": {"cls_head": 10.0}},
    "schedule": {"name": "constant"},
    "keep_last": 1,
    "tensorboard": False,
    "out_dir": "runs/mammo_self_training",
}


class DataConfig(Section):
    """Where the mammograms, their lesion masks and their reports' soft labels are, and how images are made."""

    manifest: str = Field("data/mammo/manifest.csv", description="manifest CSV/Parquet; paths relative to its folder")
    lesions: str | None = Field(None, description="lesions table with mask_path; None = lesions.csv beside it")
    labels: str | None = Field(
        None, description="report soft labels per exam × side, as `breastssl label-reports` writes them (exam_id, "
        "laterality, soft_label); needed when weak images are used",
    )  # fmt: skip
    image_size: ImageSize = Field((96, 64), description="(height, width) every image is resized to")
    train_split: str = "train"
    test_split: str = "test"
    full_fraction: float = Field(
        1.0,
        gt=0,
        le=1,
        description="share of the fully annotated train exams used (nested "
        "subsets: a smaller share is part of every larger one; drawn with subset_seed)",
    )
    weak_fraction: float = Field(
        1.0, ge=0, le=1, description="share of the weak train exams used (nested; drawn with subset_seed + 1); 0: none"
    )
    subset_seed: int = Field(0, ge=0, description="seed of the full_fraction / weak_fraction exam draws")
    full_annotation: str = Field("full", description="annotation value of images with lesion masks; the other "
                                 "train images are weak (used when they have a soft label)")  # fmt: skip
    use_weak: bool = Field(True, description="False: fully annotated images only (the paper's rows without weak data)")
    steps_per_epoch: int = Field(20, ge=1, description="batches per epoch: the strategy's epochs are counted in these")
    cache: str | None = Field(
        None, description="a `breastssl cache --size H W` folder of this manifest at image_size: the images are read "
        "from it on demand instead of decoded into memory (paper scale: ~7 MB per image at 1024x832 in memory)",
    )  # fmt: skip


class ModelConfig(Section):
    """A registered two-view model (its forward takes the contralateral image ``aux``) and its settings."""

    name: str = "bilateral_two_view"
    backbone: str | None = Field("tiny", description="tiny: the small CPU CNN; else a timm name (e.g. hrnet_w48)")
    pretrained: bool = Field(False, description="ImageNet weights through timm (timm backbones; downloads once)")
    width: int = Field(8, ge=1, description="tiny backbone: channels of its first stage")
    decoder_width: int = Field(32, ge=4, description="channels of the U-Net decoder's deepest block")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    fuse_levels: int | None = Field(None, ge=1, description="pyramid levels fused with the contralateral view "
                                    "(finest first); None: all")  # fmt: skip

    def factory_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the model's factory: settings it does not take are dropped while at their
        defaults, and a changed one is a :class:`ConfigError` naming it."""
        from ...models.registry import model_entry

        params = inspect.signature(model_entry(self.name).factory).parameters
        takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
        out: dict[str, Any] = {}
        for key, value in self.model_dump(exclude={"name"}).items():
            if takes_all or key in params:
                out[key] = value
            elif value != type(self).model_fields[key].default:
                raise ConfigError(f"model {self.name!r} does not take the setting model.{key} (= {value!r})")
        return out


class EvalConfig(Section):
    """How the test split is scored (the paper's FROC; regions at ``strategy.lesion_threshold``)."""

    iou_threshold: float = Field(0.2, gt=0, lt=1, description="a region hits a lesion when IoU > this")
    froc_grid: tuple[float, ...] = Field(FROC_GRID, description="region thresholds below t that extend the curve")
    batch_size: int = Field(64, ge=1, description="images per forward pass when scoring")
    save_maps: bool = Field(False, description="also write test_maps.npz (N, H, W) float16")


class RunConfig(RunConfigBase):
    """A mammography self-training run (``strategy.name: self_training``)."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    strategy: SelfTrainingConfig = Field(default_factory=SelfTrainingConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="before")
    @classmethod
    def _family_train_defaults(cls, data: Any) -> Any:
        """Unset ``train`` keys (and unset keys of ``train.optim`` / ``train.schedule``) from TRAIN_DEFAULTS."""
        given = data.get("train") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(given if given is not None else {}, dict):
            return data  # a built TrainConfig (or a wrong type, which validation reports) is left alone
        given = given or {}
        train = {**TRAIN_DEFAULTS, **given}
        for key in ("optim", "schedule"):
            if isinstance(given.get(key), dict):  # one level deeper; a given lr_mult replaces the default one
                train[key] = {**TRAIN_DEFAULTS[key], **given[key]}
        return {**data, "train": train}


def _check_model(cfg: RunConfig, model: Any) -> None:
    forward = getattr(model, "forward", None)
    if forward is None or "aux" not in inspect.signature(forward).parameters:
        raise ConfigError(f"model {cfg.model.name!r} takes no contralateral image (forward(x, aux)): self-training "
                          "trains a two-view model such as bilateral_two_view")  # fmt: skip


def _plan_steps(cfg: RunConfig, strategy: Any) -> dict[str, Any]:
    """Set train.steps and train.round_steps to the strategy's; returns what the summary says about them."""
    steps, round_steps = strategy.total_steps(), strategy.round_steps()
    s = cfg.strategy
    if steps < 1:
        raise ConfigError("strategy.stage1_epochs + strategy.rounds × strategy.round_epochs is 0: nothing to train")
    plan: dict[str, Any] = {
        "train_steps": steps, "round_steps": round_steps, "steps_per_epoch": cfg.data.steps_per_epoch,
        "epochs": {"stage1": s.stage1_epochs, "rounds": s.rounds, "round_epochs": s.round_epochs},
    }  # fmt: skip
    if "steps" in cfg.train.model_fields_set and cfg.train.steps != steps:
        plan["steps_note"] = (f"train.steps={cfg.train.steps} replaced by {steps}: (stage1_epochs + rounds × "
                              "round_epochs) × data.steps_per_epoch decides the length")  # fmt: skip
    cfg.train.steps, cfg.train.round_steps = steps, round_steps
    return plan


class MammoRecipe:
    family = "mammo"
    config = RunConfig
    # the self-training strategy augments whole batches inside its loss, on the training device, whatever
    # train.augment_on says (the pairs of image, report-derived aux and target move together; no loader path)
    device_augment = True

    def build(self, cfg: RunConfig, ctx: Any, dry_run: bool = False) -> Built:
        from ...data.mammo_cache import Float32Pairs
        from ..self_training import build_student, pos_neg_sampler, self_training_data

        if cfg.train.batch_size % ctx.world_size:
            raise ConfigError(f"train.batch_size {cfg.train.batch_size} does not split over {ctx.world_size} ranks")
        kwargs = cfg.model.factory_kwargs()
        data: MammoData = read_mammo_data(cfg.data, progress=cfg.train.progress and ctx.is_main)
        # float16 cache: compact items (float16 image, aux, mask), made float32 on the device (Float32Pairs)
        compact = getattr(data.pairs.images, "stored_dtype", None) == np.float16
        dataset = self_training_data(data.pairs, data.full_idx, data.weak_idx, data.soft_label, compact)
        spe = cfg.data.steps_per_epoch
        model, strategy = build_student(cfg.model.name, kwargs, cfg.strategy, dataset, spe, cfg.train.seed)
        _check_model(cfg, model)
        plan = _plan_steps(cfg, strategy)
        sampler = pos_neg_sampler(dataset, cfg.strategy, cfg.train.batch_size, spe, cfg.train.seed, ctx.rank,
                                  ctx.world_size)  # fmt: skip
        summary = {**strategy.describe(), **plan, "images": data.counts, "image_size": list(cfg.data.image_size)}
        summary["augment_on"] = "device (in the strategy's loss)" if cfg.strategy.augment.enabled else "off"
        if dry_run:  # the CRF mining runs at the start of each round of fit: a dry run reaches none
            summary["note"] = "dry run: nothing trained; the weak images are mined (CRF) only when training"
        state = {"test": data.test, "kwargs": kwargs}
        summary["items"] = "compact (float16 from the cache)" if compact else "float32"
        transform = Float32Pairs() if compact else None
        return Built(model, strategy, dataset, sampler, None, summary, state, batch_transform=transform)

    def finish(self, cfg: RunConfig, built: Built, ctx: Any) -> None:
        return None  # the run's model is the newest checkpoint's student, as trained

    def evaluate(self, cfg: RunConfig, built: Built, ctx: Any) -> dict[str, Any]:
        from ...console import console
        from ...fsutil import atomic_file
        from ...inference.predict_mammo import region_rows
        from ..self_training import evaluate_maps

        test, out = built.state["test"], Path(cfg.train.out_dir)
        t = cfg.strategy.lesion_threshold
        base = {"lesion_threshold": t, "iou_threshold": cfg.eval.iou_threshold, "mining": built.strategy.history}
        if len(test) == 0:  # training alone is a valid use; there is just nothing to evaluate
            console.print(f"[yellow]no rows in test split {cfg.data.test_split!r}: no FROC or test predictions")
            return {**base, "n_images": 0, "n_lesions": 0, "sens": None, "mean": None,
                    "headline": f"no test images (split {cfg.data.test_split!r}): nothing evaluated"}  # fmt: skip
        # every rank scores the whole split (maps do not shard cheaply: the FROC needs all of them); rank 0 writes
        maps, froc, det = evaluate_maps(built.model, test, t, cfg.eval.froc_grid, cfg.eval.iou_threshold,
                                        cfg.eval.batch_size, ctx.device)  # fmt: skip
        if ctx.is_main:
            det.save(out / "test_detections.npz")
            rows = []
            for i, image_id in enumerate(test.table["image_id"].astype(str)):
                rows += region_rows(maps[i], t, {"image_id": image_id, "image_score": float(maps[i].max())})
            with atomic_file(out / "predictions_regions.csv") as tmp:
                pd.DataFrame(rows).to_csv(tmp, index=False)
            # image level (the map's maximum), in the columns `breastssl evaluate` reads; the regions' boxes are in
            # the prepared frame (cropped, resized), so the FROC of the run is its metrics.json, not evaluate's
            image = pd.DataFrame(
                {"image_id": test.table["image_id"].astype(str), "score": maps.reshape(len(maps), -1).max(1)}
            )
            with atomic_file(out / "predictions_image.csv") as tmp:
                image.to_csv(tmp, index=False)
            if cfg.eval.save_maps:
                np.savez_compressed(out / "test_maps.npz", maps=maps.astype(np.float16))
        n_img, n_les = int(froc["n_images"]), int(froc["n_lesions"])
        if n_les == 0:
            headline = f"FROC undefined: no lesion in the test split ({n_img} images)"
        else:
            headline = f"FROC mean sensitivity {froc['mean']:.2f} (test: {n_img} images, {n_les} lesions)"
        return {**froc, **base, "headline": headline}

    def card(self, cfg: RunConfig, built: Built) -> dict[str, Any]:
        from ..folder import model_entry

        kwargs = dict(built.state["kwargs"])
        if "pretrained" in kwargs:
            kwargs["pretrained"] = False  # loading a run never downloads: its own weights replace any
        t = cfg.strategy.lesion_threshold
        return {
            "models": {"model": model_entry(cfg.model.name, kwargs)},
            "input": {"size": list(cfg.data.image_size), "channels": 1, "views": ["image", "contralateral"]},
            "preprocessing": {
                "reader": "the manifest's reader (DICOM/NPY/PNG/TIFF), intensities scaled to [0, 1] and clipped",
                "orientation": "flipped so that the chest wall is on the left (breastssl.data.preprocess.prepare)",
                "crop": "to the breast's bounding box (pixels above the background level, with a margin)",
                "resize": "bilinear (antialiased) to input.size (H, W)",
                "contralateral": "the other breast's image of the same view, prepared alike; an image without one is "
                                 "its own partner",
            },  # fmt: skip
            "classes": {"0": "no mass in the image", "1": "mass (lesion) in the image"},
            "outputs": {"logits": "(B,) image-level mass logit (the classification branch)",
                        "mask_logits": "(B, 1, H, W) lesion map logits; sigmoid ≥ lesion_threshold: a found lesion"},
            "lesion_threshold": t,
            "mask": {"lesion_threshold": t, "crf": cfg.strategy.crf.model_dump()},
        }  # fmt: skip


RECIPE = MammoRecipe()
