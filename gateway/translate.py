"""The one mapping every dialect shares: requests to the mesh's RPCs, and the mesh's replies to plain values.

A dialect module validates its JSON and shapes its JSON; what generation, upscale, removal, jobs and images mean
in gRPC terms lives here once. Every orchestrator call carries the authenticated owner, so one key never sees
another key's jobs, images or analytics (the orchestrator answers NOT_FOUND).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from google.protobuf import struct_pb2
from starlette.requests import HTTPConnection

from gateway.images_in import data_uri
from gateway.security import owner_of
from shared import ssrf
from shared.errors import Cancelled, InvalidArgument, InvalidModel
from shared.gen.imagemesh.v1 import background_removal_service_pb2 as br_pb
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import generate_service_pb2 as gen_pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as orch_pb
from shared.gen.imagemesh.v1 import upscale_service_pb2 as up_pb
from shared.images import format_from_name
from shared.mesh_client import MeshClient, is_terminal, job_images, status_name  # noqa: F401

log = logging.getLogger(__name__)
T = TypeVar("T")


def client(request: HTTPConnection) -> MeshClient:
    """The mesh client, calling on behalf of the request's authenticated owner."""
    return request.app.state.mesh.client.as_owner(owner_of(request))


# ---- models -------------------------------------------------------------------------------------------------


async def list_models(request: HTTPConnection) -> gen_pb.ListModelsResponse:
    """Generate's registry, through the orchestrator's catalogue (which caches it briefly)."""
    reply = await client(request).catalog(orch_pb.CATALOG_SECTION_GENERATION_MODELS)
    return reply.generation_models


def model_names(listing: gen_pb.ListModelsResponse) -> list[str]:
    """Every name a client may use: registry ids and their aliases."""
    names: list[str] = []
    for model in listing.models:
        for name in (model.id, *model.aliases):
            if name not in names:
                names.append(name)
    return names


def find_model(listing: gen_pb.ListModelsResponse, name: str) -> gen_pb.ModelInfo | None:
    wanted = name.strip().lower()
    for model in listing.models:
        if model.id.lower() == wanted or wanted in (alias.lower() for alias in model.aliases):
            return model
    return None


def default_model(listing: gen_pb.ListModelsResponse) -> gen_pb.ModelInfo | None:
    for model in listing.models:
        if model.is_default or model.id == listing.default_model:
            return model
    return listing.models[0] if listing.models else None


async def resolve_model(request: Request, name: str | None, field: str = "model") -> gen_pb.ModelInfo | None:
    """The registry model a seed name (id or alias) means; None for "auto"/empty (Generate's default).
    An unknown name is INVALID_MODEL listing the supported names."""
    if not name or name.strip().lower() == "auto":
        return None
    listing = await list_models(request)
    model = find_model(listing, name)
    if model is None:
        names = model_names(listing)
        raise InvalidModel(f"The specified model '{name[:100]}' is not supported"
                           + (f"; supported: {', '.join(names)}" if names else "; no generation model is configured"),
                           field=field, supported_models=names)
    return model


async def models_for(request: Request, operation: int) -> list[gen_pb.ModelInfo]:
    """Registered models that support a GenerateOperation (an empty list when none is configured)."""
    listing = await list_models(request)
    return [model for model in listing.models if operation in model.operations]


# ---- jobs ---------------------------------------------------------------------------------------------------


def iso(stamp) -> str | None:
    if stamp is None or (stamp.seconds == 0 and stamp.nanos == 0):
        return None
    return stamp.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds_between(start, end) -> float | None:
    if not iso(start) or not iso(end):
        return None
    return (end.ToNanoseconds() - start.ToNanoseconds()) / 1e9


def _idempotency(request: Request) -> str:
    """A client's Idempotency-Key header: a retried submit with the same key returns the same job."""
    return request.headers.get("idempotency-key", "")[:200]


