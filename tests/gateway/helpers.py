"""Small helpers the dialect contract tests share."""

from __future__ import annotations

import base64
import io

import httpx
from PIL import Image

from tests.gateway.conftest import assert_error_format

NOT_IMPLEMENTED_CODES = {"freepik": "NOT_IMPLEMENTED", "shotgun": "not_implemented"}


def landed(dialect: str, reply: httpx.Response) -> bool:
    """False (after checking the documented error format and a clear message) when the endpoint answered 501
    because its backing capability has not landed on this branch yet; True otherwise."""
    if reply.status_code != 501:
        return True
    body = assert_error_format(dialect, reply, 501, NOT_IMPLEMENTED_CODES.get(dialect))
    message = str(body)
    assert "not" in message and ("available" in message or "built" in message or "implemented" in message), message
    return False


def decode_image(value: str) -> Image.Image:
    payload = value.split(",", 1)[1] if value.startswith("data:") else value
    img = Image.open(io.BytesIO(base64.b64decode(payload)))
    img.load()
    return img
