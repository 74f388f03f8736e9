"""The Freepik AI Orchestrator API (seed 000) at /v1: asynchronous generation with task ids, workflows,
post-processing, user analytics, webhooks; plus a Server-Sent Events stream for any job (/v1/jobs/{id}/events).

Errors: {"error": {"code", "message", "details"}} with the seed's codes (INVALID_API_KEY, INVALID_MODEL,
PROMPT_TOO_LONG, RATE_LIMIT_EXCEEDED, WEBHOOK_URL_INVALID, TASK_NOT_FOUND, WORKFLOW_NOT_FOUND) and the mesh's
reason for anything else.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from gateway import errors, images_out, translate
from gateway.images_in import data_uri, image_from_request
from gateway.limits import (
    INT32_MAX,
    MAX_ID_CHARS,
    MAX_LIST_ITEMS,
    MAX_NAME_CHARS,
    MAX_URL_CHARS,
    SEED_MAX,
    FreeForm,
    IdPath,
    NamePath,
    deduplicated,
)
from gateway.security import guard
from shared.errors import ImageMeshError, InvalidArgument, NotFound, PromptTooLong
from shared.gen.imagemesh.v1 import background_removal_service_pb2 as br_pb
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as orch_pb
from shared.gen.imagemesh.v1 import upscale_service_pb2 as up_pb

GUARD = Depends(guard("freepik"))
DIALECT = "freepik"
router = APIRouter(tags=["Freepik AI Orchestrator (seed 000)"])


def render_error(error: ImageMeshError) -> JSONResponse:
    return errors.default_renderer(error)


class GenerateBody(BaseModel):
    prompt: str = Field(min_length=1, description="What to generate")
    model: str = Field("auto", max_length=MAX_NAME_CHARS,
                       description="Model name or alias (auto, mystic, imagen3, flux-dev, classic-fast, ...)")
    style: str | None = Field(None, max_length=MAX_NAME_CHARS, description="Style preset, e.g. photorealistic")
    aspect_ratio: str | None = Field(None, max_length=32, pattern=r"^\d+(\.\d+)?:\d+(\.\d+)?$",
                                     description="e.g. 16:9")
    quality_level: int = Field(5, ge=1, le=10, description="1 (fastest) to 10 (most steps)")
    webhook_url: str | None = Field(None, max_length=MAX_URL_CHARS,
                                    description="POSTed generation.completed / generation.failed")
    # imagemesh extensions (not in seed 000), for the CLI and SDKs; Generate checks and applies them (the upper
    # bounds here are only the contract's field widths: Generate's own limits are smaller and answer 400 too).
    width: int | None = Field(None, ge=1, le=INT32_MAX, description="imagemesh: exact output width (with height)")
    height: int | None = Field(None, ge=1, le=INT32_MAX, description="imagemesh: exact output height (with width)")
    steps: int | None = Field(None, ge=1, le=INT32_MAX,
                              description="imagemesh: denoising steps (wins over quality_level)")
    seed: int | None = Field(None, ge=-1, le=SEED_MAX, description="imagemesh: seed; -1 or absent = random")
    num_images: int = Field(1, ge=1, le=INT32_MAX,
                            description="imagemesh: images to generate (Generate's limit applies)")


class GenerateReply(BaseModel):
    task_id: str
    model_used: str
    status: str
    estimated_completion: str
    webhook_callback: bool
    checkpoint: str | None = Field(None, description="imagemesh: the registry model that runs for model_used")


class TaskReply(BaseModel):
    task_id: str
    status: str
    image_url: str | None = None
    thumbnail_url: str | None = None
    model_used: str | None = None
    processing_time: int | None = Field(None, description="Whole seconds from start to finish")
    created_at: str | None = None
    completed_at: str | None = None
    error: dict[str, Any] | None = None
    # imagemesh extensions (not in seed 000): the resolved model, the job's kind, progress, every result image.
    checkpoint: str | None = Field(None, description="imagemesh: the registry model that ran for model_used")
    kind: str | None = None
    progress: float | None = Field(None, description="imagemesh: percentage done")
    images: list[str] = Field(default_factory=list, description="imagemesh: every result image's URL")
    message: str | None = Field(None, description="imagemesh: what the job is doing, as the orchestrator recorded it")


class JobList(BaseModel):
    """imagemesh extension: the caller's jobs, newest first."""

    jobs: list[TaskReply]
    next_page_token: str | None = None
    total: int


