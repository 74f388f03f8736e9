"""Images arriving in JSON: base64 (plain or data URI) or an image_url, to the bytes of an `Image` message.

Decoding and format checks happen once, in the services' codec; the gateway only unwraps the transport encoding,
enforces the byte limit (413) and fetches URLs within time and size bounds under the mesh's SSRF rules.
"""

from __future__ import annotations

import base64
import binascii
import re

from gateway.settings import GatewaySettings
from shared import ssrf
from shared.errors import ImageTooLarge, InvalidArgument, MissingImage
from shared.gen.imagemesh.v1 import common_pb2

_DATA_URI = re.compile(r"^data:(?P<type>[\w/+.-]+)?(;[\w=-]+)*;base64,", re.IGNORECASE)


def _too_large(field: str, limit: int, size: int | None = None) -> ImageTooLarge:
    return ImageTooLarge(f"{field} exceeds the {limit / 1048576:.0f} MB limit", field=field, max_bytes=limit,
                         size_bytes=size)


def decode_base64_image(value: str, field: str = "image", max_bytes: int | None = None) -> bytes:
    match = _DATA_URI.match(value)
    payload = value[match.end():] if match else value
    payload = "".join(payload.split())
    if max_bytes is not None and len(payload) * 3 // 4 > max_bytes + 3:
        raise _too_large(field, max_bytes, len(payload) * 3 // 4)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"{field} is not valid base64", field=field, reason="VALIDATION_ERROR") from None
    if not data:
        raise MissingImage(f"{field} is empty", field=field)
    return data


async def fetch_url(url: str, settings: GatewaySettings, field: str = "image_url") -> bytes:
    """GET an image URL under the SSRF rules (every hop checked, connection pinned), bounded in time and bytes."""
    policy = ssrf.UrlPolicy.from_setting(settings.url_allow_list)
    result = await ssrf.fetch(url, policy, timeout_s=settings.fetch_timeout_s, max_bytes=settings.max_image_bytes,
                              field_name=field)
    if not result.content:
        raise MissingImage(f"{field} returned an empty body", field=field)
    return result.content


async def image_from_request(image: str | None, image_url: str | None, settings: GatewaySettings,
                             field: str = "image") -> common_pb2.Image:
    """The `Image` message for a request that carries `image` (base64) or `image_url`."""
    if image:
        return common_pb2.Image(data=decode_base64_image(image, field, settings.max_image_bytes))
    if image_url:
        if image_url.startswith("data:"):
            return common_pb2.Image(data=decode_base64_image(image_url, "image_url", settings.max_image_bytes))
        return common_pb2.Image(data=await fetch_url(image_url, settings))
    raise MissingImage(f"one of {field} or image_url is required", field=field)


def optional_image(value: str | None, settings: GatewaySettings, field: str) -> common_pb2.Image | None:
    if not value:
        return None
    return common_pb2.Image(data=decode_base64_image(value, field, settings.max_image_bytes))


def encode_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def data_uri(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type or 'image/png'};base64,{encode_base64(data)}"
