"""The AUTOMATIC1111 web UI API at /sdapi/v1/ (and the rembg extension's POST /rembg), for clients such as webuiapi.

txt2img and img2img run one Generate job each (batch_size x n_iter images; the orchestrator splits batches);
extra-single-image runs Upscale, /rembg runs BackgroundRemoval. /progress, /interrupt and /skip act on the caller's
running A1111 jobs, found through the orchestrator (ListJobs, label dialect=a1111), so any replica answers them.
Options (sd_model_checkpoint, samples_format, and anything else a client stores) are kept per owner in the
gateway's database. A ControlNet unit in alwayson_scripts runs Generate's ControlNet. What A1111 does and this
deployment cannot (ControlNet with an inpainting mask, hires fix, face restoration, styles, scripts) is refused with
a message that says so; docs/a1111.md lists it all.

Errors: 422 validation failures in FastAPI's shape {"detail": [{"loc", "msg", "type"}]}; every other error as A1111's
api_middleware renders one: {"error": type, "detail": message, "body": "", "errors": "status: message"} plus the
mesh's `reason`. Auth: Bearer / X-API-Key, or HTTP Basic (A1111's --api-auth) with the API key as the password.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway import access_store, errors, translate
from gateway.images_in import decode_base64_image, encode_base64
from gateway.limits import FreeForm, FreeList, check_json
from gateway.security import guard
from shared.errors import ImageMeshError, InvalidArgument, InvalidModel, NotFound, NotImplementedYet
from shared.gen.imagemesh.v1 import background_removal_service_pb2 as br_pb
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import generate_service_pb2 as gen_pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as orch_pb

WRITE = Depends(guard("a1111", basic=True))
READ = Depends(guard("a1111_read", basic=True))
DIALECT = "a1111"
router = APIRouter(tags=["AUTOMATIC1111 web UI API"])

# A1111 sampler name -> (diffusers scheduler class Generate installs, A1111's aliases). Dialect vocabulary: Generate
# takes the class name and says whether it knows it.
SAMPLERS: dict[str, tuple[str, list[str]]] = {
    "Euler a": ("EulerAncestralDiscreteScheduler", ["k_euler_a", "k_euler_ancestral"]),
    "Euler": ("EulerDiscreteScheduler", ["k_euler"]),
    "LMS": ("LMSDiscreteScheduler", ["k_lms"]),
    "Heun": ("HeunDiscreteScheduler", ["k_heun"]),
    "DPM2": ("KDPM2DiscreteScheduler", ["k_dpm_2"]),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", ["k_dpm_2_a"]),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", ["k_dpmpp_2m"]),
    "DDIM": ("DDIMScheduler", ["ddim"]),
    "PLMS": ("PNDMScheduler", ["plms", "PNDM"]),
    "UniPC": ("UniPCMultistepScheduler", ["unipc"]),
}

# A1111 upscaler name -> Upscale method id. "None" keeps the size (A1111 skips upscaling); the Real-ESRGAN names
# are mapped onto the models this mesh has ("R-ESRGAN 4x+ Anime6B" onto the animevideov3 family, the anime one).
UPSCALERS: dict[str, str] = {
    "None": "lanczos",
    "Lanczos": "lanczos",
    "R-ESRGAN 4x+": "realesrgan-x4plus",
    "R-ESRGAN 4x+ Anime6B": "realesrgan",
    "R-ESRGAN AnimeVideo": "realesrgan",
}

# Options whose values this dialect understands; any other key is stored and echoed, as A1111 does.
OUTPUT_FORMATS = {"png": common_pb2.IMAGE_FORMAT_PNG, "jpg": common_pb2.IMAGE_FORMAT_JPEG,
                  "jpeg": common_pb2.IMAGE_FORMAT_JPEG, "webp": common_pb2.IMAGE_FORMAT_WEBP}
# The sd-webui-controlnet modules, by the name of Generate's control preprocessing that does the same job.
CONTROLNET_MODULES = {
    "canny": ("canny",),
    "lineart": ("lineart", "lineart_standard", "lineart_realistic", "lineart_coarse", "lineart_anime", "invert"),
    "scribble": ("scribble", "scribble_xdog", "scribble_pidinet", "scribble_hed", "t2ia_sketch_pidi"),
    "none": ("none", ""),
}


def render_error(error: ImageMeshError) -> JSONResponse:
    if isinstance(error, errors.ValidationFailed):
        # FastAPI's own 422 shape, which A1111 leaves in place for request validation.
        loc = ["body", *error.metadata.get("field", "body").split(".")]
        return JSONResponse(status_code=422, content={"detail": [
            {"loc": loc, "msg": error.message, "type": error.metadata.get("error_type", "value_error")}]})
    status = error.http_status
    return JSONResponse(status_code=status, content={
        "error": type(error).__name__, "detail": error.message, "body": "", "errors": f"{status}: {error.message}",
        "reason": error.reason})


# ---- request and response models (A1111's names, so its clients' schemas line up) ---------------------------


class _Processing(BaseModel):
    """Fields txt2img and img2img share. Unknown fields are accepted and echoed in `parameters`, as A1111 does."""

    model_config = ConfigDict(extra="allow")

    prompt: str = Field("", max_length=1000)
    negative_prompt: str = Field("", max_length=1000)
    styles: list[str] = Field(default_factory=list, max_length=0,
                              description="Saved prompt styles: none are stored here (use the prompt)")
    seed: int = Field(-1, ge=-1, le=2**32 - 1, description="-1 = random")
    subseed: int = Field(-1, ge=-1, le=2**32 - 1, description="Accepted; variation seeds are not applied")
    subseed_strength: float = Field(0.0, ge=0.0, le=0.0, description="Variation seeds are not available: 0 only")
    sampler_name: str | None = Field(None, max_length=100, description="A name or alias from GET /samplers")
    sampler_index: str | None = Field(None, max_length=100, description="Deprecated alias of sampler_name")
    scheduler: str | None = Field(None, max_length=50, description="Schedule type: 'automatic' only")
    batch_size: int = Field(1, ge=1, le=8)
    n_iter: int = Field(1, ge=1, le=16)
    steps: int = Field(20, ge=1, le=150)
    cfg_scale: float = Field(7.0, ge=0.0, le=30.0)
    width: int = Field(512, ge=64, le=2048)
    height: int = Field(512, ge=64, le=2048)
    restore_faces: bool | None = Field(None, description="Face restoration is not available: false only")
    tiling: bool | None = Field(None, description="Tiling is not available: false only")
    override_settings: FreeForm = Field(default_factory=dict, description="Options for this request only")
    script_name: str | None = Field(None, max_length=200, description="No scripts are installed")
    script_args: FreeList = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: FreeForm = Field(default_factory=dict)

    @model_validator(mode="after")
    def _bounded_extras(self) -> _Processing:
        # Unknown fields are echoed in `parameters`: each gets the caps of a free-form value, and 200 at most.
        extra = self.__pydantic_extra__ or {}
        if len(extra) > 200:
            raise ValueError("at most 200 unknown fields")
        for key, value in extra.items():
            check_json(value, key[:50])
        return self


class StableDiffusionTxt2ImgProcessingAPI(_Processing):
    enable_hr: bool = Field(False, description="Hires fix is not available: false only")
    denoising_strength: float | None = Field(None, ge=0.0, le=1.0, description="Used by hires fix only")


class StableDiffusionImg2ImgProcessingAPI(_Processing):
    init_images: list[str] = Field(min_length=1, max_length=1, description="The source image, base64")
    resize_mode: int = Field(0, ge=0, le=0, description="0 (just resize) only")
    denoising_strength: float = Field(0.75, ge=0.0, le=1.0)
    mask: str | None = Field(None, description="Inpaint mask, base64: white = repaint")
    mask_blur: int = Field(4, ge=0, le=64, description="Accepted; the mask is used as sent")
    inpainting_fill: int = Field(0, ge=0, le=3, description="Accepted; Generate fills masked areas its own way")
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = Field(0, ge=0, le=256)
    inpainting_mask_invert: int = Field(0, ge=0, le=1, description="1 = the black part of the mask is repainted")
    include_init_images: bool = False


class TextToImageResponse(BaseModel):
    images: list[str] | None = Field(description="Base64 images (PNG unless samples_format says otherwise)")
    parameters: dict[str, Any]
    info: str = Field(description="JSON string: seed, all_seeds, prompt, width, height, sampler_name, steps, ...")


class ImageToImageResponse(TextToImageResponse):
    pass


class ExtrasSingleImageRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    image: str = Field(min_length=1, description="Base64 image")
    resize_mode: int = Field(0, ge=0, le=1, description="0 = by upscaling_resize, 1 = to upscaling_resize_w/h")
    show_extras_results: bool = True
    gfpgan_visibility: float = Field(0.0, ge=0.0, le=0.0, description="Face restoration is not available")
    codeformer_visibility: float = Field(0.0, ge=0.0, le=0.0, description="Face restoration is not available")
    codeformer_weight: float = Field(0.0, ge=0.0, le=1.0)
    upscaling_resize: float = Field(2.0, ge=1.0, le=8.0, description="Scale factor, a whole number")
    upscaling_resize_w: int = Field(512, ge=1, le=8192)
    upscaling_resize_h: int = Field(512, ge=1, le=8192)
    upscaling_crop: bool = True
    upscaler_1: str = Field("None", max_length=100, description="A name from GET /upscalers")
    upscaler_2: str = Field("None", max_length=100, description="'None' only: one upscaler per request")
    extras_upscaler_2_visibility: float = Field(0.0, ge=0.0, le=1.0)
    upscale_first: bool = False


class ExtrasSingleImageResponse(BaseModel):
    html_info: str
    image: str


class ProgressState(BaseModel):
    skipped: bool
    interrupted: bool
    stopping_generation: bool
    job: str
    job_count: int
    job_timestamp: str
    job_no: int
    sampling_step: int
    sampling_steps: int


class ProgressResponse(BaseModel):
    progress: float = Field(description="0 to 1")
    eta_relative: float = Field(description="Estimated seconds left")
    state: ProgressState
    current_image: str | None = Field(None, description="The latest live preview of the running generation (base64 "
                                      "PNG, small), null before the first one or with skip_current_image")
    textinfo: str | None = None


class InterruptBody(BaseModel):
    """A1111 takes no body here; an empty object is accepted."""


class EmptyReply(BaseModel):
    """A1111 answers {} (and null to POST /options)."""


class SamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, str]


class UpscalerItem(BaseModel):
    name: str
    model_name: str | None
    model_path: str | None
    model_url: str | None
    scale: float | None


class SDModelItem(BaseModel):
    title: str
    model_name: str
    hash: str | None
    sha256: str | None
    filename: str
    config: str | None


class ScriptsList(BaseModel):
    txt2img: list[str]
    img2img: list[str]


class RembgRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    input_image: str = Field(min_length=1, description="Base64 image")
    model: str = Field("u2netp", max_length=100, description="A BackgroundRemoval model id (u2netp, ...)")
    return_mask: bool = False
    alpha_matting: bool = False
    alpha_matting_foreground_threshold: int = Field(240, ge=1, le=255)
    alpha_matting_background_threshold: int = Field(10, ge=1, le=255)
    alpha_matting_erode_size: int = Field(10, ge=1, le=100)


class RembgResponse(BaseModel):
    image: str = Field(description="Base64 PNG: the RGBA cut-out, or the mask")


# ---- options and models -------------------------------------------------------------------------------------


async def _stored_options(request: Request) -> dict[str, Any]:
    owner = translate.owner_of(request)
    return await anyio.to_thread.run_sync(access_store.a1111_options_of, request.app.state.engine, owner)


def _checkpoint_name(title: str) -> str:
    """A1111 titles read "name.safetensors [hash]"; the registry knows the name."""
    name = title.split(" [", 1)[0].strip()
    for suffix in (".safetensors", ".ckpt"):
        name = name.removesuffix(suffix)
    return name


def _find_checkpoint(listing: gen_pb.ListModelsResponse, title: str, field: str) -> gen_pb.ModelInfo:
    model = translate.find_model(listing, _checkpoint_name(title))
    if model is None:
        names = [m.id for m in listing.models]
        raise InvalidModel(f"model {title[:100]!r} not found; available: {', '.join(names)}", field=field,
                           supported_models=names)
    return model


async def _model(request: Request, body: _Processing, options: dict[str, Any], operation: int) -> gen_pb.ModelInfo:
    """The checkpoint: this request's override_settings, else the caller's options, else Generate's default. When
    it cannot run the operation (an inpaint on a text-to-image checkpoint), the first model that can, as A1111
    users pick an inpainting checkpoint for that."""
    listing = await translate.list_models(request)
    title = body.override_settings.get("sd_model_checkpoint") or options.get("sd_model_checkpoint")
    model = (_find_checkpoint(listing, str(title), "override_settings.sd_model_checkpoint") if title
             else translate.default_model(listing))
    if model is not None and operation in model.operations:
        return model
    capable = [m for m in listing.models if operation in m.operations]
    if not capable:
        name = gen_pb.GenerateOperation.Name(operation).removeprefix("GENERATE_OPERATION_").lower()
        raise NotImplementedYet(f"no model on this deployment supports {name}", operation=name)
    return capable[0]


def _output_format(body: _Processing, options: dict[str, Any]) -> int:
    name = str(body.override_settings.get("samples_format") or options.get("samples_format") or "png").lower()
    if name not in OUTPUT_FORMATS:
        raise InvalidArgument(f"samples_format {name!r} is not supported; use png, jpg or webp",
                              field="samples_format", supported_values=",".join(OUTPUT_FORMATS))
    return OUTPUT_FORMATS[name]


def _sampler(body: _Processing) -> tuple[str, str]:
    """(A1111 sampler name, diffusers scheduler class); ("", "") keeps the model's own scheduler."""
    wanted = (body.sampler_name or body.sampler_index or "").strip()
    if not wanted:
        return "", ""
    for name, (scheduler, aliases) in SAMPLERS.items():
        if wanted.lower() in (name.lower(), *(alias.lower() for alias in aliases)):
            return name, scheduler
    raise InvalidArgument(f"Sampler not found: {wanted[:100]!r}; available: {', '.join(SAMPLERS)}",
                          field="sampler_name", supported_values=",".join(SAMPLERS))