def labels(dialect: str, **extra: str) -> dict[str, str]:
    return {"dialect": dialect, **{k: str(v) for k, v in extra.items() if v is not None}}


async def _client_gone(request: Request) -> None:
    """Returns when the HTTP client has gone away. Called once the endpoint has its body: from then on the server's
    only message is `http.disconnect` (when the connection drops, or after the response is sent)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def while_connected(request: Request, work: Awaitable[T]) -> T:
    """Await `work` (a synchronous call into the mesh) unless the HTTP client goes away first: then the call is
    cancelled, which cancels its RPC, and the orchestrator cancels the job nobody will read (RunJob and
    RunShotgun stop their work when their caller leaves). The WebSocket path cancels on its own."""
    call = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait({call, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (gone, call):
            if not task.done():
                task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gone
    if call.done() and not call.cancelled():
        return call.result()
    with contextlib.suppress(asyncio.CancelledError):
        await call
    log.info("client of %s %s went away: its synchronous job is cancelled", request.method, request.url.path)
    raise Cancelled("the client disconnected before the job finished")


async def run_job(request: Request, spec: orch_pb.JobSpec, dialect: str, **extra: str) -> orch_pb.Job:
    """Run a job to its end (the synchronous endpoints); a failure comes back as the service's error. A client
    that disconnects first cancels the job."""
    return await while_connected(request, client(request).run_job(
        spec, labels=labels(dialect, **extra), idempotency_key=_idempotency(request)))


async def submit_job(request: HTTPConnection, spec: orch_pb.JobSpec, dialect: str,
                     webhook: orch_pb.Webhook | None = None, idempotency_key: str | None = None,
                     **extra: str) -> orch_pb.Job:
    """Submit a job of the caller; `idempotency_key` None takes the request's Idempotency-Key header."""
    key = _idempotency(request) if idempotency_key is None else idempotency_key
    return await client(request).submit_job(spec, labels=labels(dialect, **extra), webhook=webhook,
                                            idempotency_key=key)


async def get_job(request: HTTPConnection, job_id: str) -> orch_pb.Job:
    return await client(request).get_job(job_id)


def watch_job(request: HTTPConnection, job_id: str) -> AsyncIterator[orch_pb.WatchJobResponse]:
    return client(request).watch_job(job_id)


async def cancel_job(request: HTTPConnection, job_id: str) -> orch_pb.Job:
    return await client(request).cancel_job(job_id)


def percent(done: int, total: int) -> int:
    """A progress count as a whole percentage (0 when the total is unknown)."""
    return round(100 * done / total) if total > 0 else 0


def preview_uri(progress: common_pb2.Progress) -> str | None:
    """The latest live preview of a running generation as a data URI (the bytes as Generate made them), or None."""
    if not progress.HasField("preview") or not progress.preview.data:
        return None
    return data_uri(progress.preview.data, progress.preview.media_type or "image/png")


# One spelling of job states and results for every surface (the CLI reads them through the mesh client too).
terminal = is_terminal


async def webhook(request: Request, url: str | None, secret: str | None = None,
                  body_format: str = "") -> orch_pb.Webhook | None:
    """The Webhook message for a client's URL, refused early (WEBHOOK_URL_INVALID) when the SSRF rules forbid it;
    the orchestrator checks again when it delivers. `body_format` names the document whose webhook body the
    orchestrator sends ("freepik" when empty, "shotgun")."""
    if not url:
        return None
    policy = ssrf.UrlPolicy.from_setting(request.app.state.settings.url_allow_list)
    try:
        await ssrf.resolve_checked(url, policy, "webhook_url")
    except InvalidArgument as exc:
        raise InvalidArgument(f"webhook_url is not accessible: {exc.message}", field="webhook_url",
                              reason="WEBHOOK_URL_INVALID") from None
    return orch_pb.Webhook(url=url, secret=secret or "", format=body_format)


def struct(values: dict[str, Any] | None) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    if values:
        out.update(values)
    return out


