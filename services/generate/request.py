"""A generation request as plain Python, and its validation against the model's limits.

Validation runs before a request is queued, so every bad value is a clear INVALID_ARGUMENT naming the field,
never a pipeline exception half-way through a batch.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from fractions import Fraction

from PIL import Image

from services.generate import control, families, presets, sizing
from services.generate.catalog import Catalog, ModelEntry
from services.generate.diffusers_lookup import diffusers_class
from services.generate.edits import Outpaint, full_mask, mask_from_alpha, outpaint_canvas
from shared.errors import InvalidArgument, MissingImage, PromptTooLong
from shared.gen.imagemesh.v1 import common_pb2
from shared.images import has_alpha

OPERATIONS = ("text_to_image", "image_to_image", "inpaint", *control.GENERATION_OPERATIONS)
MAX_SEED = 2**63 - 1 - 64  # room for seed + image index
DEFAULT_STRENGTH = 0.8


@dataclass
class GenerateInput:
    """What a client asked for, decoded from the wire (images already decoded to PIL)."""

    prompt: str = ""
    model: str = ""
    negative_prompt: str = ""
    width: int = 0
    height: int = 0
    aspect_ratio: str = ""
    steps: int = 0
    guidance_scale: float | None = None
    seed: int | None = None
    num_images: int = 0
    style_preset: str = ""
    output_format: int = common_pb2.IMAGE_FORMAT_PNG
    scheduler: str = ""
    operation: str = "text_to_image"
    init_image: Image.Image | None = None
    mask_image: Image.Image | None = None
    strength: float | None = None
    owner: str = ""
    template: str = ""
    quality: str = ""
    outpaint: Outpaint | None = None
    mask_from_alpha: bool = False
    # Control, instruct, style and search options (services/generate/control.py).
    control_preprocessor: str = ""
    control_strength: float | None = None
    style_image: Image.Image | None = None
    style_strength: float | None = None
    image_guidance_scale: float | None = None
    search_prompt: str = ""
    subject_mask: Image.Image | None = None
    control_image: Image.Image | None = None


@dataclass
class Plan:
    """A validated request: every default filled in, every value inside the model's limits."""

    entry: ModelEntry
    operation: str
    prompt: str
    effective_prompt: str
    style_preset: str
    negative_prompt: str
    # The size the pipeline runs at (the model's nearest supported one)...
    width: int
    height: int
    steps: int
    guidance_scale: float
    seeds: list[int]
    scheduler: str
    strength: float | None
    init_image: Image.Image | None
    mask_image: Image.Image | None
    output_format: int
    owner: str
    # ...and the size every output is resized and cropped to: exactly what the client asked for.
    output_width: int = 0
    output_height: int = 0
    notes: list[str] = field(default_factory=list)
    # Control, instruct, style or search specifics; None for plain text-to-image, image-to-image and inpaint.
    edit: control.EditPlan | None = None

    @property
    def path(self) -> str:
        """Which model path runs (GenerationMetadata.path)."""
        return self.edit.path if self.edit is not None else self.operation

    @property
    def pipeline_operation(self) -> str:
        """Which of the loaded model's pipelines runs (ControlNet image-to-image derives from the ControlNet one)."""
        return control.pipeline_operation(self.operation, self.edit)

    @property
    def num_images(self) -> int:
        return len(self.seeds)

    def batch_key(self) -> tuple:
        """Requests with equal keys can share one pipeline call (prompts, seeds and images stay per request)."""
        key = (self.entry.id, self.operation, self.width, self.height, self.steps, self.guidance_scale,
               self.scheduler, self.strength, self.edit.key() if self.edit is not None else None)
        if families.family(self.entry.family).empty_negative_is_zeros:
            # SDXL: "no negative prompt" is zero embeddings, which a batch with a negative prompt cannot give.
            key += (bool(self.negative_prompt),)
        return key


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not (low <= value <= high) or (isinstance(value, float) and math.isnan(value)):
        raise InvalidArgument(f"{name} must be between {low:g} and {high:g}, got {value:g}", field=name,
                              min=low, max=high)


def _within_limits(name: str, value: float, low: float, high: float, entry: ModelEntry, notes: list[str]) -> float:
    """value inside [low, high]: refused, or clamped with a note when the model's registry entry says
    `out_of_range: clamp` (its limits are tighter than the defaults dialects document)."""
    if entry.out_of_range == "clamp" and not (isinstance(value, float) and math.isnan(value)):
        clamped = min(high, max(low, value))
        if clamped != value:
            notes.append(f"{name} {value:g} clamped to {clamped:g}: model {entry.id} takes {low:g} to {high:g}")
        return clamped
    _check_range(name, value, low, high)
    return value


QUALITY_LEVELS = {"draft": 3, "standard": 5, "high": 7, "premium": 8, "ultra": 10}
_STANDARD_LEVEL = 5


