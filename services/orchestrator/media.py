"""Images inside job specs and results live in the image store; rows hold references.

The orchestrator is the image store's only writer and its only reader on behalf of a backend: `externalize`
moves inline `Image` bytes found anywhere in a message into the store (stamped with owner, job and kind) and
leaves a reference; `hydrate` puts the bytes back, read under the caller's owner, for a backend (which never sees
a reference) or a synchronous caller. Generated images carry their recipe (`generation_records`).
"""

from __future__ import annotations

import io
import warnings
from typing import Iterator, Mapping

from google.protobuf.message import Message
from PIL import Image as PILImage

from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import generate_service_pb2 as gen_pb
from shared.image_store import ImageStore
from shared.images import MEDIA_TYPES, RAW_RGBA, ImageLimits, inspect_header

IMAGE = common_pb2.Image.DESCRIPTOR.full_name

# The kinds of stored images (StoredImage.kind). The gallery shows generated ones; analytics counts them apart.
GENERATED, DERIVED, INPUT = "generated", "derived", "input"
KIND_ENUM = {GENERATED: common_pb2.IMAGE_KIND_GENERATED, DERIVED: common_pb2.IMAGE_KIND_DERIVED,
             INPUT: common_pb2.IMAGE_KIND_INPUT}
KIND_NAME = {value: name for name, value in KIND_ENUM.items()}


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
                metadata: dict[str, str] | None = None, kind: str = "",
                per_image: list[dict[str, str]] | None = None,
                limits: ImageLimits | None = None) -> list[tuple[str, common_pb2.Image]]:
    """Store every inline image of `message` and replace it with a reference. `per_image[i]` adds to the
    metadata of the i-th inline image. Returns (ref, the inline image as it was) so a caller holding the bytes
    never has to read them back.

    With `limits` (uploads: kind INPUT), every image's header is checked first (shared.images.inspect_header)
    and nothing is stored unless all pass: rejected input is never stored. Outputs come from the mesh's own
    services and are stored as they are described."""
    inline_images = [image for image in images_in(message)
                     if image.WhichOneof("source") == "data" and image.data]
    described = []
    for image in inline_images:
        if limits is not None:
            described.append(inspect_header(image.data, image.media_type, image.width, image.height, limits))
            continue
        media_type, width, height = image.media_type, image.width, image.height
        if media_type != RAW_RGBA and not (media_type and width and height):
            media_type, width, height = _sniff(image.data, media_type)
        described.append((media_type, width, height))
    stored = []
    for image, (media_type, width, height) in zip(inline_images, described):
        extra = per_image[len(stored)] if per_image and len(stored) < len(per_image) else {}
        record = store.put(image.data, media_type, width, height, owner=owner, job_id=job_id,
                           metadata={**(metadata or {}), **extra}, kind=kind)
        inline = common_pb2.Image(data=image.data, media_type=media_type, width=width, height=height)
        image.ref = record.ref  # oneof: clears data
        stored.append((record.ref, inline))
    return stored


def hydrate(message: Message, store: ImageStore, owner: str | None,
            held: Mapping[str, common_pb2.Image] | None = None) -> None:
    """Replace every image reference in `message` with its bytes: from `held` when the caller still has them,
    else read from the store under `owner` (another owner's reference is IMAGE_NOT_FOUND, never its pixels)."""
    for image in images_in(message):
        if image.WhichOneof("source") != "ref":
            continue
        inline = held.get(image.ref) if held else None
        if inline is not None:
            image.CopyFrom(inline)
            continue
        data, record = store.get(image.ref, owner)
        image.data = data
        image.media_type = record.media_type
        image.width, image.height = record.width, record.height


def generation_records(params: gen_pb.GenerateParameters, response: gen_pb.GenerateResponse,
                       model_requested: str = "") -> list[dict[str, str]]:
    """The recipe of each generated image, in order: what the client asked for (prompt, model name) and what
    Generate resolved (checkpoint, seed, steps, guidance, size), and which image of how many it is."""
    meta = response.metadata
    total = len(response.images)
    common = {
        "model_id": meta.model_id, "model_requested": model_requested or params.model or meta.model_id,
        "prompt": params.prompt, "effective_prompt": meta.effective_prompt,
        "negative_prompt": params.negative_prompt, "style_preset": params.style_preset,
        "steps": str(meta.steps), "guidance_scale": f"{meta.guidance_scale:g}", "width": str(meta.width),
        "height": str(meta.height), "scheduler": meta.scheduler, "device": meta.device,
        "operation": gen_pb.GenerateOperation.Name(params.operation or gen_pb.GENERATE_OPERATION_TEXT_TO_IMAGE)
        .removeprefix("GENERATE_OPERATION_").lower(),
        "total_images": str(total),
    }
    return [{**common, "seed": str(item.seed), "image_number": str(number)}
            for number, item in enumerate(response.images, start=1)]


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