# ---- images -------------------------------------------------------------------------------------------------


async def stored_image_response(request: HTTPConnection, ref: str, thumbnail: bool = False) -> Response:
    """A stored image for a download route: a redirect to the store's own expiring URL where it gives one (S3), so
    the bytes skip the gateway, else the bytes themselves (a local store)."""
    reply = await client(request).get_image(ref, thumbnail=thumbnail, prefer_url=True)
    if reply.url:
        return RedirectResponse(reply.url, status_code=307)
    return Response(content=reply.image.data, media_type=reply.image.media_type or reply.record.media_type)


async def image_bytes(request: HTTPConnection, image: common_pb2.Image) -> tuple[bytes, str]:
    """An output image's bytes and media type, reading a store reference through the orchestrator."""
    if image.WhichOneof("source") == "ref":
        reply = await client(request).get_image(image.ref)
        return reply.image.data, reply.image.media_type or reply.record.media_type or "image/png"
    return image.data, image.media_type or "image/png"


def output_format(name: str | None, field: str = "output_format") -> int:
    if not name:
        return common_pb2.IMAGE_FORMAT_PNG
    return format_from_name({"jpg": "jpeg"}.get(name.lower(), name.lower()), field=field)


# ---- request builders shared by the dialects ----------------------------------------------------------------


def generate_parameters(*, model: gen_pb.ModelInfo | None, prompt: str, negative_prompt: str = "", width: int = 0,
                        height: int = 0, aspect_ratio: str = "", steps: int = 0, guidance_scale: float | None = None,
                        seed: int | None = None, num_images: int = 1, style_preset: str = "",
                        output_format: int = common_pb2.IMAGE_FORMAT_PNG, owner: str = "",
                        operation: int = gen_pb.GENERATE_OPERATION_TEXT_TO_IMAGE,
                        init_image: common_pb2.Image | None = None, mask_image: common_pb2.Image | None = None,
                        strength: float | None = None) -> gen_pb.GenerateParameters:
    params = gen_pb.GenerateParameters(
        model=model.id if model else "", prompt=prompt, negative_prompt=negative_prompt or "", width=width or 0,
        height=height or 0, aspect_ratio=aspect_ratio or "", steps=steps or 0, num_images=num_images or 1,
        style_preset=style_preset or "", output_format=output_format, owner=owner, operation=operation,
    )
    if guidance_scale is not None:
        params.guidance_scale = guidance_scale
    # The seeds use -1 for "random"; the contract says unset.
    if seed is not None and seed >= 0:
        params.seed = seed
    if init_image is not None:
        params.init_image.CopyFrom(init_image)
    if mask_image is not None:
        params.mask_image.CopyFrom(mask_image)
    if strength is not None:
        params.strength = strength
    return params


def upscale_request(image: common_pb2.Image, *, scale_factor: int = 0, mode: str = "", target_width: int = 0,
                    target_height: int = 0, preset: str = "", preserve_alpha: bool | None = None,
                    output_format: int = common_pb2.IMAGE_FORMAT_PNG, method: str = "") -> up_pb.UpscaleRequest:
    request = up_pb.UpscaleRequest(image=image, scale_factor=scale_factor, mode=mode, method=method,
                                   target_width=target_width or 0,
                                   target_height=target_height or 0, preset=preset or "", output_format=output_format)
    if preserve_alpha is not None:
        request.preserve_alpha = preserve_alpha
    return request


async def platform_formats(request: Request, platform: str = "") -> list[up_pb.PlatformFormat]:
    reply = await client(request).catalog(orch_pb.CATALOG_SECTION_PLATFORM_FORMATS, platform=platform)
    return list(reply.platform_formats.formats)


async def removal_models(request: Request) -> list[br_pb.RemovalModelInfo]:
    reply = await client(request).catalog(orch_pb.CATALOG_SECTION_REMOVAL_MODELS)
    return list(reply.removal_models.models)
