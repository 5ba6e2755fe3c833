"""Image size declared inside compressed pixel data, checked against the header's Rows and Columns.

pydicom decodes a frame to whatever size its codestream declares and then reshapes the result to the
header's (Rows, Columns): when the two disagree but hold the same number of pixels (Rows and Columns
swapped, say) the image comes back scrambled without a word. JPEG and JPEG-LS (the SOF segment) and
JPEG 2000 / HTJ2K (the SIZ segment) carry the size, so each frame's header is read here, before decoding,
and compared. RLE carries no size: an RLE segment longer than Rows × Columns is caught from pydicom's
warning in :func:`rle_overrun` instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DataError

JPEG_SYNTAXES = {
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
}  # fmt: skip
J2K_SYNTAXES = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
                "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"}  # fmt: skip
RLE_SYNTAX = "1.2.840.10008.1.2.5"
# start-of-frame markers: SOF0-SOF15 less DHT (C4), JPG (C8) and DAC (CC); SOF55 of JPEG-LS
SOF_MARKERS = frozenset(set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}) | {0xF7}
ITEM, SEQ_END = b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0"  # (FFFE,E000) and (FFFE,E0DD), little endian
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  "
HEAD_BYTES = 65536  # a codestream's main header (tables, ICC profiles included) fits in the first 64 KiB


def jpeg_size(data: bytes) -> tuple[int, int, int] | None:
    """(rows, columns, components) from a JPEG / JPEG-LS SOF segment, or None if not found or not parseable."""
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length field
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image before any SOF
            return None
        if marker in SOF_MARKERS:
            if pos + 10 > len(data):
                return None
            rows = int.from_bytes(data[pos + 5 : pos + 7], "big")
            cols = int.from_bytes(data[pos + 7 : pos + 9], "big")
            # a height of 0 is legal: a DNL segment after the first scan gives it; then the size is unknown here
            return (rows, cols, data[pos + 9]) if rows and cols else None
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def j2k_size(data: bytes) -> tuple[int, int, int] | None:
    """(rows, columns, components) from a JPEG 2000 SIZ segment (a JP2 wrapper is skipped), or None."""
    start = 0
    if data.startswith(JP2_SIGNATURE):  # non-conformant but seen: a JP2 file instead of a bare codestream
        while start + 8 <= len(data):
            length, kind = int.from_bytes(data[start : start + 4], "big"), data[start + 4 : start + 8]
            if kind == b"jp2c":
                start += 8
                break
            if length < 8:  # 0 (to the end) or 1 (64-bit length) never precede jp2c in practice
                return None
            start += length
    siz = data[start : start + 42]
    if len(siz) < 42 or siz[:4] != b"\xff\x4f\xff\x51":  # SOC, then SIZ (required second marker)
        return None
    xsiz, ysiz, x_off, y_off = (int.from_bytes(siz[k : k + 4], "big") for k in (8, 12, 16, 20))
    rows, cols, components = ysiz - y_off, xsiz - x_off, int.from_bytes(siz[40:42], "big")
    if not (0 < rows <= 65535 and 0 < cols <= 65535 and 0 < components <= 16384):
        return None  # a damaged SIZ segment (no DICOM image is this large): the decoder reports the damage
    return rows, cols, components


def _frame_heads(data: memoryview) -> Iterator[bytes]:
    """The first bytes of every fragment of encapsulated pixel data (the Basic Offset Table skipped).

    Items are walked by their lengths, without copying the fragments; damaged encapsulation ends the walk
    quietly, as the decoder reports it with a better message.
    """
    pos, first = 0, True
    while pos + 8 <= len(data):
        tag, length = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if tag != ITEM:  # SEQ_END or damage
            return
        if not first:
            yield bytes(data[pos + 8 : pos + 8 + min(length, HEAD_BYTES)])
        first = False
        pos += 8 + length


def check_codestream_size(ds: Any, path: Path, meta: dict[str, Any], ts: str) -> None:
    """:class:`DataError` naming both sizes if a frame's codestream disagrees with Rows/Columns/SamplesPerPixel.

    Only fragments that start a codestream are parsed (continuation fragments of a frame do not start with a
    JPEG SOI or a J2K SOC marker); a frame whose header cannot be parsed is left to the decoder.
    """
    if ts in JPEG_SYNTAXES:
        size_of, kind = jpeg_size, "JPEG"
    elif ts in J2K_SYNTAXES:
        size_of, kind = j2k_size, "JPEG 2000"
    else:
        return
    want = (meta["rows"], meta["columns"], meta["samples_per_pixel"])
    frame = 0
    for head in _frame_heads(memoryview(ds.PixelData)):  # a view: the fragments are not copied
        size = size_of(head)
        if size is None:
            continue
        frame += 1
        if size != want:
            raise DataError(
                f"{path}: header and compressed pixel data disagree: Rows×Columns={want[0]}×{want[1]}, "
                f"SamplesPerPixel={want[2]} in the header but {size[0]}×{size[1]} with {size[2]} component(s) in "
                f"the {kind} codestream of frame {frame}; decoding would give an image of the wrong shape"
            )


RLE_PADDING = re.compile(r"non-conformant padding - (\d+) vs\. (\d+) bytes")


def rle_overrun(messages: list[str], path: Path, meta: dict[str, Any]) -> None:
    """:class:`DataError` if pydicom's RLE decoder warned that a segment holds a row or more beyond Rows × Columns.

    pydicom truncates such a segment with only a warning; a byte or two of padding is tolerated (some
    encoders pad segments), a whole extra row means the header's Rows/Columns are wrong.
    """
    for message in messages:
        found = RLE_PADDING.search(message)
        if found and int(found.group(1)) - int(found.group(2)) >= max(1, meta["columns"]):
            raise DataError(
                f"{path}: header and RLE pixel data disagree: a segment decodes to {found.group(1)} bytes but "
                f"Rows×Columns={meta['rows']}×{meta['columns']} in the header needs {found.group(2)}"
            )
