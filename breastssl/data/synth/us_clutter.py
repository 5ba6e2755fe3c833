"""Screen clutter of synthetic breast ultrasound: burned-in text, calipers, bars, depth scale, body marker.

Everything is drawn onto an (H, W, 3) uint8 canvas with a tiny built-in 3×5 pixel font, so the result
does not depend on the fonts of the machine. Colours come from a :class:`Palette`: a monochrome site
uses grey levels only, the RGB site draws annotations and bars in colour. Nothing drawn here depends
on the nodule's class: the caliper rate is the same for benign and malignant nodules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .us import USSite

# 3×5 glyphs, rows top to bottom, "1" = ink.
_GLYPHS: dict[str, str] = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001001010010",
    "8": "111101111101111",
    "9": "111101111001111",
    "A": "010101111101101",
    "B": "110101110101110",
    "C": "011100100100011",
    "D": "110101101101110",
    "E": "111100110100111",
    "F": "111100110100100",
    "G": "011100101101011",
    "H": "101101111101101",
    "I": "111010010010111",
    "J": "001001001101010",
    "K": "101101110101101",
    "L": "100100100100111",
    "M": "101111111101101",
    "N": "110101101101101",
    "O": "010101101101010",
    "P": "110101110100100",
    "Q": "010101101110011",
    "R": "110101110101101",
    "S": "011100010001110",
    "T": "111010010010010",
    "U": "101101101101111",
    "V": "101101101101010",
    "W": "101101111111101",
    "X": "101101010101101",
    "Y": "101101010010010",
    "Z": "111001010100111",
    "-": "000000111000000",
    ".": "000000000000010",
    ":": "000010000010000",
    "/": "001001010100100",
    "+": "000010111010000",
    "%": "101001010100101",
    "_": "000000000000111",
    " ": "000000000000000",
}
GLYPH_H, GLYPH_W = 5, 3
_FONT = {k: np.array([int(c) for c in v], dtype=bool).reshape(GLYPH_H, GLYPH_W) for k, v in _GLYPHS.items()}

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class Palette:
    """Colours of a site's overlays."""

    text: Colour
    accent: Colour  # calipers and measurements
    marker: Colour  # body marker and focus marker
    colour_bar: bool  # a colour scale bar beside the grey bar

    @staticmethod
    def for_site(rgb: bool) -> Palette:
        if rgb:
            return Palette(text=(225, 225, 225), accent=(255, 215, 0), marker=(0, 200, 255), colour_bar=True)
        return Palette(text=(215, 215, 215), accent=(250, 250, 250), marker=(175, 175, 175), colour_bar=False)


def text_width(text: str, scale: int = 1) -> int:
    """Width in pixels of ``text`` drawn by :func:`draw_text`."""
    return max(0, len(text) * (GLYPH_W + 1) - 1) * scale


def draw_text(canvas: np.ndarray, text: str, row: int, col: int, colour: Colour, scale: int = 1) -> None:
    """Draw upper-cased ``text`` with its top-left corner at (row, col); clipped at the canvas edges."""
    h, w = canvas.shape[:2]
    for i, ch in enumerate(text.upper()):
        glyph = _FONT.get(ch, _FONT["_"])
        if scale > 1:
            glyph = np.kron(glyph, np.ones((scale, scale), dtype=bool))
        r0, c0 = row, col + i * (GLYPH_W + 1) * scale
        gh, gw = glyph.shape
        r1, c1 = min(h, r0 + gh), min(w, c0 + gw)
        if r1 <= max(r0, 0) or c1 <= max(c0, 0):
            continue
        sub = glyph[max(0, -r0) : r1 - r0, max(0, -c0) : c1 - c0]
        canvas[max(r0, 0) : r1, max(c0, 0) : c1][sub] = colour


def draw_marker(canvas: np.ndarray, row: int, col: int, colour: Colour, kind: str = "+", size: int = 2) -> None:
    """A caliper mark: '+' or 'x', ``size`` pixels from the centre to each tip."""
    h, w = canvas.shape[:2]
    for t in range(-size, size + 1):
        pts = [(row, col + t), (row + t, col)] if kind == "+" else [(row + t, col + t), (row + t, col - t)]
        for r, c in pts:
            if 0 <= r < h and 0 <= c < w:
                canvas[r, c] = colour


def draw_dotted(canvas: np.ndarray, p0: tuple[int, int], p1: tuple[int, int], colour: Colour, step: int = 3) -> None:
    """A dotted line between two points (the line that joins a caliper pair)."""
    n = max(abs(p1[0] - p0[0]), abs(p1[1] - p0[1]))
    h, w = canvas.shape[:2]
    for t in range(step, n - step + 1, step):
        r = int(round(p0[0] + (p1[0] - p0[0]) * t / n))
        c = int(round(p0[1] + (p1[1] - p0[1]) * t / n))
        if 0 <= r < h and 0 <= c < w:
            canvas[r, c] = colour


