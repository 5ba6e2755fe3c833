"""The strategy contract (DESIGN §4): what a training method gives the loop.

Required::

    loss(batch, step) -> dict[str, Tensor]   # key "loss" (scalar, backpropagated) + named scalar parts

Optional, looked up by name (no base class to inherit, no hook registry)::

    before_round(round)          # at step 0, and every train.round_steps steps: re-score, re-mine
    after_step(step)             # after each optimiser step: EMA teachers, threshold updates
    trainable_parameters()       # parameters outside the student (projection heads): an iterable,
                                 # or a dict of named groups (each gets an lr_mult key)
    state_dict() / load_state_dict(state)   # saved in checkpoints: tensors and plain containers only
    to(device)                   # move teachers and other modules the strategy owns

The strategy holds the student (the same module object the loop is given) and calls it in ``loss``;
teachers are separate frozen modules, never weights swapped in place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn


@runtime_checkable
class Strategy(Protocol):
    """A training method: turns a batch into named losses."""

    def loss(self, batch: Any, step: int) -> dict[str, Tensor]: ...


def optional_hook(strategy: Any, name: str) -> Callable[..., Any] | None:
    """The strategy's optional method ``name``, or None."""
    hook = getattr(strategy, name, None)
    return hook if callable(hook) else None


def strategy_groups(strategy: Any) -> dict[str, list[nn.Parameter]]:
    """The strategy's own trainable parameters as named groups (``{"strategy": [...]}`` if unnamed)."""
    hook = optional_hook(strategy, "trainable_parameters")
    if hook is None:
        return {}
    params = hook()
    if isinstance(params, Mapping):
        return {str(name): list(group) for name, group in params.items()}
    return {"strategy": list(params)}


def check_parts(parts: Any, step: int) -> None:
    """A strategy's loss dict must hold ``"loss"`` and only scalar tensors or numbers."""
    if not isinstance(parts, Mapping) or "loss" not in parts:
        got = sorted(parts) if isinstance(parts, Mapping) else type(parts).__name__
        raise ValueError(f"strategy.loss at step {step} must return a dict with key 'loss', got {got}")
    for key, value in parts.items():
        if isinstance(value, Tensor) and value.numel() != 1:
            raise ValueError(f"strategy.loss part {key!r} at step {step} is not a scalar: shape {tuple(value.shape)}")
        if not isinstance(value, (Tensor, int, float)):
            raise ValueError(f"strategy.loss part {key!r} at step {step} is a {type(value).__name__}, not a number")
    if not isinstance(parts["loss"], Tensor) or not parts["loss"].requires_grad:
        raise ValueError(
            f"strategy.loss at step {step}: 'loss' must be a tensor that requires grad; when nothing in a batch "
            "is trained on, return a zero that keeps the graph (e.g. 0 * logits.sum())"
        )
