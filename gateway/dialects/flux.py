"""The FLUX Krea API (seed 001) at /: POST /generate (synchronous, data-URI PNG), GET /models, WS /ws.

Errors: {"success": false, "error": "...", "duration": seconds}; 400 for a parameter out of its documented range,
422 for a missing field or a wrong type. GET /health is shared (dialects/common.py).
"""

from __future__ import annotations

import json
import time

from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError, field_validator

from gateway import errors, translate
from gateway.images_in import data_uri
from gateway.limits import SEED_MAX
from gateway.security import admit, client_ip, guard, key_from_headers
from shared.errors import ImageMeshError, Internal
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as orch_pb

GUARD = Depends(guard("flux", anonymous_bucket="flux_anonymous"))
DIALECT = "flux"
router = APIRouter(tags=["FLUX Krea (seed 001)"])

def render_error(error: ImageMeshError) -> JSONResponse:
    started = errors.REQUEST_STARTED.get()
    duration = round(time.perf_counter() - started, 3) if started else 0.0
    return JSONResponse(status_code=error.http_status,
                        content={"success": False, "error": error.message, "duration": duration})


class GenerateParams(BaseModel):
    prompt: str = Field(description="Text description of the image", max_length=1000)
    steps: int = Field(30, ge=20, le=50, description="Number of denoising steps")
    cfg_scale: float = Field(4.0, ge=1.0, le=10.0, description="Classifier-free guidance scale")
    seed: int = Field(-1, ge=-1, le=SEED_MAX, description="Random seed (-1 for random)")
    width: int = Field(1024, ge=512, le=2048, multiple_of=8, description="Image width in pixels, divisible by 8")
    height: int = Field(1024, ge=512, le=2048, multiple_of=8, description="Image height in pixels, divisible by 8")

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must not be empty")
        return value


class GenerateReply(BaseModel):
    success: bool = Field(description="Always true for successful generation")
    image: str = Field(description="Base64-encoded PNG image with data URI prefix")
    duration: float = Field(description="Generation time in seconds")


class ErrorReply(BaseModel):
    success: bool = False
    error: str
    duration: float


class ModelsReply(BaseModel):
    models: list[str]


def _spec(params: GenerateParams, owner: str) -> orch_pb.JobSpec:
    return orch_pb.JobSpec(generate=translate.generate_parameters(
        model=None, prompt=params.prompt, steps=params.steps, guidance_scale=params.cfg_scale, seed=params.seed,
        width=params.width, height=params.height, num_images=1, output_format=common_pb2.IMAGE_FORMAT_PNG,
        owner=owner))


async def _first_image(request, job: orch_pb.Job) -> str:
    images = translate.job_images(job)
    if not images:
        raise Internal("generation finished without an image")
    data, media_type = await translate.image_bytes(request, images[0])
    return data_uri(data, media_type or "image/png")


@router.post("/generate", response_model=GenerateReply, dependencies=[GUARD],
             responses={400: {"model": ErrorReply}, 422: {"model": ErrorReply}, 500: {"model": ErrorReply}},
             summary="Generate an image from a text prompt (synchronous)")
async def generate(params: GenerateParams, request: Request) -> GenerateReply:
    started = time.perf_counter()
    job = await translate.run_job(request, _spec(params, translate.owner_of(request)), DIALECT)
    image = await _first_image(request, job)
    return GenerateReply(success=True, image=image, duration=round(time.perf_counter() - started, 3))


@router.get("/models", response_model=ModelsReply, dependencies=[GUARD], summary="List available models")
async def models(request: Request) -> ModelsReply:
    listing = await translate.list_models(request)
    return ModelsReply(models=[model.id for model in listing.models])


@router.websocket("/ws")
async def websocket(ws: WebSocket) -> None:
    """Real-time progress: send {"type":"generate","data":{...}}; receive progress, then complete or error."""
    try:
        owner = await ws.app.state.security.owner_for(key_from_headers(ws.headers, ws.query_params))
    except ImageMeshError as exc:
        await ws.close(code=1008, reason=exc.message)
        return
    await ws.accept()
    ws.state.owner = owner
    try:
        while True:
            frame = await ws.receive()
            if frame["type"] == "websocket.disconnect":
                return
            if frame.get("text") is None:
                # A binary frame: the protocol is JSON text; say so and keep the connection.
                await ws.send_json(_ws_error("expected a JSON text frame {\"type\": \"generate\", \"data\": {...}}, "
                                             "got a binary frame"))
                continue
            try:
                message = json.loads(frame["text"])
            except (ValueError, RecursionError):
                await ws.send_json(_ws_error("the message is not valid JSON: expected "
                                             "{\"type\": \"generate\", \"data\": {...}}"))
                continue
            await _ws_generate(ws, message)
    except WebSocketDisconnect:
        return


def _ws_error(message: str) -> dict:
    return {"type": "error", "data": {"error": message}}


async def _ws_generate(ws: WebSocket, message: object) -> None:
    started = time.perf_counter()
    if not isinstance(message, dict) or message.get("type") != "generate":
        await ws.send_json(_ws_error("expected a message {\"type\": \"generate\", \"data\": {...}}"))
        return
    try:
        params = GenerateParams.model_validate(message.get("data") or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "data"
        await ws.send_json(_ws_error(f"invalid request: {field}: {first['msg']}"))
        return
    try:
        # Each generation on the socket counts like one HTTP request, through the same guard.
        await admit(ws.app.state.security, ws.state.owner, client_ip(ws), "flux", "flux_anonymous")
        # A job like every other generation (recorded, owner-scoped, in analytics). One handshake carries many
        # generations, so its Idempotency-Key header (if any) is not applied to them.
        job = await translate.submit_job(ws, _spec(params, translate.owner_of(ws)), DIALECT, idempotency_key="")
        try:
            job = await _ws_follow(ws, job)
        except WebSocketDisconnect:
            # The client left: nobody will read this image.
            await translate.cancel_job(ws, job.id)
            raise
        if job.status != common_pb2.JOB_STATUS_COMPLETED:
            await ws.send_json(_ws_error(job.error.message or f"generation {translate.status_name(job.status)}"))
            return
        image = await _first_image(ws, job)
        await ws.send_json({"type": "complete", "data": {"image": image,
                                                        "duration": round(time.perf_counter() - started, 3)}})
    except ImageMeshError as exc:
        await ws.send_json(_ws_error(exc.message))


async def _ws_follow(ws: WebSocket, job: orch_pb.Job) -> orch_pb.Job:
    """WatchJob until the job is terminal, sending the denoising steps the orchestrator recorded as `progress`
    (it writes at most one per IMAGEMESH_PROGRESS_INTERVAL_S; a watcher sees the latest, so steps may be skipped,
    never invented). A progress message carries `preview` (a PNG data URL) when Generate made a new preview since
    the last message."""
    last_step, last_preview = 0, None
    async for event in translate.watch_job(ws, job.id):
        job = event.job
        progress = job.progress
        if (event.type == orch_pb.JOB_EVENT_TYPE_PROGRESS and progress.stage == common_pb2.STAGE_GENERATING
                and progress.total_steps and progress.step > last_step):
            last_step = progress.step
            data = {"step": progress.step, "total_steps": progress.total_steps,
                    "percentage": translate.percent(progress.step, progress.total_steps)}
            preview = translate.preview_uri(progress)
            if preview is not None and preview != last_preview:
                data["preview"] = last_preview = preview
            await ws.send_json({"type": "progress", "data": data})
    return job
