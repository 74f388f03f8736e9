"""Images arriving in JSON: base64 (plain or data URI) or an image_url, to the bytes of an `Image` message.

Decoding and format checks happen once, in the services' codec; the gateway only unwraps the transport encoding,
enforces the byte limit (413) and fetches URLs within time and size bounds under the mesh's SSRF rules.
"""

from __future__ import annotations

import base64
import binascii
import re

import httpx

from gateway.settings import GatewaySettings
from shared.errors import (
    DeadlineExceeded,
    ImageTooLarge,
    InvalidArgument,
    InvalidFormat,
    MissingImage,
    NotImplementedYet,
)
from shared.gen.imagemesh.v1 import common_pb2

_DATA_URI = re.compile(r"^data:(?P<type>[\w/+.-]+)?(;[\w=-]+)*;base64,", re.IGNORECASE)
_MAX_REDIRECTS = 3


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
    """GET an image URL: http(s) only, every hop checked against the SSRF rules, bounded in time and bytes."""
    try:
        from shared import ssrf
    except ImportError:
        raise NotImplementedYet(f"{field} is not supported yet by this gateway (the SSRF guard has not landed); "
                                "send the image as base64", field=field) from None
    limit = settings.max_image_bytes
    current = url
    async with httpx.AsyncClient(timeout=settings.fetch_timeout_s, follow_redirects=False) as client:
        for _ in range(_MAX_REDIRECTS + 1):
            await _check_url(ssrf, current, settings, field)
            try:
                async with client.stream("GET", current, headers={"Accept": "image/*"}) as response:
                    if response.is_redirect:
                        current = str(response.url.join(response.headers.get("location", "")))
                        continue
                    if response.status_code != 200:
                        raise InvalidArgument(f"{field} answered HTTP {response.status_code}", field=field,
                                              reason="VALIDATION_ERROR", status=response.status_code)
                    declared = response.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > limit:
                        raise _too_large(field, limit, int(declared))
                    chunks, size = [], 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > limit:
                            raise _too_large(field, limit)
                        chunks.append(chunk)
                    data = b"".join(chunks)
                    if not data:
                        raise MissingImage(f"{field} returned an empty body", field=field)
                    return data
            except httpx.TimeoutException:
                raise DeadlineExceeded(f"{field} did not answer within {settings.fetch_timeout_s:.0f} s",
                                       field=field) from None
            except httpx.HTTPError as exc:
                raise InvalidArgument(f"{field} could not be fetched: {type(exc).__name__}", field=field,
                                      reason="VALIDATION_ERROR") from None
    raise InvalidArgument(f"{field} redirected more than {_MAX_REDIRECTS} times", field=field,
                          reason="VALIDATION_ERROR")


async def _check_url(ssrf, url: str, settings: GatewaySettings, field: str) -> None:
    """Refuse URLs the SSRF rules forbid (private, loopback, link-local, metadata addresses...)."""
    try:
        await ssrf.check_url_async(url, allow_private=settings.fetch_allow_private)
    except ssrf.BlockedURL as exc:
        raise InvalidArgument(f"{field} is not allowed: {exc}", field=field, reason="VALIDATION_ERROR") from None


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


__all__ = ["InvalidFormat", "data_uri", "decode_base64_image", "encode_base64", "fetch_url", "image_from_request",
           "optional_image"]
