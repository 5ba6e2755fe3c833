"""One run folder format for every method, and one loader of it.

A run folder (``train.out_dir``) holds::

    config.yaml            the resolved run config (every default spelled out)
    checkpoints/step_*.pt  the loop's checkpoints (``model``: the student's weights); resume starts from the newest
    metrics.jsonl          training logs, one line per logged step
    model.json             what loading the trained model needs (below)
    weights/<name>.pt      evaluation weights that differ from the newest checkpoint's student (an EMA teacher,
                           the early-stopping choice, a detector trained first), as ``{"model": state_dict}``
    metrics.json           the test split's metrics;  predictions_*.csv  its predictions

``model.json`` (:data:`CARD_FORMAT`)::

    {"format": "breastssl-run/1", "family": "dbt", "strategy": "selective_kd",
     "models": {"model": {"builder": "model", "name": "classifier_segmenter", "kwargs": {...},
                          "weights": "checkpoint"}},           # or "weights/recognition.pt"
     "input": {"size": [H, W], "channels": 1, "views": ["image"]},   # ["image", "contralateral"]: two-view
     "preprocessing": {...}, "classes": {"0": "...", "1": "..."}, "calibration": {...}, "outputs": {...}}

``builder`` is ``model`` (the model registry, ``models.create_model``) or ``detector`` (``models.detection``).
:func:`load_run` reads any run folder (or a checkpoint file inside one) into :class:`LoadedRun`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from ..fsutil import atomic_file

CARD = "model.json"
CARD_FORMAT = "breastssl-run/1"
WEIGHTS_DIR = "weights"


@dataclass
class LoadedRun:
    """A trained run: its folder, model card, the checkpoint the student came from, and its models in eval mode."""

    run_dir: Path
    card: dict[str, Any]
    checkpoint: Path | None
    models: dict[str, nn.Module]

    @property
    def model(self) -> nn.Module:
        """The run's one model (``models["model"]``), for families with a single network."""
        if "model" not in self.models:
            raise UserError(f"run {self.run_dir} holds {', '.join(self.models)}, not one model")
        return self.models["model"]


def model_entry(name: str, kwargs: dict[str, Any], builder: str = "model", weights: str = "checkpoint") -> dict:
    """One entry of ``model.json``'s ``models``."""
    return {"builder": builder, "name": name, "kwargs": kwargs, "weights": weights}


def write_card(run_dir: str | Path, card: dict[str, Any]) -> Path:
    """Write ``model.json`` (format stamped) atomically; returns its path."""
    path = Path(run_dir) / CARD
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps({"format": CARD_FORMAT, **card}, indent=1))
    return path


def save_weights(run_dir: str | Path, name: str, model: nn.Module) -> str:
    """Save evaluation weights as ``weights/<name>.pt``; returns the path relative to the run folder."""
    rel = f"{WEIGHTS_DIR}/{name}.pt"
    path = Path(run_dir) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        torch.save({"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, tmp)
    return rel


def read_card(run_dir: str | Path) -> dict[str, Any]:
    """``model.json`` of a run folder, checked for its format."""
    path = Path(run_dir) / CARD
    if not path.is_file():
        raise UserError(f"run {run_dir}: no {CARD} (not a finished run of `breastssl train`)")
    try:
        card = json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        got = card.get("format") if isinstance(card, dict) else type(card).__name__
        raise UserError(f"{path}: format {got!r}, expected {CARD_FORMAT!r}")
    for key in ("family", "models", "input"):
        if key not in card:
            raise UserError(f"{path}: missing key {key!r}")
    return card


def run_dir_of(path: str | Path) -> tuple[Path, Path | None]:
    """(run folder, checkpoint file or None) of a run folder or of a checkpoint inside ``<run>/checkpoints``."""
    path = Path(path)
    if path.is_file() and path.parent.name == "checkpoints":
        return path.parent.parent, path
    if path.is_dir():
        return path, None
    raise UserError(f"{path}: neither a run folder nor a checkpoint file in one")


def build_entry(entry: dict[str, Any]) -> nn.Module:
    """The untrained module a ``model.json`` entry describes."""
    builder, name, kwargs = entry.get("builder", "model"), entry["name"], dict(entry.get("kwargs", {}))
    if builder == "detector":
        from ..models.detection import create_detector

        return create_detector(name, **kwargs)
    if builder != "model":
        raise UserError(f"model.json: unknown builder {builder!r} (model or detector)")
    from ..models import create_model

    return create_model(name, **kwargs)


def _state(run_dir: Path, entry: dict[str, Any], ckpt: Path | None) -> tuple[dict[str, Any], Path | None]:
    from ..engine import latest_checkpoint, load_checkpoint

    weights = entry.get("weights", "checkpoint")
    if weights != "checkpoint" and ckpt is None:  # a chosen checkpoint file overrides the kept weights
        path = run_dir / weights
        if not path.is_file():
            raise UserError(f"run {run_dir}: {weights} named in model.json does not exist")
        return torch.load(path, map_location="cpu", weights_only=True)["model"], None
    ckpt = ckpt or latest_checkpoint(run_dir)
    if ckpt is None:
        raise UserError(f"run {run_dir}: no checkpoint in {run_dir / 'checkpoints'}")
    return load_checkpoint(ckpt)["model"], ckpt


def load_run(path: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Every model of a run folder (or of the run a checkpoint file belongs to), in eval mode on ``device``."""
    run_dir, ckpt = run_dir_of(path)
    card = read_card(run_dir)
    models: dict[str, nn.Module] = {}
    used: Path | None = None
    for name, entry in card["models"].items():
        module = build_entry(entry)
        state, source = _state(run_dir, entry, ckpt if entry.get("weights", "checkpoint") == "checkpoint" else None)
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise UserError(f"run {run_dir}: weights of {name!r} do not fit model.json: {first}") from None
        models[name] = module.to(device).eval()
        used = used or source
    return LoadedRun(run_dir, card, used, models)


def load_family_run(path: str | Path, family: str, device: str | torch.device = "cpu") -> LoadedRun:
    """:func:`load_run` for a predictor of one family: CUDA checked first, a run of another family refused."""
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine")
    run = load_run(path, device)
    if run.card["family"] != family:
        raise UserError(f"run {run.run_dir} is a {run.card['family']} run, not a {family} run")
    return run
