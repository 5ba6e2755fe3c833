"""Training with early stopping on a validation metric through the one loop (the mean teacher's recipe).

The loop (:func:`breastssl.engine.fit`) runs in chunks of ``eval_every`` steps, each resuming from the previous
chunk's checkpoint; between chunks the evaluation model is scored and the strategy's ``EarlyStopping`` record
decides whether to go on. No second training loop.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..strategies.mean_teacher import MeanTeacher, malignancy


@torch.no_grad()
def predict_proba(model: nn.Module, images: Tensor, batch_size: int = 256) -> np.ndarray:
    """Malignancy probabilities (N,) of images (N, C, H, W), the model in eval mode (restored afterwards)."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    out = [
        malignancy(model(images[i : i + batch_size].to(device))["logits"]).cpu()
        for i in range(0, len(images), batch_size)
    ]
    model.train(was)
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


def fit_early_stopping(
    strategy: MeanTeacher,
    dataset: Any,
    cfg: Any,
    sampler: Any,
    evaluate: Callable[[nn.Module], float],
    eval_every: int,
    max_steps: int,
    min_steps: int = 0,
    best_path: str | Path | None = None,
    **fit_kwargs: Any,
) -> dict[str, Any]:
    """Train with :func:`breastssl.engine.fit` in chunks of ``eval_every`` steps, early-stopping on ``evaluate``.

    After each chunk ``evaluate(strategy.eval_model())`` (validation accuracy) feeds the strategy's
    :class:`EarlyStopping`; the best weights (student and teacher) are kept and loaded at the end. The
    engine resumes each chunk from the previous chunk's checkpoint (``cfg.out_dir``), so a killed run
    restarted the same way continues. Evaluations before ``min_steps`` are only recorded in the history: they
    neither stop the run nor choose the kept weights (unless no later evaluation happens). ``best_path``: a
    file where the best weights are also kept (rank 0 writes it), so that a restarted run keeps the choice its
    restored record had made. ``fit_kwargs`` go to each ``fit`` call (e.g. ``run_config``, ``dist_ctx`` of a
    ``breastssl train`` run). Returns ``{"best_step", "best_value", "steps", "history"}``.
    """
    import warnings

    from ..engine import fit
    from ..fsutil import atomic_file

    best: dict[str, Any] | None = None
    main = getattr(fit_kwargs.get("dist_ctx"), "is_main", True)
    step = 0
    while step < max_steps and not strategy.early.stop:
        step = min(step + eval_every, max_steps)
        chunk = cfg.model_copy(update={"steps": step, "resume": True, "ckpt_every": eval_every})
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="resuming step .* changed train config")
            result = fit(strategy.student, strategy, dataset, chunk, batch_sampler=sampler, **fit_kwargs)
        step = result.step
        if best is None and best_path is not None and Path(best_path).is_file():
            # a restarted run: its record (restored from the checkpoint by the first chunk) chose these weights
            kept = torch.load(best_path, map_location="cpu", weights_only=True)
            best = kept if kept["step"] == strategy.early.best_step else None
        value = evaluate(strategy.eval_model())
        if step < min_steps and step < max_steps:
            strategy.early.history.append((int(step), float(value)))
            continue
        if strategy.early.update(value, step) or best is None:
            best = {
                "student": copy.deepcopy(strategy.student.state_dict()),
                "teacher": copy.deepcopy(strategy.teacher.state_dict()),
                "step": int(step),
            }
            if best_path is not None and main:
                with atomic_file(best_path, "wb") as tmp:
                    torch.save(best, tmp)
    if best is not None:
        strategy.student.load_state_dict(best["student"])
        strategy.teacher.load_state_dict(best["teacher"])
    early = strategy.early
    return {"best_step": early.best_step, "best_value": early.best, "steps": step, "history": early.history}