def draw_grey_bar(canvas: np.ndarray, top: int, left: int, height: int, width: int = 3) -> None:
    """The grey-scale bar: black at the bottom to white at the top."""
    ramp = np.linspace(255, 0, max(height, 2)).astype(np.uint8)
    canvas[top : top + height, left : left + width] = ramp[: canvas[top : top + height].shape[0], None, None]


def draw_colour_bar(canvas: np.ndarray, top: int, left: int, height: int, width: int = 3) -> None:
    """A colour scale bar (red over black over blue, as a velocity scale looks)."""
    t = np.linspace(1.0, -1.0, max(height, 2))
    rgb = np.stack([np.clip(t, 0, 1) * 255, np.clip(np.abs(t) - 0.6, 0, 1) * 400, np.clip(-t, 0, 1) * 255], axis=-1)
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    canvas[top : top + height, left : left + width] = rgb[: canvas[top : top + height].shape[0], None, :]


def draw_depth_scale(
    canvas: np.ndarray, field: tuple[int, int, int, int], spacing_mm: float, side: str, colour: Colour
) -> None:
    """Ticks every 5 mm beside the image field (longer every 10 mm) and the depth in cm at each cm."""
    top, left, fh, fw = field
    col = left + fw + 1 if side == "right" else left - 2
    step = 5.0 / spacing_mm
    for k in range(int(fh / step) + 1):
        r = int(round(top + k * step))
        if r >= top + fh:
            break
        major = k % 2 == 0
        length = 3 if major else 2
        cols = range(col, col + length) if side == "right" else range(col - length + 1, col + 1)
        for c in cols:
            if 0 <= c < canvas.shape[1]:
                canvas[r, c] = colour
        if major and k > 0:
            label = str(k // 2)
            c0 = col + 4 if side == "right" else col - 3 - text_width(label)
            draw_text(canvas, label, r - 2, c0, colour)


def draw_focus_marker(canvas: np.ndarray, row: int, col: int, colour: Colour, pointing: str) -> None:
    """A small triangle at the transmit focus depth."""
    d = 1 if pointing == "right" else -1
    for k in range(3):
        for r in range(row - (2 - k), row + (2 - k) + 1):
            c = col + d * k
            if 0 <= r < canvas.shape[0] and 0 <= c < canvas.shape[1]:
                canvas[r, c] = colour


def draw_body_marker(canvas: np.ndarray, row: int, col: int, clock: int, colour: Colour, radius: int = 5) -> None:
    """A breast pictogram (circle with a nipple dot) and the transducer bar at the clock position."""
    yy, xx = np.mgrid[-radius - 3 : radius + 4, -radius - 3 : radius + 4]
    ring = np.abs(np.hypot(yy, xx) - radius) < 0.55
    nipple = np.hypot(yy, xx) < 0.8
    ang = np.pi / 2 - clock * np.pi / 6  # 12 o'clock up
    cy, cx = -np.sin(ang) * radius * 0.55, np.cos(ang) * radius * 0.55
    u = (xx - cx) * np.cos(ang) + (yy - cy) * -np.sin(ang)  # along the radius
    v = (xx - cx) * np.sin(ang) + (yy - cy) * np.cos(ang)  # across: the transducer lies across the radius
    probe = (np.abs(u) < 0.8) & (np.abs(v) < 2.6)
    ink = ring | nipple | probe
    h, w = canvas.shape[:2]
    rr, cc = np.nonzero(ink)
    rr, cc = rr + row - radius - 3, cc + col - radius - 3
    ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
    canvas[rr[ok], cc[ok]] = colour


def draw_calipers(
    canvas: np.ndarray,
    mask: np.ndarray | None,
    field: tuple[int, int, int, int],
    rng: np.random.Generator,
    palette: Palette,
    spacing_mm: float,
) -> str:
    """Caliper pairs on the nodule's extent ('+' across, 'x' along the depth); returns the measurement text.

    ``mask`` is in canvas coordinates; without one (an image without a nodule) the calipers measure a
    random stretch of tissue, as when a sonographer measures a duct or a layer.
    """
    top, left, fh, fw = field
    if mask is not None and mask.any():
        rows, cols = np.nonzero(mask)
        mid_r, mid_c = int(np.median(rows)), int(np.median(cols))
        on_row, on_col = cols[rows == mid_r], rows[cols == mid_c]
        pairs = [
            ((mid_r, int(on_row.min())), (mid_r, int(on_row.max()))),
            ((int(on_col.min()), mid_c), (int(on_col.max()), mid_c)),
        ]
    else:
        r = int(top + rng.uniform(0.3, 0.7) * fh)
        c0 = int(left + rng.uniform(0.2, 0.5) * fw)
        pairs = [((r, c0), (r, c0 + int(rng.uniform(0.1, 0.3) * fw)))]
    lines = []
    for k, (p0, p1) in enumerate(pairs):
        jit = rng.integers(-1, 2, size=4)
        p0 = (int(p0[0] + jit[0]), int(p0[1] + jit[1]))
        p1 = (int(p1[0] + jit[2]), int(p1[1] + jit[3]))
        kind = "+" if k == 0 else "x"
        draw_marker(canvas, *p0, palette.accent, kind)
        draw_marker(canvas, *p1, palette.accent, kind)
        if rng.random() < 0.5:
            draw_dotted(canvas, p0, p1, palette.accent)
        dist_cm = float(np.hypot(p1[0] - p0[0], p1[1] - p0[1])) * spacing_mm / 10.0
        lines.append(f"D{k + 1} {dist_cm:.2f}CM")
    return " ".join(lines)


def screen_text(layout: str, info: dict, frequency_mhz: float, dynamic_range_db: float) -> list[str]:
    """The burned-in header lines: pseudonymous image id, laterality and clock position, scanner settings."""
    side = f"{info['laterality']} {info['clock']}:00"
    gain, depth_cm = info["gain_db"], info["depth_mm"] / 10
    if layout == "left":
        return [
            f"{info['image_id']} BR {side}",
            f"{frequency_mhz:.0f}MHZ G{gain:+.0f} DR{dynamic_range_db:.0f} D{depth_cm:.1f}CM",
        ]
    return [f"ID:{info['image_id']}", f"{side} L{frequency_mhz:.1f} GN{50 + gain:.0f} {depth_cm:.1f}CM"]


def add_clutter(
    canvas: np.ndarray,
    field: tuple[int, int, int, int],
    site: USSite,
    info: dict,
    mask: np.ndarray | None,
    rng: np.random.Generator,
    probs: dict[str, float],
) -> dict[str, bool]:
    """Draw a site's overlays in place; ``probs`` gives the chance of each element. Returns what was drawn.

    ``info``: image_id, laterality, clock, gain_db, depth_mm, spacing_mm, focus_row. Layout "left": text
    top-left, grey bar left, depth scale right, body marker bottom-left. Layout "right": text top-right,
    depth scale left, grey (and, on an RGB site, colour) bars right, body marker bottom-right.
    """
    top, left, fh, fw = field
    h, w = canvas.shape[:2]
    palette = Palette.for_site(site.rgb)
    spacing_mm = info["spacing_mm"]
    flags = {k: bool(rng.random() < probs.get(k, 0.0)) for k in ("text", "bar", "depth_scale", "body_marker")}
    flags["calipers"] = bool(rng.random() < probs.get("calipers" if mask is not None else "calipers_normal", 0.0))
    right = site.layout == "right"
    if flags["text"]:
        for i, line in enumerate(screen_text(site.layout, info, site.frequency_mhz, site.dynamic_range_db)):
            row = 1 + i * (GLYPH_H + 1)
            if row + GLYPH_H > top:
                break
            col = w - 2 - text_width(line) if right else 2
            draw_text(canvas, line, row, col, palette.text)
    if flags["bar"]:
        bar_h = max(8, fh // 3)
        col = min(left + fw + 5, w - 4) if right else max(0, left - 6)
        draw_grey_bar(canvas, top + 2, col, bar_h)
        if palette.colour_bar:
            draw_colour_bar(canvas, top + bar_h + 6, col, bar_h)
    if flags["depth_scale"]:
        draw_depth_scale(canvas, field, spacing_mm, "left" if right else "right", palette.text)
        col = left - 5 if right else left + fw + 4
        draw_focus_marker(canvas, info["focus_row"], col, palette.marker, "right" if right else "left")
    if flags["body_marker"]:
        col = left + fw - 10 if right else left + 10
        draw_body_marker(canvas, top + fh - 10, col, info["clock"], palette.marker)
    if flags["calipers"]:
        text = draw_calipers(canvas, mask, field, rng, palette, spacing_mm)
        row = top + fh + 1 if top + fh + 1 + GLYPH_H <= h else top + fh - GLYPH_H - 1
        col = w - 2 - text_width(text) if right else 2
        draw_text(canvas, text, row, col, palette.accent)
    return flags
