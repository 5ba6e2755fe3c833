"""Experiment ``us-mean-teacher``: the two-stage ultrasound method of seed 004 (DESIGN §5.3), Tables 2–4.

1. Data: a manifest (synthetic by default: two sites, site A annotated in part, site B an independent test
   site; or BUSI through ``breastssl ingest --format busi``). Basic set = train rows with ``annotation ==
   full`` (or a ``basic_fraction`` of the train rows), extended set = the other train rows.
2. Detector (Faster R-CNN, nodule vs background) trained on the basic set's boxes through the engine's
   loop; its top box per image, with a margin, gives the crops. Table 2: box IoU ("ASC") mean ± std.
3. Recognition CNN trained three ways, per seed: semi-supervised (mean teacher: basic labelled +
   extended unlabelled), supervised on the basic set, supervised on basic + extended with labels; by default
   every arm sees the same labelled crops per step (``equal_labelled_exposure``). Early stopping on validation
   accuracy. Tables 3–4: sensitivity, specificity, accuracy at a threshold, AUC with DeLong 95% CI, per test
   site; paired DeLong tests of semi vs each baseline.
4. Effects (DESIGN §11, :mod:`._us_effects`): per site, each arm's metrics as means over seeds and the paired
   effects semi − each baseline, with 95% CIs from a bootstrap over seeds × test cases; DeLong on the seed
   ensembles; the paper's claims decided on those CIs. ``powered`` generates the val and test sets apart
   (:mod:`._us_data`), finished runs are reused (:mod:`._us_runs`), so seeds can be added later.
5. ``report.html``, ``metrics.json``, ``predictions.csv``, ``detections.csv``, ``effects_arms.csv``,
   ``effects.csv``, ``claims.csv`` and ``us_model.pt`` (detector + teacher, for ``breastssl predict``) in ``out_dir``.

Sets, detector, detection table, crops dataset and sampler, validation accuracy and the metrics are the ones
``breastssl train`` uses for this method (:mod:`breastssl.run.recipes.us_stages`): one implementation of both.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field

from ..config import Section
from ..errors import ConfigError
from ..run.recipes.us_stages import (
    USCropConfig,
    USDetectorConfig,
    arm_indices,
    basic_mask,
    classification_metrics,
    crop_training_data,
    detection_table,
    detector_train_config,
    patient_uniform,
    val_accuracy,
)
from ..run.recipes.us_stages import recognition_model as _recognition_model
from ..run.recipes.us_stages import train_detector as _train_detector
from ..strategies.mean_teacher import MeanTeacherConfig
from ._us_data import USPoweredSpec

ARMS = ("semi", "sup_basic", "sup_all")
# a control arm (not run by default): supervised on the basic set, evaluated with the EMA of its weights, i.e. the
# mean teacher without its consistency term; semi − sup_basic_ema is the share of the gain the unlabelled crops bring
CONTROL_ARMS = ("sup_basic_ema",)


class USRecognitionConfig(USCropConfig):
    """Stage 2 of every arm: crops and augmentation (:class:`USCropConfig`), network, batches, early stopping."""

    model: str = Field("recognition_cnn", description="recognition_cnn, or classifier_segmenter + backbone (timm)")
    backbone: str | None = None
    width: int = 16
    dropout: float = 0.5
    batch_size: int = 32
    lr: float = 3e-3
    max_steps: int = 1500
    eval_every: int = Field(50, ge=1, description="steps per early-stopping evaluation ('epoch')")
    equal_labelled_exposure: bool = Field(
        True, description="supervised arms take as many labelled crops per step as the semi arm's labelled share "
        "(labelled_fraction × batch_size), so all arms see the same labelled crops at the same step; false: "
        "supervised batches of batch_size labelled crops (twice the semi arm's labelled exposure at f = 1/2)",
    )  # fmt: skip
    mean_teacher: MeanTeacherConfig = Field(default_factory=MeanTeacherConfig)


class USExperimentConfig(Section):
    manifest: str | None = Field(None, description="manifest CSV; None = generate synthetic ultrasound")
    synth_n: int = 800
    synth_seed: int = 0
    synth_set: list[str] = Field(default_factory=list, description="generator overrides, e.g. separation=0.7")
    powered: USPoweredSpec | None = Field(None, description="val, test sets made apart (synth_n: train images)")
    basic_fraction: float | None = Field(None, gt=0, lt=1, description="None: basic = annotation 'full'")
    detector: USDetectorConfig = Field(default_factory=USDetectorConfig)
    recognition: USRecognitionConfig = Field(default_factory=USRecognitionConfig)
    seeds: list[int] = Field(default_factory=lambda: [0])
    arms: list[str] = Field(default_factory=lambda: list(ARMS))
    threshold: float = Field(0.5, description="malignant when p >= threshold")
    n_boot: int = Field(2000, ge=10, description="replicates of the seeds × test cases bootstrap")
    noninferiority_margin: float = Field(0.02, ge=0, description="semi − sup_all claim holds when its CI > −margin")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    out_dir: str = "runs/us_mean_teacher"


def _train_cfg(out: Path, steps: int, batch: int, optim: dict, seed: int, device: str, **extra: Any) -> Any:
    from ..engine import TrainConfig

    kw: dict[str, Any] = {"schedule": {"name": "constant"}, **extra}
    quiet = {"progress": False, "tensorboard": False, "log_every": 50, "ckpt_every": 10**9, "keep_last": 1}
    return TrainConfig(steps=steps, batch_size=batch, optim=optim, seed=seed, device=device, out_dir=str(out),
                       **quiet, **kw)  # fmt: skip


def load_data(cfg: USExperimentConfig, out: Path) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """Manifest (with a ``set`` column: basic, extended, val, test) and lesions; generates data if needed."""
    from ..data.schema import read_table

    if cfg.manifest is not None and cfg.powered is not None:
        raise ConfigError("powered generates synthetic val and test sets; it needs manifest: null")
    if cfg.manifest is None:
        from ._us_data import ensure_us_data

        root = out / ("data_powered" if cfg.powered else "data")
        path = ensure_us_data(root, cfg.synth_n, cfg.synth_seed, cfg.synth_set, cfg.powered)
    else:
        path = Path(cfg.manifest)
    man = read_table(path).astype({"image_id": str})
    les_path = path.parent / "lesions.csv"
    les = read_table(les_path).astype({"image_id": str}) if les_path.is_file() else pd.DataFrame()
    split = man["split"].astype(str)
    if not (split == "test").any():  # e.g. BUSI: everything in train; 70/10/20 by patient
        r = patient_uniform(man["patient_id"], cfg.synth_seed)
        split = pd.Series(np.where(r < 0.7, "train", np.where(r < 0.8, "val", "test")), index=man.index)
    basic = basic_mask(man, cfg.basic_fraction, cfg.synth_seed)
    man["set"] = np.where(split == "train", np.where(basic, "basic", "extended"), split)
    counts = man["set"].value_counts()
    if "semi" in cfg.arms and not counts.get("extended", 0):
        raise ConfigError(f"{path}: every training image is in the basic (annotated) set, so the mean teacher has no "
                          "unlabelled nodules; set basic_fraction (e.g. --set basic_fraction=0.15) to keep only that "
                          "share of the training images labelled")  # fmt: skip
    if not counts.get("basic", 0):
        raise ConfigError(f"{path}: no training image is in the basic (annotated) set; raise basic_fraction")
    return man, les, path.parent


def train_detector(cfg: USExperimentConfig, man: pd.DataFrame, frames: dict, boxes: dict, out: Path) -> Any:
    """Faster R-CNN on the basic set's frames (nodule boxes; frames without a nodule are negatives)."""
    from ._us_runs import detector_key, fresh_dir

    # resume: a rerun in the same out_dir (another recognition setting) reuses the finished detector; one made
    # with other data or detector settings is deleted first
    fresh_dir(out / "detector", detector_key(cfg))
    tcfg = detector_train_config(cfg.detector, out / "detector", cfg.seeds[0], cfg.device)
    return _train_detector(cfg.detector, man.loc[man["set"] == "basic", "image_id"].tolist(), frames, boxes, tcfg)