def steps_for_quality(quality: str, entry: ModelEntry) -> int:
    """Quality level 1..10 (or its name) spread over the model's step range: level 5 ("standard") is its default
    steps, 1 its minimum, 10 its maximum, linear in between on each side."""
    key = quality.strip().lower()
    level = QUALITY_LEVELS.get(key)
    if level is None:
        if not key.isdigit() or not 1 <= int(key) <= 10:
            raise InvalidArgument(f"quality must be one of {', '.join(QUALITY_LEVELS)} or a level 1 to 10, got "
                                  f"{quality!r}", field="quality", supported=list(QUALITY_LEVELS))
        level = int(key)
    low, mid, high = entry.min_steps, entry.default_steps, entry.max_steps
    if level <= _STANDARD_LEVEL:
        steps = low + (mid - low) * (level - 1) / (_STANDARD_LEVEL - 1)
    else:
        steps = mid + (high - mid) * (level - _STANDARD_LEVEL) / (10 - _STANDARD_LEVEL)
    return max(low, min(high, round(steps)))


def _output_size(inp: GenerateInput, entry: ModelEntry, templates: dict[str, tuple[int, int]]) -> tuple[int, int]:
    """The exact size the client gets: explicit sides, else an aspect ratio, else a template, else the source
    image's (image-to-image) or the model's default."""
    if inp.width < 0 or inp.height < 0:
        raise InvalidArgument("width and height must be positive", field="width" if inp.width < 0 else "height")
    ratio = sizing.parse_aspect_ratio(inp.aspect_ratio) if inp.aspect_ratio else None
    if inp.width or inp.height:
        if inp.width and inp.height:
            width, height = inp.width, inp.height
        else:
            # One side given: the other follows the aspect ratio (or the default size's shape).
            shape = ratio or Fraction(entry.default_width, entry.default_height)
            given = inp.width or inp.height
            other = sizing.other_side(given, shape, given_is_width=bool(inp.width))
            width, height = (given, other) if inp.width else (other, given)
        for name, value in (("width", width), ("height", height)):
            _check_range(name, value, entry.min_size, entry.max_size)
        if width * height > entry.pixel_cap:
            raise InvalidArgument(f"{width}x{height} exceeds the model's {entry.pixel_cap} pixels", field="width",
                                  max_pixels=entry.pixel_cap)
        return width, height
    if ratio is not None:
        return sizing.size_for_ratio(ratio, entry.pixel_budget, entry.min_size, entry.max_size)
    if inp.template.strip():
        # A template names a published size: honoured exactly even past the model's max (upscaled, with a note).
        return sizing.check_template(inp.template, templates)
    if inp.init_image is not None:
        # Image-to-image without a size keeps the source's size.
        return inp.init_image.size
    return entry.default_width, entry.default_height


def _scheduler_name(name: str) -> str:
    if not name:
        return ""
    cls = diffusers_class(name)
    if cls is None or not name.endswith("Scheduler") or not isinstance(cls, type):
        raise InvalidArgument(f"unknown scheduler {name!r}; give a diffusers scheduler class name such as "
                              "DDIMScheduler or EulerDiscreteScheduler", field="scheduler")
    return name


def _alpha_mask(inp: GenerateInput, operation: str, notes: list[str]) -> None:
    """Turn a transparency mask (mask_from_alpha) into the white = repaint mask the pipelines take."""
    if operation != "inpaint":
        raise InvalidArgument(f"mask_from_alpha applies to inpaint, not {operation}", field="mask_from_alpha")
    if inp.outpaint is not None:
        raise InvalidArgument("outpaint builds its own mask: give mask_from_alpha or outpaint, not both",
                              field="mask_from_alpha")
    if inp.mask_image is not None:
        if not has_alpha(inp.mask_image):
            raise InvalidArgument("mask has no transparency: its transparent pixels mark the area to edit",
                                  field="mask_image")
        if inp.mask_image.size != inp.init_image.size:
            raise InvalidArgument("mask must have the same size as the image: mask {}x{}, image {}x{}".format(
                *inp.mask_image.size, *inp.init_image.size), field="mask_image")
        inp.mask_image = mask_from_alpha(inp.mask_image)
    elif has_alpha(inp.init_image):
        inp.mask_image = mask_from_alpha(inp.init_image)
        notes.append("no mask_image: the image's transparent pixels are the area repainted")