@dataclass(frozen=True)
class _ControlUnit:
    """The one enabled sd-webui-controlnet unit of a request, in Generate's words."""

    image: str
    preprocessor: str
    weight: float
    module: str


def _control_unit(body: _Processing) -> _ControlUnit | None:
    """alwayson_scripts.ControlNet: its enabled unit (one at a time), or None when there is none."""
    for name, script in body.alwayson_scripts.items():
        if name.lower() != "controlnet":
            continue
        args = script.get("args") if isinstance(script, dict) else script
        units = [u for u in (args or []) if isinstance(u, dict) and u.get("enabled", True)]
        if not units:
            return None
        if len(units) > 1:
            raise NotImplementedYet("one ControlNet unit at a time is available on this deployment",
                                    field="alwayson_scripts.ControlNet")
        unit = units[0]
        module = str(unit.get("module") or "none").strip().lower()
        preprocessor = next((key for key, names in CONTROLNET_MODULES.items() if module in names), None)
        if preprocessor is None:
            supported = [n for names in CONTROLNET_MODULES.values() for n in names if n]
            raise InvalidArgument(f"ControlNet module {module[:100]!r} is not available; available: "
                                  f"{', '.join(supported)}", field="alwayson_scripts.ControlNet.module",
                                  supported_values=",".join(supported))
        image = unit.get("image") or unit.get("input_image")
        if isinstance(image, dict):  # the extension also takes {"image": ..., "mask": ...}
            image = image.get("image")
        if not image:
            raise InvalidArgument("the ControlNet unit has no image", field="alwayson_scripts.ControlNet.image")
        weight = float(unit.get("weight", 1.0))
        if not 0.0 <= weight <= 2.0:
            raise InvalidArgument(f"ControlNet weight must be between 0 and 2, got {weight:g}",
                                  field="alwayson_scripts.ControlNet.weight")
        return _ControlUnit(str(image), preprocessor, weight, module)
    return None


