"""breastssl from Python (notebooks, scripts): the public API over the run layer. The CLI commands wrap it.

One example per modality (every call here is what the CLI command of the same name does)::

    from breastssl import api

    # DBT, SelectiveKD family (a teacher run first, then the student distilling from it)
    cfg = api.run_config("configs/dbt_selectivekd_demo.yaml", {"train.steps": 200, "train.out_dir": "runs/t"})
    api.train(cfg)
    student = api.run_config("configs/dbt_selectivekd_demo.yaml", {"strategy.name": "selective_kd",
                             "strategy.teacher_checkpoint": "runs/t", "train.out_dir": "runs/s"})
    print(api.dry_run(student))                      # data checked, one batch drawn; nothing written
    api.train(student)
    run = api.load_run("runs/s")                     # model(s) in eval mode + model.json
    out = api.predict_arrays(run, slices)            # (N, H, W) float arrays → {"score": (N,), "map": (N, H, W)}
    api.predict("runs/s", ["study_dicom_folder/"], "preds/")   # files in, predictions.csv / heatmaps out

    # mammography self-training, ultrasound mean teacher, CoMoTo: the same calls with their recipes
    api.train(api.run_config("configs/mammo_self_training_run_demo.yaml"))
    api.train(api.run_config("configs/us_mean_teacher_run_demo.yaml"))
    api.train(api.run_config("configs/comoto_run_teacher_demo.yaml"))

    api.evaluate(["preds/predictions.csv"], "data/manifest.csv", "eval/")   # AUC with DeLong CI, FROC, report
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .run.config import RunConfigBase, load_run_config
from .run.folder import LoadedRun
from .run.folder import load_run as _load_run

__all__ = ["dry_run", "evaluate", "load_run", "predict", "predict_arrays", "run_config", "train"]


def _overrides(overrides: Mapping[str, Any] | Sequence[str]) -> list[str]:
    """``{"a.b": v}`` or ``["a.b=v"]`` → ``["a.b=v"]`` (values written as YAML, so lists and None survive)."""
    import yaml

    if isinstance(overrides, Mapping):
        return [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
                for k, v in overrides.items()]  # fmt: skip
    return list(overrides)


def run_config(recipe: str | Path | None = None, overrides: Mapping[str, Any] | Sequence[str] = ()) -> RunConfigBase:
    """A validated run config from a recipe YAML (or the defaults) plus overrides ``{"train.steps": 100}``."""
    return load_run_config(recipe, _overrides(overrides))


def _config(cfg: RunConfigBase | str | Path, overrides: Mapping[str, Any] | Sequence[str]) -> RunConfigBase:
    return cfg if isinstance(cfg, RunConfigBase) else run_config(cfg, overrides)


def train(cfg: RunConfigBase | str | Path, overrides: Mapping[str, Any] | Sequence[str] = ()) -> dict[str, Any]:
    """Train (resuming if the run folder has checkpoints), evaluate on the test split; returns metrics.json's dict."""
    from .run.train import run_train

    return run_train(_config(cfg, overrides))


def dry_run(cfg: RunConfigBase | str | Path, overrides: Mapping[str, Any] | Sequence[str] = ()) -> dict[str, Any]:
    """Build data, model, strategy and sampler, draw one batch, compute one loss; writes nothing."""
    from .run.train import run_train

    return run_train(_config(cfg, overrides), dry=True)


