"""Draws the Teams app's two icons as PNGs with the standard library only (zlib, struct):
`color.png` (192×192, full colour) and `outline.png` (32×32, white on transparent), as the
Teams app manifest asks. Run it from the repository root to draw them again:
`python teams/make_icons.py`.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEAL = (29, 78, 95, 255)
WHITE = (255, 255, 255, 255)
CLEAR = (0, 0, 0, 0)
Pixel = tuple[int, int, int, int]


def png(width: int, height: int, pixel: Callable[[int, int], Pixel]) -> bytes:
    """An 8-bit RGBA PNG, one filter byte (none) a row."""
    rows = b"".join(b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(width))
                    for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def receipt(x: float, y: float) -> bool:
    """A receipt with a zigzag foot and three lines, in a unit square."""
    inside = 0.28 <= x <= 0.72 and 0.18 <= y <= 0.80
    zig = y > 0.74 and abs(((x - 0.28) / 0.11) % 1 - 0.5) * 0.12 < y - 0.74
    lines = any(abs(y - row) < 0.025 and 0.36 <= x <= 0.64 for row in (0.34, 0.46, 0.58))
    return inside and not zig and not lines


def color(x: int, y: int) -> Pixel:
    return WHITE if receipt(x / 192, y / 192) else TEAL


def outline(x: int, y: int) -> Pixel:
    u, v = (x + 0.5) / 32, (y + 0.5) / 32
    return WHITE if receipt(u, v) else CLEAR


def main() -> None:
    (HERE / "color.png").write_bytes(png(192, 192, color))
    (HERE / "outline.png").write_bytes(png(32, 32, outline))


if __name__ == "__main__":
    main()
