"""Small helpers the dialect contract tests share."""

from __future__ import annotations

import base64
import io

from PIL import Image


def decode_image(value: str) -> Image.Image:
    payload = value.split(",", 1)[1] if value.startswith("data:") else value
    img = Image.open(io.BytesIO(base64.b64decode(payload)))
    img.load()
    return img
