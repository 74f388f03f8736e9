"""Images arriving in JSON: base64 (plain or data URI) to bytes. Decoding and format checks happen once,
in the services' codec; the gateway only unwraps the transport encoding."""

from __future__ import annotations

import base64
import binascii
import re

from shared.errors import InvalidArgument, MissingImage, NotImplementedYet
from shared.gen.imagemesh.v1 import common_pb2

_DATA_URI = re.compile(r"^data:(?P<type>[\w/+.-]+)?(;[\w=-]+)*;base64,", re.I)


def decode_base64_image(value: str, field: str = "image") -> bytes:
    match = _DATA_URI.match(value)
    payload = value[match.end():] if match else value
    payload = "".join(payload.split())
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"{field} is not valid base64", field=field, reason="VALIDATION_ERROR") from None
    if not data:
        raise MissingImage(f"{field} is empty", field=field)
    return data


async def image_from_request(image: str | None, image_url: str | None) -> common_pb2.Image:
    """The `Image` message for a request that carries `image` (base64) or `image_url`."""
    if image:
        return common_pb2.Image(data=decode_base64_image(image))
    if image_url:
        raise NotImplementedYet("image_url is not supported yet by this gateway; send the image as base64",
                                field="image_url")
    raise MissingImage("one of image or image_url is required", field="image")


def encode_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
