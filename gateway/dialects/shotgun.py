"""The shotgun background-removal API (seed 002) at /: /remove-background, /upscale, /process, /log-selection.

Errors: {"error": {"type", "message", "details"}}. A request with webhook_url runs as a job and answers at once;
the orchestrator POSTs the result, signed with webhook_secret.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from gateway import errors, images_out, translate
from gateway.images_in import encode_base64, image_from_request
from gateway.limits import MAX_ID_CHARS, MAX_LIST_ITEMS, MAX_NAME_CHARS, MAX_URL_CHARS, Names, deduplicated
from gateway.security import guard
from shared.errors import ImageMeshError, InvalidArgument
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as orch_pb

GUARD = Depends(guard("shotgun"))
DIALECT = "shotgun"
# Seed 002's webhook body ("event": "job_completed", full results, a `signature` field), shaped by the orchestrator.
WEBHOOK_FORMAT = "shotgun"
router = APIRouter(tags=["shotgun (seed 002)"])

# Seed 002's error types by the mesh's reasons; anything else falls back by HTTP status.
_TYPE_BY_REASON = {
    "MISSING_IMAGE": "missing_image",
    "INVALID_FORMAT": "invalid_format",
    "IMAGE_TOO_LARGE": "image_too_large",
    "PROCESSING_ERROR": "processing_error",
    "INVALID_MODEL": "validation_error",
    "VALIDATION_ERROR": "validation_error",
}
_TYPE_BY_STATUS = {400: "validation_error", 413: "image_too_large", 422: "processing_error", 503: "service_unavailable",
                   501: "not_implemented", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                   405: "method_not_allowed", 409: "conflict", 429: "rate_limit_exceeded", 499: "cancelled",
                   504: "timeout"}


def render_error(error: ImageMeshError) -> JSONResponse:
    error_type = _TYPE_BY_REASON.get(error.reason) or _TYPE_BY_STATUS.get(error.http_status, "internal_error")
    # Seed 002 documents 400 for every invalid body (validation_error), not FastAPI's 422.
    status = 400 if error.reason == "VALIDATION_ERROR" else error.http_status
    return JSONResponse(status_code=status, content={"error": {"type": error_type, "message": error.message,
                                                              "details": errors.details(error)}})


class ProcessingError(ImageMeshError):
    """Every model of a shotgun failed (seed 002: 422 processing_error)."""

    http_status = 422
    reason = "PROCESSING_ERROR"


class Dimensions(BaseModel):
    width: int
    height: int


class ImageInput(BaseModel):
    image: str | None = Field(None, description="Base64-encoded image data (plain or data URI)")
    image_url: str | None = Field(None, description="URL to fetch the image from")
    webhook_url: str | None = Field(None, max_length=MAX_URL_CHARS,
                                    description="Run asynchronously and POST the result here")
    webhook_secret: str | None = Field(None, max_length=MAX_NAME_CHARS,
                                       description="Secret for the webhook's HMAC-SHA256 signature")


class RemoveBackgroundBody(ImageInput):
    output_format: Literal["png", "webp"] = Field("png", description="Output format: png (default), webp")
    include_models: Names = Field(["all"], description="Models to run: all (default), or specific "
                                  f"model IDs (at most {MAX_LIST_ITEMS}; repeats run once)")


class ModelResult(BaseModel):
    model_id: str
    model_name: str | None = None
    status: Literal["success", "error"]
    image_base64: str | None = None
    image_url: str | None = None
    error: str | None = None
    processing_time_ms: int
    cost_usd: float


class UnavailableModel(BaseModel):
    model_id: str
    reason: str = Field(description="Why it cannot run here (no weights file, remote provider not configured)")


class RemoveBackgroundReply(BaseModel):
    job_id: str
    status: str = Field(description="completed, partial (some models failed), or pending (webhook given)")
    processing_time_ms: int | None = None
    results: list[ModelResult] = []
    total_cost_usd: float | None = None
    unavailable_models: list[UnavailableModel] = Field(
        default_factory=list, description="imagemesh: the models `all` left out because they cannot run here")


class UpscaleBody(ImageInput):
    scale_factor: Literal[2, 4] = Field(4, description="Upscale factor: 2 or 4")
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


class ProcessBody(ImageInput):
    bg_models: Names = Field(["all"],
                             description=f"BG models to run (at most {MAX_LIST_ITEMS}; repeats run once)")
    upscale_factor: Literal[2, 4] = Field(4, description="Upscale factor: 2 or 4")
    output_format: Literal["png", "webp"] = "png"


class ProcessResult(BaseModel):
    model_id: str
    model_name: str | None = None
    bg_removal_status: Literal["success", "error"]
    upscale_status: str | None = None
    input_dimensions: Dimensions | None = None
    output_dimensions: Dimensions | None = None
    image_base64: str | None = None
    error: str | None = None
    processing_time_ms: int
    cost_usd: float


class ProcessReply(BaseModel):
    job_id: str
    status: str
    processing_time_ms: int | None = None
    results: list[ProcessResult] = []
    total_cost_usd: float | None = None
    unavailable_models: list[UnavailableModel] = Field(
        default_factory=list, description="imagemesh: the models `all` left out because they cannot run here")


class LogSelectionBody(BaseModel):
    job_id: str = Field(max_length=MAX_ID_CHARS, description="Job ID from BG removal request")
    selected_model_id: str = Field(max_length=MAX_NAME_CHARS, description="Model ID user chose")
    image_category: str | None = Field(None, max_length=MAX_NAME_CHARS, description="Optional category tag")
    notes: str | None = Field(None, max_length=2000, description="Optional user notes")


class LogSelectionReply(BaseModel):
    status: Literal["logged"]
    selection_id: str


class AcceptedReply(BaseModel):
    job_id: str
    status: str
    webhook: bool = True


def _dims(dims: common_pb2.Dimensions) -> Dimensions | None:
    return Dimensions(width=dims.width, height=dims.height) if dims.width else None


def _unavailable(summary: orch_pb.ShotgunSummary) -> list[UnavailableModel]:
    return [UnavailableModel(model_id=u.model_id, reason=u.reason) for u in summary.unavailable]


def _success(result: orch_pb.ShotgunResult) -> bool:
    return result.status == orch_pb.SHOTGUN_RESULT_STATUS_SUCCESS


async def _shotgun(request: Request, body: ImageInput, models: list[str], output_format: str,
                   upscale_factor: int = 0) -> orch_pb.ShotgunSummary | orch_pb.Job:
    models = deduplicated(models)
    models = [] if models == ["all"] else models
    image = await image_from_request(body.image, body.image_url, request.app.state.settings)
    spec = orch_pb.ShotgunSpec(image=image, models=models,
                               output_format=translate.output_format(output_format), upscale_factor=upscale_factor)
    if body.webhook_url:
        hook = await translate.webhook(request, body.webhook_url, body.webhook_secret, WEBHOOK_FORMAT)
        return await translate.submit_job(request, orch_pb.JobSpec(shotgun=spec), DIALECT, webhook=hook)
    summary = await translate.while_connected(request, translate.client(request).run_shotgun(spec))
    if summary.results and not any(_success(r) for r in summary.results):
        raise ProcessingError("all models failed", job_id=summary.job_id,
                              errors="; ".join(f"{r.model_id}: {r.error}" for r in summary.results))
    return summary


async def _image_fields(request: Request, image: common_pb2.Image) -> tuple[str | None, str | None]:
    """(image_base64, image_url) of a result: bytes inline, and a URL when the result is in the image store."""
    if not image.ByteSize():
        return None, None
    data, _ = await translate.image_bytes(request, image)
    url = images_out.image_url(request, image)
    return encode_base64(data), url


@router.post("/remove-background", response_model=RemoveBackgroundReply | AcceptedReply, dependencies=[GUARD],
             summary="Run several background removal models in parallel and return all results")
async def remove_background(body: RemoveBackgroundBody, request: Request) -> Any:
    outcome = await _shotgun(request, body, body.include_models, body.output_format)
    if isinstance(outcome, orch_pb.Job):
        return AcceptedReply(job_id=outcome.id, status=translate.status_name(outcome.status))
    results = []
    for result in outcome.results:
        image_base64, image_url = await _image_fields(request, result.image)
        results.append(ModelResult(
            model_id=result.model_id, model_name=result.model_name or None,
            status="success" if _success(result) else "error", image_base64=image_base64, image_url=image_url,
            error=result.error or None, processing_time_ms=result.processing_time_ms, cost_usd=result.cost.usd))
    return RemoveBackgroundReply(job_id=outcome.job_id, status=translate.status_name(outcome.status),
                                 processing_time_ms=outcome.processing_time_ms, results=results,
                                 total_cost_usd=outcome.total_cost.usd, unavailable_models=_unavailable(outcome))


@router.post("/upscale", response_model=UpscaleReply | AcceptedReply, dependencies=[GUARD],
             summary="Upscale an image with Lanczos (alpha preserved)")
async def upscale(body: UpscaleBody, request: Request) -> Any:
    image = await image_from_request(body.image, body.image_url, request.app.state.settings)
    spec = orch_pb.JobSpec(upscale=translate.upscale_request(
        image, scale_factor=body.scale_factor, mode="fast", preserve_alpha=body.preserve_alpha,
        output_format=translate.output_format(body.output_format)))
    if body.webhook_url:
        job = await translate.submit_job(request, spec, DIALECT,
                                         webhook=await translate.webhook(request, body.webhook_url, body.webhook_secret,
                                                                         WEBHOOK_FORMAT))
        return AcceptedReply(job_id=job.id, status=translate.status_name(job.status))
    job = await translate.run_job(request, spec, DIALECT)
    result = job.result.upscale
    data, _ = await translate.image_bytes(request, result.image)
    return UpscaleReply(
        job_id=job.id, status=translate.status_name(job.status),
        input_dimensions=_dims(result.input_dimensions), output_dimensions=_dims(result.output_dimensions),
        scale_factor=round(result.scale_factor), alpha_preserved=result.alpha_preserved,
        processing_time_ms=result.processing_time_ms, image_base64=encode_base64(data), cost_usd=job.cost.usd)


@router.post("/process", response_model=ProcessReply | AcceptedReply, dependencies=[GUARD],
             summary="Background removal shotgun, then upscale every result")
async def process(body: ProcessBody, request: Request) -> Any:
    outcome = await _shotgun(request, body, body.bg_models, body.output_format, upscale_factor=body.upscale_factor)
    if isinstance(outcome, orch_pb.Job):
        return AcceptedReply(job_id=outcome.id, status=translate.status_name(outcome.status))
    results = []
    for result in outcome.results:
        image_base64, _ = await _image_fields(request, result.image)
        results.append(ProcessResult(
            model_id=result.model_id, model_name=result.model_name or None,
            bg_removal_status="success" if _success(result) else "error",
            upscale_status=result.upscale_status or None, input_dimensions=_dims(result.input_dimensions),
            output_dimensions=_dims(result.output_dimensions), image_base64=image_base64, error=result.error or None,
            processing_time_ms=result.processing_time_ms, cost_usd=result.cost.usd))
    return ProcessReply(job_id=outcome.job_id, status=translate.status_name(outcome.status),
                        processing_time_ms=outcome.processing_time_ms, results=results,
                        total_cost_usd=outcome.total_cost.usd, unavailable_models=_unavailable(outcome))


@router.post("/log-selection", response_model=LogSelectionReply, dependencies=[GUARD],
             summary="Track which model the user selected")
async def log_selection(body: LogSelectionBody, request: Request) -> LogSelectionReply:
    if not body.job_id or not body.selected_model_id:
        raise InvalidArgument("job_id and selected_model_id are required", field="job_id",
                              reason="VALIDATION_ERROR")
    reply = await translate.client(request).log_selection(
        body.job_id, body.selected_model_id, image_category=body.image_category or "", notes=body.notes or "")
    return LogSelectionReply(status="logged", selection_id=reply.selection_id)


class ModelRank(BaseModel):
    model_id: str
    selections: int
    share: float = Field(description="Share of the category's selections, 0..1")


class RankingReply(BaseModel):
    image_category: str | None
    auto_model: str = Field(description="The model `auto` resolves to for this category")
    ranking: list[ModelRank]


@router.get("/selection-ranking", response_model=RankingReply, dependencies=[GUARD],
            summary="Which models people pick, most picked first (from /log-selection)")
async def selection_ranking(request: Request,
                            image_category: str | None = Query(None, max_length=MAX_NAME_CHARS)) -> RankingReply:
    reply = await translate.client(request).selection_ranking(image_category or "")
    return RankingReply(image_category=image_category or None, auto_model=reply.auto_model,
                        ranking=[ModelRank(model_id=r.model_id, selections=r.selections, share=round(r.share, 4))
                                 for r in reply.ranking])
