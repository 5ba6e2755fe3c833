"""CoMoTo detection (seed 003): scoring DBT volumes and mammograms, the BCS-DBT FROC readings, and
``breastssl predict --run RUN`` for a run folder of the ``comoto`` recipe.

A DBT volume is scored by running the 2-D detector on every slice (resized as in training) and merging the
per-slice boxes across slices (:func:`breastssl.inference.dbt_merge.merge_slices`); each volume box is the seed
box with its slice range. Volume predictions are the BCS-DBT challenge's columns with the volume's ``image_id``
first (:data:`VOLUME_COLUMNS`): ``X, Y, Width, Height`` in stored pixels, slices ``Z`` … ``Z + Depth − 1``.

FROC readings (:func:`froc_readings`): the BCS-DBT rule on coordinates scaled to BCS-DBT pixels
(``scaled_*``, a 2457-px-high volume: a hit lies within half a lesion diagonal) first, then on the stored
coordinates (``raw_*``; on small synthetic images the rule's 100-px floor accepts any box in the right slices).

``predict_run`` writes OUT/``predictions.csv`` (:data:`VOLUME_COLUMNS`), ``overlays/<image_id>.png`` (the
middle slice of the best box of each volume, its boxes drawn), ``info.json`` and the views, ``regions.csv`` (one row
per volume box: slice = its middle slice, slice_first … slice_last its range) and ``sources.csv`` of
:mod:`breastssl.inference.findings` (a volume's score: its best box's), atomically. Inputs are DBT
volumes (``dbt_predict.collect_stacks``); a teacher run (a mammography detector) is applied to them the same way,
slice by slice.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import DataError, UserError
from .dbt_merge import PRED_COLUMNS, detect_volume, predict_volumes

BCS_ROWS = 2457.0  # height of a BCS-DBT volume in pixels
VOLUME_COLUMNS = ["image_id", *PRED_COLUMNS]
IMAGE_COLUMNS = ["image_id", "x", "y", "w", "h", "score"]  # 2-D detections in stored pixels (froc_2d's format)
Loader = Callable[[dict], tuple[np.ndarray, tuple[float, float]]]  # row → (stack (D, H, W) at model size, (sx, sy))


def bcs_scaled(pred: pd.DataFrame, boxes: pd.DataFrame, man: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions and boxes with X, Y, Width, Height scaled from stored pixels to a 2457-px-high BCS-DBT volume.

    man: the test volumes with StudyUID, View and ``rows`` (their stored height).
    """
    rows = man.set_index(["StudyUID", "View"])["rows"]
    out = []
    for df in (pred, boxes):
        factor = BCS_ROWS / rows.reindex(pd.MultiIndex.from_frame(df[["StudyUID", "View"]])).to_numpy(float)
        scaled = df.copy()
        for c in ("X", "Y", "Width", "Height"):
            scaled[c] = scaled[c].astype(float) * factor
        out.append(scaled)
    return out[0], out[1]


def froc_readings(pred: pd.DataFrame, truth: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> dict[str, float]:
    """``{"scaled_<key>": ..., "raw_<key>": ...}`` of ``metrics.froc_dbt`` (the primary, BCS-scale reading first).

    truth: (volumes with StudyUID, View, rows; boxes; labels) as ``data.comoto.volume_truth`` returns them.
    """
    from ..metrics import froc_dbt

    man, boxes, labels = truth
    raw = {"raw_" + k: v for k, v in froc_dbt(pred, boxes, labels).items()}
    sp, sb = bcs_scaled(pred, boxes, man)  # every coordinate in BCS-DBT pixels
    return {"scaled_" + k: v for k, v in froc_dbt(sp, sb, labels).items()} | raw


def score_volumes(
    model: nn.Module,
    rows: Iterable[dict],
    load: Loader,
    iou_merge: float = 0.3,
    max_gap: int = 1,
    max_per_volume: int = 20,
    batch_size: int = 32,
    on_volume: Callable[[dict, np.ndarray, tuple[float, float], pd.DataFrame], None] | None = None,
) -> pd.DataFrame:
    """Volume predictions (:data:`VOLUME_COLUMNS`) of every volume of ``rows`` (manifest rows as dicts).

    ``load(row)`` → (stack (D, H, W) in [0, 1] at the model's size, (sx, sy) model pixels per stored pixel);
    ``on_volume(row, stack, (sx, sy), predictions of that volume)`` is called while the stack is in memory.
    """
    frames = []
    for row in rows:
        stack, scale = load(row)
        pred = predict_volumes(model, [(row, stack)], lambda _r, s=scale: s, iou_merge, max_gap, max_per_volume,
                               batch_size)  # fmt: skip
        pred.insert(0, "image_id", str(row["image_id"]))
        if on_volume is not None:
            on_volume(row, stack, scale, pred)
        frames.append(pred)
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=VOLUME_COLUMNS)


