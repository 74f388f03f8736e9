"""The OpenAI Images API at /v1: POST /images/generations (JSON), /images/edits and /images/variations
(multipart), GET /models and /models/{model}; the unmodified `openai` Python client works against it
(docs/openai.md).

Generations are TEXT_TO_IMAGE, edits INPAINT (the mask's transparent pixels are the area to edit: Generate reads
them through `mask_from_alpha`), variations IMAGE_TO_IMAGE with a neutral prompt. Sizes, quality and image counts
go to Generate as request fields; `url` responses link to the neutral stored-image route (gateway/images_out.py).

Errors: {"error": {"message", "type", "param", "code"}} with OpenAI's status codes; every client mistake is 400
invalid_request_error (OpenAI answers no 413 or 422), a missing or wrong key 401 with code invalid_api_key.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway import translate
from gateway.images_in import encode_base64
from gateway.images_out import image_url
from gateway.limits import NamePath
from gateway.security import guard
from shared.errors import (
    Cancelled,
    DeadlineExceeded,
    ImageMeshError,
    ImageTooLarge,
    Internal,
    InvalidArgument,
    MissingImage,
    NotFound,
    NotImplementedYet,
    PromptTooLong,
    from_detail,
)
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import generate_service_pb2 as gen_pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as orch_pb

GUARD = Depends(guard("openai"))
DIALECT = "openai"
router = APIRouter(tags=["OpenAI Images API"])

# "auto" or WIDTH x HEIGHT in pixels; which sizes a model can make is Generate's answer (400 with param "size").
SIZE_PATTERN = r"^(auto|[1-9][0-9]{0,4}x[1-9][0-9]{0,4})$"
# OpenAI's own ceiling (gpt-image-1); the gateway's max_prompt_chars is the limit that applies.
PROMPT_MAX = 32000
# Variations have no prompt in OpenAI's API; Generate needs one, so this neutral text steers nothing in particular.
VARIATION_PROMPT = "high quality, detailed image"
# OpenAI's quality names onto Generate's quality names (Generate turns names into steps).
QUALITY = {"auto": "", "standard": "standard", "hd": "high", "low": "draft", "medium": "standard", "high": "high"}
# DALL-E 3's styles onto Generate's style presets: "vivid" is its detail-enhancing preset, "natural" the bare prompt.
STYLE = {"vivid": "enhance", "natural": ""}

Quality = Literal["auto", "standard", "hd", "low", "medium", "high"]
ResponseFormat = Literal["url", "b64_json"]
OutputFormat = Literal["png", "jpeg", "webp"]
Background = Literal["auto", "opaque", "transparent"]


# ---- errors -------------------------------------------------------------------------------------------------

# The mesh's field names as the OpenAI parameters they come from.
_PARAMS = {"width": "size", "height": "size", "aspect_ratio": "size", "num_images": "n", "init_image": "image",
           "mask_image": "mask", "style_preset": "style", "body": None}
# pydantic's error types that OpenAI has a code of its own for.
_VALIDATION_CODES = {"extra_forbidden": "unknown_parameter", "missing": "missing_required_parameter"}


def _type(status: int) -> str:
    if status == 429:
        return "requests"
    return "server_error" if status >= 500 else "invalid_request_error"


def _code(error: ImageMeshError, param: str | None) -> str | None:
    if error.reason == "INTERNAL":
        return None
    if param == "size" and error.http_status in (400, 422):
        return "invalid_size"
    if error.reason == "VALIDATION_ERROR":
        return _VALIDATION_CODES.get(error.metadata.get("error_type", ""), "invalid_value")
    return error.reason.lower()


def render_error(error: ImageMeshError) -> JSONResponse:
    field = error.metadata.get("field") or None
    param = _PARAMS.get(field, field) if field else None
    # OpenAI answers every client mistake with 400 (a missing field, a wrong type, an oversize upload).
    status = 400 if error.http_status in (413, 422) else error.http_status
    return JSONResponse(status_code=status, content={"error": {
        "message": error.message, "type": _type(status), "param": param, "code": _code(error, param)}})


# ---- request and response models ----------------------------------------------------------------------------


class GenerationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=PROMPT_MAX, description="What to generate")
    model: str | None = Field(None, max_length=200,
                              description="A model id or alias from GET /v1/models (dall-e-2, dall-e-3 and "
                                          "gpt-image-1 are aliases of the default model); empty = the default")
    n: int | None = Field(1, ge=1, le=10, description="Number of images, 1 to 10")
    size: str | None = Field("auto", pattern=SIZE_PATTERN, description="WIDTHxHEIGHT in pixels, or auto "
                                                                         "(the model's default size)")
    quality: Quality | None = Field(None, description="auto, standard, hd, low, medium or high")
    style: Literal["vivid", "natural"] | None = Field(None, description="vivid = Generate's 'enhance' preset")
    response_format: ResponseFormat | None = Field("url", description="url (a stored image) or b64_json")
    output_format: OutputFormat | None = Field(None, description="png (default), jpeg or webp")
    output_compression: int | None = Field(None, ge=0, le=100, description="Accepted; has no effect")
    background: Background | None = Field(None, description="auto or opaque; transparent is refused")
    moderation: Literal["auto", "low"] | None = Field(None, description="Accepted; has no effect")
    stream: bool | None = Field(None, description="Streaming is refused (false only)")
    partial_images: int | None = Field(None, ge=0, le=3, description="Only with stream; refused when above 0")
    user: str | None = Field(None, max_length=256, description="End-user id, recorded as a job label")


class Image(BaseModel):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    created: int = Field(description="Unix seconds")
    data: list[Image]
    output_format: str | None = None
    size: str | None = None


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorReply(BaseModel):
    error: ErrorBody


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorReply} for status in (400, 401, 404, 429, 500)}


# ---- translation --------------------------------------------------------------------------------------------


def _dimensions(size: str | None) -> tuple[int, int]:
    """The WIDTHxHEIGHT of a `size` already matched by SIZE_PATTERN; (0, 0) = Generate's default."""
    if not size or size == "auto":
        return 0, 0
    width, height = size.split("x")
    return int(width), int(height)


