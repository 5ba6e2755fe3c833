"""The self-training experiment's cells as ``breastssl train`` runs of the ``mammo`` recipe, for the one scheduler.

A cell (a full fraction, a weak fraction, soft or hard mask and NLP targets) of one seed is one run of the recipe
(``run/recipes/mammo.py``) on the experiment's dataset: ``data.full_fraction`` / ``data.weak_fraction`` draw the
cell's nested exam subsets with ``data.subset_seed`` = the seed (the experiment's draw), the weak images' soft
labels come from the experiment's labeller (``labels.csv`` in the experiment folder), and the run is scored on the
test split (tune runs: on val). Its folder holds config.yaml, checkpoints, ``metrics.json``, ``test_detections.npz``
and ``test_maps.npz``; ``breastssl predict --run`` works on it. Folders of finished runs made before the cells were
runs (a ``metrics.json`` with ``name``) are read as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class CellSettings:
    """What every run of one experiment shares."""

    data: Path  # the dataset folder (manifest.csv, lesions.csv)
    labels: Path  # the labeller's soft labels (exam_id, laterality, soft_label)
    size: tuple[int, int]
    steps_per_epoch: int
    stage1_epochs: int
    rounds: int
    round_epochs: int
    p0_every: int
    strategy: dict[str, Any] = field(default_factory=dict)  # further SelfTrainingConfig settings


def cell_mapping(
    st: CellSettings, cell: tuple, seed: int, full_share: float | None, threshold: float, run_dir: Path,
    split: str = "test",
) -> dict[str, Any]:  # fmt: skip
    """The ``mammo`` recipe mapping of ``cell`` (name, full fraction, weak fraction, soft mask, soft NLP) for one
    seed, scored on ``split``."""
    _, ff, wf, soft_mask, soft_nlp = cell
    strategy = {
        "name": "self_training",
        "stage1_epochs": st.stage1_epochs,
        "rounds": st.rounds,
        "round_epochs": st.round_epochs,
        "p0_every": st.p0_every,
        "soft_mask": soft_mask,
        "soft_nlp": soft_nlp,
        "full_share": full_share,
        "lesion_threshold": threshold,
        **st.strategy,
    }
    return {
        "data": {"manifest": str(st.data / "manifest.csv"), "labels": str(st.labels) if wf > 0 else None,
                 "image_size": list(st.size), "test_split": split, "use_weak": wf > 0, "full_fraction": ff,
                 "weak_fraction": wf, "subset_seed": seed, "steps_per_epoch": st.steps_per_epoch},
        "strategy": strategy,
        "eval": {"save_maps": True},
        "train": {"seed": seed, "out_dir": str(run_dir), "progress": False, "log_every": st.steps_per_epoch},
    }  # fmt: skip


def cell_spec(name: str, mapping: dict[str, Any]) -> Any:
    """A scheduler RunSpec of a recipe mapping (validated now)."""
    from ._runs import spec_from_mapping

    return spec_from_mapping(name, mapping, "mammo-self-training")


def read_cell(run_dir: Path, cell: tuple) -> dict[str, Any]:
    """A finished cell's results as the experiment tables read them (``mean``, ``sens``, ``curve``, ``mining``…)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if "name" in metrics:  # a run folder of the experiment before its cells were runs
        return metrics
    name, _, _, soft_mask, soft_nlp = cell
    images = metrics.get("images", {})
    return {
        **{k: metrics[k] for k in ("sens", "mean", "curve", "sweep", "n_images", "n_lesions", "lesion_threshold",
                                   "lesions_below_threshold", "mining") if k in metrics},
        "name": name, "n_full": images.get("full"), "n_weak": images.get("weak"), "soft_mask": soft_mask,
        "soft_nlp": soft_nlp, "full_share": _full_share(run_dir), "steps": metrics.get("steps"),
    }  # fmt: skip


def _full_share(run_dir: Path) -> float | None:
    from ..run.config import run_config_of

    return run_config_of(run_dir).strategy.full_share  # type: ignore[attr-defined]
