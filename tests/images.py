"""Synthetic test images with known answers."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image, ImageDraw


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def b64(img_or_bytes) -> str:
    data = img_or_bytes if isinstance(img_or_bytes, bytes) else png_bytes(img_or_bytes)
    return base64.b64encode(data).decode()


def disc_rgba(size: int = 64, radius_fraction: float = 0.3, color=(255, 0, 0)) -> Image.Image:
    """An opaque coloured disc on a fully transparent (black) background."""
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    r = size * radius_fraction
    c = size / 2
    ImageDraw.Draw(img).ellipse((c - r, c - r, c + r, c + r), fill=(*color, 255))
    return img


def gradient_rgb(width: int = 64, height: int = 48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)
    arr = np.stack([np.tile(x, (height, 1)), np.tile(y[:, None], (1, width)), np.full((height, width), 128.0)], -1)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def decompression_bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header claims width x height pixels: a decompression bomb."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    # Rows of zero bits compress to almost nothing; only a few rows are included, the header claims all.
    raw = b"".join(b"\x00" + b"\x00" * ((width + 7) // 8) for _ in range(16))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