def _refuse_unsupported(body: _Processing) -> None:
    """What A1111 does and this deployment cannot, refused rather than silently ignored."""
    for name in body.alwayson_scripts:
        if name.lower() != "controlnet":
            raise InvalidArgument(f"always on script {name[:100]} not found", field="alwayson_scripts")
    if body.script_name:
        raise InvalidArgument(f"Script '{body.script_name}' not found", field="script_name")
    if getattr(body, "enable_hr", False):
        raise NotImplementedYet("hires fix (enable_hr) is not available on this deployment", field="enable_hr")
    if body.restore_faces:
        raise NotImplementedYet("face restoration is not available on this deployment", field="restore_faces")
    if body.tiling:
        raise NotImplementedYet("tiling is not available on this deployment", field="tiling")
    if body.scheduler and body.scheduler.lower() != "automatic":
        raise NotImplementedYet(f"schedule type {body.scheduler!r} is not available; use 'automatic' (the "
                                "sampler's own)", field="scheduler")


def _image_count(body: _Processing) -> int:
    # A1111 makes n_iter batches of batch_size; the orchestrator splits a job's images into batches itself.
    return body.batch_size * body.n_iter


# ---- generation ---------------------------------------------------------------------------------------------


async def _generate(request: Request, body: _Processing, operation: int, endpoint: str,
                    init_image: common_pb2.Image | None = None, mask: common_pb2.Image | None = None,
                    strength: float | None = None) -> dict[str, Any]:
    _refuse_unsupported(body)
    unit = _control_unit(body)
    control_image = None
    if unit is not None:
        if operation == gen_pb.GENERATE_OPERATION_INPAINT:
            raise NotImplementedYet("ControlNet with an inpainting mask is not available on this deployment",
                                    field="alwayson_scripts.ControlNet")
        # Generate preprocesses the unit's image and runs its ControlNet pipeline: over txt2img the unit's image is
        # the control image; over img2img the init image is repainted (denoising_strength) under it.
        unit_image = common_pb2.Image(data=decode_base64_image(
            unit.image, "alwayson_scripts.ControlNet.image", request.app.state.settings.max_image_bytes))
        if operation == gen_pb.GENERATE_OPERATION_TEXT_TO_IMAGE:
            init_image = unit_image
        else:
            control_image = unit_image
        operation = gen_pb.GENERATE_OPERATION_CONTROL
    sampler_name, scheduler = _sampler(body)
    options = await _stored_options(request)
    model = await _model(request, body, options, operation)
    params = translate.generate_parameters(
        model=model, prompt=body.prompt, negative_prompt=body.negative_prompt, width=body.width,
        height=body.height, steps=body.steps, guidance_scale=body.cfg_scale, seed=body.seed,
        num_images=_image_count(body), output_format=_output_format(body, options),
        owner=translate.owner_of(request), operation=operation, init_image=init_image, mask_image=mask,
        strength=strength)
    params.scheduler = scheduler
    if unit is not None:
        params.control_preprocessor, params.control_strength = unit.preprocessor, unit.weight
    if control_image is not None:
        params.control_image.CopyFrom(control_image)
    job = await translate.run_job(request, orch_pb.JobSpec(generate=params), DIALECT, endpoint=endpoint)
    result = job.result.generate
    images = []
    if body.send_images:
        for item in result.images:
            data, _ = await translate.image_bytes(request, item.image)
            images.append(encode_base64(data))
    info = _info(body, job, model, sampler_name or result.metadata.scheduler, strength)
    return {"images": images, "info": json.dumps(info)}


