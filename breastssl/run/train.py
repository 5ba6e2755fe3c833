"""``run_train``: every registered strategy trains through this one function (and ``breastssl train``).

See :mod:`breastssl.run.recipe` for the steps. On CPU, one GPU (``train.device``, ``train.amp``) or several
(``torchrun``: the loop's DDP; scoring and file writing as each recipe shards them, files written by rank 0).
A killed run resumes from its newest checkpoint; a finished one (``metrics.json`` present) is retrained only
when asked (``resume=False`` in :func:`run_train`'s caller starts afresh by removing the folder first).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError, UserError
from .config import RunConfigBase
from .folder import write_card
from .recipe import Built

METRICS = "metrics.json"


def _first_batch(built: Built, cfg: RunConfigBase) -> Any:
    """One batch as the loop would draw it (batch sampler + collate), for ``--dry-run``."""
    from torch.utils.data import default_collate

    if built.batch_sampler is not None:
        sampler = built.batch_sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(0)
        indices = next(iter(sampler))
    else:
        indices = list(range(min(cfg.train.batch_size, len(built.dataset))))
    return (built.collate_fn or default_collate)([built.dataset[i] for i in indices])


def describe_batch(batch: Any, prefix: str = "") -> list[str]:
    """One line per tensor of a (nested) batch: key, shape, dtype."""
    import torch

    lines: list[str] = []
    if isinstance(batch, dict):
        for key, value in batch.items():
            lines += describe_batch(value, f"{prefix}{key}.")
    elif isinstance(batch, torch.Tensor):
        lines.append(f"{prefix.rstrip('.')}: {tuple(batch.shape)} {str(batch.dtype).replace('torch.', '')}")
    elif isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        lines.append(f"{prefix.rstrip('.')}: {len(batch)} tensors, first {tuple(batch[0].shape)}")
    return lines


def dry_run(cfg: RunConfigBase, built: Built) -> dict[str, Any]:
    """What a run would train, with one batch drawn and one loss computed (no optimiser step, nothing written)."""
    import torch

    batch = _first_batch(built, cfg)
    if built.batch_transform is not None:  # augmentation on the device: the batch the strategy would see
        batch = built.batch_transform(batch, 0)
    n_params = sum(p.numel() for p in built.model.parameters())
    built.model.train()
    with torch.no_grad():
        parts = built.strategy.loss(batch, 0)
    return {
        "strategy": cfg.strategy.name,  # type: ignore[attr-defined]
        "family": cfg.family,
        "model_parameters": int(n_params),
        "dataset_items": len(built.dataset),
        "steps": cfg.train.steps,
        "batch_size": cfg.train.batch_size,
        "device": cfg.train.device,
        "amp": cfg.train.amp,
        "out_dir": cfg.train.out_dir,
        "batch": describe_batch(batch),
        "first_loss": {k: round(float(v), 5) for k, v in parts.items() if k.startswith("loss")},
        **built.summary,
    }


def _holds_results(folder: Path) -> bool:
    """Whether a run folder holds what a failed run must keep: a checkpoint (resumable) or logged metrics."""
    return any(folder.rglob("*.pt")) or any(p.stat().st_size > 0 for p in folder.rglob("metrics.jsonl"))


def check_out_dir(out: Path) -> None:
    """A :class:`ConfigError` when ``train.out_dir`` (or a folder above it) is a file: found before any work."""
    from ..fsutil import existing_ancestor

    try:
        folder = existing_ancestor(out)
        if not folder.is_dir():
            raise ConfigError(f"train.out_dir {out}: {folder} is a file, not a folder")
    except OSError as exc:  # e.g. a name too long for the file system
        raise ConfigError(f"train.out_dir {str(out)[:200]}: cannot be used ({exc.strerror or exc})") from None


@contextlib.contextmanager
def no_partial_output(out: Path, is_main: bool) -> Iterator[None]:
    """Remove what a run wrote into a fresh ``out`` when it stops on a user error before it has results.

    A bad lesions table, a config error found late (``train.amp=fp16`` on a CPU) or a bad image met by the first
    batch must leave no ``config.yaml`` or ``train_slices.csv`` behind: a folder that looks like a run but is not
    one. ``out`` that already held files (a run being resumed, or anything else) is never touched; nor is a fresh
    one that holds a checkpoint or logged metrics (the run trained: what it wrote is evidence, and resumable).
    """
    existed = out.exists()
    fresh = not existed or (out.is_dir() and not any(out.iterdir()))
    created = out
    while not created.parent.exists() and created.parent != created:
        created = created.parent  # the outermost folder this run creates (out_dir may be several levels new)
    try:
        yield
    except UserError:
        if fresh and is_main and out.is_dir() and not _holds_results(out):
            if not existed:
                shutil.rmtree(created, ignore_errors=True)
            else:  # out existed, empty: leave it empty, as it was
                for child in out.iterdir():
                    if child.is_dir():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
        raise


def run_train(cfg: RunConfigBase, *, dry: bool = False) -> dict[str, Any]:
    """Train the run ``cfg`` describes, evaluate it on the test split, write its run folder; returns the metrics.

    ``dry``: build everything (data checked, model, strategy, sampler), draw one batch, compute one loss, write
    nothing, and return what would be trained.
    """
    from ..engine import barrier, fit, init_distributed
    from ..fsutil import atomic_file
    from .recipes import recipe

    rec = recipe(cfg.family)
    out = Path(cfg.train.out_dir)
    check_out_dir(out)
    if cfg.train.augment_on == "device" and not getattr(rec, "device_augment", False):
        # not silently ignored: the run would augment in the loader while its config says device
        raise ConfigError(f"train.augment_on=device is not supported by the {cfg.family} recipe yet; use loader")
    ctx = init_distributed(cfg.train.device)
    if dry:
        return dry_run(cfg, rec.build(cfg, ctx, dry_run=True))
    with no_partial_output(out, ctx.is_main):
        built = rec.build(cfg, ctx, dry_run=False)
        out.mkdir(parents=True, exist_ok=True)
        if hasattr(rec, "fit"):  # a method that stops early (ultrasound) drives the one loop itself, in chunks
            result = rec.fit(cfg, built, ctx)
        else:
            result = fit(built.model, built.strategy, built.dataset, cfg.train, batch_sampler=built.batch_sampler,
                         collate_fn=built.collate_fn, run_config=cfg, dist_ctx=ctx,
                         batch_transform=built.batch_transform)  # fmt: skip
        built.state["fit"] = result
        rec.finish(cfg, built, ctx)
        metrics = rec.evaluate(cfg, built, ctx)
    summary = {
        "strategy": cfg.strategy.name,  # type: ignore[attr-defined]
        "family": cfg.family,
        "steps": result.step,
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        **built.summary,
        **metrics,
    }
    if ctx.is_main:
        write_card(out, {"family": cfg.family, "strategy": cfg.strategy.name, **rec.card(cfg, built)})  # type: ignore[attr-defined]
        with atomic_file(out / METRICS) as tmp:
            tmp.write_text(json.dumps(summary, indent=2, default=str))
    barrier(ctx)
    return summary
