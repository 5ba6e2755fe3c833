"""Adapters from dataset layouts to the manifest (DESIGN §3), registered by name.

Each adapter module exposes ``ingest(root, labels=None, skip_bad=False) -> Ingested``. Add one by
writing ``breastssl/data/datasets/<module>.py`` and naming it in ``ADAPTERS``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

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


def ingest(fmt: str, root: str | Path, labels: str | Path | None = None, skip_bad: bool = False) -> Ingested:
    """Run the adapter named ``fmt`` on ``root``; returns manifest rows, lesion rows and skipped files."""
    if fmt not in ADAPTERS:
        raise UserError(f"unknown --format {fmt!r}; choose one of {', '.join(ADAPTERS)}")
    module = importlib.import_module(f"{__name__}.{ADAPTERS[fmt]}")
    return module.ingest(Path(root), Path(labels) if labels else None, skip_bad)


__all__ = ["ADAPTERS", "Ingested", "ingest"]
