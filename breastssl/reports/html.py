"""A small self-contained HTML report: plain tables, inline CSS, inline PNGs, no scripts."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

CSS = """
body{font-family:system-ui,Segoe UI,Helvetica,Arial,sans-serif;margin:24px 32px;color:#222;max-width:1100px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;font-size:13px;margin:2px 0}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ccc;padding:4px 9px;text-align:right} th{background:#f2f4f7}
td:first-child,th:first-child{text-align:left}
.figs img{margin:6px 16px 6px 0;border:1px solid #eee}
.note{color:#666;font-size:12px}
"""


def fmt(value: object, digits: int = 3) -> str:
    """Numbers to fixed digits (NaN as an en dash); anything else as escaped text."""
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"
    return html.escape(str(value))


def ci(value: float, low: float, high: float, digits: int = 3) -> str:
    """'0.812 [0.760, 0.861]'."""
    if any(isinstance(v, float) and math.isnan(v) for v in (value, low, high)):
        return fmt(value, digits)
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def effect(r: Mapping[str, Any] | None) -> str:
    """A paired effect (delta, ci_low, ci_high, seeds_positive, seeds) as '+0.012 [-0.003, +0.027], 3/5 seeds > 0'."""
    if r is None:
        return "n/a"
    ci_text = f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
    return f"{r['delta']:+.3f} {ci_text}, {int(r['seeds_positive'])}/{int(r['seeds'])} seeds > 0"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """An HTML table; cells are formatted with :func:`fmt` unless already strings."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if isinstance(c, str) else fmt(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure(png_b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png_b64}" width="460">'


def page(title: str, meta_lines: Sequence[str], sections: Sequence[tuple[str, str]]) -> str:
    """A whole document: ``sections`` are (heading, inner HTML) pairs."""
    meta = "".join(f'<p class="meta">{html.escape(m)}</p>' for m in meta_lines)
    body = "".join(f"<h2>{html.escape(h)}</h2>{inner}" for h, inner in sections)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>{meta}{body}</body></html>\n"
    )
