"""DBT prediction with a training run: ``breastssl predict --run RUN INPUT... --out DIR``.

INPUT is a DICOM study folder (any nesting: Breast Tomosynthesis / multi-frame files, or legacy
one-slice-per-file series) or a manifest (CSV/Parquet, ``path`` relative to its folder). Every stack is
read, windowed and resized exactly as in training (:class:`~breastssl.data.dbt_slices.StackStore` at the
run's ``data.image_size``), every slice is scored, and slice scores are aggregated to stack, breast and
exam with the run's ``eval.aggregation`` / ``eval.topk`` (DESIGN §5.1: units are slices). OUT holds:

- ``slices.csv`` (image_id, slice, score), ``stacks.csv``, ``breasts.csv``, ``exams.csv``;
- ``predictions.json``: exam → breasts → stacks (with their top slices), plus the run and model;
- ``heatmaps/<image_id>_slice<k>.png``: the ``top_slices`` best slices of each stack in grey with the
  segmentation head's probability map in colour, titled with the slice score;
- ``views/<image_id>.npz``, ``regions.csv``, ``sources.csv`` (:mod:`breastssl.inference.findings`): every slice as
  the model saw it with its probability map, and the regions (p ≥ 0.5, 8-connected) of the top slices' maps.

Everything is written into a temporary folder renamed to OUT at the end, so a failed run leaves nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..data.dbt_slices import stack_scores
from ..errors import DataError, UserError

PREDICT_COLUMNS = ("image_id", "exam_id", "laterality", "path", "n_slices")  # what scoring and aggregation need
TABLE_SUFFIXES = {".csv", ".parquet", ".pq"}
SEG_KEY = "mask_logits"  # ClassifierSegmenter's segmentation output, (B, 1, H, W) logits
STACK_COLUMNS = ["image_id", "exam_id", "laterality", "view", "vendor", "n_slices", "path"]


def load_run(run: str | Path, device: str | torch.device = "cpu", model: Any = None) -> tuple[Any, Any, dict]:
    """The run's model (newest checkpoint, eval mode), its RunConfig and a JSON-able description.

    A caller-supplied ``model`` (any callable on (B, 1, H, W) returning ``{"logits": (B, 1), ...}``, e.g. an
    ONNX-runtime wrapper) replaces the checkpoint; ``config.yaml`` is still read for size and aggregation.
    """
    from ..config import load_config
    from ..data.prior import read_logit_shift
    from ..engine import latest_checkpoint, load_checkpoint
    from ..models import build_model
    from ..run.recipes.dbt import RunConfig

    run = Path(run)
    if not run.is_dir():
        raise UserError(f"--run {run}: not a folder; give the out_dir of a `breastssl train` run")
    cfg_path = run / "config.yaml"
    if not cfg_path.is_file():
        raise UserError(f"--run {run}: no config.yaml, so not a `breastssl train` run directory")
    cfg = load_config(RunConfig, cfg_path)
    info: dict[str, Any] = {
        "run": str(run.resolve()),
        "model": cfg.model.name,
        "backbone": cfg.model.backbone,
        "strategy": cfg.strategy.name,
        "image_size": list(cfg.data.image_size),
        "aggregation": cfg.eval.aggregation,
        "topk": cfg.eval.topk,
        # scores are probabilities on the natural slice prior: the run's prior correction (data/prior.py)
        "logit_shift": read_logit_shift(run),
    }
    if model is not None:
        info["model_object"] = type(model).__name__
        return model, cfg, info
    ckpt = latest_checkpoint(run)
    if ckpt is None:
        raise UserError(f"--run {run}: no checkpoint in {run / 'checkpoints'} (has the run saved one?)")
    state = load_checkpoint(ckpt)
    if not isinstance(state.get("model"), dict):
        raise UserError(f"{ckpt}: holds no model weights")
    net = build_model(cfg.model.model_copy(update={"pretrained": False}))  # weights come from the checkpoint
    try:
        net.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise UserError(f"{ckpt}: weights do not fit the model of {cfg_path} ({exc})") from None
    info.update(checkpoint=str(ckpt.resolve()), step=int(state["step"]))
    return net.to(device).eval(), cfg, info


# ---- inputs → one table of stacks (manifest rows with absolute paths) -------------------------------


def _from_manifest(path: Path) -> pd.DataFrame:
    from ..data.schema import read_table, resolve_path

    df = read_table(path)
    missing = [c for c in PREDICT_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing required column(s) {', '.join(missing)}; has {list(df.columns)}")
    if "modality" in df.columns:  # a mixed manifest: predict its DBT rows
        df = df[df["modality"].astype(str) == "DBT"]
    if df.empty:
        raise DataError(f"{path}: no DBT rows (modality == 'DBT') to predict")
    n = pd.to_numeric(df["n_slices"], errors="coerce")
    bad = n.isna() | (n < 1)
    if bad.any():
        raise DataError(f"{path}: n_slices must be a positive integer; bad for {list(df.loc[bad, 'image_id'])[:5]}")
    paths = [resolve_path(path.parent, str(p)) for p in df["path"]]
    gone = [str(p) for p in paths if not p.exists()]
    if gone:
        raise DataError(f"{path}: files named in column path do not exist: {gone[:5]} ({len(gone)} in all)")
    return df.assign(path=[str(p.resolve()) for p in paths], n_slices=n.astype(int))


def _header(path: Path) -> dict[str, Any] | None:
    """Header metadata of a DICOM file, None for an object without pixels (SR, presentation state).

    A malformed header is a DataError naming the file, unless its Modality / SOP class already say it
    cannot be a DBT stack (an RT dose, an ultrasound clip): then only those are returned, and it is ignored.
    """
    from ..data.dicom_check import checked_header
    from ..data.dicom_meta import modality_of
    from ..data.dicom_pixels import read_dataset

    ds = read_dataset(path, stop_before_pixels=True)
    if "Rows" not in ds:
        return None
    try:
        return checked_header(ds, path)
    except DataError:
        if modality_of(ds, 2) == "DBT":  # a mammography object that may be multi-frame: it may be a stack
            raise
        return {"modality": modality_of(ds, 1)}


def _from_folder(root: Path) -> tuple[pd.DataFrame, list[str]]:
    """DBT stacks of a DICOM folder tree, and the images there that are not DBT (ignored, listed)."""
    from ..data.datasets import ingest
    from ..data.pseudonyms import ephemeral_key
    from ..data.schema import resolve_path

    # patient and site pseudonyms are not part of predict's outputs: a throwaway key, so predict never reads
    # or creates the user's pseudonym key (image and exam IDs are unkeyed hashes of UIDs, as in ingest)
    result = ingest("folder", root, skip_bad=True, key=ephemeral_key())  # an empty folder is a DataError here
    # the adapter skips what it cannot turn into a row; in a study folder that is fine for objects that are
    # not DBT (reports, 2-D views without laterality...), never for a damaged file that may be a DBT stack
    others: list[str] = []
    for file, reason in result.skipped:
        meta = _header(Path(file)) if Path(file).is_file() else {"modality": "DBT"}
        if meta is not None and meta["modality"] == "DBT":
            raise DataError(reason)
        others.append(f"{file} ({meta['modality'] if meta else 'no image'})")
    manifest, _ = result.tables()
    is_dbt = manifest["modality"].astype(str) == "DBT"
    others += [f"{resolve_path(root, p)} ({m}, {n} frame(s))" for p, m, n in
               manifest.loc[~is_dbt, ["path", "modality", "n_slices"]].itertuples(index=False)]  # fmt: skip
    if not is_dbt.any():
        raise DataError(f"{root}: no DBT stack among its DICOM files; found {others[:5]} ({len(others)} in all)")
    dbt = manifest[is_dbt]
    return dbt.assign(path=[str(resolve_path(root, p).resolve()) for p in dbt["path"]]), others


def _from_dicom_file(path: Path) -> pd.DataFrame:
    # the folder adapter's own row builder: a file given alone gets the IDs it gets inside its folder
    from ..data.datasets.folder import file_header as folder_header
    from ..data.datasets.folder import manifest_row
    from ..data.pseudonyms import ephemeral_key

    meta = folder_header(path, ephemeral_key())
    if meta["modality"] != "DBT":
        raise DataError(
            f"{path}: not a DBT stack ({meta['modality']}, {meta['n_frames']} frame(s), {meta['sop_class_name']}); "
            "give Breast Tomosynthesis or multi-frame mammography DICOM"
        )
    full = manifest_row(meta, path.parent, meta["n_frames"], path, series=False)
    row = {k: v for k, v in full.items() if k[0] != "_"}
    return pd.DataFrame([{**row, "path": str(path.resolve())}])


def collect_stacks(inputs: Sequence[str | Path]) -> tuple[pd.DataFrame, list[str]]:
    """One manifest-like table of the DBT stacks of ``inputs`` (absolute paths), and the ignored non-DBT images."""
    from ..data.dicom_pixels import is_dicom_file

    if not inputs:
        raise UserError("no INPUT given: name DICOM folders or manifests")
    parts, ignored = [], []
    for p in map(Path, inputs):
        if p.is_dir():
            df, others = _from_folder(p)
            ignored += others
        elif p.is_file() and p.suffix.lower() in TABLE_SUFFIXES:
            df = _from_manifest(p)
        elif p.is_file() and is_dicom_file(p):
            df = _from_dicom_file(p)
        elif p.is_file():
            raise DataError(f"{p}: neither a DICOM file, a folder nor a manifest (.csv, .parquet)")
        else:
            raise UserError(f"{p}: does not exist")
        parts.append(df.assign(_input=str(p)))
    table = pd.concat(parts, ignore_index=True)
    table[["image_id", "exam_id", "laterality"]] = table[["image_id", "exam_id", "laterality"]].astype(str)
    for col in STACK_COLUMNS:
        if col not in table.columns:
            table[col] = ""
    table[["view", "vendor"]] = table[["view", "vendor"]].fillna("").astype(str)
    dup = table["image_id"].duplicated(keep=False)
    if dup.any():
        where = table.loc[dup, ["image_id", "_input"]].drop_duplicates().to_records(index=False).tolist()
        raise DataError(f"image_id must be unique across inputs; repeated: {where[:5]}")
    return table.drop(columns="_input"), ignored


# ---- scoring -----------------------------------------------------------------------------------------


def _tensor(value: Any) -> torch.Tensor:
    """A model output (a torch tensor, or a numpy array from e.g. ONNX runtime) as a float tensor on its device."""
    return (value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))).float()


@torch.inference_mode()
def _seg_maps(model: Any, slices: np.ndarray, device: Any, batch_size: int = 64) -> np.ndarray | None:
    """(K, H, W) slices → (K, H, W) lesion probabilities of the segmentation head (``batch_size`` slices per
    forward pass), None without one."""
    parts = []
    for start in range(0, len(slices), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(slices[start : start + batch_size]))[:, None].to(device)
        out = model(x)
        if SEG_KEY not in out:
            return None
        parts.append(torch.sigmoid(_tensor(out[SEG_KEY]))[:, 0].cpu().numpy())
    return np.concatenate(parts) if parts else None


def _overlay(image: np.ndarray, prob: np.ndarray | None, title: str, path: Path) -> None:
    """Write a PNG: ``image`` (H, W) in [0, 1] in grey, ``prob`` (H, W) in colour with opacity = probability."""
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    grey = np.repeat(np.clip(image, 0, 1)[..., None], 3, axis=2)
    if prob is not None:
        # opacity follows the probability, so the breast stays readable where the head sees nothing
        alpha = 0.65 * np.clip(prob, 0, 1)[..., None]
        grey = (1 - alpha) * grey + alpha * colormaps["turbo"](prob)[..., :3]
    rgb = Image.fromarray((grey * 255).round().astype(np.uint8))
    scale = max(1, math.ceil(256 / min(image.shape)))  # training-size slices are small: enlarge for reading
    rgb = rgb.resize((image.shape[1] * scale, image.shape[0] * scale), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (rgb.width, rgb.height + 14), "black")
    canvas.paste(rgb, (0, 14))
    ImageDraw.Draw(canvas).text((2, 1), title, fill=(255, 255, 255))
    canvas.save(path, format="PNG")


# ---- the command -------------------------------------------------------------------------------------


def predict_dbt(
    run: Path,
    inputs: list[Path],
    out: Path,
    *,
    top_slices: int = 3,
    batch_size: int = 64,
    device: str = "cpu",
    model: Any = None,
    overwrite: bool = False,
    clinical: Any = None,
) -> pd.DataFrame:
    """Score the DBT stacks of ``inputs`` with the run's model; write OUT (see module docstring).

    Returns the stack table (one row per stack: ids, laterality, view, path, ``score``, ``top_slices``).
    ``clinical``: the DICOM exports to write with OUT (:mod:`breastssl.inference.clinical`), or None.
    """
    from ..data.dbt_slices import StackStore
    from ..fsutil import atomic_dir
    from ..metrics import to_level
    from .findings import FindingsWriter

    if top_slices < 0 or batch_size < 1:
        raise UserError(f"--top-slices must be ≥ 0 and --batch-size ≥ 1 (got {top_slices}, {batch_size})")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine")
    net, cfg, info = load_run(run, device, model)
    table, ignored = collect_stacks(inputs)
    if clinical is not None:
        clinical.check(table["path"])
    size = tuple(cfg.data.image_size)
    # a caller's model may not be an nn.Module: move / switch modes only what can be
    in_device = device if model is None or hasattr(net, "to") else "cpu"
    if model is not None and hasattr(net, "to"):
        net = net.to(device)
    store = StackStore(table, Path("."), size, cache_mb=1.0)  # each stack is read once: keep only the current one
    # entered before scoring, so an occupied OUT fails at once; any failure below leaves no OUT
    with atomic_dir(out, overwrite=overwrite) as tmp:
        findings = FindingsWriter(tmp)
        slices, tops = _score_all(
            net, store, table, tmp / "heatmaps", top_slices, batch_size, in_device, info["logit_shift"], findings
        )
        method, k = cfg.eval.aggregation, cfg.eval.topk
        stacks = table[STACK_COLUMNS].merge(to_level(slices, table, "stack", method, k), on="image_id", how="left")
        stacks["top_slices"] = [";".join(str(t["slice"]) for t in tops[i]) for i in stacks["image_id"]]
        breasts = to_level(slices, table, "breast", method, k)
        exams = to_level(slices, table, "exam", method, k)
        for name, df in {"slices": slices, "stacks": stacks, "breasts": breasts, "exams": exams}.items():
            df.to_csv(tmp / f"{name}.csv", index=False)
        findings.set_scores(dict(zip(stacks["image_id"], stacks["score"], strict=True)))
        findings.close()
        info.update(aggregation_steps=str(exams["aggregation"].iloc[0]), ignored_inputs=ignored)
        doc = {**info, "family": "dbt", "modality": "DBT", "exams": _tree(exams, breasts, stacks, tops)}
        (tmp / "predictions.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
        if clinical is not None:
            clinical.write(tmp)
    return stacks


def _score_all(
    net: Any,
    store: Any,
    table: pd.DataFrame,
    heatmaps: Path,
    top_slices: int,
    batch_size: int,
    device: Any,
    logit_shift: float = 0.0,
    findings: Any = None,
) -> tuple[pd.DataFrame, dict[str, list[dict[str, Any]]]]:
    """Slice scores of every stack of ``table`` (image_id, slice, score), and per stack its top slices
    (slice, score, heatmap PNG path relative to OUT), whose overlays are written into ``heatmaps``.

    ``findings`` (a :class:`~breastssl.inference.findings.FindingsWriter`) gets every stack's view and the regions
    of its top slices' probability maps."""
    from .findings import DBT_MAP_THRESHOLD, safe_name, stored_shape
    from .geometry import make_geometry

    heatmaps.mkdir(parents=True)
    was_training = bool(getattr(net, "training", False))
    if hasattr(net, "eval"):  # a caller's model may not be an nn.Module
        net.eval()
    parts, tops = [], {}
    try:
        for row in table.to_dict("records"):
            image_id, n, path = row["image_id"], row["n_slices"], row["path"]
            stack = store.stack(image_id)
            if stack.shape[0] != int(n):
                raise DataError(f"{path}: the stack has {stack.shape[0]} slices, the manifest says n_slices={n}")
            scores = stack_scores(net, stack, batch_size, device, logit_shift).numpy()
            parts.append(pd.DataFrame({"image_id": image_id, "slice": np.arange(len(scores)), "score": scores}))
            best = np.argsort(-scores, kind="stable")[:top_slices]
            # every slice's map: the view holds the whole stack (and a DICOM SEG needs each frame)
            probs = _seg_maps(net, stack, device, batch_size)
            if findings is not None:
                series = row.get("series_uid") if isinstance(row.get("series_uid"), str) else None
                g = make_geometry(stored_shape(Path(path), series), stack.shape[-2:])  # DBT stacks: resized only
                findings.add_image({**row, "modality": "DBT"}, stack, probs, g)
                for z in best if probs is not None else []:
                    findings.add_map_regions(image_id, probs[z], int(z), DBT_MAP_THRESHOLD)
            tops[image_id] = []
            for z in best:
                rel = f"heatmaps/{safe_name(image_id)}_slice{int(z):03d}.png"
                title = f"{image_id} slice {int(z)}  score {scores[z]:.3f}"
                _overlay(stack[z], None if probs is None else probs[z], title, heatmaps.parent / rel)
                tops[image_id].append({"slice": int(z), "score": float(scores[z]), "heatmap": rel})
    finally:
        if was_training and hasattr(net, "train"):
            net.train(True)
    return pd.concat(parts, ignore_index=True), tops


def _tree(exams: pd.DataFrame, breasts: pd.DataFrame, stacks: pd.DataFrame, tops: dict) -> list[dict]:
    """exam → breasts → stacks → top slices, as JSON-able dicts."""
    out = []
    for exam_id, exam_score in exams[["exam_id", "score"]].itertuples(index=False):
        b_rows = breasts[breasts["exam_id"] == exam_id]
        entry: dict[str, Any] = {"exam_id": exam_id, "score": float(exam_score), "breasts": []}
        for lat, b_score in b_rows[["laterality", "score"]].itertuples(index=False):
            s_rows = stacks[(stacks["exam_id"] == exam_id) & (stacks["laterality"] == lat)]
            entry["breasts"].append({"laterality": lat, "score": float(b_score), "stacks": [
                {"image_id": r["image_id"], "view": str(r["view"]), "path": r["path"], "n_slices": int(r["n_slices"]),
                 "score": float(r["score"]), "top_slices": tops[r["image_id"]]}
                for r in s_rows.to_dict("records")]})  # fmt: skip
        out.append(entry)
    return out