class WorkflowBody(BaseModel):
    prompt: str | None = None
    image_url: str | None = Field(None, description="Input image for workflows that start from one")
    custom_params: FreeForm = Field(default_factory=dict, description="The workflow's parameters (JSON values; "
                                    "at most 64 keys a level, 8 levels deep)")
    webhook_url: str | None = Field(None, max_length=MAX_URL_CHARS)


class WorkflowStep(BaseModel):
    step: int
    action: str
    status: str
    result_url: str | None = None


class WorkflowExecution(BaseModel):
    workflow_execution_id: str
    workflow_name: str
    status: str
    estimated_completion: str
    steps: list[WorkflowStep]


class WorkflowSummary(BaseModel):
    id: str
    name: str
    description: str
    estimated_time: str
    estimated_cost: str
    steps_count: int


class WorkflowList(BaseModel):
    workflows: list[WorkflowSummary]


class UpscaleBody(BaseModel):
    image_url: str | None = Field(None, description="Image URL (or a data URI)")
    image: str | None = Field(None, description="Base64 image, instead of image_url")
    scale_factor: Literal[2, 4] = 4
    webhook_url: str | None = Field(None, max_length=MAX_URL_CHARS)
    method: str | None = Field(None, max_length=MAX_NAME_CHARS,
                               description="imagemesh: an Upscale method id (e.g. lanczos); default auto")


class RelightBody(BaseModel):
    image_url: str | None = None
    image: str | None = None
    lighting_style: str = Field("professional", max_length=MAX_NAME_CHARS)
    webhook_url: str | None = Field(None, max_length=MAX_URL_CHARS)


class RemoveBackgroundBody(BaseModel):
    image_url: str | None = None
    image: str | None = None


class RemoveBackgroundReply(BaseModel):
    result_url: str = Field(description="The cut-out's URL in the image store (GET it with the same key)")
    processing_time: int = Field(description="Whole seconds")


class PostProcessReply(BaseModel):
    task_id: str
    status: str
    estimated_completion: str
    webhook_callback: bool


class DailyStat(BaseModel):
    date: str
    generations: int
    cost_cents: int


class AnalyticsReply(BaseModel):
    period_days: int
    total_generations: int
    successful_generations: int
    failed_generations: int
    success_rate: float
    total_cost_cents: int
    average_processing_time: int  # whole seconds, as seed 000 shows (42)
    models_used: dict[str, int]
    daily_stats: list[DailyStat]


