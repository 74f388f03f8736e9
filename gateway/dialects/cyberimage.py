"""CyberImage (seed 004) at /api: models, queued generation, status with the progress object, images, queue,
gallery, prompt enrichment. Errors: {"status": "error", "message": "..."}.

Rate limit: 10 generations per hour per IP (or key), as documented; the read endpoints (status polling every
5 s, images, gallery, queue) count in a wider bucket of their own.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from gateway import enrich, translate
from gateway.limits import INT32_MAX, MAX_NAME_CHARS, MAX_PROMPT_FIELD_CHARS, SEED_MAX, IdPath
from gateway.security import guard
from shared.errors import ImageMeshError, NotFound, RateLimited
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import generate_service_pb2 as gen_pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as orch_pb

WRITE = Depends(guard("cyberimage"))
READ = Depends(guard("cyberimage_read"))
DIALECT = "cyberimage"
# Seed 004's documented defaults for what a request omits; Generate fits them into the model's limits (with a note).
DEFAULTS = gen_pb.GenerateDefaults(width=1024, height=1024, steps=30, guidance_scale=7.5)
router = APIRouter(tags=["CyberImage (seed 004)"])


def render_error(error: ImageMeshError) -> JSONResponse:
    content: dict[str, Any] = {"status": "error", "message": error.message}
    if isinstance(error, RateLimited) and "retry_after" in error.metadata:
        # "returns a 429 status code with wait time information"
        content["retry_after"] = int(error.metadata["retry_after"])
    # CyberImage documents 400 for every invalid parameter.
    status = 400 if error.reason == "VALIDATION_ERROR" else error.http_status
    return JSONResponse(status_code=status, content=content)


class ModelEntry(BaseModel):
    id: str
    description: str


class ModelsReply(BaseModel):
    models: dict[str, ModelEntry]
    default: str


class Settings(BaseModel):
    num_images: int = Field(1, ge=1, le=8)
    num_inference_steps: int | None = Field(None, ge=1, le=150)
    guidance_scale: float | None = Field(None, ge=0.0, le=30.0)
    height: int | None = Field(None, ge=64, le=4096)
    width: int | None = Field(None, ge=64, le=4096)
    max_sequence_length: int | None = Field(None, ge=1, le=4096)
    seed: int | None = Field(None, ge=-1, le=SEED_MAX, description="Random seed (-1 or absent: random)")


class GenerateBody(BaseModel):
    model_id: str = Field(max_length=MAX_NAME_CHARS, description="A model id or alias from GET /api/models")
    prompt: str = Field(min_length=1, max_length=500)
    negative_prompt: str | None = Field(None, max_length=500)
    settings: Settings = Field(default_factory=Settings)


class GenerateReply(BaseModel):
    job_id: str
    status: str
    num_images: int
    message: str
    model_id: str = Field(description="imagemesh: the model as asked (status and image metadata say the same)")
    checkpoint: str | None = Field(None, description="imagemesh: the registry model that runs for it")
    settings: dict[str, Any] = Field(default_factory=dict,
                                     description="imagemesh: the settings it will run with, defaults filled in")


class Progress(BaseModel):
    preparing: bool
    loading_model: bool
    generating: bool
    saving: bool
    completed: bool
    failed: bool
    step: int | None
    total_steps: int | None
    preview: str | None = Field(None, description="imagemesh: the latest live preview of the image being "
                                "generated (a small PNG data URL) while the job runs")


class ImageInfo(BaseModel):
    id: str
    file_path: str
    created_at: str | None
    metadata: dict[str, Any]


class StatusReply(BaseModel):
    id: str
    status: str
    model_id: str
    prompt: str
    negative_prompt: str | None
    settings: dict[str, Any]
    created_at: str | None
    started_at: str | None
    completed_at: str | None
    message: str
    progress: Progress
    images: list[ImageInfo]
    error_message: str | None = None
    checkpoint: str | None = Field(None, description="imagemesh: the registry model that runs for model_id")


class SimpleReply(BaseModel):
    status: str
    message: str


class QueueCounts(BaseModel):
    pending: int
    processing: int
    completed: int
    failed: int
    total: int


class QueueReply(QueueCounts):
    queue_size: int
    recent_24h: QueueCounts | None = None
    avg_processing_time_seconds: float | None = None
    models: dict[str, QueueCounts] | None = None
    failure_rate: float | None = None


class ResetReply(BaseModel):
    status: str
    reset_count: int
    message: str


class GalleryImage(BaseModel):
    id: str
    model_id: str
    prompt: str
    created_at: str | None
    settings: dict[str, Any]


class GalleryReply(BaseModel):
    images: list[GalleryImage]
    page: int
    limit: int
    has_more: bool
    total: int


class EnrichBody(BaseModel):
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_FIELD_CHARS)
    style: str | None = Field(None, max_length=MAX_NAME_CHARS)


class EnrichReply(BaseModel):
    original_prompt: str
    enriched_prompt: str
    style: str


def _settings_dict(body: GenerateBody) -> dict[str, Any]:
    return {k: v for k, v in body.settings.model_dump().items() if v is not None and k != "num_images"}


@router.get("/models", response_model=ModelsReply, dependencies=[READ], summary="Available models")
async def models(request: Request) -> ModelsReply:
    listing = await translate.list_models(request)
    out = {}
    for model in listing.models:
        # Keyed by the seed-style name clients send as model_id (the first alias), with the registry id inside.
        key = model.aliases[0] if model.aliases else model.id
        out[key] = ModelEntry(id=model.source or model.id, description=model.description)
    default = translate.default_model(listing)
    return ModelsReply(models=out, default=(default.aliases[0] if default and default.aliases
                                            else (default.id if default else "")))


@router.post("/generate", response_model=GenerateReply, dependencies=[WRITE], summary="Queue a generation job")
async def generate(body: GenerateBody, request: Request) -> GenerateReply:
    model = await translate.resolve_model(request, body.model_id, field="model_id")
    settings = body.settings
    params = translate.generate_parameters(
        model=model, prompt=body.prompt, negative_prompt=body.negative_prompt or "", width=settings.width or 0,
        height=settings.height or 0, steps=settings.num_inference_steps or 0, guidance_scale=settings.guidance_scale,
        seed=settings.seed, num_images=settings.num_images, owner=translate.owner_of(request))
    params.defaults.CopyFrom(DEFAULTS)
    job = await translate.submit_job(request, orch_pb.JobSpec(generate=params), DIALECT,
                                     model_requested=body.model_id, settings=json.dumps(_settings_dict(body)))
    n = settings.num_images
    plan = _plan(job)
    return GenerateReply(job_id=job.id, status=translate.status_name(job.status), num_images=n,
                         message=f"Image generation job submitted successfully for {n} image(s)",
                         model_id=body.model_id, checkpoint=plan.get("model_id") or job.model_id or None,
                         settings=_planned_settings(plan))


def _plan(job: orch_pb.Job) -> dict[str, Any]:
    """What Generate said at submit it will run (the orchestrator's `generate_plan` label)."""
    try:
        return json.loads(job.labels.get("generate_plan") or "{}")
    except ValueError:
        return {}


def _planned_settings(plan: dict[str, Any]) -> dict[str, Any]:
    """The seed's `settings` object from Generate's plan: the documented defaults where the request omitted a value,
    fitted into the model's limits, with Generate's notes when it changed anything."""
    out = {"num_inference_steps": plan.get("steps"), "guidance_scale": plan.get("guidance_scale"),
           "height": plan.get("height"), "width": plan.get("width")}
    out = {key: value for key, value in out.items() if value is not None}
    if plan.get("notes"):
        out["notes"] = plan["notes"]
    return out


_STATUS = {common_pb2.JOB_STATUS_PENDING: "pending", common_pb2.JOB_STATUS_RUNNING: "processing",
           common_pb2.JOB_STATUS_COMPLETED: "completed", common_pb2.JOB_STATUS_FAILED: "failed",
           common_pb2.JOB_STATUS_CANCELLED: "failed", common_pb2.JOB_STATUS_PARTIAL: "completed"}


def _progress(job: orch_pb.Job) -> Progress:
    stage, p = job.progress.stage, job.progress
    done = job.status == common_pb2.JOB_STATUS_COMPLETED
    failed = job.status in (common_pb2.JOB_STATUS_FAILED, common_pb2.JOB_STATUS_CANCELLED)
    running = job.status == common_pb2.JOB_STATUS_RUNNING
    step, total = (p.step, p.total_steps) if p.total_steps else (None, None)
    if done:
        # A finished job reports its whole run, as the seed's completed example does (step 30 of 30).
        total = total or job.result.generate.metadata.steps or job.spec.generate.steps or None
        step = total
    return Progress(preparing=job.status == common_pb2.JOB_STATUS_PENDING or (running and stage == common_pb2.STAGE_QUEUED),
                    loading_model=running and stage == common_pb2.STAGE_LOADING,
                    generating=running and stage == common_pb2.STAGE_GENERATING,
                    saving=running and stage == common_pb2.STAGE_ENCODING, completed=done, failed=failed,
                    step=step, total_steps=total, preview=translate.preview_uri(p) if running else None)


def _number(value: str | None, kind: type = int) -> Any:
    try:
        return kind(value) if value not in (None, "") else None
    except ValueError:
        return None


def _settings(meta: dict[str, str]) -> dict[str, Any]:
    """The seed's `settings` object from what Generate recorded with the stored image."""
    settings = {"num_inference_steps": _number(meta.get("steps")),
                "guidance_scale": _number(meta.get("guidance_scale"), float),
                "height": _number(meta.get("height")), "width": _number(meta.get("width"))}
    return {key: value for key, value in settings.items() if value is not None}


class ImageMetadata(BaseModel):
    model_id: str
    prompt: str
    negative_prompt: str | None
    settings: dict[str, Any]
    generation_time: float
    image_number: int | None
    total_images: int | None


@router.get("/status/{job_id}", response_model=StatusReply, dependencies=[READ], summary="A job's status")
async def status(job_id: IdPath, request: Request) -> StatusReply:
    job = await translate.get_job(request, job_id)
    params = job.spec.generate
    plan = _plan(job)
    settings = _planned_settings(plan) or json.loads(job.labels.get("settings") or "{}") or {
        k: v for k, v in (("num_inference_steps", params.steps), ("height", params.height), ("width", params.width))
        if v}
    total = params.num_images or 1
    images = []
    if job.status == common_pb2.JOB_STATUS_COMPLETED:
        for number, image in enumerate(translate.job_images(job), start=1):
            images.append(ImageInfo(
                id=image.ref or f"{job.id}_{number}", file_path=f"{image.ref or job.id}.png",
                created_at=translate.iso(job.finished_at),
                metadata={"model_id": job.labels.get("model_requested") or job.model_id, "prompt": params.prompt,
                          "negative_prompt": params.negative_prompt or None, "settings": settings,
                          "image_number": number, "total_images": total}))
    message = job.progress.message or {
        "pending": "Job is queued", "processing": "Generating...", "completed": f"Generated {len(images)} image(s)",
        "failed": job.error.message or "Generation failed"}[_STATUS.get(job.status, "pending")]
    return StatusReply(
        id=job.id, status=_STATUS.get(job.status, "pending"),
        model_id=job.labels.get("model_requested") or job.model_id or params.model, prompt=params.prompt,
        negative_prompt=params.negative_prompt or None, settings=settings, created_at=translate.iso(job.created_at),
        started_at=translate.iso(job.started_at), completed_at=translate.iso(job.finished_at), message=message,
        progress=_progress(job), images=images, error_message=job.error.message or None,
        checkpoint=plan.get("model_id") or job.model_id or None)


async def _get_image(request: Request, image_id: str) -> orch_pb.GetImageResponse:
    try:
        return await translate.client(request).get_image(image_id)
    except NotFound:
        raise NotFound(f"Image {image_id} not found") from None


@router.get("/get_image/{image_id}", dependencies=[READ], name="cyberimage_get_image", response_class=Response,
            summary="Download a generated image", responses={200: {"content": {"image/png": {}}}})
async def get_image(image_id: IdPath, request: Request) -> Response:
    reply = await _get_image(request, image_id)
    return Response(content=reply.image.data, media_type=reply.image.media_type or reply.record.media_type)


@router.get("/image/{image_id}/metadata", response_model=ImageMetadata, dependencies=[READ],
            summary="A generated image's metadata")
async def image_metadata(image_id: IdPath, request: Request) -> ImageMetadata:
    record = (await _get_image(request, image_id)).record
    meta = dict(record.metadata)
    # The orchestrator stores each generated image with its recipe and its place in the job (services/orchestrator
    # media.generation_records); "model_requested" is the name the client sent, as the seed shows it.
    return ImageMetadata(model_id=meta.get("model_requested") or meta.get("model_id", ""),
                         prompt=meta.get("prompt", ""), negative_prompt=meta.get("negative_prompt") or None,
                         settings=_settings(meta),
                         generation_time=_number(meta.get("generation_time"), float)
                         or record.created_at.ToNanoseconds() / 1e9,
                         image_number=_number(meta.get("image_number")), total_images=_number(meta.get("total_images")))


@router.delete("/image/{image_id}", response_model=SimpleReply, dependencies=[READ], summary="Delete an image")
async def delete_image(image_id: IdPath, request: Request) -> SimpleReply:
    try:
        await translate.client(request).delete_image(image_id)
    except NotFound:
        raise NotFound(f"Image {image_id} not found") from None
    return SimpleReply(status="success", message="Image deleted successfully")


def _counts(counts: dict[str, int]) -> QueueCounts:
    lowered = {k.lower().removeprefix("job_status_"): v for k, v in counts.items()}
    values = {"pending": lowered.get("pending", 0), "processing": lowered.get("running", 0) + lowered.get("processing", 0),
              "completed": lowered.get("completed", 0) + lowered.get("partial", 0),
              "failed": lowered.get("failed", 0) + lowered.get("cancelled", 0)}
    return QueueCounts(**values, total=sum(values.values()))


@router.get("/queue", response_model=QueueReply, response_model_exclude_none=True, dependencies=[READ],
            summary="Queue status (detailed=true for more)")
async def queue(request: Request, detailed: bool = False) -> QueueReply:
    reply = await translate.client(request).queue_stats()
    overall = _counts(dict(reply.counts))
    out = QueueReply(**overall.model_dump(), queue_size=reply.queue_size)
    if reply.total:
        out.total = reply.total
    if detailed:
        out.recent_24h = _counts(dict(reply.counts_last_24h))
        out.avg_processing_time_seconds = round(reply.average_processing_seconds, 2)
        out.models = {m.model_id: _counts(dict(m.counts)) for m in reply.models}
        out.failure_rate = round(reply.failure_rate * 100, 2)
    return out


@router.post("/reset_queue", response_model=ResetReply, dependencies=[WRITE], summary="Reset stalled jobs")
async def reset_queue(request: Request) -> ResetReply:
    reply = await translate.client(request).reset_queue()
    return ResetReply(status="success", reset_count=reply.requeued,
                      message=f"Reset {reply.requeued} stalled jobs to pending status")


@router.get("/gallery", response_model=GalleryReply, dependencies=[READ], summary="Gallery of generated images")
async def gallery(request: Request, page: int = Query(1, ge=1, le=INT32_MAX), limit: int = Query(20, ge=1, le=50),
                  search: str | None = Query(None, max_length=MAX_NAME_CHARS),
                  model: str | None = Query(None, max_length=MAX_NAME_CHARS)) -> GalleryReply:
    model_id = ""
    if model:
        resolved = await translate.resolve_model(request, model, field="model")
        model_id = resolved.id if resolved else ""
    reply = await translate.client(request).list_images(page=page, page_size=limit, search=search or "",
                                                         model_id=model_id)
    images = []
    for record in reply.images:
        meta = dict(record.metadata)
        images.append(GalleryImage(id=record.ref, model_id=meta.get("model_requested") or meta.get("model_id", ""),
                                   prompt=meta.get("prompt", ""),
                                   created_at=translate.iso(record.created_at), settings=_settings(meta)))
    return GalleryReply(images=images, page=page, limit=limit, has_more=page * limit < reply.total_size,
                        total=reply.total_size)


@router.post("/enrich", response_model=EnrichReply, dependencies=[READ], summary="Enrich a prompt with a style")
async def enrich_prompt(body: EnrichBody, request: Request) -> EnrichReply:
    enriched, style = enrich.enrich(request.app.state.catalogues, body.prompt, body.style)
    return EnrichReply(original_prompt=body.prompt, enriched_prompt=enriched, style=style)
