"""ROC and FROC figures as base64 PNG strings, ready to inline in an HTML report."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def figure_png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def roc_png(curves: Mapping[str, tuple[Sequence[float], Sequence[float], float]], title: str) -> str:
    """curves: name → (fpr, tpr, auc). Returns a base64 PNG."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], ls=":", c="0.6", lw=1)
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, lw=1.6, label=f"{name} (AUC {auc:.3f})")  # ties give diagonal segments
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 − specificity", ylabel="sensitivity", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return figure_png(fig)


def froc_png(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    xlabel: str = "false positives per image",
    marks: Sequence[float] = (),
) -> str:
    """curves: name → (fp rate, sensitivity); dotted verticals at ``marks``. Returns a base64 PNG."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    right = max([max(marks, default=1.0)] + [1.0])
    for name, (fps, sens) in curves.items():
        fps, sens = np.asarray(fps, float), np.asarray(sens, float)
        ax.plot(fps, sens, marker=".", ms=3, lw=1.6, label=name)
        right = max(right, min(float(fps.max(initial=0.0)), 4 * right))
    for m in marks:
        ax.axvline(m, ls=":", c="0.6", lw=1)
    ax.set(xlim=(0, right * 1.02), ylim=(0, 1.01), xlabel=xlabel, ylabel="sensitivity", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return figure_png(fig)