def _info(body: _Processing, job: orch_pb.Job, model: gen_pb.ModelInfo, sampler: str,
          strength: float | None) -> dict[str, Any]:
    """A1111's Processed.js(): what was run, with the seeds Generate actually used."""
    meta = job.result.generate.metadata
    seeds = [item.seed for item in job.result.generate.images]
    count = len(seeds)
    size = f"{meta.width}x{meta.height}"
    infotext = (f"{body.prompt}\nNegative prompt: {body.negative_prompt}\nSteps: {meta.steps}, Sampler: {sampler}, "
                f"CFG scale: {meta.guidance_scale:g}, Seed: {{seed}}, Size: {size}, Model: {meta.model_id or model.id}")
    return {
        "prompt": body.prompt, "all_prompts": [body.prompt] * count,
        "negative_prompt": body.negative_prompt, "all_negative_prompts": [body.negative_prompt] * count,
        "seed": seeds[0] if seeds else body.seed, "all_seeds": seeds,
        "subseed": body.subseed, "all_subseeds": [body.subseed] * count, "subseed_strength": body.subseed_strength,
        "width": meta.width, "height": meta.height, "sampler_name": sampler, "cfg_scale": meta.guidance_scale,
        "steps": meta.steps, "batch_size": body.batch_size, "restore_faces": False, "face_restoration_model": None,
        "sd_model_name": meta.model_id or model.id, "sd_model_hash": None, "sd_vae_name": None, "sd_vae_hash": None,
        "seed_resize_from_w": -1, "seed_resize_from_h": -1, "denoising_strength": strength,
        "extra_generation_params": {"Scheduler": meta.scheduler, "Job": job.id,
                                    **({"ControlNet": meta.path} if meta.path.startswith("controlnet") else {})},
        "index_of_first_image": 0,
        "infotexts": [infotext.replace("{seed}", str(seed)) for seed in seeds], "styles": body.styles,
        "job_timestamp": translate.iso(job.created_at) or "", "clip_skip": 1,
        "is_using_inpainting_conditioning": job.spec.generate.operation == gen_pb.GENERATE_OPERATION_INPAINT,
        "version": "imagemesh",
    }