def _check_prompt(request: Request, prompt: str) -> None:
    limit = request.app.state.settings.max_prompt_chars
    if len(prompt) > limit:
        raise PromptTooLong(f"prompt exceeds the maximum length of {limit} characters", field="prompt",
                            max_length=limit)


def _check_background(background: str | None) -> None:
    if background == "transparent":
        raise InvalidArgument("background 'transparent' is not supported: the models here paint opaque images "
                              "(remove the background with POST /v1/post-process/remove-background)",
                              field="background", supported_values=["auto", "opaque"])


async def _model(request: Request, name: str | None, operation: int, label: str) -> gen_pb.ModelInfo | None:
    """The model that runs `operation`: the named one (which must support it), else the default model when it
    does, else the first registered model that does."""
    model = await translate.resolve_model(request, name)
    if model is not None:
        if operation not in model.operations:
            raise InvalidArgument(f"model '{name}' does not support {label}", field="model")
        return model
    if operation == gen_pb.GENERATE_OPERATION_TEXT_TO_IMAGE:
        return None
    listing = await translate.list_models(request)
    default = translate.default_model(listing)
    if default is not None and operation in default.operations:
        return default
    capable = [entry for entry in listing.models if operation in entry.operations]
    if not capable:
        raise NotImplementedYet(f"{label} not available: no Generate model supports "
                                f"{gen_pb.GenerateOperation.Name(operation)}", field="model")
    return capable[0]


async def _upload(request: Request, upload: UploadFile, field: str) -> common_pb2.Image:
    limit = request.app.state.settings.max_image_bytes
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ImageTooLarge(f"{field} exceeds the {limit // 1048576} MB limit", field=field, max_bytes=limit)
    if not data:
        raise MissingImage(f"{field} is empty", field=field)
    return common_pb2.Image(data=data)


