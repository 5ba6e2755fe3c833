"""The contract of a run recipe (one per method family) and what it builds.

``breastssl train`` (:func:`breastssl.run.train.run_train`) is the same for every method::

    cfg   = load_run_config(RECIPE, --set ...)        # typed by the strategy's family
    built = recipe.build(cfg, ctx, dry_run)           # model, strategy, dataset, sampler, collate (+ recipe state)
    fit(built.model, built.strategy, built.dataset, cfg.train, ...)     # the one loop
    recipe.finish(cfg, built, ctx)                    # e.g. keep the EMA teacher's weights as the run's model
    metrics = recipe.evaluate(cfg, built, ctx)        # score the test split, write predictions_*.csv
    model.json = recipe.card(cfg, built)              # what loading the run needs (breastssl.run.folder)

A recipe may also define ``fit(cfg, built, ctx) -> FitResult``, called instead of the plain ``fit`` line: a
method whose training stops early (the ultrasound mean teacher's early stopping on validation accuracy) runs
:func:`breastssl.engine.fit` itself, in chunks with an evaluation between them (never a loop of its own).

A recipe's ``build`` validates the user's data (a clear :class:`~breastssl.errors.DataError` naming the file, row
or column) before anything trains; with ``dry_run`` it must not train anything (a recipe with a prerequisite
stage, such as the ultrasound detector, skips it and says so in ``summary``).

Augmentation (``train.augment_on``): a recipe whose training augments sets ``device_augment = True`` and, when
:func:`augments_on_device` says so, builds a dataset that yields plain items and returns the batched device
transform as ``Built.batch_transform`` (the loop applies it to each batch once it is on the training device).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from torch import nn
from torch.utils.data import Dataset

from .config import RunConfigBase


@dataclass
class Built:
    """What a recipe builds for one run."""

    model: nn.Module  # the student: what fit trains
    strategy: Any
    dataset: Dataset
    batch_sampler: Any = None  # None: shuffled global batches of train.batch_size
    collate_fn: Any = None  # None: the loop's default collate
    summary: dict[str, Any] = field(default_factory=dict)  # counts and choices: printed by --dry-run, in metrics.json
    state: dict[str, Any] = field(default_factory=dict)  # the recipe's own things for finish / evaluate / card
    batch_transform: Any = None  # None, or fit's batch_transform(batch, step): e.g. augmentation on the device


def augments_on_device(cfg: RunConfigBase, ctx: Any) -> bool:
    """Whether the run augments on the training device: ``train.augment_on`` device, or auto on a CUDA device
    (per-sample augmentation in DataLoader workers cannot feed a GPU at paper size: issue 18)."""
    mode = cfg.train.augment_on
    return mode == "device" or (mode == "auto" and getattr(ctx.device, "type", "cpu") == "cuda")


class Recipe(Protocol):
    """A method family's run recipe (see the module doc)."""

    family: str
    config: type[RunConfigBase]

    def build(self, cfg: Any, ctx: Any, dry_run: bool = False) -> Built: ...

    def finish(self, cfg: Any, built: Built, ctx: Any) -> None: ...

    def evaluate(self, cfg: Any, built: Built, ctx: Any) -> dict[str, Any]: ...

    def card(self, cfg: Any, built: Built) -> dict[str, Any]: ...
