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


_SENTENCE_END = re.compile(r"(?<=[.;!?])\s+")
_SIDE_WORD = {"L": re.compile(r"\bleft\b", re.IGNORECASE), "R": re.compile(r"\bright\b", re.IGNORECASE)}


def side_sentences(text: str, side: str) -> str:
    """The sentences of ``text`` that can speak about breast ``side`` (L/R): every sentence except those that
    name only the other side. "A mass in the right breast." is dropped for L; "Both breasts are ...", "Left
    breast: negative." and sentences naming both sides are kept.
    """
    other = _SIDE_WORD["R" if side == "L" else "L"]
    own = _SIDE_WORD[side]
    kept = [t for t in _SENTENCE_END.split(text) if not (other.search(t) and not own.search(t))]
    return " ".join(kept)


def report_examples(
    manifest: pd.DataFrame, root: str | Path, label_column: str | None = "mass_label", focus_side: bool = True
) -> pd.DataFrame:
    """One row per exam × side: ``exam_id, laterality, description, impression, annotation, split, label``.

    manifest: needs ``exam_id, laterality, report_path`` (relative to ``root``); ``label`` (0/1, or NA)
    comes from ``label_column`` when present (positive/negative/1/0; a side is positive if any of its
    images is). With ``focus_side`` each side's text keeps only the sentences that can speak about that side
    (:func:`side_sentences`): a per-side model then need not learn laterality from a few hundred reports (the
    paper's per-side RoBERTa saw 3,753). Raises :class:`DataError` naming the exam for a missing report file.
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
        if focus_side:
            desc, imp = side_sentences(desc, str(side)), side_sentences(imp, str(side))
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