@router.post("/sdapi/v1/txt2img", response_model=TextToImageResponse, dependencies=[WRITE],
             summary="Text to image")
async def txt2img(body: StableDiffusionTxt2ImgProcessingAPI, request: Request) -> TextToImageResponse:
    out = await _generate(request, body, gen_pb.GENERATE_OPERATION_TEXT_TO_IMAGE, "txt2img")
    return TextToImageResponse(images=out["images"], parameters=body.model_dump(mode="json"), info=out["info"])


@router.post("/sdapi/v1/img2img", response_model=ImageToImageResponse, dependencies=[WRITE],
             summary="Image to image, or inpaint with a mask")
async def img2img(body: StableDiffusionImg2ImgProcessingAPI, request: Request) -> ImageToImageResponse:
    limit = request.app.state.settings.max_image_bytes
    init = common_pb2.Image(data=decode_base64_image(body.init_images[0], "init_images", limit))
    mask = None
    if body.mask:
        if body.inpainting_mask_invert:
            raise NotImplementedYet("inpainting_mask_invert=1 is not available yet: send the mask with white where "
                                    "the image is to be repainted", field="inpainting_mask_invert")
        mask = common_pb2.Image(data=decode_base64_image(body.mask, "mask", limit))
    operation = gen_pb.GENERATE_OPERATION_INPAINT if mask else gen_pb.GENERATE_OPERATION_IMAGE_TO_IMAGE
    out = await _generate(request, body, operation, "img2img", init_image=init, mask=mask,
                          strength=body.denoising_strength)
    parameters = body.model_dump(mode="json")
    if not body.include_init_images:
        parameters.update(init_images=None, mask=None)
    return ImageToImageResponse(images=out["images"], parameters=parameters, info=out["info"])