def validate(inp: GenerateInput, registry: Catalog, *, max_prompt_length: int, max_images: int,
             templates: dict[str, tuple[int, int]] | None = None) -> Plan:
    entry = registry.resolve(inp.model)
    notes: list[str] = []
    operation = inp.operation or "text_to_image"
    if operation not in OPERATIONS:
        raise InvalidArgument(f"unknown operation {operation!r}", field="operation")
    if operation not in entry.operations:
        raise InvalidArgument(f"model {entry.id!r} does not support {operation}; it supports "
                              f"{', '.join(entry.operations)}", field="operation", model=entry.id)

    prompt = inp.prompt.strip()
    if not prompt:
        raise InvalidArgument("prompt is required", field="prompt")
    for name, text in (("prompt", prompt), ("negative_prompt", inp.negative_prompt)):
        if len(text) > max_prompt_length:
            raise PromptTooLong(f"{name} is {len(text)} characters; the maximum is {max_prompt_length}",
                                field=name, length=len(text), max_length=max_prompt_length)
    effective_prompt, style = presets.apply_style(prompt, inp.style_preset)

    negative = inp.negative_prompt.strip()
    if negative and not entry.supports_negative_prompt:
        why = " (FLUX takes no negative prompt)" if entry.family == "flux" else ""
        notes.append(f"negative_prompt ignored: model {entry.id} does not support negative prompts{why}")
        negative = ""

    if inp.steps:
        steps = inp.steps
        if inp.quality.strip():
            notes.append(f"quality {inp.quality.strip()!r} ignored: steps={inp.steps} given")
    elif inp.quality.strip():
        steps = steps_for_quality(inp.quality, entry)
    else:
        steps = entry.default_steps
    steps = int(_within_limits("steps", steps, entry.min_steps, entry.max_steps, entry, notes))
    if not entry.uses_guidance:
        if inp.guidance_scale is not None and float(inp.guidance_scale) != entry.default_guidance:
            notes.append(f"guidance_scale {float(inp.guidance_scale):g} ignored: model {entry.id} is "
                         "guidance-distilled and takes no guidance scale")
        guidance = entry.default_guidance
    else:
        guidance = entry.default_guidance if inp.guidance_scale is None else float(inp.guidance_scale)
        guidance = _within_limits("guidance_scale", guidance, entry.min_guidance, entry.max_guidance, entry, notes)
    if negative and guidance <= 1.0:
        notes.append("negative_prompt has no effect at guidance_scale <= 1")

    num_images = inp.num_images or 1
    _check_range("num_images", num_images, 1, max_images)
    if inp.seed is None or inp.seed == -1:
        seed = secrets.randbelow(2**32)
    else:
        _check_range("seed", inp.seed, 0, MAX_SEED)
        seed = int(inp.seed)

    strength = None
    init_image = mask_image = None
    if operation in control.NEEDS_INIT_IMAGE and inp.init_image is None:
        raise MissingImage(f"{operation} needs init_image", field="init_image")
    control.check_inputs(inp, operation)
    search = control.search_region(inp, registry, notes) if operation == "inpaint" else None
    if inp.mask_from_alpha:
        _alpha_mask(inp, operation, notes)
    if inp.outpaint is not None:
        if operation != "inpaint":
            raise InvalidArgument(f"outpaint applies to inpaint, not {operation}", field="outpaint")
        if inp.mask_image is not None:
            raise InvalidArgument("outpaint builds its own mask: give mask_image or outpaint, not both",
                                  field="mask_image")
        inp.init_image, inp.mask_image = outpaint_canvas(inp.init_image, inp.outpaint)
        notes.append("outpaint: the image was placed on a {}x{} canvas and the new area generated".format(
            *inp.init_image.size))
    elif operation == "inpaint" and inp.mask_image is None and search is None:
        inp.mask_image = full_mask(inp.init_image.size)
        notes.append("no mask_image: the whole image is repainted")
    if control.takes_strength(inp, operation):
        strength = DEFAULT_STRENGTH if inp.strength is None else float(inp.strength)
        _check_range("strength", strength, 0.01, 1.0)
        if int(steps * strength) < 1:
            # diffusers runs int(steps * strength) steps and fails on zero; say so before queueing.
            raise InvalidArgument(f"steps * strength = {steps * strength:g} leaves no denoising step",
                                  field="strength")
    elif inp.strength is not None:
        notes.append(f"strength ignored: it applies to image_to_image, not {operation}")

    if inp.output_format not in common_pb2.ImageFormat.values():
        raise InvalidArgument(f"unknown output_format {inp.output_format}", field="output_format")
    output_width, output_height = _output_size(inp, entry, templates or {})
    width, height = sizing.run_size(output_width, output_height, entry)
    if (width, height) != (output_width, output_height):
        notes.append(f"generated at {width}x{height} (model {entry.id}: multiples of {entry.size_multiple}, "
                     f"{entry.min_size} to {entry.max_size} pixels a side), resized and cropped to "
                     f"{output_width}x{output_height}")
    if inp.template.strip() and (inp.width or inp.height or inp.aspect_ratio):
        notes.append(f"template {inp.template.strip()!r} ignored: the explicit size or aspect_ratio wins")
    if inp.init_image is not None and operation in control.NEEDS_INIT_IMAGE:
        init_image = inp.init_image.convert("RGB").resize((width, height), Image.LANCZOS)
    if inp.mask_image is not None and operation == "inpaint":
        mask_image = inp.mask_image.convert("L").resize((width, height), Image.NEAREST)
    edit = control.plan_edit(inp, operation, init_image, search, notes)

    return Plan(
        entry=entry, operation=operation, prompt=prompt, effective_prompt=effective_prompt, style_preset=style,
        negative_prompt=negative, width=width, height=height, steps=steps, guidance_scale=guidance,
        seeds=[seed + i for i in range(num_images)], scheduler=_scheduler_name(inp.scheduler.strip()),
        strength=strength, init_image=init_image, mask_image=mask_image, output_format=inp.output_format,
        owner=inp.owner, output_width=output_width, output_height=output_height,
        notes=notes, edit=edit,
    )
