"""The ultrasound recipe (family ``us``: ``mean_teacher``): the two-stage method of seed 004 in one run folder.

Manifest (lesions beside it) → sets: basic = train rows annotated in full (or a random ``basic_fraction``),
extended = the other train rows and the ``unlabeled`` split, val (drawn by patient from the train rows when the
manifest has none) → stage 1: the Faster R-CNN detector trained on the basic set's boxes in
``<out_dir>/detector/`` (resumed there; a dry run skips it and cuts its crops around the ground-truth boxes) →
its top box per image, cut into crops → stage 2: the recognition network trained by the mean teacher on the
labelled basic crops + the unlabelled extended crops (two augmented views), early-stopped on the val split's
accuracy: the one loop (:func:`breastssl.engine.fit`) runs in chunks of ``recognition.eval_every`` steps with an
evaluation between them, as the experiment does (:func:`breastssl.strategies.mean_teacher.fit_early_stopping`;
the best weights are also kept in ``early_stopping_best.pt``, so a restarted run keeps its choice) →
``weights/detector.pt`` and ``weights/recognition.pt`` (the teacher by default, as chosen by early stopping) →
the test split: AUC with DeLong 95% CI, sensitivity, specificity and accuracy at ``eval.threshold``, and the
detector's IoU with the ground-truth box, overall and per site; ``predictions.csv``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator

from ...config import Section
from ...engine import FitResult
from ...strategies.mean_teacher import MeanTeacherConfig
from ..config import RunConfigBase
from ..recipe import Built, augments_on_device
from .us_data import DataConfig, read_data
from .us_stages import USCropConfig, USDetectorConfig

BEST = "early_stopping_best.pt"
SETS = ("basic", "extended", "val", "test")


class RecognitionConfig(USCropConfig):
    """Stage 2's crops and augmentation, and how often early stopping evaluates."""

    eval_every: int = Field(50, ge=1, description="steps between early-stopping evaluations on val (an 'epoch')")
    arm: Literal["semi", "sup_basic", "sup_all"] = Field(
        "semi", description="semi: the mean teacher (labelled basic + unlabelled extended crops); sup_basic / "
        "sup_all: the paper's supervised baselines on the labelled basic / all labelled crops (strategy."
        "consistency_weight must be 0; evaluate_with: student, or teacher for the EMA control)",
    )  # fmt: skip
    equal_labelled_exposure: bool = Field(
        True, description="supervised arms: as many labelled crops per step as the semi arm's labelled share of "
        "train.batch_size (false: a whole batch of labelled crops)",
    )  # fmt: skip


class DetectorConfig(USDetectorConfig):
    """Stage 1: the detector's settings, or a finished run whose detector this run reuses."""

    run: str | None = Field(
        None, description="run folder of a finished run of this recipe with the same data and detector settings: "
        "its weights/detector.pt is used instead of training one (the experiment's arms share one detector)",
    )  # fmt: skip


class ModelConfig(Section):
    """The recognition network (one malignancy logit on a crop)."""

    name: Literal["recognition_cnn", "classifier_segmenter"] = Field(
        "recognition_cnn", description="recognition_cnn (the paper's CNN) or classifier_segmenter + a timm backbone"
    )
    width: int = Field(16, ge=1, description="recognition_cnn: channels of the first block (paper: 128)")
    dropout: float = Field(0.5, ge=0, lt=1, description="paper: 0.5")
    backbone: str | None = Field(None, description="classifier_segmenter: the timm backbone")
    pretrained: bool = Field(False, description="classifier_segmenter: ImageNet weights through timm (a download)")


class EvalConfig(Section):
    """How the test split is scored (the threshold is also the one of early stopping's val accuracy)."""

    threshold: float = Field(0.5, ge=0, le=1, description="malignant when p >= threshold")