def detect_images(model: nn.Module, rows: list[dict], load: Loader, batch_size: int = 32) -> pd.DataFrame:
    """2-D detections (:data:`IMAGE_COLUMNS`, stored pixels) of single images, e.g. the mammography test split.

    ``load(row)`` as for :func:`score_volumes`; only each image's first frame is scored (a mammogram has one).
    """
    frames = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        loaded = [load(r) for r in chunk]
        images = torch.from_numpy(np.stack([stack[0] for stack, _ in loaded]))  # (B, H, W): one "stack" of images
        dets = detect_volume(model, images, batch_size)
        for k, (row, (_, (sx, sy))) in enumerate(zip(chunk, loaded, strict=True)):
            d = dets[dets["slice"] == k]
            frames.append(pd.DataFrame({"image_id": str(row["image_id"]), "x": d["x1"] / sx, "y": d["y1"] / sy,
                                        "w": (d["x2"] - d["x1"]) / sx, "h": (d["y2"] - d["y1"]) / sy,
                                        "score": d["score"]}))  # fmt: skip
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True)[IMAGE_COLUMNS] if frames else pd.DataFrame(columns=IMAGE_COLUMNS)


def native_loader(size: tuple[int, int], root: str | Path = ".") -> Loader:
    """A loader reading each stack at its stored size, then resizing it exactly as training does (the box scale
    comes from the stored size itself, so manifests without ``rows`` / ``columns`` work)."""
    from ..data.dbt_slices import load_stack, resize_stack

    def load(row: dict) -> tuple[np.ndarray, tuple[float, float]]:
        native = load_stack(row, root, None)
        rows, cols = native.shape[-2:]
        return resize_stack(native, size), (size[1] / cols, size[0] / rows)

    return load


def write_overlay(stack: np.ndarray, pred: pd.DataFrame, scale: tuple[float, float], path: Path, top: int = 5) -> None:
    """PNG of the middle slice of the best box of a volume (stack (D, H, W) at model size), with the (at most
    ``top``) boxes whose slice range covers it drawn in model pixels and labelled by score."""
    from PIL import Image, ImageDraw

    best = pred.iloc[0]
    z = int(best["Z"]) + (int(best["Depth"]) - 1) // 2
    cover = pred[(pred["Z"] <= z) & (pred["Z"] + pred["Depth"] > z)].head(top)
    image = np.clip(stack[z], 0, 1)
    enlarge = max(1, math.ceil(256 / min(image.shape)))  # training-size slices are small: enlarge for reading
    rgb = Image.fromarray((image * 255).round().astype(np.uint8)).convert("RGB")
    rgb = rgb.resize((image.shape[1] * enlarge, image.shape[0] * enlarge), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (rgb.width, rgb.height + 14), "black")
    canvas.paste(rgb, (0, 14))
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 1), f"{pred['image_id'].iloc[0]} slice {z}  best score {float(best['Score']):.3f}", fill="white")
    sx, sy = scale[0] * enlarge, scale[1] * enlarge
    for r in cover.itertuples(index=False):
        x0, y0 = float(r.X) * sx, float(r.Y) * sy + 14
        draw.rectangle([x0, y0, x0 + float(r.Width) * sx, y0 + float(r.Height) * sy], outline=(255, 64, 64))
        draw.text((x0 + 2, y0 + 1), f"{float(r.Score):.2f}", fill=(255, 220, 0))
    canvas.save(path, format="PNG")