def arm_batch(arm: str, r: USRecognitionConfig, tr: pd.DataFrame) -> tuple[int, int]:
    """(labelled, unlabelled) crops per step of ``arm``.

    The semi arm: ``round(f·B)`` labelled + the rest unlabelled. A supervised arm: B labelled, or, with
    ``equal_labelled_exposure``, the semi arm's labelled count, so that at every step each arm has seen as
    many labelled crops as the others (the semi arm's extra input is then only its unlabelled crops).
    """
    from ..data.labelled_sampler import labelled_per_batch

    arm = arm.removesuffix("_ema")
    _, semi_unl = arm_indices("semi", r, tr)
    semi_lab = labelled_per_batch(r.batch_size, r.mean_teacher.labelled_fraction, len(semi_unl) > 0)
    if arm == "semi":
        return semi_lab, r.batch_size - semi_lab
    return (semi_lab if r.equal_labelled_exposure else r.batch_size), 0


def recognition_model(r: USRecognitionConfig) -> torch.nn.Module:
    """The recognition network of ``r`` (one malignancy logit), freshly initialised from torch's RNG."""
    return _recognition_model(r.model, r.width, r.dropout, r.backbone)


def train_arm(arm: str, seed: int, cfg: USExperimentConfig, crops: dict, out: Path) -> tuple[Any, dict]:
    """Train one arm's recognition network with early stopping; returns (the evaluation model, summary)."""
    from ..run.early_stopping import fit_early_stopping
    from ..strategies.mean_teacher import MeanTeacher

    r = cfg.recognition
    torch.manual_seed(seed)
    model = recognition_model(r)
    mt = r.mean_teacher
    if arm != "semi":
        # a supervised arm evaluates its student; its EMA control evaluates the EMA teacher (no consistency term)
        mt = mt.model_copy(update={"consistency_weight": 0.0,
                                   "evaluate_with": "teacher" if arm.endswith("_ema") else "student"})  # fmt: skip
    strategy = MeanTeacher(model, None, mt)
    tr = crops["train"]
    lab_idx, unl_idx = arm_indices(arm, r, tr)
    n_lab, n_unl = arm_batch(arm, r, tr)
    # the semi arm's student and teacher get two independently augmented views; a supervised arm needs one
    views = 2 if arm == "semi" else 1
    ds, sampler = crop_training_data(crops["train_x"], tr, lab_idx, unl_idx, n_lab, n_unl, r, views, seed)
    accuracy = val_accuracy(crops["val_x"], crops["val"]["label"].to_numpy(), cfg.threshold)
    tcfg = _train_cfg(out / "runs" / f"{arm}_s{seed}", r.max_steps, n_lab + n_unl,
                      {"name": "adam", "lr": r.lr, "weight_decay": 0.0}, seed, cfg.device)  # fmt: skip
    # every arm counts evaluations from the same step (the semi arm's end of ramp-up), for a like-for-like stop
    first = r.mean_teacher.first_counted_step
    summary = fit_early_stopping(strategy, ds, tcfg, sampler, accuracy, r.eval_every, r.max_steps, first)
    summary.update(n_labelled=len(lab_idx), n_unlabelled=len(unl_idx), labelled_per_step=n_lab,
                   unlabelled_per_step=n_unl, labelled_seen=n_lab * summary["steps"])  # fmt: skip
    return strategy.eval_model(), summary


