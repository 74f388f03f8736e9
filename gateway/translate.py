"""The one mapping every dialect shares: requests to the mesh's RPCs, and the mesh's replies to plain values.

A dialect module validates its JSON and shapes its JSON; what generation, upscale, removal, jobs and images mean
in gRPC terms lives here once. Every orchestrator call carries the authenticated owner, so one key never sees
another key's jobs, images or analytics (the orchestrator answers NOT_FOUND).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from google.protobuf import struct_pb2

from gateway.security import owner_of
from shared import clients, ssrf
from shared.errors import InvalidArgument, InvalidModel
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import generate_service_pb2 as gen_pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as orch_pb
from shared.gen.imagemesh.v1 import upscale_service_pb2 as up_pb
from shared.images import format_from_name

_MODELS_TTL_S = 5.0


def mesh(request: Request):
    return request.app.state.mesh


def timeout(request: Request) -> float:
    return request.app.state.settings.request_timeout_s


# ---- models -------------------------------------------------------------------------------------------------


async def list_models(request: Request) -> gen_pb.ListModelsResponse:
    """Generate's registry, remembered for a few seconds (every generation request resolves a name)."""
    cache = getattr(request.app.state, "models_cache", None)
    if cache and cache[1] > time.monotonic():
        return cache[0]
    listing = await clients.call(mesh(request).generate.ListModels, gen_pb.ListModelsRequest(), timeout=10.0)
    request.app.state.models_cache = (listing, time.monotonic() + _MODELS_TTL_S)
    return listing


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
        raise InvalidModel(f"The specified model '{name}' is not supported"
                           + (f"; supported: {', '.join(names)}" if names else "; no generation model is configured"),
                           field=field, supported_models=names)
    return model


async def models_for(request: Request, operation: int) -> list[gen_pb.ModelInfo]:
    """Registered models that support a GenerateOperation (an empty list when none is configured)."""
    listing = await list_models(request)
    return [model for model in listing.models if operation in model.operations]


# ---- jobs ---------------------------------------------------------------------------------------------------


def status_name(status: int) -> str:
    return common_pb2.JobStatus.Name(status).removeprefix("JOB_STATUS_").lower()


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


async def run_job(request: Request, spec: orch_pb.JobSpec, dialect: str, **extra: str) -> orch_pb.Job:
    """Run a job to its end (the synchronous endpoints); a failure comes back as the service's error."""
    reply = await clients.call(mesh(request).orchestrator.RunJob,
                               orch_pb.RunJobRequest(spec=spec, owner=owner_of(request),
                                                     labels=labels(dialect, **extra),
                                                     idempotency_key=_idempotency(request)),
                               timeout=timeout(request))
    return reply.job


async def submit_job(request: Request, spec: orch_pb.JobSpec, dialect: str, webhook: orch_pb.Webhook | None = None,
                     idempotency_key: str | None = None, **extra: str) -> orch_pb.Job:
    """Submit a job of the caller; `idempotency_key` None takes the request's Idempotency-Key header."""
    key = _idempotency(request) if idempotency_key is None else idempotency_key
    reply = await clients.call(mesh(request).orchestrator.SubmitJob, orch_pb.SubmitJobRequest(
        spec=spec, owner=owner_of(request), webhook=webhook, idempotency_key=key,
        labels=labels(dialect, **extra)), timeout=30.0)
    return reply.job


async def get_job(request: Request, job_id: str) -> orch_pb.Job:
    reply = await clients.call(mesh(request).orchestrator.GetJob,
                               orch_pb.GetJobRequest(job_id=job_id, owner=owner_of(request)), timeout=30.0)
    return reply.job


async def watch_job(request: Request, job_id: str) -> AsyncIterator[orch_pb.WatchJobResponse]:
    async for event in clients.stream(mesh(request).orchestrator.WatchJob,
                                      orch_pb.WatchJobRequest(job_id=job_id, owner=owner_of(request)),
                                      timeout=timeout(request)):
        yield event


async def cancel_job(request: Request, job_id: str) -> orch_pb.Job:
    reply = await clients.call(mesh(request).orchestrator.CancelJob,
                               orch_pb.CancelJobRequest(job_id=job_id, owner=owner_of(request)), timeout=30.0)
    return reply.job


def terminal(status: int) -> bool:
    return status in (common_pb2.JOB_STATUS_COMPLETED, common_pb2.JOB_STATUS_FAILED, common_pb2.JOB_STATUS_CANCELLED,
                      common_pb2.JOB_STATUS_PARTIAL)


async def webhook(request: Request, url: str | None, secret: str | None = None) -> orch_pb.Webhook | None:
    """The Webhook message for a client's URL, refused early (WEBHOOK_URL_INVALID) when the SSRF rules forbid it;
    the orchestrator checks again when it delivers."""
    if not url:
        return None
    policy = ssrf.UrlPolicy.from_setting(request.app.state.settings.url_allow_list)
    try:
        await ssrf.resolve_checked(url, policy, "webhook_url")
    except InvalidArgument as exc:
        raise InvalidArgument(f"webhook_url is not accessible: {exc.message}", field="webhook_url",
                              reason="WEBHOOK_URL_INVALID") from None
    return orch_pb.Webhook(url=url, secret=secret or "")


def struct(values: dict[str, Any] | None) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    if values:
        out.update(values)
    return out


# ---- images -------------------------------------------------------------------------------------------------


async def image_bytes(request: Request, image: common_pb2.Image) -> tuple[bytes, str]:
    """An output image's bytes and media type, reading a store reference through the orchestrator."""
    if image.WhichOneof("source") == "ref":
        reply = await clients.call(mesh(request).orchestrator.GetImage,
                                   orch_pb.GetImageRequest(ref=image.ref, owner=owner_of(request)), timeout=30.0)
        return reply.image.data, reply.image.media_type or reply.record.media_type or "image/png"
    return image.data, image.media_type or "image/png"


def job_images(job: orch_pb.Job) -> list[common_pb2.Image]:
    """The images a terminal job produced, whatever kind it was."""
    result = job.result
    kind = result.WhichOneof("result")
    if kind == "generate":
        return [item.image for item in result.generate.images]
    if kind in ("upscale", "remove_background", "relight"):
        return [getattr(result, kind).image]
    if kind == "optimize_social":
        return [item.image for item in result.optimize_social.images]
    if kind == "shotgun":
        return [item.image for item in result.shotgun.results if item.image.ByteSize()]
    if kind == "workflow":
        return list(result.workflow.images)
    return []


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
                    output_format: int = common_pb2.IMAGE_FORMAT_PNG) -> up_pb.UpscaleRequest:
    request = up_pb.UpscaleRequest(image=image, scale_factor=scale_factor, mode=mode, target_width=target_width or 0,
                                   target_height=target_height or 0, preset=preset or "", output_format=output_format)
    if preserve_alpha is not None:
        request.preserve_alpha = preserve_alpha
    return request


async def platform_formats(request: Request, platform: str = "") -> list[up_pb.PlatformFormat]:
    reply = await clients.call(mesh(request).upscale.ListPlatformFormats,
                               up_pb.ListPlatformFormatsRequest(platform=platform), timeout=10.0)
    return list(reply.formats)
