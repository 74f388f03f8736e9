"""Images inside job specs and results live in the image store; rows hold references.

`externalize` moves inline `Image` bytes found anywhere in a message into the store (owner-stamped) and
leaves a reference; `hydrate` puts the bytes back for a synchronous caller that wants them inline.
"""

from __future__ import annotations

import io
import warnings
from typing import Iterator

from PIL import Image as PILImage

from google.protobuf.message import Message

from shared.gen.imagemesh.v1 import common_pb2
from shared.images import MEDIA_TYPES, RAW_RGBA
from shared.image_store import ImageStore

IMAGE = common_pb2.Image.DESCRIPTOR.full_name


def messages_of(message: Message, full_name: str) -> Iterator[Message]:
    """Every message of type `full_name` inside `message`, depth first, in field order."""
    for descriptor, value in message.ListFields():
        kind = descriptor.message_type
        if kind is None or kind.GetOptions().map_entry:
            continue
        for item in (value if descriptor.is_repeated else [value]):
            if kind.full_name == full_name:
                yield item
            else:
                yield from messages_of(item, full_name)


def images_in(message: Message) -> Iterator[common_pb2.Image]:
    """Every Image message inside `message`, depth first, in field order."""
    return messages_of(message, IMAGE)  # type: ignore[return-value]


def externalize(message: Message, store: ImageStore, owner: str, job_id: str = "",
                metadata: dict[str, str] | None = None) -> list[str]:
    """Store every inline image of `message` and replace it with a reference; returns the new refs."""
    refs = []
    for image in images_in(message):
        if image.WhichOneof("source") != "data" or not image.data:
            continue
        media_type, width, height = image.media_type, image.width, image.height
        if media_type != RAW_RGBA and not (media_type and width and height):
            media_type, width, height = _sniff(image.data, media_type)
        record = store.put(image.data, media_type, width, height, owner=owner, job_id=job_id, metadata=metadata)
        image.ref = record.ref  # oneof: clears data
        refs.append(record.ref)
    return refs


def hydrate(message: Message, store: ImageStore, owner: str | None = None) -> None:
    """Replace every image reference in `message` with the stored bytes (for synchronous callers)."""
    for image in images_in(message):
        if image.WhichOneof("source") == "ref":
            data, record = store.get(image.ref, owner)
            image.data = data
            image.media_type = record.media_type
            image.width, image.height = record.width, record.height


def refs_in(message: Message) -> list[str]:
    return [image.ref for image in images_in(message) if image.WhichOneof("source") == "ref"]


def _sniff(data: bytes, media_type: str) -> tuple[str, int, int]:
    """Media type and size from the header only (no pixel decode). Validation is not done here: the service
    that decodes the image answers with the codec's precise error (INVALID_FORMAT, IMAGE_TOO_LARGE)."""
    fallback = media_type if media_type in MEDIA_TYPES.values() else "image/png"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PILImage.open(io.BytesIO(data)) as img:
                return MEDIA_TYPES.get(img.format or "", fallback), img.width, img.height
    except Exception:  # noqa: BLE001
        return fallback, 0, 0
