"""Checks that the reader's numbers make sense: rescale, windows, spacing, and the image the LUTs produce.

A damaged or absurd attribute must never turn into silent garbage (issue 17). The rules:

- ``RescaleSlope`` zero or non-finite, ``RescaleIntercept`` non-finite: :class:`DataError` (every pixel
  would be 0 or NaN).
- A VOI window with a non-finite centre or width, a width ≤ 0, or (LINEAR) a width < 1 is ignored with a
  warning naming the file; the image is then windowed by the next valid window, or scaled by its own range
  as when the file has no window.
- Spacing and slice thickness that are not positive finite numbers become unknown (``None``) with a warning
  naming the file: nothing downstream depends on them.
- An image that is non-finite, or constant while its stored pixels vary, after the Modality and VOI LUTs:
  :class:`DataError` naming the LUT values. A constant stored image (a blank frame) is legal and left alone.
- Pixels of a shape other than (H, W), (D, H, W), (H, W, 3) or (F, H, W, 3): :class:`DataError`.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError


def warn_rejected(path: Path, rejected: list[tuple[str, str]]) -> None:
    """One warning naming the file and every invalid spacing/thickness value that was ignored."""
    unique = list(dict.fromkeys(rejected))  # per-frame groups repeat the same value; say it once
    if unique:
        values = ", ".join(f"{name}={value}" for name, value in unique)
        warnings.warn(
            f"{path}: {values}: not positive finite number(s); ignored, so the value is unknown (None) unless "
            "another attribute gives it",
            UserWarning,
            stacklevel=3,
        )


def check_rescale(ds: Any, meta: dict[str, Any], frames: list[dict[str, Any]], path: Path) -> None:
    """:class:`DataError` if a grey image's RescaleSlope is zero or non-finite, or its RescaleIntercept non-finite.

    Colour images and those with a Modality LUT Sequence do not use the rescale, so it is not checked there.
    """
    if meta["samples_per_pixel"] != 1 or meta["photometric"] == "PALETTE COLOR" or "ModalityLUTSequence" in ds:
        return
    for k, f in enumerate(frames):
        slope, intercept = f["slope"], f["intercept"]
        where = f" (frame {k + 1})" if len(frames) > 1 else ""
        if not math.isfinite(slope) or slope == 0:
            what = "zero" if slope == 0 else "not finite"
            raise DataError(
                f"{path}: RescaleSlope {slope:g}{where} is {what}: the Modality LUT would make every pixel "
                f"{'0' if slope == 0 else 'non-finite'}"
            )
        if not math.isfinite(intercept):
            raise DataError(f"{path}: RescaleIntercept {intercept:g}{where} is not finite")


def _window_ok(center: float, width: float, function: str) -> bool:
    if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
        return False
    # LINEAR needs width ≥ 1 (PS3.3 C.11.2.1.2); unknown functions are left to the windowing, which names them
    return width >= 1 or function.upper().replace(" ", "_") != "LINEAR"


def drop_bad_windows(frames: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    """Frames with unusable windows removed from their ``windows`` lists (a warning names the file and them).

    What remains decides the windowing as before: every frame with a window → per-frame windows; otherwise
    the image's own range (or, for ultrasound, the stored bit range), as for a file without a window.
    """
    bad: dict[str, None] = {}  # as text: NaN never equals itself, so tuples would not deduplicate
    out = []
    for f in frames:
        keep = [(c, w) for c, w in f["windows"] if _window_ok(c, w, f["voi_function"])]
        bad.update(dict.fromkeys(f"center {c:g} width {w:g}" for c, w in f["windows"] if (c, w) not in keep))
        out.append({**f, "windows": keep})
    if bad:
        listed = ", ".join(bad)
        after = "the next valid window is used" if all(f["windows"] for f in out) else "scaled as without a window"
        warnings.warn(
            f"{path}: ignoring unusable VOI window(s) {listed} (a window needs a finite center and a positive "
            f"width, ≥ 1 for LINEAR); {after}",
            UserWarning,
            stacklevel=3,
        )
    return out


def lut_summary(ds: Any, frames: list[dict[str, Any]], meta: dict[str, Any] | None) -> str:
    """The Modality (and, given ``meta``, VOI) LUT values in use, for messages."""
    if "ModalityLUTSequence" in ds:
        parts = ["Modality LUT Sequence"]
    else:
        slopes = sorted({f["slope"] for f in frames})
        intercepts = sorted({f["intercept"] for f in frames})
        parts = [
            f"RescaleSlope {'/'.join(f'{s:g}' for s in slopes[:3])}",
            f"RescaleIntercept {'/'.join(f'{i:g}' for i in intercepts[:3])}",
        ]
    if meta is not None:
        window = meta.get("window")
        source = meta.get("window_source", "?")
        parts.append(f"window center {window[0]:g} width {window[1]:g}" if window else f"window from {source}")
    return ", ".join(parts)


def check_lut_result(
    stored: np.ndarray, values: np.ndarray, path: Path, stage: str, summary: str, stored_varies: bool | None = None
) -> bool:
    """:class:`DataError` if ``values`` (after ``stage``) hold a non-finite value, or are constant while
    ``stored`` varies. Returns whether ``stored`` varies, so a second call can skip that reduction.

    Only min and max are taken (NaN propagates through both, ±inf shows in one): no temporary array the size
    of a DBT stack.
    """
    if not values.size:
        return False
    lo, hi = float(np.min(values)), float(np.max(values))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise DataError(f"{path}: image is non-finite after the {stage} ({summary})")
    if stored_varies is None:
        stored_varies = bool(np.min(stored) != np.max(stored))
    if stored_varies and lo == hi:
        raise DataError(f"{path}: image is constant after the {stage} ({summary}) although its stored pixels vary")
    return stored_varies


def check_shape(pixels: np.ndarray, path: Path) -> None:
    """:class:`DataError` unless ``pixels`` is (H, W), (D, H, W), (H, W, 3) or (F, H, W, 3) with no empty axis."""
    shape = pixels.shape
    if not (2 <= len(shape) <= 4) or min(shape) < 1 or (len(shape) == 4 and shape[-1] != 3):
        raise DataError(
            f"{path}: decoded pixels have shape {shape}, not (H, W), (D, H, W), (H, W, 3) or (F, H, W, 3); "
            "the header's PhotometricInterpretation, SamplesPerPixel or frame count is inconsistent"
        )