def _estimate(seconds: float) -> str:
    if seconds < 90:
        low = max(1, int(seconds // 10 * 10))
        return f"{low}-{low * 2} seconds"
    minutes = max(1, round(seconds / 60))
    return f"{minutes}-{minutes + 1} minutes"


def image_url(request: Request, image: common_pb2.Image, thumbnail: bool = False) -> str | None:
    if not image.ref:
        return None
    url = images_out.public_url(request, "freepik_image", ref=image.ref)
    return f"{url}?thumbnail=true" if thumbnail else url


async def _result_url(request: Request, image: common_pb2.Image) -> str:
    """A stored output's URL; an inline one (never stored by the service) as a data URI."""
    url = image_url(request, image)
    if url:
        return url
    data, media_type = await translate.image_bytes(request, image)
    return data_uri(data, media_type)


def _not_found(exc: NotFound, reason: str, message: str) -> NotFound:
    error = NotFound(message, reason=reason)
    error.metadata = exc.metadata
    return error


@router.post("/generate", response_model=GenerateReply, dependencies=[GUARD], summary="Generate an image (async)")
async def generate(body: GenerateBody, request: Request) -> GenerateReply:
    settings = request.app.state.settings
    if len(body.prompt) > settings.max_prompt_chars:
        raise PromptTooLong(f"prompt exceeds the maximum length of {settings.max_prompt_chars} characters",
                            field="prompt", max_length=settings.max_prompt_chars)
    model = await translate.resolve_model(request, body.model)
    listing = await translate.list_models(request)
    used = model or translate.default_model(listing)
    hook = await translate.webhook(request, body.webhook_url)
    params = translate.generate_parameters(
        model=model, prompt=body.prompt, style_preset=body.style or "", aspect_ratio=body.aspect_ratio or "",
        width=body.width or 0, height=body.height or 0, steps=body.steps or 0, seed=body.seed,
        num_images=body.num_images, owner=translate.owner_of(request))
    # Generate maps quality levels 1..10 onto the model's steps.
    params.quality = str(body.quality_level)
    job = await translate.submit_job(request, orch_pb.JobSpec(generate=params), DIALECT, webhook=hook,
                                     model_requested=body.model)
    return GenerateReply(task_id=job.id, model_used=body.model if model else (used.id if used else "auto"),
                         status=translate.status_name(job.status), estimated_completion="30-60 seconds",
                         webhook_callback=hook is not None, checkpoint=used.id if used else None)


def _model_used(job: orch_pb.Job) -> str | None:
    """The model as the client asked for it (as the submit answered); "auto" or none asked: the model that ran."""
    asked = job.labels.get("model_requested", "")
    return asked if asked and asked.strip().lower() != "auto" else (job.model_id or None)


async def _task(request: Request, task_id: str) -> TaskReply:
    try:
        job = await translate.get_job(request, task_id)
    except NotFound as exc:
        raise _not_found(exc, "TASK_NOT_FOUND", f"Task '{task_id}' does not exist") from None
    return await _task_reply(request, job)


async def _task_reply(request: Request, job: orch_pb.Job, inline: bool = True) -> TaskReply:
    """A job as the seed's task; `inline` False leaves out results that are not stored (a listing stays small)."""
    images = translate.job_images(job) if job.status in (common_pb2.JOB_STATUS_COMPLETED,
                                                         common_pb2.JOB_STATUS_PARTIAL) else []
    urls = [await _result_url(request, image) if inline else image_url(request, image) for image in images]
    urls = [url for url in urls if url]
    url = urls[0] if urls and job.status == common_pb2.JOB_STATUS_COMPLETED else None
    thumbnail = image_url(request, images[0], thumbnail=True) if images else None
    seconds = translate.seconds_between(job.started_at or job.created_at, job.finished_at)
    error = None
    if job.error.reason:
        error = {"code": job.error.reason, "message": job.error.message, "details": dict(job.error.metadata)}
    return TaskReply(task_id=job.id, status=translate.status_name(job.status), image_url=url,
                     # A real thumbnail (WebP, longest side 256) made when the orchestrator stored the image.
                     thumbnail_url=thumbnail or url, model_used=_model_used(job), checkpoint=job.model_id or None,
                     processing_time=round(seconds) if seconds is not None else None,
                     created_at=translate.iso(job.created_at), completed_at=translate.iso(job.finished_at),
                     error=error, kind=job.kind or None, progress=round(job.progress.fraction * 100, 1),
                     images=urls, message=job.progress.message or None)


@router.get("/generate/{task_id}", response_model=TaskReply, dependencies=[GUARD],
            summary="Check the status of a generation task")
async def task_status(task_id: IdPath, request: Request) -> TaskReply:
    return await _task(request, task_id)


@router.get("/jobs", response_model=JobList, dependencies=[GUARD],
            summary="imagemesh extension: the caller's jobs, newest first (seed 000 has no listing)")
async def list_jobs(request: Request,
                    status: list[str] = Query(default_factory=list, max_length=MAX_LIST_ITEMS),
                    kind: str = Query("", max_length=MAX_NAME_CHARS), page_size: int = Query(20, ge=1, le=500),
                    page_token: str = Query("", max_length=MAX_ID_CHARS)) -> JobList:
    statuses = []
    for name in deduplicated(status):
        value = common_pb2.JobStatus.DESCRIPTOR.values_by_name.get("JOB_STATUS_" + name.upper())
        if value is None or value.number == common_pb2.JOB_STATUS_UNSPECIFIED:
            raise InvalidArgument(f"unknown status '{name[:50]}'", field="status")
        statuses.append(value.number)
    reply = await translate.client(request).list_jobs(statuses=statuses, kind=kind, page_size=page_size,
                                                      page_token=page_token)
    return JobList(jobs=[await _task_reply(request, job, inline=False) for job in reply.jobs],
                   next_page_token=reply.next_page_token or None, total=reply.total_size)


@router.post("/jobs/{job_id}/cancel", response_model=TaskReply, dependencies=[GUARD],
             summary="imagemesh extension: cancel a job of the caller (a terminal job is returned as it is)")
async def cancel_job(job_id: IdPath, request: Request) -> TaskReply:
    try:
        job = await translate.cancel_job(request, job_id)
    except NotFound as exc:
        raise _not_found(exc, "TASK_NOT_FOUND", f"Task '{job_id}' does not exist") from None
    return await _task_reply(request, job)


@router.get("/jobs/{job_id}", response_model=TaskReply, dependencies=[GUARD], summary="Any job's status")
async def job_status(job_id: IdPath, request: Request) -> TaskReply:
    return await _task(request, job_id)


@router.get("/jobs/{job_id}/events", dependencies=[GUARD], response_class=StreamingResponse,
            summary="Server-Sent Events: a job's status, progress and step events until it is terminal",
            responses={200: {"content": {"text/event-stream": {}}}})
async def job_events(job_id: IdPath, request: Request) -> StreamingResponse:
    # Fail before the stream starts (404, 501) so the client gets a proper status code.
    try:
        first = await translate.get_job(request, job_id)
    except NotFound as exc:
        raise _not_found(exc, "TASK_NOT_FOUND", f"Task '{job_id}' does not exist") from None

    async def events() -> AsyncIterator[bytes]:
        opening = _event_body(first, "status")
        last_preview = translate.preview_uri(first.progress)
        if last_preview is not None:
            opening["progress"]["preview"] = last_preview
        yield _sse("status", opening)
        if translate.terminal(first.status):
            return
        try:
            async for event in translate.watch_job(request, job_id):
                kind = orch_pb.JobEventType.Name(event.type).removeprefix("JOB_EVENT_TYPE_").lower()
                body = _event_body(event.job, kind, event.step_name)
                # A live preview (PNG data URL) rides on the first event after Generate made it, not on every one.
                preview = translate.preview_uri(event.job.progress)
                if preview is not None and preview != last_preview:
                    body["progress"]["preview"] = last_preview = preview
                yield _sse(kind, body)
                if translate.terminal(event.job.status):
                    return
        except ImageMeshError as exc:
            yield _sse("error", {"code": exc.reason, "message": exc.message})

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _event_body(job: orch_pb.Job, kind: str, step_name: str = "") -> dict[str, Any]:
    progress = job.progress
    body: dict[str, Any] = {"task_id": job.id, "event": kind, "status": translate.status_name(job.status),
                            "progress": {"stage": common_pb2.Stage.Name(progress.stage).removeprefix("STAGE_").lower(),
                                         "step": progress.step, "total_steps": progress.total_steps,
                                         "percentage": round(progress.fraction * 100, 1),
                                         "message": progress.message}}
    if step_name:
        body["step"] = step_name
    if job.error.reason:
        body["error"] = {"code": job.error.reason, "message": job.error.message}
    return body


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


@router.get("/workflows", response_model=WorkflowList, dependencies=[GUARD], summary="List available workflows")
async def list_workflows(request: Request) -> WorkflowList:
    workflows = await translate.client(request).list_workflows()
    return WorkflowList(workflows=[WorkflowSummary(
        id=w.id, name=w.name, description=w.description, estimated_time=_estimate(w.estimated_seconds),
        estimated_cost=f"${w.estimated_cost_usd:.2f}", steps_count=len(w.steps)) for w in workflows])


@router.post("/workflows/{workflow_id}/execute", response_model=WorkflowExecution, dependencies=[GUARD],
             summary="Execute a predefined workflow")
async def execute_workflow(workflow_id: NamePath, body: WorkflowBody, request: Request) -> WorkflowExecution:
    settings = request.app.state.settings
    image = await image_from_request(None, body.image_url, settings) if body.image_url else None
    spec = orch_pb.WorkflowSpec(workflow_id=workflow_id, prompt=body.prompt or "", image=image,
                                params=translate.struct(body.custom_params))
    try:
        job = await translate.client(request).execute_workflow(
            spec, webhook=await translate.webhook(request, body.webhook_url))
    except NotFound as exc:
        raise _not_found(exc, "WORKFLOW_NOT_FOUND", f"Workflow '{workflow_id[:100]}' does not exist") from None
    return await _execution(request, job)


async def _execution(request: Request, job: orch_pb.Job) -> WorkflowExecution:
    """A workflow job in the seed's execution shape: each step's live status, and its result_url once done."""
    workflow_id = job.spec.workflow.workflow_id or job.labels.get("workflow", "")
    info = next((w for w in await translate.client(request).list_workflows() if w.id == workflow_id), None)
    steps = []
    for position, step in enumerate(job.steps, start=1):
        url = image_url(request, step.outputs[0]) if step.outputs else None
        steps.append(WorkflowStep(step=step.index or position, action=step.action,
                                  status=translate.status_name(step.status), result_url=url))
    if not steps and info is not None:
        # Not started yet: the definition's steps, all pending.
        steps = [WorkflowStep(step=position, action=step.action, status="pending")
                 for position, step in enumerate(info.steps, start=1)]
    return WorkflowExecution(workflow_execution_id=job.id, workflow_name=workflow_id,
                             status=translate.status_name(job.status),
                             estimated_completion=_estimate(info.estimated_seconds if info else 60), steps=steps)


@router.get("/workflows/executions/{workflow_execution_id}", response_model=WorkflowExecution, dependencies=[GUARD],
            summary="imagemesh extension: a workflow execution again, in the execute response's shape")
async def workflow_execution(workflow_execution_id: str, request: Request) -> WorkflowExecution:
    try:
        job = await translate.get_job(request, workflow_execution_id)
    except NotFound as exc:
        raise _not_found(exc, "TASK_NOT_FOUND", f"Execution '{workflow_execution_id[:100]}' does not exist") from None
    if job.kind != "workflow":
        raise _not_found(NotFound(""), "TASK_NOT_FOUND",
                         f"'{workflow_execution_id[:100]}' is not a workflow execution")
    return await _execution(request, job)


async def _post_process(request: Request, spec: orch_pb.JobSpec, webhook_url: str | None) -> PostProcessReply:
    hook = await translate.webhook(request, webhook_url)
    job = await translate.submit_job(request, spec, DIALECT, webhook=hook)
    return PostProcessReply(task_id=job.id, status=translate.status_name(job.status),
                            estimated_completion="5-10 seconds", webhook_callback=hook is not None)


@router.post("/post-process/upscale", response_model=PostProcessReply, dependencies=[GUARD],
             summary="Upscale an existing image (async: poll /v1/generate/{task_id} or use the webhook)")
async def post_upscale(body: UpscaleBody, request: Request) -> PostProcessReply:
    image = await image_from_request(body.image, body.image_url, request.app.state.settings)
    spec = orch_pb.JobSpec(upscale=translate.upscale_request(image, scale_factor=body.scale_factor, mode="auto",
                                                             method=body.method or ""))
    return await _post_process(request, spec, body.webhook_url)


@router.post("/post-process/relight", response_model=PostProcessReply, dependencies=[GUARD],
             summary="Apply professional lighting (async)")
async def post_relight(body: RelightBody, request: Request) -> PostProcessReply:
    image = await image_from_request(body.image, body.image_url, request.app.state.settings)
    spec = orch_pb.JobSpec(relight=up_pb.RelightRequest(image=image, lighting_style=body.lighting_style))
    return await _post_process(request, spec, body.webhook_url)


@router.post("/post-process/remove-background", response_model=RemoveBackgroundReply, dependencies=[GUARD],
             summary="Remove the background (synchronous)")
async def post_remove_background(body: RemoveBackgroundBody, request: Request) -> RemoveBackgroundReply:
    image = await image_from_request(body.image, body.image_url, request.app.state.settings)
    spec = orch_pb.JobSpec(remove_background=br_pb.RemoveBackgroundRequest(
        image=image, output_format=common_pb2.IMAGE_FORMAT_PNG))
    job = await translate.run_job(request, spec, DIALECT)
    # run_job answers with the bytes inline; the stored job holds the image store's reference, whose URL the
    # document shows (not a data: URL of the whole cut-out).
    result = (await translate.get_job(request, job.id)).result.remove_background
    seconds = result.processing_time_ms / 1000 if result.processing_time_ms else (
        translate.seconds_between(job.started_at, job.finished_at) or 0.0)
    return RemoveBackgroundReply(result_url=await _result_url(request, result.image), processing_time=round(seconds))


@router.get("/analytics/user", response_model=AnalyticsReply, dependencies=[GUARD],
            summary="Analytics of the authenticated user")
async def analytics(request: Request, days: int = Query(30, ge=1, le=365)) -> AnalyticsReply:
    reply = await translate.client(request).analytics(days)
    # Generations only: cut-outs, upscales and relights are derived work, not generations. The cost is the key's
    # whole spend.
    made = reply.generations
    return AnalyticsReply(
        period_days=reply.period_days or days, total_generations=made.total, successful_generations=made.successful,
        failed_generations=made.failed,
        success_rate=round(100.0 * made.successful / made.total, 1) if made.total else 0.0,
        total_cost_cents=reply.total_cost_cents, average_processing_time=round(reply.average_processing_seconds),
        models_used=dict(made.models_used),
        daily_stats=[DailyStat(date=d.date, generations=d.generation_jobs, cost_cents=d.cost_cents)
                     for d in reply.daily])


@router.get("/images/{ref}", dependencies=[GUARD], name="freepik_image", response_class=StreamingResponse,
            summary="A stored result image (the image_url / result_url of tasks)",
            responses={200: {"content": {"image/png": {}, "image/webp": {}, "image/jpeg": {}}}})
async def image(ref: IdPath, request: Request,
                thumbnail: bool = Query(False, description="the thumbnail (WebP, longest side 256)")) -> Any:
    try:
        return await translate.stored_image_response(request, ref, thumbnail)
    except NotFound as exc:
        raise _not_found(exc, "NOT_FOUND", f"Image '{ref[:100]}' does not exist") from None

