"""The shotgun background-removal API (seed 002): /upscale now; /remove-background, /process and
/log-selection with their issues. Errors: {"error": {"type", "message", "details"}}."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from gateway.images_in import encode_base64, image_from_request
from shared import clients
from shared.errors import ImageMeshError, InvalidArgument
from shared.gen.imagemesh.v1 import common_pb2, orchestrator_service_pb2 as orch_pb, upscale_service_pb2 as up_pb
from shared.images import format_from_name

router = APIRouter()

# Seed 002's error types by the mesh's reasons; anything else falls back by HTTP status.
_TYPE_BY_REASON = {
    "MISSING_IMAGE": "missing_image",
    "INVALID_FORMAT": "invalid_format",
    "IMAGE_TOO_LARGE": "image_too_large",
    "PROCESSING_ERROR": "processing_error",
}
_TYPE_BY_STATUS = {400: "validation_error", 413: "image_too_large", 422: "processing_error", 503: "service_unavailable",
                   501: "not_implemented", 401: "unauthorized", 404: "not_found", 429: "rate_limit_exceeded"}


def render_error(error: ImageMeshError) -> JSONResponse:
    error_type = _TYPE_BY_REASON.get(error.reason) or _TYPE_BY_STATUS.get(error.http_status, "internal_error")
    return JSONResponse(status_code=error.http_status,
                        content={"error": {"type": error_type, "message": error.message, "details": error.metadata}})


class Dimensions(BaseModel):
    width: int
    height: int


class UpscaleBody(BaseModel):
    image: str | None = Field(None, description="Base64-encoded image data")
    image_url: str | None = Field(None, description="URL to fetch the image from")
    scale_factor: int = Field(4, description="Upscale factor: 2 or 4")
    output_format: Literal["png", "webp"] = "png"
    preserve_alpha: bool = True


class UpscaleReply(BaseModel):
    job_id: str
    status: str
    input_dimensions: Dimensions
    output_dimensions: Dimensions
    scale_factor: int
    alpha_preserved: bool
    processing_time_ms: int
    image_base64: str
    cost_usd: float


@router.post("/upscale", response_model=UpscaleReply)
async def upscale(body: UpscaleBody, request: Request) -> UpscaleReply:
    if body.scale_factor not in (2, 4):
        raise InvalidArgument("scale_factor must be 2 or 4", field="scale_factor", received=body.scale_factor)
    image = await image_from_request(body.image, body.image_url)
    spec = orch_pb.JobSpec(upscale=up_pb.UpscaleRequest(
        image=image, scale_factor=body.scale_factor, mode="fast", preserve_alpha=body.preserve_alpha,
        output_format=format_from_name(body.output_format),
    ))
    mesh = request.app.state.mesh
    reply = await clients.call(mesh.orchestrator.RunJob, orch_pb.RunJobRequest(spec=spec, labels={"dialect": "shotgun"}),
                               timeout=request.app.state.settings.request_timeout_s)
    job, result = reply.job, reply.job.result.upscale
    return UpscaleReply(
        job_id=job.id,
        status=common_pb2.JobStatus.Name(job.status).removeprefix("JOB_STATUS_").lower(),
        input_dimensions=Dimensions(width=result.input_dimensions.width, height=result.input_dimensions.height),
        output_dimensions=Dimensions(width=result.output_dimensions.width, height=result.output_dimensions.height),
        scale_factor=round(result.scale_factor),
        alpha_preserved=result.alpha_preserved,
        processing_time_ms=result.processing_time_ms,
        image_base64=encode_base64(result.image.data),
        cost_usd=result.cost.usd,
    )