class RunConfig(RunConfigBase):
    """An ultrasound run (``strategy.name: mean_teacher``): detector, then recognition by mean teacher."""

    data: DataConfig = Field(default_factory=DataConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    recognition: RecognitionConfig = Field(default_factory=RecognitionConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    strategy: MeanTeacherConfig = Field(default_factory=MeanTeacherConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _chunkable_schedule(self) -> RunConfig:
        # early stopping runs the loop in chunks, each to its own end step: a cosine would decay to 0 in every chunk
        if self.train.schedule.name == "cosine":
            raise ValueError("train.schedule.name: cosine does not fit early stopping (the loop runs in chunks); "
                             "use constant (the paper: Adam at 3e-3) or step")  # fmt: skip
        if self.recognition.arm != "semi" and self.strategy.consistency_weight != 0:
            raise ValueError(f"recognition.arm {self.recognition.arm} is a supervised baseline: set "
                             "strategy.consistency_weight=0 (it has no unlabelled crops)")  # fmt: skip
        return self


def _reused_detector(cfg: RunConfig) -> Any:
    """The detector of the finished run ``detector.run``, checked to share this run's data and detector settings."""
    from ...errors import ConfigError
    from ..config import run_config_of
    from ..folder import load_run

    run = Path(str(cfg.detector.run))
    if not (run / "weights" / "detector.pt").is_file():
        raise ConfigError(f"detector.run {run}: no weights/detector.pt (not a finished run of the us recipe)")
    theirs = run_config_of(run)
    mine_d, their_d = cfg.detector.model_dump(exclude={"run"}), theirs.detector.model_dump(exclude={"run"})
    if getattr(theirs, "family", None) != "us" or mine_d != their_d or theirs.data != cfg.data:
        raise ConfigError(f"detector.run {run}: trained with other data or detector settings than this run")
    return load_run(run).models["detector"].eval()


def _detector(cfg: RunConfig, man: pd.DataFrame, frames: dict, boxes: dict, ctx: Any) -> Any:
    """Stage 1 in ``<out_dir>/detector/`` (a finished detector is read back from its checkpoint), or the detector of
    the run ``detector.run``."""
    from .us_stages import detector_train_config, train_detector

    if cfg.detector.run:
        return _reused_detector(cfg)
    ids = man.loc[man["set"] == "basic", "image_id"].tolist()
    t = cfg.train
    tcfg = detector_train_config(cfg.detector, Path(t.out_dir) / "detector", t.seed, t.device, progress=t.progress,
                                 tensorboard=t.tensorboard, log_every=t.log_every, ckpt_every=t.ckpt_every,
                                 deterministic=t.deterministic, num_workers=t.num_workers)  # fmt: skip
    return train_detector(cfg.detector, ids, frames, boxes, tcfg, ctx)


def _crops(frames: dict, table: pd.DataFrame, r: USCropConfig) -> tuple[pd.DataFrame, np.ndarray]:
    from ...data.us_crops import make_crops

    table = table.reset_index(drop=True)
    return table, make_crops(frames, table, r.crop_size, r.margin)


def _block(preds: pd.DataFrame, threshold: float) -> dict[str, Any]:
    """Classification metrics of the labelled nodules and the detector's mean IoU over the images with a GT box."""
    from .us_stages import classification_metrics

    lab = preds[preds["label"] >= 0]
    out = classification_metrics(lab["label"].to_numpy(), lab["p_malignant"].to_numpy(), threshold)
    iou = preds["iou"].dropna()
    # NaN (one class only, no box) is written as null, not as an invalid JSON number
    out = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}
    return {**out, "iou_mean": float(iou.mean()) if len(iou) else None, "n_boxes": int(len(iou))}


class USRecipe:
    family = "us"
    config = RunConfig
    device_augment = True  # augment_on=device: the crops' views made on the device (us_crops.CropBatchAugment)

    def build(self, cfg: RunConfig, ctx: Any, dry_run: bool = False) -> Built:
        """Data checked, the detector trained (not in a dry run), crops cut, the recognition network and its mean
        teacher; batches: ``image`` and ``image_teacher`` (B, 1, S, S) two views of each crop, ``label`` (B,),
        ``sup_cls`` (B,) 1 for the labelled basic crops, 0 for the unlabelled extended ones."""
        from ...data.us_dataset import gt_boxes, gt_labels, load_frames
        from ...errors import ConfigError, DataError
        from ...strategies import create_strategy
        from .us_stages import (
            arm_batch,
            arm_indices,
            crop_training_data,
            detection_table,
            recognition_model,
            truth_table,
            val_accuracy,
        )

        man, les, root, notes = read_data(cfg.data)
        n_basic = int((man["set"] == "basic").sum())
        if n_basic < cfg.detector.batch_size:  # the detector's batches are drawn from the basic set alone
            raise ConfigError(f"detector.batch_size {cfg.detector.batch_size} > the {n_basic} basic-set images")
        frames, boxes, labels = load_frames(man, root), gt_boxes(les), gt_labels(les)
        det = None
        if dry_run:  # the detector is a training stage of its own: a dry run plans with the ground-truth boxes
            table = truth_table(man, frames, boxes, labels)
            notes["crops"] = "dry run: no detector; crops cut around the ground-truth boxes (the frame where none)"
        else:
            det = _detector(cfg, man, frames, boxes, ctx)
            table = detection_table(det, man, frames, boxes, labels)
        train, train_x = _crops(frames, table[table["set"].isin(["basic", "extended"])], cfg.recognition)
        val, val_x = _crops(frames, table[(table["set"] == "val") & (table["label"] >= 0)], cfg.recognition)
        r, arm = cfg.recognition, cfg.recognition.arm
        lab_idx, unl_idx = arm_indices(arm, r, train)
        if arm == "semi" and not len(unl_idx):
            raise DataError(f"{cfg.data.manifest}: no extended-set crop reaches the detector score "
                            f"recognition.min_score={r.min_score}: the mean teacher has no unlabelled "
                            "crops (lower recognition.min_score or train the detector longer)")  # fmt: skip
        if not len(lab_idx):
            raise DataError(f"{cfg.data.manifest}: recognition.arm {arm} has no labelled training crop")
        n_lab, n_unl = arm_batch(arm, cfg.train.batch_size, cfg.strategy.labelled_fraction,
                                 r.equal_labelled_exposure, r, train)  # fmt: skip
        torch.manual_seed(cfg.train.seed)  # the recognition network's initial weights follow train.seed
        extra = {"pretrained": cfg.model.pretrained} if cfg.model.name == "classifier_segmenter" else {}
        model = recognition_model(cfg.model.name, cfg.model.width, cfg.model.dropout, cfg.model.backbone, **extra)
        strategy = create_strategy(cfg.strategy.name, model, None, cfg.strategy)
        # semi: two independently augmented views, the student's and the teacher's (the mean-teacher reference);
        # a supervised arm trains its student alone, on one view
        views = 2 if arm == "semi" else 1
        on_device = augments_on_device(cfg, ctx)
        dataset, sampler, transform = crop_training_data(
            train_x, train, lab_idx, unl_idx, n_lab, n_unl, r, views, cfg.train.seed, ctx.rank, ctx.world_size,
            on_device,
        )  # fmt: skip
        summary = {
            **strategy.describe(),
            "images": {s: int((man["set"] == s).sum()) for s in SETS},
            "labelled_crops": len(lab_idx),
            "unlabelled_crops": len(unl_idx),
            "val_crops": len(val),
            "arm": arm,
            "per_step": {"labelled": n_lab, "unlabelled": n_unl},
            "augment_on": "device" if on_device else "loader",
            **notes,
        }
        state = {"frames": frames, "table": table, "detector": det,
                 "val_accuracy": val_accuracy(val_x, val["label"].to_numpy(), cfg.eval.threshold)}  # fmt: skip
        return Built(model, strategy, dataset, sampler, None, summary, state, batch_transform=transform)

    def fit(self, cfg: RunConfig, built: Built, ctx: Any) -> FitResult:
        """The recognition stage, early-stopped on val accuracy: the one loop in chunks (see the module doc)."""
        from ...engine import latest_checkpoint
        from ...errors import UserError
        from ..early_stopping import fit_early_stopping

        out = Path(cfg.train.out_dir)
        if not cfg.train.resume and latest_checkpoint(out) is not None:  # each chunk resumes: refuse as the loop does
            raise UserError(f"{out} already holds checkpoints: resume, or choose a new out_dir")
        early = fit_early_stopping(built.strategy, built.dataset, cfg.train, built.batch_sampler,
                                   built.state["val_accuracy"], cfg.recognition.eval_every, cfg.train.steps,
                                   cfg.strategy.first_counted_step, best_path=out / BEST, run_config=cfg,
                                   dist_ctx=ctx, batch_transform=built.batch_transform)  # fmt: skip
        built.summary["early_stopping"] = {"best_step": early["best_step"], "best_val_accuracy": early["best_value"],
                                           "stopped_at": early["steps"], "history": early["history"]}  # fmt: skip
        return FitResult(step=early["steps"], metrics={}, checkpoint=latest_checkpoint(out))

    def finish(self, cfg: RunConfig, built: Built, ctx: Any) -> None:
        from ..folder import save_weights

        built.state["eval_model"] = built.strategy.eval_model().eval()  # the teacher unless evaluate_with=student
        if ctx.is_main:
            save_weights(cfg.train.out_dir, "recognition", built.state["eval_model"])
            save_weights(cfg.train.out_dir, "detector", built.state["detector"])

    def evaluate(self, cfg: RunConfig, built: Built, ctx: Any) -> dict[str, Any]:
        from ...console import console
        from ...fsutil import atomic_file
        from ..early_stopping import predict_proba

        table = built.state["table"]
        if ctx.is_main:  # the detector's top box on every image of every set, with its IoU (Table 2 over any set)
            with atomic_file(Path(cfg.train.out_dir) / "detections.csv") as tmp:
                table.to_csv(tmp, index=False)
        # every test image's detection counts for the IoU; the nodules with a class for the classification
        test, test_x = _crops(built.state["frames"], table[table["set"] == "test"], cfg.recognition)
        if not (test["label"] >= 0).any():  # training alone is a valid use; there is just nothing to evaluate
            console.print(f"[yellow]no nodule with a class in test split {cfg.data.test_split!r}: no test metrics")
            return {"test": {}, "headline": "no test metrics (no labelled nodule in the test split)"}
        scores = predict_proba(built.state["eval_model"], torch.from_numpy(test_x))
        preds = test[["image_id", "x0", "y0", "x1", "y1"]].assign(
            det_score=test["score"], iou=test["iou"], p_malignant=scores, label=test["label"], site=test.get("site")
        )
        metrics = {"overall": _block(preds, cfg.eval.threshold)}
        if "site" in test:
            metrics["per_site"] = {str(k): _block(g, cfg.eval.threshold) for k, g in preds.groupby("site")}
        if ctx.is_main:
            with atomic_file(Path(cfg.train.out_dir) / "predictions.csv") as tmp:
                preds.to_csv(tmp, index=False)
            # image level in the columns `breastssl evaluate` reads (score = p(malignant) of the nodule's crop)
            with atomic_file(Path(cfg.train.out_dir) / "predictions_image.csv") as tmp:
                preds[["image_id"]].assign(score=preds["p_malignant"]).to_csv(tmp, index=False)
        o = {k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in metrics["overall"].items()}  # None: n/a
        headline = (f"test AUC {o['auc']} [{o['auc_low']}, {o['auc_high']}] (n={o['n']}, {o['n_malignant']} "
                    f"malignant); at {cfg.eval.threshold}: sensitivity {o['sensitivity']}, specificity "
                    f"{o['specificity']}, accuracy {o['accuracy']}; detector IoU {o['iou_mean']}")  # fmt: skip
        return {"threshold": cfg.eval.threshold, "test": metrics, "headline": headline}

    def card(self, cfg: RunConfig, built: Built) -> dict[str, Any]:
        from ..folder import model_entry
        from .us_stages import recognition_kwargs

        d, r, m = cfg.detector, cfg.recognition, cfg.model
        # pretrained=False: loading a run never downloads; imagenet_norm keeps the normalisation it was trained with
        det_kwargs = {"pretrained": False, "imagenet_norm": d.pretrained, "min_size": d.min_size,
                      "max_size": d.max_size}  # fmt: skip
        recog_kwargs = recognition_kwargs(m.name, m.width, m.dropout, m.backbone)
        recog = model_entry(m.name, recog_kwargs, weights="weights/recognition.pt")
        return {
            "models": {
                "detector": model_entry(d.backbone, det_kwargs, builder="detector", weights="weights/detector.pt"),
                "recognition": {**recog, "input_size": [r.crop_size, r.crop_size]},
            },
            # frames of any size go to the detector (its transform resizes them): min_size is the nominal side
            "input": {"size": [d.min_size, d.min_size], "channels": 1, "views": ["image"]},
            "preprocessing": {
                "frame": "grey (H, W) in [0, 1]; colour frames reduced to luminance (data/us_dataset.read_frame)",
                "crop_margin": r.margin, "crop_min_margin": 4.0, "crop_size": r.crop_size,
                "crop": "the detector's top box grown by crop_margin x its side (at least crop_min_margin px), "
                        "clipped to the frame, resized to crop_size, standardised (data/us_crops.crop)",
            },  # fmt: skip
            "classes": {"0": "benign", "1": "malignant"},
            "outputs": {"detector": "boxes (K, 4) x0 y0 x1 y1 and scores (K,) per frame",
                        "recognition": "logits (B,): malignancy logit of a crop", "threshold": cfg.eval.threshold},
        }  # fmt: skip


RECIPE = USRecipe()