async def _stored_job(request: Request, spec: orch_pb.JobSpec, **labels: str | None) -> orch_pb.Job:
    """Run a job to its end keeping its outputs as store references (RunJob answers with them inline, and a `url`
    answer links to the stored image), within the gateway's synchronous deadline."""
    job = await translate.submit_job(request, spec, DIALECT, **labels)
    try:
        async with asyncio.timeout(request.app.state.settings.request_timeout_s):
            async for event in translate.watch_job(request, job.id):
                job = event.job
                if translate.terminal(job.status):
                    break
    except (asyncio.CancelledError, TimeoutError) as exc:
        # The client left or the deadline passed: nobody will read these images.
        await asyncio.shield(translate.cancel_job(request, job.id))
        if isinstance(exc, TimeoutError):
            raise DeadlineExceeded("the images were not ready within the request timeout", job_id=job.id) from None
        raise
    if not translate.terminal(job.status):
        job = await translate.get_job(request, job.id)
    if job.status == common_pb2.JOB_STATUS_CANCELLED:
        raise Cancelled(job.error.message or "the job was cancelled", job_id=job.id)
    if job.status == common_pb2.JOB_STATUS_FAILED and not job.result.WhichOneof("result"):
        raise from_detail(job.error)
    return job


async def _run(request: Request, params: gen_pb.GenerateParameters, *, prompt: str, response_format: str,
               operation: str, model: str | None, user: str | None) -> ImagesResponse:
    spec = orch_pb.JobSpec(generate=params)
    labels = {"operation": operation, "model_requested": model, "user": user}
    if response_format == "url":
        job = await _stored_job(request, spec, **labels)
    else:
        job = await translate.run_job(request, spec, DIALECT, **labels)
    images = translate.job_images(job)
    if not images:
        raise Internal("generation finished without an image")
    metadata = job.result.generate.metadata
    revised = metadata.effective_prompt if metadata.effective_prompt not in ("", prompt) else None
    data = []
    for image in images:
        if response_format == "url":
            url = image_url(request, image)
            if url is None:
                raise Internal("a stored output has no reference")
            data.append(Image(url=url, revised_prompt=revised))
        else:
            content, _ = await translate.image_bytes(request, image)
            data.append(Image(b64_json=encode_base64(content), revised_prompt=revised))
    size = f"{images[0].width}x{images[0].height}" if images[0].width else None
    fmt = common_pb2.ImageFormat.Name(params.output_format).removeprefix("IMAGE_FORMAT_").lower()
    return ImagesResponse(created=job.created_at.seconds or int(time.time()), data=data, output_format=fmt,
                          size=size)


def _parameters(request: Request, *, model: gen_pb.ModelInfo | None, prompt: str, n: int | None, size: str | None,
                output_format: str | None, quality: str | None,
                operation: int, init_image: common_pb2.Image | None = None,
                mask_image: common_pb2.Image | None = None, style: str | None = None) -> gen_pb.GenerateParameters:
    width, height = _dimensions(size)
    params = translate.generate_parameters(
        model=model, prompt=prompt, width=width, height=height, num_images=n or 1,
        style_preset=STYLE[style] if style else "", output_format=translate.output_format(output_format),
        owner=translate.owner_of(request), operation=operation,
        init_image=init_image, mask_image=mask_image)
    params.quality = QUALITY[quality] if quality else ""
    return params


# ---- endpoints ----------------------------------------------------------------------------------------------


@router.post("/images/generations", response_model=ImagesResponse, response_model_exclude_none=True,
             dependencies=[GUARD], responses=ERRORS, summary="Create images from a prompt")
async def generations(body: GenerationBody, request: Request) -> ImagesResponse:
    _check_prompt(request, body.prompt)
    _check_background(body.background)
    if body.stream:
        raise InvalidArgument("stream is not supported: the answer comes when the images are done", field="stream")
    if body.partial_images:
        raise InvalidArgument("partial_images needs stream, which is not supported", field="partial_images")
    operation = gen_pb.GENERATE_OPERATION_TEXT_TO_IMAGE
    model = await _model(request, body.model, operation, "generations")
    params = _parameters(request, model=model, prompt=body.prompt, n=body.n, size=body.size,
                         output_format=body.output_format,
                         quality=body.quality, style=body.style, operation=operation)
    return await _run(request, params, prompt=body.prompt, response_format=body.response_format or "url",
                      operation="generations", model=body.model, user=body.user)


@router.post("/images/edits", response_model=ImagesResponse, response_model_exclude_none=True,
             dependencies=[GUARD], responses=ERRORS, summary="Edit an image: repaint the mask's transparent area")
