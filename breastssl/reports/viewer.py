"""``breastssl view PREDICTIONS_DIR``: one self-contained HTML study viewer of a predictions folder.

The page (``viewer_template.html``, plain HTML/CSS/JS, no server, no network, no external file) shows a study list
when the folder holds several exams and, per exam, its views side by side (right breast first, CC before MLO):
the image with the segmentation head's heatmap (where the model has one) at an adjustable opacity, the boxes of
``regions.csv``, and the study, breast and view scores. A DBT stack gets a slice slider (mouse wheel and arrow keys
too), its per-slice score curve with the current slice marked, and buttons that jump to its top slices. The page
runs a self-test of its controls when its URL ends in ``#selftest`` (used by the browser test).

Frame: every view is shown in the frame the model saw (cropped to the breast, resized), which is where the heatmap
and the model-frame boxes (``mx, my, mw, mh``) live; a flip the preprocessing made (``geometry.flip``) is undone for
display, on image, heatmap and boxes alike, so the image looks as acquired. The page says so.

Size budget: the images are embedded as data URIs (slices as greyscale JPEG, heatmaps as greyscale PNG coloured in
the browser), each view downsampled so that its longer side is at most ``max_size`` pixels. The whole page must fit
in ``budget_mb`` (default 30 MB, which a browser opens in a second or two): if it does not, JPEG quality drops from
85 to 70, then the size shrinks (to at least 64 px) until it fits. A 4-view DBT exam of 60 slices per stack at a
512-px model frame comes to about 10–15 MB at the defaults.
"""

from __future__ import annotations

import base64
import html
import importlib.resources
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .viewer_data import ExamData, Study, ViewData, load_view, read_study

DEFAULT_MAX_SIZE = 512
DEFAULT_BUDGET_MB = 30.0
QUALITIES = (85, 70)  # JPEG quality steps tried before the resolution is reduced
MIN_SIZE = 64  # below this a breast image is no use: stop shrinking and accept the size
PROB_FLOOR = 13  # prob × 255 below ~0.05 is invisible in the colour map: zeroed so PNGs compress to almost nothing
INFO_KEYS_MAX = 14


@dataclass
class ViewerResult:
    """What :func:`build_viewer` wrote."""

    path: Path
    n_bytes: int
    n_exams: int
    n_views: int
    max_size: int  # the longest image side actually used (≤ the requested one)
    quality: int
    within_budget: bool


