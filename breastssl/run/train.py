"""``run_train``: every registered strategy trains through this one function (and ``breastssl train``).

See :mod:`breastssl.run.recipe` for the steps. On CPU, one GPU (``train.device``, ``train.amp``) or several
(``torchrun``: the loop's DDP; scoring and file writing as each recipe shards them, files written by rank 0).
A killed run resumes from its newest checkpoint; a finished one (``metrics.json`` present) is retrained only
when asked (``resume=False`` in :func:`run_train`'s caller starts afresh by removing the folder first).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def run_train(cfg: RunConfigBase, *, dry: bool = False) -> dict[str, Any]:
    """Train the run ``cfg`` describes, evaluate it on the test split, write its run folder; returns the metrics.

    ``dry``: build everything (data checked, model, strategy, sampler), draw one batch, compute one loss, write
    nothing, and return what would be trained.
    """
    from ..engine import barrier, fit, init_distributed
    from ..fsutil import atomic_file
    from .recipes import recipe

    rec = recipe(cfg.family)
    ctx = init_distributed(cfg.train.device)
    built = rec.build(cfg, ctx, dry_run=dry)
    if dry:
        return dry_run(cfg, built)
    out = Path(cfg.train.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(rec, "fit"):  # a method that stops early (ultrasound) drives the one loop itself, in chunks
        result = rec.fit(cfg, built, ctx)
    else:
        result = fit(built.model, built.strategy, built.dataset, cfg.train, batch_sampler=built.batch_sampler,
                     collate_fn=built.collate_fn, run_config=cfg, dist_ctx=ctx)  # fmt: skip
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
