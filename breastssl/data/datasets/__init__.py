"""Adapters from dataset layouts to the manifest (DESIGN §3), registered by name.

Each adapter module exposes ``ingest(root, labels=None, skip_bad=False, **options) -> Ingested``. Add one by
writing ``breastssl/data/datasets/<module>.py`` and naming it in ``ADAPTERS``; the options an adapter takes
beyond those three (``folder``: ``key``, ``verify_pixels``) are listed in ``OPTIONS``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ...errors import UserError
from .common import Ingested

ADAPTERS: dict[str, str] = {
    "folder": "folder",
    "bcs-dbt": "bcs_dbt",
    "cbis-ddsm": "cbis_ddsm",
    "vindr-mammo": "vindr_mammo",
    "busi": "busi",
    "inbreast": "inbreast",
}
OPTIONS: dict[str, set[str]] = {"folder": {"key", "verify_pixels"}}


def ingest(
    fmt: str, root: str | Path, labels: str | Path | None = None, skip_bad: bool = False, **options: Any
) -> Ingested:
    """Run the adapter named ``fmt`` on ``root``; returns manifest rows, lesion rows and skipped files.

    ``options`` go to the adapter; one it does not take is a :class:`UserError` (never silently ignored).
    """
    if fmt not in ADAPTERS:
        raise UserError(f"unknown --format {fmt!r}; choose one of {', '.join(ADAPTERS)}")
    unknown = sorted(set(options) - OPTIONS.get(fmt, set()))
    if unknown:
        raise UserError(f"--format {fmt} takes no option {', '.join(unknown)} (options by format: {OPTIONS})")
    module = importlib.import_module(f"{__name__}.{ADAPTERS[fmt]}")
    return module.ingest(Path(root), Path(labels) if labels else None, skip_bad, **options)


__all__ = ["ADAPTERS", "Ingested", "ingest"]
