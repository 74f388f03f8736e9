"""Image Studio (seed 003) at /api/image-studio: create, templates, providers, estimate-cost, edit, upscale,
control, social optimizer, platform specs, health. Errors: {"detail": "..."}.

Generative edits and control operations run Generate's pipelines (INPAINT, CONTROL, INSTRUCT_EDIT, STYLE,
STYLE_TRANSFER) when a registered model supports them, and answer "operation not available: no model configured"
(501) otherwise. search_replace and search_recolor pass their search text as Generate's search_prompt: Generate
finds the region (and says which path ran, metadata.path); the gateway only translates.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

from gateway import enrich, translate
from gateway.images_in import data_uri, decode_base64_image, encode_base64
from gateway.limits import (
    MAX_ID_CHARS,
    MAX_LIST_ITEMS,
    MAX_NAME_CHARS,
    MAX_PROMPT_FIELD_CHARS,
    SEED_MAX,
    FreeForm,
    Name,
    NamePath,
    Names,
    deduplicated,
)
from gateway.security import guard
from shared.errors import ImageMeshError, InvalidArgument, InvalidModel, NotFound, NotImplementedYet, Unauthenticated
from shared.gen.imagemesh.v1 import background_removal_service_pb2 as br_pb
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import generate_service_pb2 as gen_pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as orch_pb
from shared.gen.imagemesh.v1 import upscale_service_pb2 as up_pb

GUARD = Depends(guard("image_studio"))
DIALECT = "image_studio"
router = APIRouter(tags=["Image Studio (seed 003)"])


def render_error(error: ImageMeshError) -> JSONResponse:
    message = error.message
    if isinstance(error, Unauthenticated):
        message = f"Authenticated user required for image operations. {error.message}"
    return JSONResponse(status_code=error.http_status, content={"detail": message})


# ---- models -------------------------------------------------------------------------------------------------


class AspectRatio(BaseModel):
    ratio: str
    width: int
    height: int
    label: str


class Template(BaseModel):
    id: str
    name: str
    category: str
    platform: str
    aspect_ratio: AspectRatio
    description: str
    recommended_provider: str
    style_preset: str
    quality: str
    use_cases: list[str]


class TemplateList(BaseModel):
    templates: list[Template]
    total: int


class CreateBody(BaseModel):
    prompt: str = Field(min_length=1, description="Image generation prompt")
    template_id: str | None = Field(None, max_length=MAX_NAME_CHARS)
    provider: str | None = Field("auto", max_length=MAX_NAME_CHARS,
                                description="auto, stability, wavespeed, huggingface, gemini")
    model: str | None = Field(None, max_length=MAX_NAME_CHARS)
    width: int | None = Field(None, ge=64, le=4096)
    height: int | None = Field(None, ge=64, le=4096)
    aspect_ratio: str | None = Field(None, max_length=32, pattern=r"^\d+(\.\d+)?:\d+(\.\d+)?$")
    style_preset: str | None = Field(None, max_length=MAX_NAME_CHARS)
    quality: Literal["draft", "standard", "premium"] = "standard"
    negative_prompt: str | None = None
    guidance_scale: float | None = Field(None, ge=0.0, le=30.0)
    steps: int | None = Field(None, ge=1, le=150)
    seed: int | None = Field(None, ge=-1, le=SEED_MAX, description="-1 or absent: random")
    num_variations: int = Field(1, ge=1, le=10)
    enhance_prompt: bool = True
    use_persona: bool = False
    persona_id: str | None = Field(None, max_length=MAX_ID_CHARS)


class CreateRequestEcho(BaseModel):
    prompt: str
    enhanced_prompt: str
    template_id: str | None
    template_name: str | None
    provider: str
    model: str
    dimensions: str
    quality: str


class CreateResult(BaseModel):
    image_base64: str
    width: int
    height: int
    provider: str
    model: str
    variation: int
    seed: int | None = None


class CreateReply(BaseModel):
    success: bool
    request: CreateRequestEcho
    results: list[CreateResult]
    total_generated: int
    total_failed: int


class Provider(BaseModel):
    name: str
    models: list[str]
    capabilities: list[str]
    max_resolution: str
    cost_range: str
    available: bool = Field(description="Whether a registered Generate model answers to this provider")


class ProviderList(BaseModel):
    providers: dict[str, Provider]


class CostBody(BaseModel):
    provider: str = Field(max_length=MAX_NAME_CHARS)
    model: str | None = Field(None, max_length=MAX_NAME_CHARS)
    operation: str = Field("generate", max_length=MAX_NAME_CHARS)
    num_images: int = Field(1, ge=1, le=100)
    width: int | None = Field(None, ge=1, le=8192)
    height: int | None = Field(None, ge=1, le=8192)


class CostReply(BaseModel):
    estimated_cost: float
    currency: str
    provider: str
    model: str | None
    operation: str
    num_images: int


class EditBody(BaseModel):
    image_base64: str = Field(description="Primary image (base64 or data URL)")
    operation: str = Field(max_length=MAX_NAME_CHARS,
                           description="remove_background, inpaint, outpaint, search_replace, search_recolor, "
                                       "general_edit")
    prompt: str | None = None
    negative_prompt: str | None = None
    mask_base64: str | None = None
    search_prompt: str | None = None
    select_prompt: str | None = None
    background_image_base64: str | None = None
    lighting_image_base64: str | None = None
    # The documented range; Generate (services/generate/edits.py) enforces the same bound and the canvas size.
    expand_left: int = Field(0, ge=0, le=2048)
    expand_right: int = Field(0, ge=0, le=2048)
    expand_up: int = Field(0, ge=0, le=2048)
    expand_down: int = Field(0, ge=0, le=2048)
    provider: str | None = Field(None, max_length=MAX_NAME_CHARS)
    model: str | None = Field(None, max_length=MAX_NAME_CHARS)
    style_preset: str | None = Field(None, max_length=MAX_NAME_CHARS)
    guidance_scale: float | None = Field(None, ge=0.0, le=30.0)
    steps: int | None = Field(None, ge=1, le=150)
    seed: int | None = Field(None, ge=-1, le=SEED_MAX, description="-1 or absent: random")
    output_format: Literal["png", "jpg", "jpeg", "webp"] = "png"
    options: FreeForm = Field(default_factory=dict,
                              description="Free-form options; `strength` (0 to 1) is how much is repainted")

    @field_validator("options")
    @classmethod
    def _strength(cls, options: dict[str, Any]) -> dict[str, Any]:
        strength = options.get("strength")
        if strength is not None and (isinstance(strength, bool) or not isinstance(strength, (int, float))
                                     or not 0.0 <= strength <= 1.0):
            raise ValueError("options.strength must be a number from 0 to 1")
        return options


class ImageReply(BaseModel):
    success: bool
    operation: str
    provider: str
    image_base64: str
    width: int
    height: int
    metadata: dict[str, Any]


class Operation(BaseModel):
    label: str
    description: str
    provider: str
    fields: dict[str, bool]
    available: bool
    unavailable_reason: str | None = None


class OperationList(BaseModel):
    operations: dict[str, Operation]


class UpscaleBody(BaseModel):
    image_base64: str
    mode: Literal["fast", "conservative", "creative", "auto"] = "auto"
    target_width: int | None = Field(None, ge=1, le=16384)
    target_height: int | None = Field(None, ge=1, le=16384)
    preset: Literal["web", "print", "social"] | None = None
    prompt: str | None = Field(None, max_length=MAX_PROMPT_FIELD_CHARS)


class UpscaleReply(BaseModel):
    success: bool
    mode: str
    image_base64: str
    width: int
    height: int
    metadata: dict[str, Any]


class ControlBody(BaseModel):
    control_image_base64: str
    operation: str = Field(max_length=MAX_NAME_CHARS, description="sketch, structure, style, style_transfer")
    prompt: str = Field(min_length=1)
    style_image_base64: str | None = None
    negative_prompt: str | None = None
    control_strength: float | None = Field(None, ge=0.0, le=1.0)
    fidelity: float | None = Field(None, ge=0.0, le=1.0)
    style_strength: float | None = Field(None, ge=0.0, le=1.0)
    composition_fidelity: float | None = Field(None, ge=0.0, le=1.0)
    change_strength: float | None = Field(None, ge=0.0, le=1.0)
    aspect_ratio: str | None = Field(None, max_length=32)
    style_preset: str | None = Field(None, max_length=MAX_NAME_CHARS)
    seed: int | None = Field(None, ge=-1, le=SEED_MAX, description="-1 or absent: random")
    output_format: Literal["png", "jpg", "jpeg", "webp"] = "png"


class FocalPoint(BaseModel):
    x: float = Field(ge=0.0, le=1.0)
    y: float = Field(ge=0.0, le=1.0)


class SocialBody(BaseModel):
    image_base64: str
    platforms: Names = Field(min_length=1, description=f"At most {MAX_LIST_ITEMS} platforms; repeats are "
                                                       "optimized once")
    format_names: dict[Name, Name] = Field(default_factory=dict, max_length=MAX_LIST_ITEMS)
    show_safe_zones: bool = False
    crop_mode: Literal["smart", "center", "fit"] = "smart"
    focal_point: FocalPoint | None = None
    output_format: Literal["png", "jpg", "jpeg"] = "png"


class SocialResult(BaseModel):
    platform: str
    format: str
    image_base64: str
    width: int
    height: int


class SocialReply(BaseModel):
    success: bool
    results: list[SocialResult]
    total_optimized: int


class SafeZone(BaseModel):
    top: float
    bottom: float
    left: float
    right: float


class PlatformFormat(BaseModel):
    name: str = Field(description="The format's label, e.g. Feed Post (Square)")
    id: str = Field(description="imagemesh: its short id (feed_square); format_names takes either")
    width: int
    height: int
    ratio: str
    safe_zone: SafeZone
    file_type: str
    max_size_mb: float


class PlatformFormats(BaseModel):
    formats: list[PlatformFormat]


class SpecFormat(BaseModel):
    name: str = Field(description="The format's label, e.g. Feed Post (Square)")
    id: str = Field(description="imagemesh: its short id (feed_square)")
    ratio: str
    size: str


class PlatformSpecs(BaseModel):
    name: str
    formats: list[SpecFormat]
    file_types: list[str]
    max_file_size: str


class Health(BaseModel):
    status: str
    service: str
    version: str
    modules: dict[str, str]


# ---- helpers ------------------------------------------------------------------------------------------------


def _catalogues(request: Request):
    return request.app.state.catalogues


def _serving(listing: gen_pb.ListModelsResponse, provider: str) -> gen_pb.ModelInfo | None:
    """The first registry model that serves `provider` (Generate's registry says which, ModelInfo.providers)."""
    return next((m for m in listing.models if provider in m.providers), None)


def _provider_of(model: gen_pb.ModelInfo | None, asked: str) -> str:
    """The provider a model answered as: the one asked for when it serves it, else its own (first) provider."""
    if model is None:
        return "imagemesh"
    if asked in model.providers:
        return asked
    return model.providers[0] if model.providers else "imagemesh"


async def _resolve(request: Request, provider: str, model_name: str | None) -> gen_pb.ModelInfo | None:
    """A model name wins; else the registry model serving the provider; None for "auto" (Generate's default)."""
    if model_name:
        return await translate.resolve_model(request, model_name)
    if provider == "auto":
        return None
    providers = _catalogues(request).providers["providers"]
    if provider not in providers:
        raise InvalidArgument(f"Unknown provider '{provider}'. Supported: auto, {', '.join(providers)}",
                              field="provider", supported_providers=["auto", *providers])
    listing = await translate.list_models(request)
    found = _serving(listing, provider)
    if found is None:
        names = translate.model_names(listing)
        raise InvalidModel(f"Provider '{provider}' has no configured model (no registered model serves it); "
                           f"supported models: {', '.join(names) or 'none'}", field="provider",
                           supported_models=names)
    return found


def _with_sizes(templates: list[dict[str, Any]], listing: gen_pb.ListModelsResponse) -> list[dict[str, Any]]:
    """Catalogue templates with Generate's exact sizes filled in; one Generate has no size for is left out."""
    sizes = {t.id: (t.width, t.height) for t in listing.templates}
    out = []
    for template in templates:
        if template["id"] in sizes:
            width, height = sizes[template["id"]]
            out.append({**template, "aspect_ratio": {**template["aspect_ratio"], "width": width, "height": height}})
    return out


# ---- create studio ------------------------------------------------------------------------------------------


@router.post("/create", response_model=CreateReply, dependencies=[GUARD], summary="Generate images from a prompt")
async def create(body: CreateBody, request: Request) -> CreateReply:
    catalogues = _catalogues(request)
    template = enrich.template(catalogues, body.template_id) if body.template_id else None
    provider_name = body.provider or "auto"
    listing = await translate.list_models(request)
    if template and provider_name == "auto" and not body.model and _serving(listing, template["recommended_provider"]):
        # A template recommends a provider (seed 003's linkedin_post answers as wavespeed); used when one serves.
        provider_name = template["recommended_provider"]
    model = await _resolve(request, provider_name, body.model)
    used = model or translate.default_model(listing)
    style_preset = body.style_preset or (template["style_preset"] if template else "")
    prompt = enrich.enhance(catalogues, body.prompt, style_preset, body.quality) if body.enhance_prompt else body.prompt
    params = translate.generate_parameters(
        model=model, prompt=prompt, negative_prompt=body.negative_prompt or "", width=body.width or 0,
        height=body.height or 0, aspect_ratio=body.aspect_ratio or "", steps=body.steps or 0,
        guidance_scale=body.guidance_scale, seed=body.seed, num_images=body.num_variations,
        owner=translate.owner_of(request))
    # Sizes, steps and the per-request image limit are Generate's and the orchestrator's rules: pass the ask.
    params.template = body.template_id or ""
    params.quality = body.quality
    job = await translate.run_job(request, orch_pb.JobSpec(generate=params), DIALECT)
    generated = job.result.generate
    meta = generated.metadata
    model_id = meta.model_id or (used.id if used else "")
    provider = _provider_of(translate.find_model(listing, model_id) if model_id else used, provider_name)
    results: list[CreateResult] = []
    for variation, item in enumerate(generated.images, start=1):
        data, _ = await translate.image_bytes(request, item.image)
        results.append(CreateResult(image_base64=encode_base64(data), width=meta.width or item.image.width,
                                    height=meta.height or item.image.height, provider=provider, model=model_id,
                                    variation=variation, seed=item.seed))
    return CreateReply(
        success=bool(results),
        request=CreateRequestEcho(prompt=body.prompt, enhanced_prompt=prompt, template_id=body.template_id,
                                  template_name=template["name"] if template else None, provider=provider,
                                  model=model_id, dimensions=f"{meta.width}x{meta.height}", quality=body.quality),
        results=results, total_generated=len(results), total_failed=body.num_variations - len(results))


@router.get("/templates", response_model=TemplateList, dependencies=[GUARD], summary="Templates, filtered")
async def templates(request: Request, platform: str | None = Query(None, max_length=MAX_NAME_CHARS),
                    category: str | None = Query(None, max_length=MAX_NAME_CHARS)) -> TemplateList:
    found = _with_sizes(enrich.find_templates(_catalogues(request), platform=platform, category=category),
                        await translate.list_models(request))
    return TemplateList(templates=found, total=len(found))


@router.get("/templates/search", response_model=TemplateList, dependencies=[GUARD], summary="Search templates")
async def search_templates(request: Request, query: str = Query(min_length=1, max_length=MAX_NAME_CHARS)) -> TemplateList:
    found = _with_sizes(enrich.find_templates(_catalogues(request), query=query), await translate.list_models(request))
    return TemplateList(templates=found, total=len(found))


@router.get("/templates/recommend", response_model=TemplateList, dependencies=[GUARD],
            summary="Templates recommended for a use case")
async def recommend_templates(request: Request, use_case: str = Query(min_length=1, max_length=MAX_NAME_CHARS),
                              platform: str | None = Query(None, max_length=MAX_NAME_CHARS)) -> TemplateList:
    found = _with_sizes(enrich.recommend(_catalogues(request), use_case, platform), await translate.list_models(request))
    return TemplateList(templates=found, total=len(found))


@router.get("/providers", response_model=ProviderList, dependencies=[GUARD], summary="Providers and capabilities")
async def providers(request: Request) -> ProviderList:
    listing = await translate.list_models(request)
    out = {}
    for key, provider in _catalogues(request).providers["providers"].items():
        available = _serving(listing, key) is not None
        out[key] = Provider(name=provider["name"], models=provider["models"], capabilities=provider["capabilities"],
                            max_resolution=provider["max_resolution"], cost_range=provider["cost_range"],
                            available=available)
    return ProviderList(providers=out)


# Image Studio operation kind -> the Orchestrator action whose work it runs.
_ESTIMATE_ACTIONS = {"edit": "generate", "control": "generate"}


@router.post("/estimate-cost", response_model=CostReply, dependencies=[GUARD], summary="Estimate credits")
async def estimate_cost(body: CostBody, request: Request) -> CostReply:
    catalogue = _catalogues(request).providers
    providers = catalogue["providers"]
    if body.provider not in providers:
        raise InvalidArgument(f"Unknown provider '{body.provider}'. Supported: {', '.join(providers)}",
                              field="provider", supported_providers=list(providers))
    provider = providers[body.provider]
    model = ""
    if body.operation == "generate":
        model = body.model or provider["models"][0]
        if model not in provider["models"]:
            raise InvalidArgument(f"Unknown model '{model}' for provider '{body.provider}'. Supported: "
                                  f"{', '.join(provider['models'])}", field="model", supported_models=provider["models"])
    kind = body.operation.split("_")[0]
    if kind not in provider["operations"]:
        raise InvalidArgument(f"Provider '{body.provider}' does not offer '{body.operation}'", field="operation")
    # Credits are the Orchestrator's figure (its price table, its credit rate), rendered to two decimals here;
    # edits and control run Generate's pipelines, so they are estimated as generations.
    reply = await translate.client(request).estimate_cost(
        _ESTIMATE_ACTIONS.get(kind, kind), model_id=model, width=body.width or 0, height=body.height or 0,
        count=body.num_images)
    return CostReply(estimated_cost=round(reply.credits, 2), currency="credits",
                     provider=body.provider, model=body.model, operation=body.operation, num_images=body.num_images)


# ---- edit and control ---------------------------------------------------------------------------------------

_MESH_OPERATIONS = {"inpaint": gen_pb.GENERATE_OPERATION_INPAINT,
                    "image_to_image": gen_pb.GENERATE_OPERATION_IMAGE_TO_IMAGE,
                    "control": gen_pb.GENERATE_OPERATION_CONTROL,
                    "instruct_edit": gen_pb.GENERATE_OPERATION_INSTRUCT_EDIT,
                    "style": gen_pb.GENERATE_OPERATION_STYLE,
                    "style_transfer": gen_pb.GENERATE_OPERATION_STYLE_TRANSFER}


async def _availability(request: Request, kind: str) -> dict[str, Operation]:
    out = {}
    for name, spec in _catalogues(request).operations[kind].items():
        available, reason = True, None
        mesh_op = _MESH_OPERATIONS.get(spec["mesh"])
        if mesh_op is not None and not await translate.models_for(request, mesh_op):
            available = False
            reason = f"operation not available: no model configured (needs a Generate model supporting " \
                     f"{spec['mesh'].upper()})"
        out[name] = Operation(label=spec["label"], description=spec["description"],
                              provider="imagemesh", fields=spec["fields"], available=available,
                              unavailable_reason=reason)
    return out


async def _model_for(request: Request, operation: str, mesh_op: str, model_name: str | None) -> gen_pb.ModelInfo:
    wanted = _MESH_OPERATIONS[mesh_op]
    if model_name:
        model = await translate.resolve_model(request, model_name)
        if model is not None and wanted in model.operations:
            return model
        if model is not None:
            raise InvalidArgument(f"model '{model_name}' does not support {operation}", field="model")
    models = await translate.models_for(request, wanted)
    if not models:
        raise NotImplementedYet(f"operation not available: no model configured ({operation} needs a Generate model "
                                f"supporting {mesh_op.upper()})", operation=operation)
    return models[0]


async def _generative(request: Request, *, operation: str, mesh_op: str, model_name: str | None, prompt: str,
                      negative_prompt: str | None, image: common_pb2.Image, mask: common_pb2.Image | None,
                      strength: float | None, steps: int | None, guidance_scale: float | None, seed: int | None,
                      style_preset: str | None, output_format: str, outpaint: gen_pb.Outpaint | None = None,
                      aspect_ratio: str | None = None,
                      **extra: Any) -> tuple[orch_pb.Job, gen_pb.ModelInfo]:
    """One Generate job; `extra` sets GenerateParameters fields by name (control, style, search options)."""
    model = await _model_for(request, operation, mesh_op, model_name)
    params = translate.generate_parameters(
        model=model, prompt=prompt, negative_prompt=negative_prompt or "", steps=steps or 0,
        guidance_scale=guidance_scale, seed=seed, style_preset=style_preset or "",
        output_format=translate.output_format(output_format), owner=translate.owner_of(request),
        operation=_MESH_OPERATIONS[mesh_op], init_image=image, mask_image=mask, strength=strength,
        aspect_ratio=aspect_ratio or "")
    if outpaint is not None:
        params.outpaint.CopyFrom(outpaint)
    for name, value in extra.items():
        if value is None:
            continue
        if isinstance(value, common_pb2.Image):
            getattr(params, name).CopyFrom(value)
        else:
            setattr(params, name, value)
    job = await translate.run_job(request, orch_pb.JobSpec(generate=params), DIALECT, operation=operation)
    return job, model


async def _image_reply(request: Request, job: orch_pb.Job, operation: str, provider: str,
                       metadata: dict[str, Any]) -> ImageReply:
    images = translate.job_images(job)
    if not images:
        raise InvalidArgument(f"{operation} produced no image")
    data, media_type = await translate.image_bytes(request, images[0])
    width, height = images[0].width, images[0].height
    seconds = translate.seconds_between(job.started_at, job.finished_at)
    generated = job.result.generate if job.result.WhichOneof("result") == "generate" else None
    if generated is not None:
        # Which model path ran (controlnet:canny, instruct-pix2pix, ip-adapter, search:clipseg, ...) and why.
        metadata = {**metadata, "path": generated.metadata.path, "notes": list(generated.notes)}
    return ImageReply(success=True, operation=operation, provider=provider, image_base64=data_uri(data, media_type),
                      width=width, height=height,
                      metadata={"operation": operation, "processing_time": round(seconds or 0.0, 3), **metadata})


def _catalogue_operation(request: Request, kind: str, name: str) -> dict:
    """The catalogue entry of an edit/control operation, or the documented error listing the supported ones."""
    operations = _catalogues(request).operations[kind]
    if name not in operations:
        raise InvalidArgument(f"Unsupported operation '{name}'. Supported: {', '.join(operations)}",
                              field="operation", supported_operations=list(operations))
    return operations[name]


def _option_number(options: dict[str, Any], name: str) -> float | None:
    """A number from the free-form `options` object; anything else is the client's error, named."""
    value = options.get(name)
    if value is None:
        return None
    number = None
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None:
        raise InvalidArgument(f"options.{name} must be a number", field=f"options.{name}")
    return number


@router.post("/edit/process", response_model=ImageReply, dependencies=[GUARD], summary="Edit Studio operations")
async def edit_process(body: EditBody, request: Request) -> ImageReply:
    settings = request.app.state.settings
    operation = _catalogue_operation(request, "edit", body.operation)
    data = decode_base64_image(body.image_base64, "image_base64", settings.max_image_bytes)
    image = common_pb2.Image(data=data)
    if body.operation == "remove_background":
        spec = orch_pb.JobSpec(remove_background=br_pb.RemoveBackgroundRequest(
            image=image, output_format=translate.output_format(body.output_format)))
        job = await translate.run_job(request, spec, DIALECT, operation=body.operation)
        return await _image_reply(request, job, body.operation, "imagemesh",
                                  {"model": job.result.remove_background.model_id})
    mesh_op = operation["mesh"]
    prompt = (body.prompt or "").strip()
    if not prompt:
        label = {"inpaint": "inpainting", "outpaint": "outpainting"}.get(body.operation, body.operation)
        raise InvalidArgument(f"Prompt is required for {label}", field="prompt")
    mask = decode_base64_image(body.mask_base64, "mask_base64", settings.max_image_bytes) if body.mask_base64 else None
    strength = _option_number(body.options, "strength")
    outpaint = None
    search_prompt = None
    mask_msg = common_pb2.Image(data=mask) if mask else None
    if body.operation == "outpaint":
        # Generate builds the canvas and its mask (and checks its size before it exists).
        outpaint = gen_pb.Outpaint(left=body.expand_left, right=body.expand_right, up=body.expand_up,
                                   down=body.expand_down)
        mask_msg = None
    elif body.operation in ("search_replace", "search_recolor"):
        # The seed's search_prompt (replace) and select_prompt (recolor) name what to find; Generate finds it.
        field = "search_prompt" if body.operation == "search_replace" else "select_prompt"
        search_prompt = (getattr(body, field) or "").strip()
        if not search_prompt and mask is None:
            raise InvalidArgument(f"{field} is required for {body.operation} (or give mask_base64)", field=field)
    elif body.operation != "inpaint":
        mask_msg = None  # an inpaint without a mask is Generate's whole-image repaint
    image_guidance = _option_number(body.options, "image_guidance_scale") if body.operation == "general_edit" else None
    job, model = await _generative(
        request, operation=body.operation, mesh_op=mesh_op, model_name=body.model, prompt=prompt,
        negative_prompt=body.negative_prompt, image=image, mask=mask_msg,
        strength=strength, steps=body.steps,
        guidance_scale=body.guidance_scale, seed=body.seed, style_preset=body.style_preset,
        output_format=body.output_format, outpaint=outpaint, search_prompt=search_prompt,
        image_guidance_scale=image_guidance)
    return await _image_reply(request, job, body.operation, "imagemesh", {"model": model.id})


@router.get("/edit/operations", response_model=OperationList, dependencies=[GUARD],
            summary="Edit Studio operations and whether each is available here")
async def edit_operations(request: Request) -> OperationList:
    return OperationList(operations=await _availability(request, "edit"))


@router.post("/control/process", response_model=ImageReply, dependencies=[GUARD],
             summary="Control Studio operations (sketch, structure, style, style_transfer)")
async def control_process(body: ControlBody, request: Request) -> ImageReply:
    settings = request.app.state.settings
    operation = _catalogue_operation(request, "control", body.operation)
    data = decode_base64_image(body.control_image_base64, "control_image_base64", settings.max_image_bytes)
    control_image = common_pb2.Image(data=data)
    mesh_op = operation["mesh"]
    # The seed's fields, renamed onto Generate's: control_strength is ControlNet's conditioning scale, fidelity
    # (style) and style_strength (style_transfer) the IP-Adapter scale, and style_transfer repaints the control
    # image by change_strength, else by what composition_fidelity does not keep.
    extra: dict[str, Any] = {}
    image, strength = control_image, None
    if mesh_op == "control":
        extra = {"control_preprocessor": operation.get("preprocessor", ""), "control_strength": body.control_strength}
    elif mesh_op == "style":
        image, extra = None, {"style_image": control_image, "style_strength": body.fidelity}
    elif mesh_op == "style_transfer":
        if not body.style_image_base64:
            raise InvalidArgument("style_image_base64 is required for style_transfer", field="style_image_base64")
        style = decode_base64_image(body.style_image_base64, "style_image_base64", settings.max_image_bytes)
        extra = {"style_image": common_pb2.Image(data=style), "style_strength": body.style_strength}
        if body.change_strength is not None:
            strength = body.change_strength
        elif body.composition_fidelity is not None:
            strength = round(1.0 - body.composition_fidelity, 3)
        strength = strength if strength is None else max(0.05, min(1.0, strength))
    job, model = await _generative(
        request, operation=body.operation, mesh_op=mesh_op, model_name=None,
        prompt=body.prompt, negative_prompt=body.negative_prompt, image=image, mask=None, strength=strength,
        steps=None, guidance_scale=None, seed=body.seed, style_preset=body.style_preset,
        output_format=body.output_format, aspect_ratio=body.aspect_ratio if mesh_op == "style" else None, **extra)
    metadata = {key: value for key, value in (("control_strength", body.control_strength),
                                               ("fidelity", body.fidelity), ("style_strength", body.style_strength),
                                               ("composition_fidelity", body.composition_fidelity),
                                               ("change_strength", body.change_strength)) if value is not None}
    return await _image_reply(request, job, body.operation, "imagemesh", {"model": model.id, **metadata})


@router.get("/control/operations", response_model=OperationList, dependencies=[GUARD],
            summary="Control Studio operations and whether each is available here")
async def control_operations(request: Request) -> OperationList:
    return OperationList(operations=await _availability(request, "control"))


# ---- upscale, social, platforms -----------------------------------------------------------------------------


@router.post("/upscale", response_model=UpscaleReply, dependencies=[GUARD], summary="Upscale an image")
async def upscale(body: UpscaleBody, request: Request) -> UpscaleReply:
    data = decode_base64_image(body.image_base64, "image_base64", request.app.state.settings.max_image_bytes)
    scale = 0 if (body.target_width or body.target_height or body.preset) else 4
    spec = orch_pb.JobSpec(upscale=translate.upscale_request(
        common_pb2.Image(data=data), scale_factor=scale, mode=body.mode, target_width=body.target_width or 0,
        target_height=body.target_height or 0, preset=body.preset or ""))
    job = await translate.run_job(request, spec, DIALECT)
    result = job.result.upscale
    out, media_type = await translate.image_bytes(request, result.image)
    return UpscaleReply(success=True, mode=body.mode, image_base64=data_uri(out, media_type),
                        width=result.output_dimensions.width, height=result.output_dimensions.height,
                        metadata={"preset": body.preset, "original_width": result.input_dimensions.width,
                                  "original_height": result.input_dimensions.height,
                                  "upscale_factor": round(result.scale_factor, 3), "method": result.method_used,
                                  "notes": list(result.notes)})


def _label(fmt: up_pb.PlatformFormat) -> str:
    """A format as the document names it ("Feed Post (Square)"); its short id where Upscale gives no label."""
    return fmt.display_name or fmt.name


def _same(a: str, b: str) -> bool:
    def norm(text: str) -> str:
        return "".join(ch for ch in text.lower() if ch.isalnum())
    return norm(a) == norm(b)


@router.post("/social/optimize", response_model=SocialReply, dependencies=[GUARD],
             summary="Crop one image for several social platforms")
async def social_optimize(body: SocialBody, request: Request) -> SocialReply:
    data = decode_base64_image(body.image_base64, "image_base64", request.app.state.settings.max_image_bytes)
    chosen: list[tuple[str, str]] = []
    labels: dict[tuple[str, str], str] = {}
    for platform in deduplicated(body.platforms):
        formats = await translate.platform_formats(request, platform)
        if not formats:
            raise InvalidArgument(f"Platform '{platform}' has no formats", field="platforms")
        wanted = body.format_names.get(platform)
        # The document's labels ("Feed Post (Square)") and the short ids ("feed_square") both name a format.
        match = next((f for f in formats if wanted is None or _same(f.display_name, wanted) or _same(f.name, wanted)
                      or _same(f.description, wanted)), None)
        if match is None:
            raise InvalidArgument(f"Format '{wanted}' not found for {platform}. Available: "
                                  f"{', '.join(_label(f) for f in formats)}", field="format_names")
        chosen.append((platform, match.name))
        labels[(platform, match.name)] = _label(match)
    social = up_pb.OptimizeSocialRequest(
        image=common_pb2.Image(data=data), platforms=sorted({p for p, _ in chosen}),
        formats=sorted({name for _, name in chosen}), safe_zone_overlay=body.show_safe_zones,
        crop_mode={"smart": up_pb.CROP_MODE_SMART, "center": up_pb.CROP_MODE_CENTER,
                   "fit": up_pb.CROP_MODE_FIT}[body.crop_mode],
        output_format=translate.output_format(body.output_format))
    if body.focal_point:
        social.focal_x, social.focal_y = body.focal_point.x, body.focal_point.y
    job = await translate.run_job(request, orch_pb.JobSpec(optimize_social=social), DIALECT)
    results = []
    for platform, name in chosen:
        item = next((i for i in job.result.optimize_social.images
                     if i.format.platform == platform and i.format.name == name), None)
        if item is None:
            continue
        out, media_type = await translate.image_bytes(request, item.image)
        results.append(SocialResult(platform=platform, format=labels[(platform, name)],
                                    image_base64=data_uri(out, media_type),
                                    width=item.format.width, height=item.format.height))
    return SocialReply(success=bool(results), results=results, total_optimized=len(results))


async def _formats(request: Request, platform: str) -> list[up_pb.PlatformFormat]:
    """A platform's formats; an unknown platform (the one argument of the call) is the seed's 404."""
    try:
        formats = await translate.platform_formats(request, platform)
    except (NotFound, InvalidArgument) as exc:
        raise NotFound(f"Platform '{platform}' not found: {exc.message}") from None
    if not formats:
        raise NotFound(f"Platform '{platform}' not found")
    return formats


@router.get("/social/platforms/{platform}/formats", response_model=PlatformFormats, dependencies=[GUARD],
            summary="A platform's formats")
async def platform_formats(platform: NamePath, request: Request) -> PlatformFormats:
    formats = await _formats(request, platform)
    return PlatformFormats(formats=[PlatformFormat(
        name=_label(f), id=f.name, width=f.width, height=f.height, ratio=f.ratio,
        safe_zone=SafeZone(top=round(f.safe_zone.top, 4), bottom=round(f.safe_zone.bottom, 4),
                           left=round(f.safe_zone.left, 4), right=round(f.safe_zone.right, 4)),
        file_type=f.file_type.upper(), max_size_mb=round(f.max_size_bytes / 1048576, 2)) for f in formats])


@router.get("/platform-specs/{platform}", response_model=PlatformSpecs, dependencies=[GUARD],
            summary="A platform's specifications")
async def platform_specs(platform: NamePath, request: Request) -> PlatformSpecs:
    formats = await _formats(request, platform)
    facts = _catalogues(request).platforms.get(platform.lower(), {})
    file_types = facts.get("file_types") or sorted({f.file_type.upper() for f in formats})
    max_size = facts.get("max_file_size") or f"{max(f.max_size_bytes for f in formats) / 1048576:.0f}MB"
    return PlatformSpecs(name=facts.get("name", platform.title()),
                         formats=[SpecFormat(name=_label(f), id=f.name, ratio=f.ratio, size=f"{f.width}x{f.height}")
                                  for f in formats],
                         file_types=file_types, max_file_size=max_size)


@router.get("/health", response_model=Health, summary="Image Studio health")
async def health(request: Request) -> JSONResponse:
    services = await request.app.state.mesh.health()

    def state(*names: str) -> str:
        return "available" if all(services.get(n) == "SERVING" for n in names) else "unavailable"

    modules = {"create_studio": state("orchestrator", "generate"), "templates": "available",
               "providers": "available", "edit_studio": state("orchestrator", "background_removal", "generate"),
               "upscale_studio": state("orchestrator", "upscale"), "control_studio": state("orchestrator", "generate"),
               "social_optimizer": state("orchestrator", "upscale")}
    healthy = all(status == "SERVING" for status in services.values())
    body = Health(status="healthy" if healthy else "degraded", service="image_studio",
                  version=request.app.state.settings.version, modules=modules)
    return JSONResponse(status_code=200, content=body.model_dump())
