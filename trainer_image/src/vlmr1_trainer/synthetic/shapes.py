"""Drawing the synthetic datasets' images, byte-reproducibly, with the standard library only.

The shipped example datasets (rec-shapes, colour-shapes) and the builtin starting model's
training data are drawn here. Pillow's shape rasterisers and the zlib it links have changed
between versions, and so does deflate output between zlib implementations, so shapes are
rasterised with integer arithmetic on pixel centres and PNGs (4-bit palette, no ancillary
chunks, no timestamps) are written with *stored* deflate blocks, whose bytes depend on
nothing but this file. Randomness uses only ``random.Random.random()``, whose sequence
Python guarantees for a seed string.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Sequence

__all__ = ["COLOURS", "COLOUR_INDEX", "GREYS", "KINDS", "PALETTE", "encode_png", "rasterise", "uniform_int"]

#: Shape colours by name. Saturated, and far from the grey background in RGB, so a test
#: (or a human) can tell a shape's pixels from the background by colour alone.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 30),
    "purple": (150, 60, 190),
}
KINDS = ("circle", "square", "triangle")
#: Background greys: index 0 is the plain background; noisy backgrounds use all four.
GREYS = ((236, 236, 236), (226, 226, 226), (216, 216, 216), (206, 206, 206))
#: The PNG palette: greys first, then the shape colours in COLOURS order.
PALETTE: tuple[tuple[int, int, int], ...] = (*GREYS, *COLOURS.values())
COLOUR_INDEX = {name: len(GREYS) + i for i, name in enumerate(COLOURS)}


def uniform_int(rng: random.Random, low: int, high: int) -> int:
    """Uniform integer in [low, high] from ``random()`` alone (its sequence is the guaranteed one)."""
    return low + int(rng.random() * (high - low + 1))


def rasterise(kind: str, x0: int, y0: int, size: int) -> frozenset[tuple[int, int]]:
    """Pixels of a shape in the ``size`` x ``size`` cell at (x0, y0), tested at pixel centres.

    Coordinates are doubled so pixel centres (x + 0.5) are integers and every test is exact.
    """
    pixels = set()
    for dy in range(size):
        for dx in range(size):
            cx, cy = 2 * dx + 1, 2 * dy + 1  # doubled pixel centre inside the cell
            if kind == "square":
                inside = True
            elif kind == "circle":
                inside = (cx - size) ** 2 + (cy - size) ** 2 <= size * size
            else:  # triangle: apex at the top middle, base along the bottom edge
                # |x - size| <= y / 2 in doubled units: the two slanted edges meet at the apex.
                inside = 2 * abs(cx - size) <= cy
            if inside:
                pixels.add((x0 + dx, y0 + dy))
    return frozenset(pixels)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _stored_zlib(raw: bytes) -> bytes:
    """A zlib stream of stored (uncompressed) deflate blocks: identical bytes whatever zlib is linked."""
    out = bytearray(b"\x78\x01")  # deflate, 32 KiB window, no preset dictionary, fastest
    limit = 0xFFFF
    for start in range(0, max(len(raw), 1), limit):
        block = raw[start : start + limit]
        final = 1 if start + limit >= len(raw) else 0
        out += struct.pack("<BHH", final, len(block), len(block) ^ 0xFFFF) + block
    out += struct.pack(">I", zlib.adler32(raw) & 0xFFFFFFFF)
    return bytes(out)


def encode_png(width: int, height: int, indices: Sequence[int]) -> bytes:
    """A 4-bit palette PNG with exactly IHDR, PLTE, IDAT and IEND (no time, text or gamma chunks)."""
    assert len(PALETTE) <= 16
    rows = bytearray()
    for y in range(height):
        row = list(indices[y * width : (y + 1) * width])
        if width % 2:
            row.append(0)
        rows.append(0)  # filter type None: keeps the encoder trivial and the output exact
        rows += bytes((row[i] << 4) | row[i + 1] for i in range(0, len(row), 2))
    ihdr = struct.pack(">IIBBBBB", width, height, 4, 3, 0, 0, 0)  # depth 4, palette, no interlace
    plte = b"".join(bytes(rgb) for rgb in PALETTE)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"PLTE", plte)
        + _chunk(b"IDAT", _stored_zlib(bytes(rows)))
        + _chunk(b"IEND", b"")
    )