def summarise(preds: pd.DataFrame, det: pd.DataFrame, thr: float) -> dict[str, Any]:
    """Table 2 (IoU per test site), Tables 3–4 (per site, arm, seed and the seed mean), DeLong tests."""
    from ..metrics import delong_test

    out: dict[str, Any] = {"detection": {}, "classification": [], "delong": []}
    for name, g in det[det["iou"].notna()].groupby("set_name"):
        iou = g["iou"].to_numpy()
        out["detection"][name] = {"n": len(iou), "iou_mean": float(iou.mean()), "iou_std": float(iou.std()),
                                  "hit_rate_iou_0.5": float((iou > 0.5).mean())}  # fmt: skip
    for (name, seed), g in preds.groupby(["set_name", "seed"]):
        wide = g.pivot(index="image_id", columns="arm", values="score")
        y = g.groupby("image_id")["label"].first().loc[wide.index].to_numpy()
        for arm in wide.columns:
            out["classification"].append({"set": name, "seed": int(seed), "arm": arm,
                                          **classification_metrics(y, wide[arm].to_numpy(), thr)})  # fmt: skip
        for other in [a for a in wide.columns if a != "semi"] if "semi" in wide.columns else []:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t = delong_test(y, wide["semi"].to_numpy(), wide[other].to_numpy())
            out["delong"].append({"set": name, "seed": int(seed), "a": "semi", "b": other, **t.to_dict()})
    return out


