"""Preparing Image Studio's generative edits for Generate's INPAINT operation: the mask a prompt-only inpaint
implies (the whole image) and the canvas and mask an outpaint implies. This is request shaping, not image work:
the pixels are produced by the Generate service; these only say where."""

from __future__ import annotations

import io

from PIL import Image

from shared.errors import InvalidArgument, InvalidFormat
from shared.gen.imagemesh.v1 import common_pb2

# Outpainting adds at most this many pixels per side (Generate's own size limits apply after it).
MAX_EXPAND = 2048


def _png(img: Image.Image) -> common_pb2.Image:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return common_pb2.Image(data=buf.getvalue(), media_type="image/png", width=img.width, height=img.height)


def _open(data: bytes) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception:  # noqa: BLE001 - anything PIL cannot read is an unsupported format
        raise InvalidFormat("image_base64 is not a supported image (PNG, JPG, WEBP)", field="image_base64") from None
    return img


def size_of(data: bytes) -> tuple[int, int]:
    """Width and height from the header only."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:  # noqa: BLE001
        raise InvalidFormat("image_base64 is not a supported image (PNG, JPG, WEBP)", field="image_base64") from None


def full_mask(data: bytes) -> common_pb2.Image:
    """An all-white mask (repaint everything) the size of the image, for an inpaint without a mask."""
    width, height = size_of(data)
    return _png(Image.new("L", (width, height), 255))


def outpaint_canvas(data: bytes, left: int, right: int, up: int, down: int) -> tuple[common_pb2.Image,
                                                                                    common_pb2.Image]:
    """The image placed on a larger canvas, and the mask of the new area (white = to be generated)."""
    for name, value in (("expand_left", left), ("expand_right", right), ("expand_up", up), ("expand_down", down)):
        if value < 0 or value > MAX_EXPAND:
            raise InvalidArgument(f"{name} must be between 0 and {MAX_EXPAND}", field=name)
    if not any((left, right, up, down)):
        raise InvalidArgument("outpaint needs at least one of expand_left, expand_right, expand_up, expand_down",
                              field="expand_left")
    img = _open(data).convert("RGB")
    width, height = img.width + left + right, img.height + up + down
    canvas = Image.new("RGB", (width, height), (127, 127, 127))
    canvas.paste(img, (left, up))
    mask = Image.new("L", (width, height), 255)
    mask.paste(0, (left, up, left + img.width, up + img.height))
    return _png(canvas), _png(mask)