# ---- progress, interrupt, skip ------------------------------------------------------------------------------


async def _active_jobs(request: Request) -> list[orch_pb.Job]:
    """The caller's pending and running A1111 generations, oldest first (the one A1111 would be running). ListJobs
    has no label filter: the first 100 active generations of the key are read, which one key's A1111 client does
    not outgrow (its generations run one at a time)."""
    reply = await translate.client(request).list_jobs(
        statuses=[common_pb2.JOB_STATUS_RUNNING, common_pb2.JOB_STATUS_PENDING], kind="generate", page_size=100)
    jobs = [job for job in reply.jobs if job.labels.get("dialect") == DIALECT]
    return sorted(jobs, key=lambda job: (job.status != common_pb2.JOB_STATUS_RUNNING, job.created_at.ToNanoseconds()))


def _idle_state() -> ProgressState:
    return ProgressState(skipped=False, interrupted=False, stopping_generation=False, job="", job_count=0,
                         job_timestamp="0", job_no=0, sampling_step=0, sampling_steps=0)


@router.get("/sdapi/v1/progress", response_model=ProgressResponse, dependencies=[READ],
            summary="Progress of the caller's running generation")
async def progress(request: Request, skip_current_image: bool = Query(False)) -> ProgressResponse:
    jobs = await _active_jobs(request)
    if not jobs:
        return ProgressResponse(progress=0.0, eta_relative=0.0, state=_idle_state(), current_image=None,
                                textinfo=None)
    try:
        job = await translate.get_job(request, jobs[0].id)
    except NotFound:
        job = jobs[0]
    done = job.progress
    fraction = min(max(done.fraction, 0.0), 1.0)
    eta = 0.0
    if fraction > 0 and translate.iso(job.started_at):
        elapsed = time.time() - job.started_at.ToNanoseconds() / 1e9
        eta = max(0.0, elapsed / fraction - elapsed)
    state = ProgressState(skipped=False, interrupted=False, stopping_generation=False,
                          job=job.labels.get("endpoint", "txt2img"), job_count=len(jobs),
                          job_timestamp=(translate.iso(job.created_at) or "0"), job_no=done.image_index,
                          sampling_step=done.step, sampling_steps=done.total_steps)
    preview = None
    if not skip_current_image and done.HasField("preview") and done.preview.data:
        preview = encode_base64(done.preview.data)
    return ProgressResponse(progress=fraction, eta_relative=eta, state=state, current_image=preview,
                            textinfo=done.message or translate.status_name(job.status))