def predict_run(
    run: str | Path,
    inputs: list[str | Path],
    out: str | Path,
    device: str = "cpu",
    overwrite: bool = False,
    batch_size: int = 64,
    clinical: Any = None,
    **_: Any,
) -> pd.DataFrame:
    """Lesion boxes per DBT volume of ``inputs`` (DICOM folders / files or manifests, as ``breastssl predict``
    takes them) with a ``comoto`` run's detector; writes OUT (module doc) and returns the predictions.
    ``clinical``: the DICOM exports to write with OUT (:mod:`breastssl.inference.clinical`; SR only), or None."""
    from ..fsutil import atomic_dir
    from ..run.folder import load_family_run
    from .dbt_predict import collect_stacks
    from .findings import FindingsWriter, safe_name

    if batch_size < 1:
        raise UserError(f"--batch-size must be ≥ 1 (got {batch_size})")
    loaded = load_family_run(run, "comoto", device)
    card = loaded.card
    size = (int(card["input"]["size"][0]), int(card["input"]["size"][1]))
    merge = card.get("outputs", {}).get("merge", {})
    table, ignored = collect_stacks([Path(p) for p in inputs])
    if clinical is not None:
        clinical.check(table["path"])
    native = native_loader(size)

    def load(row: dict) -> tuple[np.ndarray, tuple[float, float]]:
        stack, scale = native(row)
        if stack.shape[0] != int(row["n_slices"]):  # a slice range must mean the same slices as the manifest's
            raise DataError(f"{row['path']}: the stack has {stack.shape[0]} slices, n_slices says {row['n_slices']}")
        return stack, scale

    with atomic_dir(out, overwrite=overwrite) as tmp:
        (tmp / "overlays").mkdir()
        findings = FindingsWriter(tmp)

        def overlay(row: dict, stack: np.ndarray, scale: tuple[float, float], pred: pd.DataFrame) -> None:
            if len(pred):  # a volume without any box has nothing to show
                write_overlay(stack, pred, scale, tmp / "overlays" / f"{safe_name(str(row['image_id']))}.png")
            record(findings, row, stack, scale, pred)

        pred = score_volumes(loaded.model, table.to_dict("records"), load, float(merge.get("iou", 0.3)),
                             int(merge.get("max_gap", 1)), int(merge.get("max_per_volume", 20)), batch_size,
                             overlay)  # fmt: skip
        pred.to_csv(tmp / "predictions.csv", index=False)
        info = {"run": str(loaded.run_dir.resolve()), "checkpoint": str(loaded.checkpoint),
                "strategy": card.get("strategy"), "input_size": list(size), "merge": merge,
                "volumes": len(table), "ignored_inputs": ignored, "family": "comoto", "modality": "DBT"}  # fmt: skip
        (tmp / "info.json").write_text(json.dumps(info, indent=1))
        findings.close()
        if clinical is not None:
            clinical.write(tmp)
    return pred


def record(findings: Any, row: dict, stack: np.ndarray, scale: tuple[float, float], pred: pd.DataFrame) -> None:
    """A volume's view and its volume boxes (stored pixels in ``pred``; ``scale`` = (sx, sy) model per stored pixel)
    for :class:`~breastssl.inference.findings.FindingsWriter`."""
    from .findings import stored_shape
    from .geometry import make_geometry

    series = row.get("series_uid") if isinstance(row.get("series_uid"), str) else None
    g = make_geometry(stored_shape(Path(str(row["path"])), series), stack.shape[-2:])  # DBT stacks: resized only
    best = float(pred["Score"].max()) if len(pred) else float("nan")
    findings.add_image({**row, "modality": "DBT"}, stack, None, g, best)
    sx, sy = scale
    model = pred[["X", "Y", "Width", "Height"]].to_numpy(float).reshape(-1, 4) * [sx, sy, sx, sy]
    z, depth = pred["Z"].to_numpy(int), pred["Depth"].to_numpy(int)
    slices = [(int(a + (d - 1) // 2), int(a), int(a + d - 1)) for a, d in zip(z, depth, strict=True)]
    findings.add_boxes(str(row["image_id"]), model, pred["Score"].to_numpy(float), slices)
