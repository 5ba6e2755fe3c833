"""Evaluate saved prediction files against a manifest: ``metrics.json`` and ``report.html`` (``breastssl evaluate``)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path


def _json_safe(obj: object) -> object:
    """NaN/inf become null so metrics.json is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def run_evaluate(
    predictions: list[Path],
    manifest: Path,
    out: Path,
    lesions: Path | None = None,
    overwrite: bool = False,
    **options: object,
) -> dict:
    """Evaluate prediction files and write ``metrics.json`` and ``report.html`` into ``out`` atomically."""
    from ..data.schema import load_dataset
    from ..fsutil import atomic_dir
    from .evaluation import EvalOptions, evaluate_predictions
    from .evaluation_html import render

    man, les = load_dataset(manifest, lesions, check_files=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        res = evaluate_predictions(list(predictions), man, les, EvalOptions(**options))
    res["warnings"] = sorted({str(w.message) for w in caught})
    html = render(res)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(_json_safe(res), indent=2) + "\n")
        (tmp / "report.html").write_text(html, encoding="utf-8")
    return res
