"""The image codec: decode with limits, encode PNG/WebP/JPEG (alpha kept), raw RGBA for internal hops.

Encode and decode happen at the edges only; an `Image` message may carry undecoded RGBA8 pixels
(`image/x-raw-rgba`) between services so that nobody re-encodes a PNG nobody looks at.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image as PILImage
from PIL import ImageFile

from shared.errors import ImageTooLarge, InvalidArgument, InvalidFormat, MissingImage
from shared.gen.imagemesh.v1 import common_pb2

RAW_RGBA = "image/x-raw-rgba"
# ErrorInfo reason of a backend given an image store reference instead of bytes.
REF_NOT_ACCEPTED = "IMAGE_REF_NOT_ACCEPTED"
MEDIA_TYPES = {"PNG": "image/png", "WEBP": "image/webp", "JPEG": "image/jpeg"}
ACCEPTED_FORMATS = frozenset(MEDIA_TYPES)
FORMAT_BY_ENUM = {
    common_pb2.IMAGE_FORMAT_UNSPECIFIED: "PNG",
    common_pb2.IMAGE_FORMAT_PNG: "PNG",
    common_pb2.IMAGE_FORMAT_WEBP: "WEBP",
    common_pb2.IMAGE_FORMAT_JPEG: "JPEG",
    common_pb2.IMAGE_FORMAT_RAW_RGBA: "RAW",
}
ENUM_BY_NAME = {"png": common_pb2.IMAGE_FORMAT_PNG, "webp": common_pb2.IMAGE_FORMAT_WEBP,
                "jpeg": common_pb2.IMAGE_FORMAT_JPEG, "jpg": common_pb2.IMAGE_FORMAT_JPEG}


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 40_000_000


def _check_pixels(width: int, height: int, limits: ImageLimits) -> None:
    if width <= 0 or height <= 0:
        raise InvalidFormat("image has no pixels", field="image")
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} ({width * height} pixels); the limit is {limits.max_pixels} pixels",
            field="image", width=width, height=height, max_pixels=limits.max_pixels,
        )


def decode_bytes(data: bytes, limits: ImageLimits = ImageLimits()) -> PILImage.Image:
    """Decode an encoded upload, refusing oversize payloads, decompression bombs and unknown formats."""
    if not data:
        raise MissingImage("no image data", field="image")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(
            f"image is {len(data)} bytes; the limit is {limits.max_bytes} bytes",
            field="image", size_bytes=len(data), max_bytes=limits.max_bytes,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            img = PILImage.open(io.BytesIO(data))
    except PILImage.DecompressionBombError as exc:  # pragma: no cover - we check size before Pillow does
        raise ImageTooLarge(str(exc), field="image") from exc
    except Exception as exc:
        raise InvalidFormat(
            "unsupported or unreadable image; supported: PNG, JPEG, WEBP", field="image", received="unknown",
        ) from exc
    if img.format not in ACCEPTED_FORMATS:
        raise InvalidFormat(
            f"unsupported image format {img.format}; supported: PNG, JPEG, WEBP",
            field="image", received=f"image/{(img.format or 'unknown').lower()}",
        )
    # The header is read; pixels are not. Check the size before decoding so a bomb never allocates.
    _check_pixels(img.width, img.height, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            previous, PILImage.MAX_IMAGE_PIXELS = PILImage.MAX_IMAGE_PIXELS, None
            try:
                img.load()
            finally:
                PILImage.MAX_IMAGE_PIXELS = previous
    except Exception as exc:
        raise InvalidFormat(f"image data is truncated or corrupt ({exc})", field="image") from exc
    return img


def inspect_header(data: bytes, media_type: str = "", width: int = 0, height: int = 0,
                   limits: ImageLimits = ImageLimits()) -> tuple[str, int, int]:
    """(media type, width, height) of an encoded or raw RGBA image from its header alone (no pixel decode),
    refusing what decode_message would refuse on its header: no data, too many bytes, an unknown or unreadable
    format, no pixels or too many. The image store's writer calls it so rejected input is never stored."""
    if not data:
        raise MissingImage("no image data", field="image")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"image is {len(data)} bytes; the limit is {limits.max_bytes} bytes",
                            field="image", size_bytes=len(data), max_bytes=limits.max_bytes)
    if media_type == RAW_RGBA:
        _check_pixels(width, height, limits)
        if len(data) != width * height * 4:
            raise InvalidArgument(f"raw RGBA image must be width*height*4 = {width * height * 4} bytes, got "
                                  f"{len(data)}", field="image")
        return RAW_RGBA, width, height
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PILImage.open(io.BytesIO(data)) as img:
                found, size = img.format, img.size
    except PILImage.DecompressionBombError as exc:
        raise ImageTooLarge(f"image declares more pixels than the limit of {limits.max_pixels} pixels",
                            field="image", max_pixels=limits.max_pixels) from exc
    except Exception as exc:
        raise InvalidFormat("unsupported or unreadable image; supported: PNG, JPEG, WEBP", field="image",
                            received="unknown") from exc
    if found not in ACCEPTED_FORMATS:
        raise InvalidFormat(f"unsupported image format {found}; supported: PNG, JPEG, WEBP", field="image",
                            received=f"image/{(found or 'unknown').lower()}")
    _check_pixels(size[0], size[1], limits)
    return MEDIA_TYPES[found], size[0], size[1]


