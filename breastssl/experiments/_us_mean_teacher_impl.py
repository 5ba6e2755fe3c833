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
   (:mod:`._us_data`).

Every (seed, arm) is one ``breastssl train`` run of the ``us`` recipe in ``out_dir/arms/<arm>_s<seed>/``
(:mod:`._us_arm_runs`), trained by the one scheduler (``jobs`` at a time, ``gpus`` handed out); the first run trains
the detector the others reuse. Finished runs are reused, so seeds can be added later; a finished run made with other
settings is trained again.
5. ``report.html``, ``metrics.json``, ``predictions.csv``, ``detections.csv``, ``effects_arms.csv``,
   ``effects.csv``, ``claims.csv`` and ``us_model.pt`` (detector + teacher, for ``breastssl predict``) in ``out_dir``.

Sets, detector, detection table, crops dataset and sampler, validation accuracy and the metrics are the recipe's
(:mod:`breastssl.run.recipes.us`, :mod:`~breastssl.run.recipes.us_stages`).
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
    basic_mask,
    classification_metrics,
    patient_uniform,
)
from ..run.recipes.us_stages import arm_batch as _arm_batch
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
    jobs: int = Field(1, ge=1, description="runs trained at once, each a `breastssl train` process")
    threads: int = Field(1, ge=1, description="torch threads of each run's process")
    gpus: list[str] = Field([], description="GPU ids handed to concurrent runs (one each), e.g. ['0', '1']")


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


def arm_batch(arm: str, r: USRecognitionConfig, tr: pd.DataFrame) -> tuple[int, int]:
    """(labelled, unlabelled) crops per step of ``arm`` (``us_stages.arm_batch``)."""
    return _arm_batch(arm, r.batch_size, r.mean_teacher.labelled_fraction, r.equal_labelled_exposure, r, tr)


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
    from ._runs import execute
    from ._us_arm_runs import arm_specs, run_results, write_sets_manifest
    from ._us_effects import claims, effects_tables

    out = Path(cfg.out_dir)
    man, les, root = load_data(cfg, out)  # checks the sets before anything is written (a manifest given)
    out.mkdir(parents=True, exist_ok=True)
    specs = arm_specs(cfg, write_sets_manifest(man, les, root, out / "sets"), out)
    done_before = {s.name for s in specs if s.done}
    execute(specs, out / "configs", jobs=cfg.jobs, threads=cfg.threads, devices=cfg.gpus)
    dt = pd.read_csv(specs[0].out_dir / "detections.csv", dtype={"image_id": str, "site": str})
    train_sites = set(dt.loc[dt["set"].isin(["basic", "extended"]), "site"].astype(str))
    site = dt["site"].astype(str)
    tag = np.where(site.isin(train_sites), "test " + site, "independent " + site)
    dt["set_name"] = np.where(dt["set"] == "test", tag, dt["set"])
    test = dt[(dt["set"] == "test") & (dt["label"] >= 0)].reset_index(drop=True)
    rows, runs = [], []
    cells = [(s, a) for s in cfg.seeds for a in cfg.arms]  # arm_specs' order
    for spec, (seed, arm) in zip(specs, cells, strict=True):
        scores, summary = run_results(spec, seed, arm, spec.name in done_before)
        if scores["image_id"].tolist() != test["image_id"].tolist():
            raise ConfigError(f"{spec.out_dir}: its test predictions are not those of the detector's test crops")
        runs.append(summary)
        rows.append(
            test[["image_id", "set_name", "label"]].assign(arm=arm, seed=seed, score=scores["score"].to_numpy())
        )
    preds = pd.concat(rows, ignore_index=True)
    metrics = summarise(preds, dt, cfg.threshold)
    metrics["runs"] = runs
    metrics["counts"] = {k: int(v) for k, v in dt.groupby("set_name").size().items()}
    metrics["nodules"] = {k: int(v) for k, v in dt[dt["label"] >= 0].groupby("set_name").size().items()}
    metrics["effects"] = effects_tables(preds, dt, cfg.threshold, cfg.n_boot)
    metrics["claims"] = claims(metrics["effects"], cfg.noninferiority_margin)
    metrics["config"] = cfg.model_dump(mode="json")
    write_outputs(out, metrics, preds, dt)
    semi = [spec for spec, (_, arm) in zip(specs, cells, strict=True) if arm == "semi"]
    if semi:
        from ..run.folder import load_run

        loaded = load_run(semi[0].out_dir)
        save_bundle(out / "us_model.pt", loaded.models["detector"], loaded.models["recognition"], cfg)
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