async def edits(
    request: Request,
    prompt: Annotated[str, Form(min_length=1, max_length=PROMPT_MAX, description="What the edited area shows")],
    image: Annotated[list[UploadFile] | None, File(description="The image to edit (PNG, WebP or JPEG)")] = None,
    images: Annotated[list[UploadFile] | None, File(alias="image[]", description="image as a list (one)")] = None,
    mask: Annotated[UploadFile | None, File(description="PNG whose fully transparent pixels are the area to "
                                                        "edit; same size as image. Without it, the image's "
                                                        "own transparency, else the whole image")] = None,
    model: Annotated[str | None, Form(max_length=200)] = None,
    n: Annotated[int, Form(ge=1, le=10)] = 1,
    size: Annotated[str, Form(pattern=SIZE_PATTERN, description="WIDTHxHEIGHT or auto (the image's)")] = "auto",
    response_format: Annotated[ResponseFormat, Form()] = "url",
    output_format: Annotated[OutputFormat | None, Form()] = None,
    quality: Annotated[Quality | None, Form()] = None,
    background: Annotated[Background | None, Form()] = None,
    user: Annotated[str | None, Form(max_length=256)] = None,
) -> ImagesResponse:
    _check_prompt(request, prompt)
    _check_background(background)
    uploads = [*(image or []), *(images or [])]
    if not uploads:
        raise MissingImage("image is required", field="image")
    if len(uploads) > 1:
        raise InvalidArgument(f"{len(uploads)} images given; edits take one (inpainting repaints one source "
                              "image)", field="image")
    operation = gen_pb.GENERATE_OPERATION_INPAINT
    chosen = await _model(request, model, operation, "edits")
    params = _parameters(request, model=chosen, prompt=prompt, n=n, size=size, output_format=output_format, quality=quality, operation=operation,
                         init_image=await _upload(request, uploads[0], "image"),
                         mask_image=await _upload(request, mask, "mask") if mask is not None else None)
    params.mask_from_alpha = True
    return await _run(request, params, prompt=prompt, response_format=response_format, operation="edits",
                      model=model, user=user)


@router.post("/images/variations", response_model=ImagesResponse, response_model_exclude_none=True,
             dependencies=[GUARD], responses=ERRORS, summary="Create variations of an image")
async def variations(
    request: Request,
    image: Annotated[UploadFile, File(description="The source image (PNG, WebP or JPEG)")],
    model: Annotated[str | None, Form(max_length=200)] = None,
    n: Annotated[int, Form(ge=1, le=10)] = 1,
    size: Annotated[str, Form(pattern=SIZE_PATTERN, description="WIDTHxHEIGHT or auto (the image's)")] = "auto",
    response_format: Annotated[ResponseFormat, Form()] = "url",
    user: Annotated[str | None, Form(max_length=256)] = None,
) -> ImagesResponse:
    operation = gen_pb.GENERATE_OPERATION_IMAGE_TO_IMAGE
    chosen = await _model(request, model, operation, "variations")
    params = _parameters(request, model=chosen, prompt=VARIATION_PROMPT, n=n, size=size, output_format=None, quality=None, operation=operation,
                         init_image=await _upload(request, image, "image"))
    return await _run(request, params, prompt=VARIATION_PROMPT, response_format=response_format,
                      operation="variations", model=model, user=user)


def _model_entry(model: gen_pb.ModelInfo) -> Model:
    # The registry records no creation time; 0 says so rather than inventing one.
    return Model(id=model.id, created=0, owned_by="imagemesh")


@router.get("/models", response_model=ModelList, dependencies=[GUARD], responses=ERRORS,
            summary="The generation models (ids; their aliases are accepted as `model` too)")
async def list_models(request: Request) -> ModelList:
    listing = await translate.list_models(request)
    return ModelList(data=[_model_entry(model) for model in listing.models])


@router.get("/models/{model:path}", response_model=Model, dependencies=[GUARD], responses=ERRORS,
            summary="One model, by id or alias")
async def retrieve_model(model: NamePath, request: Request) -> Model:
    found = translate.find_model(await translate.list_models(request), model)
    if found is None:
        raise NotFound(f"The model '{model[:100]}' does not exist", reason="MODEL_NOT_FOUND", field="model")
    return _model_entry(found)