def decode_raw(data: bytes, width: int, height: int, limits: ImageLimits = ImageLimits()) -> PILImage.Image:
    _check_pixels(width, height, limits)
    if len(data) != width * height * 4:
        raise InvalidArgument(
            f"raw RGBA image must be width*height*4 = {width * height * 4} bytes, got {len(data)}", field="image",
        )
    return PILImage.frombuffer("RGBA", (width, height), data, "raw", "RGBA", 0, 1).copy()


def decode_message(message: common_pb2.Image, limits: ImageLimits = ImageLimits()) -> PILImage.Image:
    """Decode an inline `Image` message. A store reference is refused: only the orchestrator reads the image
    store, checking the caller's owner, and hands the backends the bytes (a backend has no owner to check)."""
    which = message.WhichOneof("source")
    if which is None:
        raise MissingImage("no image given", field="image")
    if which == "ref":
        raise InvalidArgument("image references are not accepted here: send the image inline (the orchestrator "
                              "resolves references for its caller)", field="image", reason=REF_NOT_ACCEPTED)
    if message.media_type == RAW_RGBA:
        return decode_raw(message.data, message.width, message.height, limits)
    return decode_bytes(message.data, limits)


def has_alpha(img: PILImage.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)


def normalize_mode(img: PILImage.Image) -> PILImage.Image:
    """RGBA when the image has any transparency, else RGB; every core works on one of these two."""
    if img.mode in ("RGBA", "RGB"):
        return img
    return img.convert("RGBA" if has_alpha(img) else "RGB")


def flatten(img: PILImage.Image, color: tuple[int, int, int] = (255, 255, 255)) -> PILImage.Image:
    if not has_alpha(img):
        return img.convert("RGB")
    rgba = img.convert("RGBA")
    background = PILImage.new("RGB", rgba.size, color)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def parse_color(value: str, default: tuple[int, int, int] = (255, 255, 255)) -> tuple[int, ...]:
    """'#rrggbb' or '#rrggbbaa' (or without '#') to a tuple; empty gives the default."""
    if not value:
        return default
    text = value.lstrip("#")
    if len(text) not in (6, 8):
        raise InvalidArgument(f"colour must be #rrggbb or #rrggbbaa, got {value!r}", field="background_color")
    try:
        return tuple(int(text[i:i + 2], 16) for i in range(0, len(text), 2))
    except ValueError as exc:
        raise InvalidArgument(f"colour must be hexadecimal, got {value!r}", field="background_color") from exc


PNG_FAST_PIXELS = 1_000_000


def encode(img: PILImage.Image, fmt: str = "PNG", quality: int = 0,
           background: tuple[int, int, int] = (255, 255, 255)) -> tuple[bytes, str]:
    """Encode to PNG/WEBP/JPEG; returns (bytes, media type). JPEG flattens alpha onto `background`."""
    fmt = fmt.upper()
    if fmt == "JPG":
        fmt = "JPEG"
    if fmt not in MEDIA_TYPES:
        raise InvalidArgument(f"unsupported output format {fmt}; supported: png, webp, jpeg", field="output_format")
    buf = io.BytesIO()
    if fmt == "JPEG":
        flatten(img, background).save(buf, "JPEG", quality=quality or 92)
    elif fmt == "WEBP":
        # Lossless keeps alpha edges exact; lossy only when a quality is asked for.
        if quality:
            img.save(buf, "WEBP", quality=quality)
        else:
            img.save(buf, "WEBP", lossless=True)
    else:
        # zlib level 1 from 1 MP up: a 1024x1024 cut-out encodes about 4x faster than at level 6 for about 16% more
        # bytes (bench/README.md), and the encode was the largest share of a background removal or upscale.
        img.save(buf, "PNG", compress_level=1 if img.width * img.height >= PNG_FAST_PIXELS else 6)
    return buf.getvalue(), MEDIA_TYPES[fmt]


def to_message(img: PILImage.Image, image_format: int = common_pb2.IMAGE_FORMAT_PNG, quality: int = 0,
               background: tuple[int, int, int] = (255, 255, 255)) -> common_pb2.Image:
    """An inline `Image` message in the asked format (raw RGBA when the next hop is inside the mesh)."""
    fmt = FORMAT_BY_ENUM.get(image_format, "PNG")
    if fmt == "RAW":
        rgba = img.convert("RGBA")
        return common_pb2.Image(data=rgba.tobytes(), media_type=RAW_RGBA, width=rgba.width, height=rgba.height)
    data, media_type = encode(img, fmt, quality, background)
    return common_pb2.Image(data=data, media_type=media_type, width=img.width, height=img.height)


def format_from_name(name: str, field: str = "output_format") -> int:
    """Map a dialect's output format name ('png', 'webp', ...) to the enum, or a clear INVALID_ARGUMENT."""
    if not name:
        return common_pb2.IMAGE_FORMAT_PNG
    try:
        return ENUM_BY_NAME[name.lower()]
    except KeyError:
        raise InvalidArgument(f"unsupported {field} {name!r}; supported: png, webp, jpeg", field=field) from None


ImageFile.LOAD_TRUNCATED_IMAGES = False
