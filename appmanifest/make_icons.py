"""Draw the app's two icons: a white bridge over the river, the Cam's, on the accent colour.

    .venv/bin/python appmanifest/make_icons.py

writes color.png (192x192, opaque) and outline.png (32x32, white on transparent) beside this
script. The standard library's zlib is enough to write a PNG, so the project needs no imaging
library; the output is committed, so run this only to change the icons.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ACCENT = (0x00, 0x59, 0x4F)  # the manifest's accentColor, #00594F
SAMPLES = 4  # per pixel side: 16 samples a pixel smooth the edges


def in_mark(x: float, y: float) -> bool:
    """The bridge, in a square from -1 to 1 (y down): a parapet on a stone arch, water below."""
    parapet = abs(x) <= 0.95 and -0.64 <= y <= -0.46
    arch = abs(x) <= 0.8 and -0.46 <= y <= 0.3 and math.hypot(x, y - 0.3) >= 0.5
    water = abs(x) <= 0.85 and abs(y - (0.6 + 0.08 * math.sin(x * 3 * math.pi))) <= 0.09
    return parapet or arch or water


def coverage(column: int, row: int, size: int, margin: float) -> float:
    """How much of a pixel the mark covers, 0 to 1; `margin` is the padding, in pixels."""
    hits = 0
    for i in range(SAMPLES):
        for j in range(SAMPLES):
            x = (column + (i + 0.5) / SAMPLES - margin) / (size - 2 * margin) * 2 - 1
            y = (row + (j + 0.5) / SAMPLES - margin) / (size - 2 * margin) * 2 - 1
            hits += in_mark(x, y)
    return hits / SAMPLES**2


def png(size: int, rows: list[bytes], color_type: int) -> bytes:
    """An 8-bit PNG: color_type 2 is RGB, 6 is RGBA; every row unfiltered (filter byte 0)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", size, size, 8, color_type, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + row for row in rows), 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def color_icon(size: int = 192) -> bytes:
    # Teams crops the colour icon's corners: the mark keeps to the middle 120 pixels.
    rows = []
    for row in range(size):
        line = bytearray()
        for column in range(size):
            cover = coverage(column, row, size, margin=36)
            line += bytes(round(c + (255 - c) * cover) for c in ACCENT)
        rows.append(bytes(line))
    return png(size, rows, color_type=2)


def outline_icon(size: int = 32) -> bytes:
    # White only; the edges fade through transparency, never through grey.
    rows = []
    for row in range(size):
        line = bytearray()
        for column in range(size):
            alpha = round(255 * coverage(column, row, size, margin=2))
            line += bytes((255, 255, 255, alpha))
        rows.append(bytes(line))
    return png(size, rows, color_type=6)


if __name__ == "__main__":
    (HERE / "color.png").write_bytes(color_icon())
    (HERE / "outline.png").write_bytes(outline_icon())