def build_viewer(
    predictions: str | Path,
    out: str | Path | None = None,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    budget_mb: float = DEFAULT_BUDGET_MB,
    overwrite: bool = False,
) -> ViewerResult:
    """Write the viewer of the predictions folder ``predictions`` to ``out`` (default ``<predictions>/viewer.html``).

    The file appears complete or not at all; an existing ``out`` needs ``overwrite``. Bad input is a
    :class:`~breastssl.errors.UserError` (or its ``DataError``) naming the file.
    """
    from ..fsutil import atomic_file

    if max_size < 16:
        raise UserError(f"--max-size must be at least 16 pixels, got {max_size}")
    if not budget_mb > 0:
        raise UserError(f"the size budget must be positive, got {budget_mb} MB")
    study = read_study(predictions)
    target = Path(out) if out is not None else study.root / "viewer.html"
    if target.is_dir():
        raise UserError(f"output {target} is a folder; give the HTML file's name")
    if target.exists() and not overwrite:
        raise UserError(f"output {target} already exists (use --overwrite)")
    budget = int(budget_mb * 2**20)
    size, quality = max_size, QUALITIES[0]
    while True:
        views = [[encode_view(v, size, quality) for v in exam.views] for exam in study.exams]
        page = render(study, views, {"max_size": size, "quality": quality, "budget_mb": budget_mb})
        n_bytes = len(page.encode("utf-8"))
        used = max(max(v["w"], v["h"]) for exam in views for v in exam)
        if n_bytes <= budget or (used <= MIN_SIZE and quality == QUALITIES[-1]):
            break
        if quality != QUALITIES[-1]:
            quality = QUALITIES[QUALITIES.index(quality) + 1]
            continue
        # pixels scale with the square of the side; aim a little under the budget so one more pass suffices
        size = max(MIN_SIZE, int(min(size, used) * math.sqrt(budget / n_bytes) * 0.95))
    with atomic_file(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    n_views = sum(len(e) for e in views)
    return ViewerResult(target, n_bytes, len(study.exams), n_views, used, quality, n_bytes <= budget)


# ---- pixels -------------------------------------------------------------------------------------------


def _data_uri(arr: np.ndarray, size: tuple[int, int], fmt: str, quality: int = 85) -> str:
    """A (h, w) uint8 plane, box-downsampled to ``size`` (w, h), as a JPEG or PNG data URI."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(arr))
    if im.size != size:
        im = im.resize(size, Image.Resampling.BOX)  # an area average: no aliasing of fine texture when shrinking
    buf = io.BytesIO()
    if fmt == "jpeg":
        im.save(buf, format="JPEG", quality=quality, optimize=True)
    else:
        im.save(buf, format="PNG")
    return f"data:image/{fmt};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _num(x: float) -> float | None:
    """JSON has no NaN: a missing score becomes null."""
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def encode_view(view: ViewData, max_size: int, quality: int) -> dict[str, Any]:
    """One view as the page's JSON: its slices and heatmaps as data URIs at display size and orientation, the
    boxes as fractions of the image (so they do not depend on the display size), scores, curve and top slices."""
    image, prob, geometry = load_view(view.npz, view.n_slices)
    flip = geometry.get("flip", {})
    fh, fv = bool(flip.get("horizontal", False)), bool(flip.get("vertical", False))
    _, h, w = image.shape
    if fh:  # undo the preprocessing's flip so the view looks as acquired; heatmap and boxes follow below
        image, prob = image[:, :, ::-1], None if prob is None else prob[:, :, ::-1]
    if fv:
        image, prob = image[:, ::-1], None if prob is None else prob[:, ::-1]
    scale = min(1.0, max_size / max(h, w))
    dw, dh = max(1, round(w * scale)), max(1, round(h * scale))
    slices = [_data_uri(image[k], (dw, dh), "jpeg", quality) for k in range(image.shape[0])]
    heat = None
    if prob is not None:
        heat = []
        for k in range(prob.shape[0]):
            p = prob[k] & 0xFC  # 64 levels are plenty for a colour map and halve the PNG
            p[prob[k] < PROB_FLOOR] = 0
            heat.append(_data_uri(p, (dw, dh), "png") if p.any() else "")  # "": nothing to overlay on this slice
    boxes = []
    for b in view.boxes:
        x, y, bw, bh = b.x / w, b.y / h, b.w / w, b.h / h
        x = 1.0 - x - bw if fh else x
        y = 1.0 - y - bh if fv else y
        boxes.append([round(x, 5), round(y, 5), round(bw, 5), round(bh, 5), b.first, b.last, _num(b.score), b.region])
    shown = "mirrored back to the acquired orientation" if fh or fv else "not flipped by the model"
    return {
        "id": view.image_id, "lat": view.laterality, "view": view.view, "modality": view.modality,
        "n": int(image.shape[0]), "w": dw, "h": dh, "score": _num(view.score), "score_source": view.score_source,
        "path": view.path, "img": slices, "prob": heat,
        "curve": None if view.curve is None else [_num(c) for c in view.curve], "top": view.top, "boxes": boxes,
        "frame": f"model frame {w}×{h} px, shown at {dw}×{dh}, {shown}",
    }  # fmt: skip


# ---- the page -----------------------------------------------------------------------------------------


def _info_lines(info: dict[str, Any]) -> list[list[str]]:
    """The run description's short scalar entries (model, strategy, threshold, ...) for the page's footer."""
    lines = []
    for key, value in info.items():
        short = isinstance(value, (str, int, float, bool)) or (
            isinstance(value, list) and len(value) <= 4 and all(isinstance(v, (str, int, float)) for v in value)
        )
        if short and len(str(value)) <= 200:
            lines.append([str(key), str(value)])
    return lines[:INFO_KEYS_MAX]


def _exam_json(exam: ExamData, views: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": exam.exam_id,
        "score": _num(exam.score),
        "score_source": exam.score_source,
        "breasts": [[lat, _num(s), src] for lat, (s, src) in exam.breasts.items()],
        "identity": exam.identity,
        "views": views,
    }


def render(study: Study, views: list[list[dict[str, Any]]], encoding: dict[str, Any]) -> str:
    """The whole page: the template with the study's JSON embedded in its data block."""
    modalities = sorted({v.modality for e in study.exams for v in e.views})
    title = f"breastssl viewer — {study.root.name or study.root}"
    payload = {
        "title": title,
        "family": str(study.info.get("family", "")),
        "modalities": modalities,
        "info": _info_lines(study.info),
        "notes": study.notes,
        "encoding": encoding,
        "exams": [_exam_json(e, v) for e, v in zip(study.exams, views, strict=True)],
    }
    # "<" escaped so that no string in the data (a path, an id) can close the <script> block it sits in
    data = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).replace("<", "\\u003c")
    template = importlib.resources.files("breastssl.reports").joinpath("viewer_template.html").read_text("utf-8")
    return template.replace("__VIEWER_TITLE__", html.escape(title)).replace("__VIEWER_DATA__", data)
