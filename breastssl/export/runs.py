"""Rebuild the trained models of a run, whatever wrote it, for export.

What ``breastssl export --run RUN`` accepts, and where the architecture and input size come from:

- a DBT run dir of ``breastssl train`` (``config.yaml`` is a full run config: ``model`` + ``data.image_size``);
- a mammography self-training run dir (``model.json``: model name, kwargs, size; two-view input);
- a CoMoTo run dir (``<out>/seed*/frac*/<row>`` or ``<out>/seed*/teacher_*``): the experiment's ``config.json`` in
  an ancestor folder (backbone, widths, anchors, size), as ``breastssl experiment comoto`` writes it;
- an ultrasound bundle ``us_model.pt`` (or the experiment folder holding it): detector + recognition network;
- a checkpoint file ``<run>/checkpoints/step_*.pt`` of any of these run dirs (else the newest one is used).

Weights are the checkpoint's ``model`` entry (what ``load_teacher`` and the predictors load).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from ..run.folder import CARD_FORMAT

US_BUNDLE = "us_model.pt"
DENSE_BATCH = 2  # dense kinds are traced on 2 images so no batch-1 special case can hide in the graph


@dataclass
class ExportItem:
    """One model to export: file stem, kind (registry name), the model in eval mode, a (B, C, H, W) input shape."""

    name: str
    kind: str
    model: nn.Module
    input_shape: tuple[int, int, int, int]
    source: str


def _checkpoint(run_dir: Path, ckpt: Path | None) -> tuple[Path, dict[str, Any]]:
    from ..engine import latest_checkpoint, load_checkpoint

    ckpt = ckpt or latest_checkpoint(run_dir)
    if ckpt is None:
        raise UserError(f"run {run_dir}: no checkpoint in {run_dir / 'checkpoints'}")
    return ckpt, load_checkpoint(ckpt)


def _load(model: nn.Module, state: dict[str, Any], ckpt: Path) -> nn.Module:
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise UserError(f"checkpoint {ckpt} does not fit the run's model: {str(exc).splitlines()[0]}") from None
    return model.eval()


def _us_bundle(path: Path) -> tuple[str, list[ExportItem]]:
    from ..inference.us_predict import load_bundle

    det, recog, r = load_bundle(path)
    side = int(det.rcnn.transform.min_size[0])  # any frame size works: H and W are dynamic axes of the detector
    crop = int(r["crop_size"])
    items = [
        ExportItem("detector", "faster_rcnn", det, (1, 1, side, side), str(path)),
        ExportItem("recognition", str(r["model"]), recog, (DENSE_BATCH, 1, crop, crop), str(path)),
    ]
    return "us_bundle", items


def _comoto_config(run_dir: Path) -> Path | None:
    for folder in [run_dir, *run_dir.parents][:4]:  # <out>/seed*/frac*/<row> is three levels below config.json
        cfg = folder / "config.json"
        if cfg.is_file():
            try:
                data = json.loads(cfg.read_text())
            except ValueError:
                continue
            if isinstance(data, dict) and {"backbone", "stages", "size"} <= set(data):
                return cfg
    return None


def _from_card(run_dir: Path, ckpt: Path | None) -> tuple[str, list[ExportItem]]:
    """Every model of a run folder of `breastssl train` (``model.json``, the one format of breastssl.run.folder)."""
    from ..run.folder import load_run as load_run_folder

    run = load_run_folder(ckpt if ckpt is not None else run_dir)
    card, items = run.card, []
    inp = card["input"]
    for name, model in run.models.items():
        entry = card["models"][name]
        size = entry.get("input_size", inp["size"])
        if entry.get("builder") == "detector":
            items.append(
                ExportItem(name, "faster_rcnn", model, (1, int(inp["channels"]), *map(int, size)), str(run_dir))
            )
            continue
        batch = 1 if card["family"] == "comoto" else DENSE_BATCH
        items.append(
            ExportItem(name, entry["name"], model, (batch, int(inp["channels"]), *map(int, size)), str(run_dir))
        )
    return str(card["family"]), items


def _from_run_dir(run_dir: Path, ckpt: Path | None) -> tuple[str, list[ExportItem]]:
    from ..config import load_config, read_yaml
    from ..models import build_model, create_model

    if (run_dir / US_BUNDLE).is_file() and ckpt is None:
        return _us_bundle(run_dir / US_BUNDLE)
    spec_path = run_dir / "model.json"
    if spec_path.is_file() and json.loads(spec_path.read_text()).get("format") == CARD_FORMAT:
        return _from_card(run_dir, ckpt)
    if spec_path.is_file():  # mammography self-training (breastssl/run/self_training.py)
        spec = json.loads(spec_path.read_text())
        ckpt, state = _checkpoint(run_dir, ckpt)
        model = _load(create_model(spec["name"], **{**spec["kwargs"], "pretrained": False}), state, ckpt)
        shape = (DENSE_BATCH, int(spec["kwargs"].get("in_chans", 1)), *map(int, spec["size"]))
        return "mammo_self_training", [ExportItem("model", spec["name"], model, shape, str(ckpt))]
    cfg_path = run_dir / "config.yaml"
    if cfg_path.is_file() and {"model", "data"} <= set(read_yaml(cfg_path)):  # a `breastssl train` run
        from ..run.recipes.dbt import RunConfig

        cfg = load_config(RunConfig, cfg_path)
        ckpt, state = _checkpoint(run_dir, ckpt)
        model = _load(build_model(cfg.model.model_copy(update={"pretrained": False})), state, ckpt)
        shape = (DENSE_BATCH, cfg.model.in_chans, *cfg.data.image_size)
        return "dbt_train", [ExportItem("model", cfg.model.name, model, shape, str(ckpt))]
    comoto_cfg = _comoto_config(run_dir)
    if comoto_cfg is not None:
        from ..models.comoto import ARCH_KEYS, DetectorConfig, comoto_detector

        # the experiment's detector settings, read as plain data (the export layer does not import experiments)
        data = json.loads(comoto_cfg.read_text())
        settings = {k: data[k] for k in ARCH_KEYS if k in data} | {"pretrained": False}
        try:
            det = DetectorConfig.model_validate(settings)
        except ValueError as exc:
            raise UserError(f"{comoto_cfg}: not a CoMoTo experiment config ({exc})") from None
        ckpt, state = _checkpoint(run_dir, ckpt)
        model = _load(comoto_detector(det), state, ckpt)
        size = tuple(int(v) for v in data["size"])
        return "comoto", [ExportItem("model", "retinanet", model, (1, 1, *size), str(ckpt))]
    raise UserError(
        f"run {run_dir}: not a breastssl run (expected config.yaml of `breastssl train`, model.json of a "
        f"self-training run, a CoMoTo run with config.json above it, or {US_BUNDLE})"
    )


def load_run(path: str | Path) -> tuple[str, list[ExportItem]]:
    """The run type (``dbt_train``, ``mammo_self_training``, ``comoto``, ``us_bundle``) and its models to export.

    ``path``: a run dir, a checkpoint file of one, or an ultrasound bundle file (see the module doc). Anything
    else is a :class:`UserError` naming the path.
    """
    path = Path(path)
    if path.is_dir():
        return _from_run_dir(path, None)
    if not path.is_file():
        raise UserError(f"run {path} does not exist")
    try:
        head = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (torch raises several types for foreign files)
        raise UserError(f"run {path}: not a checkpoint or model bundle ({type(exc).__name__}: {exc})") from None
    if isinstance(head, dict) and {"detector", "recognition"} <= set(head):
        return _us_bundle(path)
    if isinstance(head, dict) and {"model", "step"} <= set(head):
        return _from_run_dir(path.parent.parent, path)  # <run>/checkpoints/step_*.pt
    raise UserError(f"run {path}: not a breastssl checkpoint or model bundle")