async def _cancel_active(request: Request) -> None:
    for job in await _active_jobs(request):
        try:
            await translate.cancel_job(request, job.id)
        except NotFound:
            # Finished between the listing and the cancel: nothing left to stop.
            continue


@router.post("/sdapi/v1/interrupt", response_model=EmptyReply, dependencies=[WRITE],
             summary="Cancel the caller's running and queued A1111 generations")
async def interrupt(request: Request, body: InterruptBody | None = None) -> EmptyReply:
    await _cancel_active(request)
    return EmptyReply()


@router.post("/sdapi/v1/skip", response_model=EmptyReply, dependencies=[WRITE],
             summary="Same as interrupt: a job's images are not skipped one by one")
async def skip(request: Request, body: InterruptBody | None = None) -> EmptyReply:
    await _cancel_active(request)
    return EmptyReply()


# ---- catalogues and options ---------------------------------------------------------------------------------


@router.get("/sdapi/v1/sd-models", response_model=list[SDModelItem], dependencies=[READ],
            summary="Checkpoints: Generate's models")
async def sd_models(request: Request) -> list[SDModelItem]:
    listing = await translate.list_models(request)
    return [SDModelItem(title=model.id, model_name=model.id, hash=None, sha256=None,
                        filename=model.source or model.id, config=None) for model in listing.models]


@router.get("/sdapi/v1/samplers", response_model=list[SamplerItem], dependencies=[READ], summary="Samplers")
async def samplers() -> list[SamplerItem]:
    return [SamplerItem(name=name, aliases=aliases, options={"scheduler": scheduler})
            for name, (scheduler, aliases) in SAMPLERS.items()]


@router.get("/sdapi/v1/upscalers", response_model=list[UpscalerItem], dependencies=[READ],
            summary="Upscalers: Upscale's methods under A1111's names")
async def upscalers(request: Request) -> list[UpscalerItem]:
    reply = await translate.client(request).catalog(orch_pb.CATALOG_SECTION_UPSCALE_METHODS)
    methods = {method.id: method for method in reply.upscale_methods.methods if method.available}
    out = []
    for name, method_id in UPSCALERS.items():
        method = methods.get(method_id)
        if method is None:
            continue
        native = max(method.native_scales) if method.native_scales else None
        out.append(UpscalerItem(name=name, model_name=None if method_id == "lanczos" else method_id,
                                model_path=None, model_url=None, scale=native if native else 4))
    return out


@router.get("/sdapi/v1/scripts", response_model=ScriptsList, dependencies=[READ], summary="Installed scripts")
async def scripts() -> ScriptsList:
    # None: clients (webuiapi) read this to decide whether to send ControlNet/ADetailer arguments.
    return ScriptsList(txt2img=[], img2img=[])


async def _all_options(request: Request) -> dict[str, Any]:
    listing = await translate.list_models(request)
    default = translate.default_model(listing)
    return {"sd_model_checkpoint": default.id if default else "", "samples_format": "png",
            **await _stored_options(request)}


@router.get("/sdapi/v1/options", response_model=dict[str, Any], dependencies=[READ], summary="The caller's options")
async def get_options(request: Request) -> dict[str, Any]:
    return await _all_options(request)


@router.post("/sdapi/v1/options", response_model=EmptyReply | None, dependencies=[WRITE],
             summary="Set options (per API key); sd_model_checkpoint and samples_format are checked")