def load_run(path: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """A run folder of ``breastssl train`` (or a checkpoint in one): its models in eval mode and ``model.json``."""
    return _load_run(path, device)


def predict(run: str | Path, inputs: Sequence[str | Path], out: str | Path, device: str = "cpu", **options: Any):
    """``breastssl predict --run``: files, folders or manifests in; predictions and overlays under ``out``.

    Options as the command's: ``top_slices``, ``batch_size``, ``overwrite``, and ``dicom_sr`` / ``dicom_seg`` (folders
    for the DICOM SR and SEG exports of :mod:`breastssl.inference.clinical`).
    """
    from .run.predict import predict_run

    return predict_run(run, inputs, out, device=device, **options)


def _batch(images: np.ndarray | torch.Tensor, size: Sequence[int], device: torch.device) -> torch.Tensor:
    """(N, H, W) or (N, C, H, W) → float (N, C, h, w) at the run's input size (bilinear when it differs)."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    x = x[:, None] if x.ndim == 3 else x
    if tuple(x.shape[-2:]) != tuple(size):
        x = torch.nn.functional.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
    return x.to(device)


@torch.no_grad()
def predict_arrays(
    run: LoadedRun | str | Path,
    images: np.ndarray | torch.Tensor,
    aux: np.ndarray | torch.Tensor | None = None,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Run a trained model on arrays already prepared as in training (intensities in [0, 1]).

    images: (N, H, W) or (N, C, H, W); resized to the run's input size when they differ. ``aux``: the
    contralateral images of a two-view mammography run (default: each image is its own partner).
    Returns, for a classifier-segmenter run (DBT slices, mammography): ``score`` (N,) probability (with the
    run's calibration shift) and ``map`` (N, h, w) lesion probabilities; for a detector run (CoMoTo): ``boxes``,
    a list of N arrays (K, 5) of x0, y0, x1, y1, score; for an ultrasound run: ``boxes`` per frame with
    ``p_malignant`` of each box.
    """
    run = run if isinstance(run, LoadedRun) else load_run(run)
    card = run.card
    if card["family"] == "us":  # per frame (N, H, W): boxes (K, 4), det_scores (K,), p_malignant (K,)
        from .inference.us_predict import score_frame

        pre = card["preprocessing"]
        det, recog = run.models["detector"], run.models["recognition"]
        frames = [score_frame(det, recog, f, int(pre["crop_size"]), float(pre["crop_margin"])) for f in images]
        return {"boxes": [b for b, _, _ in frames], "det_scores": [s for _, s, _ in frames],
                "p_malignant": [p for _, _, p in frames]}  # fmt: skip
    model = run.model
    device = next(model.parameters()).device
    size = card["input"]["size"]
    x = _batch(images, size, device)
    if card["family"] == "comoto":  # per image: (K, 5) x0, y0, x1, y1, score in input pixels
        boxes = []
        for i in range(0, len(x), batch_size):
            for det in model(x[i : i + batch_size])["detections"]:
                boxes.append(torch.cat([det["boxes"], det["scores"][:, None]], 1).cpu().numpy())
        return {"boxes": boxes}
    two_view = len(card["input"].get("views", ["image"])) == 2
    a = _batch(aux, size, device) if aux is not None else x
    shift = float(card.get("calibration", {}).get("logit_shift", 0.0))
    scores, maps = [], []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        out = model(xb, a[i : i + batch_size]) if two_view else model(xb)
        scores.append(torch.sigmoid(out["logits"].float().reshape(len(xb), -1)[:, -1] + shift).cpu())
        if "mask_logits" in out:
            maps.append(torch.sigmoid(out["mask_logits"].float())[:, 0].cpu())
    result: dict[str, Any] = {"score": torch.cat(scores).numpy()}
    if maps:
        result["map"] = torch.cat(maps).numpy()
    return result


def evaluate(
    predictions: Sequence[str | Path], manifest: str | Path, out: str | Path, lesions: str | Path | None = None,
    overwrite: bool = False, **options: Any,
) -> dict[str, Any]:  # fmt: skip
    """``breastssl evaluate``: AUC with DeLong CI, sensitivity/specificity, FROC; writes metrics.json + report.html.

    options: level, agg, k, by, compare, split, threshold, n_boot, iou, criterion, seed (as the CLI's flags).
    """
    from .reports.evaluate_files import run_evaluate

    return run_evaluate([Path(p) for p in predictions], Path(manifest), Path(out),
                        Path(lesions) if lesions else None, overwrite, **options)  # fmt: skip


def predictions_table(path: str | Path) -> pd.DataFrame:
    """A prediction file written by ``predict`` or a run (CSV/Parquet) as a DataFrame."""
    from .data.schema import read_table

    return read_table(Path(path))