def run(cfg: USExperimentConfig) -> dict[str, Any]:
    """Run the whole experiment (see the module doc); returns the metrics dict."""
    from ..data.us_crops import make_crops
    from ..data.us_dataset import gt_boxes, gt_labels, load_frames
    from ._us_effects import claims, effects_tables
    from ._us_runs import run_arm_cached

    out = Path(cfg.out_dir)
    man, les, root = load_data(cfg, out)  # checks the sets before anything is written (a manifest given)
    out.mkdir(parents=True, exist_ok=True)
    frames, boxes, labels = load_frames(man, root), gt_boxes(les), gt_labels(les)
    det = train_detector(cfg, man, frames, boxes, out)
    dt = detection_table(det, man, frames, boxes, labels)
    train_sites = set(man.loc[man["set"].isin(["basic", "extended"]), "site"].astype(str))
    site = dt["site"].astype(str)
    tag = np.where(site.isin(train_sites), "test " + site, "independent " + site)
    dt["set_name"] = np.where(dt["set"] == "test", tag, dt["set"])
    r = cfg.recognition
    crops: dict[str, Any] = {}
    parts = {"train": dt[dt["set"].isin(["basic", "extended"])], "val": dt[(dt["set"] == "val") & (dt["label"] >= 0)],
             "test": dt[(dt["set"] == "test") & (dt["label"] >= 0)]}  # fmt: skip
    for key, tab in parts.items():
        crops[key] = tab.reset_index(drop=True)
        crops[f"{key}_x"] = make_crops(frames, crops[key], r.crop_size, r.margin)
    rows, runs = [], []
    models: dict[tuple[str, int], Any] = {}
    for seed in cfg.seeds:
        for arm in cfg.arms:
            model, summary, p = run_arm_cached(arm, seed, cfg, crops, out)
            models[(arm, seed)] = model
            runs.append({"arm": arm, "seed": seed, **summary})
            t = crops["test"]
            rows.append(pd.DataFrame({"image_id": t["image_id"], "set_name": t["set_name"], "label": t["label"],
                                      "arm": arm, "seed": seed, "score": p}))  # fmt: skip
    preds = pd.concat(rows, ignore_index=True)
    metrics = summarise(preds, dt, cfg.threshold)
    metrics["runs"] = runs
    metrics["counts"] = {k: int(v) for k, v in dt.groupby("set_name").size().items()}
    metrics["nodules"] = {k: int(v) for k, v in dt[dt["label"] >= 0].groupby("set_name").size().items()}
    metrics["effects"] = effects_tables(preds, dt, cfg.threshold, cfg.n_boot)
    metrics["claims"] = claims(metrics["effects"], cfg.noninferiority_margin)
    metrics["config"] = cfg.model_dump(mode="json")
    write_outputs(out, metrics, preds, dt)
    if ("semi", cfg.seeds[0]) in models:
        save_bundle(out / "us_model.pt", det, models[("semi", cfg.seeds[0])], cfg)
    return metrics


def write_outputs(out: Path, metrics: dict[str, Any], preds: pd.DataFrame, dt: pd.DataFrame) -> None:
    """Predictions, detections, the effect tables and the claims as CSV; metrics.json; report.html."""
    from ..fsutil import atomic_file
    from ._us_report import render

    eff = metrics["effects"]
    tables = {"predictions.csv": preds, "detections.csv": dt, "effects_arms.csv": pd.DataFrame(eff["arms"]),
              "effects.csv": pd.DataFrame(eff["effects"]), "claims.csv": pd.DataFrame(metrics["claims"])}  # fmt: skip
    for name, df in tables.items():
        with atomic_file(out / name) as tmp:
            df.to_csv(tmp, index=False)
    with atomic_file(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, default=float))
    with atomic_file(out / "report.html") as tmp:
        tmp.write_text(render(metrics, preds))


def save_bundle(path: Path, det: Any, recog: Any, cfg: USExperimentConfig) -> None:
    """Detector + recognition weights and their settings, loadable with ``weights_only=True``."""
    from ..fsutil import atomic_file

    bundle = {"format": 1, "detector": det.state_dict(), "recognition": recog.state_dict(),
              "detector_cfg": cfg.detector.model_dump(mode="json"),
              "recognition_cfg": cfg.recognition.model_dump(mode="json", exclude={"mean_teacher"})}  # fmt: skip
    with atomic_file(path, "wb") as tmp:
        torch.save(bundle, tmp)