async def set_options(body: dict[str, Any], request: Request) -> None:
    try:
        for key, value in body.items():
            check_json(value, f"options.{key[:50]}")
    except ValueError as exc:
        raise InvalidArgument(str(exc), field="options") from None
    if len(body) > 200 or any(len(key) > 200 for key in body) or len(json.dumps(body)) > 64 * 1024:
        raise InvalidArgument("options: at most 200 keys of up to 200 characters, 64 KiB in all", field="options")
    if "sd_model_checkpoint" in body:
        listing = await translate.list_models(request)
        body["sd_model_checkpoint"] = _find_checkpoint(listing, str(body["sd_model_checkpoint"]),
                                                       "sd_model_checkpoint").id
    if "samples_format" in body:
        name = str(body["samples_format"]).lower()
        if name not in OUTPUT_FORMATS:
            raise InvalidArgument(f"samples_format {name!r} is not supported; use png, jpg or webp",
                                  field="samples_format", supported_values=",".join(OUTPUT_FORMATS))
        body["samples_format"] = name
    await anyio.to_thread.run_sync(access_store.set_a1111_options, request.app.state.engine, translate.owner_of(request),
                                   body)


# ---- extras and rembg ---------------------------------------------------------------------------------------


@router.post("/sdapi/v1/extra-single-image", response_model=ExtrasSingleImageResponse, dependencies=[WRITE],
             summary="Upscale one image")
async def extra_single_image(body: ExtrasSingleImageRequest, request: Request) -> ExtrasSingleImageResponse:
    if body.upscaler_2 != "None" and body.extras_upscaler_2_visibility > 0:
        raise NotImplementedYet("a second upscaler is not available: use upscaler_1 only", field="upscaler_2")
    method = UPSCALERS.get(body.upscaler_1)
    if method is None:
        raise InvalidArgument(f"could not find upscaler named {body.upscaler_1[:100]}; available: "
                              f"{', '.join(UPSCALERS)}", field="upscaler_1", supported_values=",".join(UPSCALERS))
    if body.upscaling_resize != int(body.upscaling_resize):
        raise InvalidArgument("upscaling_resize must be a whole number (1 to 8) here", field="upscaling_resize")
    image = common_pb2.Image(data=decode_base64_image(body.image, "image", request.app.state.settings.max_image_bytes))
    if body.upscaler_1 == "None":
        # A1111 skips the upscale step: the image comes back at its own size.
        spec = translate.upscale_request(image, scale_factor=1)
    elif body.resize_mode == 1:
        spec = translate.upscale_request(image, target_width=body.upscaling_resize_w,
                                         target_height=body.upscaling_resize_h)
    else:
        spec = translate.upscale_request(image, scale_factor=int(body.upscaling_resize))
    spec.method = method
    job = await translate.run_job(request, orch_pb.JobSpec(upscale=spec), DIALECT, endpoint="extra-single-image")
    result = job.result.upscale
    data, _ = await translate.image_bytes(request, result.image)
    notes = f" ({'; '.join(result.notes)})" if result.notes else ""
    return ExtrasSingleImageResponse(html_info=f"<p>{body.upscaler_1}: {result.method_used}{notes}</p>",
                                     image=encode_base64(data))


@router.post("/rembg", response_model=RembgResponse, dependencies=[WRITE],
             summary="Remove the background (the rembg extension's API)")
async def rembg(body: RembgRequest, request: Request) -> RembgResponse:
    image = common_pb2.Image(data=decode_base64_image(body.input_image, "input_image",
                                                      request.app.state.settings.max_image_bytes))
    options = br_pb.RemovalOptions(
        only_mask=body.return_mask, alpha_matting=body.alpha_matting,
        alpha_matting_foreground_threshold=body.alpha_matting_foreground_threshold,
        alpha_matting_background_threshold=body.alpha_matting_background_threshold,
        alpha_matting_erode_size=body.alpha_matting_erode_size)
    spec = br_pb.RemoveBackgroundRequest(image=image, model=body.model, output_format=common_pb2.IMAGE_FORMAT_PNG,
                                         options=options)
    job = await translate.run_job(request, orch_pb.JobSpec(remove_background=spec), DIALECT, endpoint="rembg")
    data, _ = await translate.image_bytes(request, job.result.remove_background.image)
    return RembgResponse(image=encode_base64(data))
