"""Reports as labeller input: DESCRIPTION / IMPRESSION sections, one example per exam × breast side."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..errors import DataError

SIDES = ("L", "R")
_SECTION = re.compile(r"^\s*(DESCRIPTION|FINDINGS|IMPRESSION|CONCLUSION)\s*:\s*$", re.IGNORECASE | re.MULTILINE)
_DESCRIPTION = {"DESCRIPTION", "FINDINGS"}


def split_sections(text: str) -> tuple[str, str]:
    """(description, impression) of a report; a report without headers is all description."""
    marks = list(_SECTION.finditer(text))
    if not marks:
        return " ".join(text.split()), ""
    parts: dict[str, list[str]] = {"description": [], "impression": []}
    for k, m in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(text)
        body = " ".join(text[m.end() : end].split())
        parts["description" if m.group(1).upper() in _DESCRIPTION else "impression"].append(body)
    return " ".join(parts["description"]), " ".join(parts["impression"])


def report_examples(manifest: pd.DataFrame, root: str | Path, label_column: str | None = "mass_label") -> pd.DataFrame:
    """One row per exam × side: ``exam_id, laterality, description, impression, annotation, split, label``.

    manifest: needs ``exam_id, laterality, report_path`` (relative to ``root``); ``label`` (0/1, or NA)
    comes from ``label_column`` when present (positive/negative/1/0; a side is positive if any of its
    images is). Raises :class:`DataError` naming the exam for a missing report file.
    """
    missing = [c for c in ("exam_id", "laterality", "report_path") if c not in manifest.columns]
    if missing:
        raise DataError(f"manifest lacks column(s) {missing} needed to label reports")
    root = Path(root)
    rows = []
    for (exam_id, side), g in manifest.groupby(["exam_id", "laterality"], sort=True):
        rel = str(g["report_path"].iloc[0])
        path = Path(rel) if Path(rel).is_absolute() else root / rel
        if not path.is_file():
            raise DataError(f"exam {exam_id}: report file {path} not found")
        desc, imp = split_sections(path.read_text(encoding="utf-8"))
        label = pd.NA
        if label_column and label_column in g.columns:
            values = g[label_column].astype(str).str.lower()
            if values.isin(["positive", "negative", "1", "0", "1.0", "0.0", "true", "false"]).all():
                label = int(values.isin(["positive", "1", "1.0", "true"]).any())
        rows.append(
            {
                "exam_id": str(exam_id),
                "laterality": str(side),
                "description": desc,
                "impression": imp,
                "annotation": str(g["annotation"].iloc[0]) if "annotation" in g.columns else "",
                "split": str(g["split"].iloc[0]) if "split" in g.columns else "",
                "label": label,
            }
        )
    return pd.DataFrame(rows)
