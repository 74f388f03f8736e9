"""Control and edit operations: ControlNet, InstructPix2Pix, IP-Adapter style, and search (text-selected) inpainting.

Generate owns these rules; surfaces (Image Studio's control and edit operations, A1111's ControlNet script) pass the
images and numbers. Everything here runs in worker threads: preprocessing during validation, region selection and
compositing on the device thread next to the pipeline call.

- control: init_image is preprocessed into a control image first (`PREPROCESSORS`: Canny edges with OpenCV,
  lineart or scribble with PIL, or none), then StableDiffusionControlNetPipeline generates from the prompt under it.
- instruct_edit: StableDiffusionInstructPix2PixPipeline edits init_image as the prompt instructs.
- style / style_transfer: the registry entry's IP-Adapter (loaded with diffusers' load_ip_adapter from a local
  folder) conditions text-to-image (style) or image-to-image of init_image (style_transfer) on style_image.
- inpaint with search_prompt: the region comes from segmentation.py (CLIPSeg or the subject mask); only the region
  changes: the pipeline's output is composited over the original outside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from services.generate import segmentation
from shared.errors import InvalidArgument, MissingImage, NotImplementedYet, SubjectMaskRequired

CONTROL, INSTRUCT, STYLE, STYLE_TRANSFER, SEGMENT = "control", "instruct_edit", "style", "style_transfer", "segment"
# Operations a request may ask for, beyond text_to_image, image_to_image and inpaint.
GENERATION_OPERATIONS = (CONTROL, INSTRUCT, STYLE, STYLE_TRANSFER)
# Operations whose loaded pipeline is used as it is; the others derive from it (AutoPipeline.from_pipe).
NATIVE = (CONTROL, INSTRUCT, SEGMENT)
DERIVED = {STYLE: "text_to_image", STYLE_TRANSFER: "image_to_image"}
# The pipeline key of ControlNet image-to-image (a control_image given): derived from the ControlNet pipeline.
CONTROL_IMG2IMG = "control_img2img"
NEEDS_INIT_IMAGE = ("image_to_image", "inpaint", CONTROL, INSTRUCT, STYLE_TRANSFER)

PREPROCESSORS = ("canny", "lineart", "scribble", "none")
DEFAULT_PREPROCESSOR = "canny"
CANNY_THRESHOLDS = (100, 200)
DEFAULT_CONTROL_STRENGTH = 1.0
DEFAULT_STYLE_STRENGTH = 0.6
DEFAULT_IMAGE_GUIDANCE = 1.5
IP_ADAPTER_WEIGHTS = "ip-adapter.safetensors"


@dataclass
class EditPlan:
    """What a control, instruct, style or search request adds to a Plan."""

    path: str
    control_image: Image.Image | None = None
    control_strength: float | None = None
    style_image: Image.Image | None = None
    style_strength: float | None = None
    image_guidance_scale: float | None = None
    search_prompt: str = ""
    segmenter: Any = None  # the registry entry of the segmentation model (search:clipseg)
    batch_token: int = 0  # requests with their own style image never share a call (one IP-Adapter image per call)
    img2img: bool = False  # control: init_image is repainted (strength) under control_image

    def key(self) -> tuple:
        return (self.path, self.control_strength, self.style_strength, self.image_guidance_scale, self.batch_token)


# -- preprocessing -------------------------------------------------------------------------------------------


def preprocess(image: Image.Image, name: str) -> Image.Image:
    """The control image ControlNet reads: light lines on black."""
    if name == "canny":
        import cv2
        import numpy as np

        edges = cv2.Canny(np.asarray(image.convert("L")), *CANNY_THRESHOLDS)
        return Image.fromarray(edges, mode="L").convert("RGB")
    if name in ("lineart", "scribble"):
        # A drawing is dark strokes on light paper; ControlNet's lineart/scribble inputs are light lines on black.
        lines = ImageOps.autocontrast(ImageOps.invert(image.convert("L")))
        if name == "scribble":
            lines = lines.point(lambda v: 255 if v >= 128 else 0)
        return lines.convert("RGB")
    return image.convert("RGB")


def _range(name: str, value: float, low: float, high: float) -> float:
    if not low <= value <= high:
        raise InvalidArgument(f"{name} must be between {low:g} and {high:g}, got {value:g}", field=name,
                              min=low, max=high)
    return float(value)


# -- validation (request.validate calls these) -----------------------------------------------------------------


def takes_strength(inp: Any, operation: str) -> bool:
    """Operations that repaint init_image by `strength`."""
    return operation in ("image_to_image", STYLE_TRANSFER) or (operation == CONTROL and inp.control_image is not None)


def pipeline_operation(operation: str, edit: EditPlan | None) -> str:
    return CONTROL_IMG2IMG if operation == CONTROL and edit is not None and edit.img2img else operation


def check_inputs(inp: Any, operation: str) -> None:
    """Images and options an operation needs, and the ones it does not take (before anything is resized)."""
    if operation in (STYLE, STYLE_TRANSFER) and inp.style_image is None:
        raise MissingImage(f"{operation} needs style_image (the style reference)", field="style_image")
    if inp.search_prompt.strip() and operation != "inpaint":
        raise InvalidArgument(f"search_prompt applies to inpaint, not {operation}", field="search_prompt")
    if inp.control_image is not None and operation != CONTROL:
        raise InvalidArgument(f"control_image applies to control, not {operation}", field="control_image")
    if inp.control_preprocessor and operation != CONTROL:
        raise InvalidArgument(f"control_preprocessor applies to control, not {operation}",
                              field="control_preprocessor")
    if inp.control_preprocessor and inp.control_preprocessor not in PREPROCESSORS:
        raise InvalidArgument(f"unknown control_preprocessor {inp.control_preprocessor!r}; supported: "
                              f"{', '.join(PREPROCESSORS)}", field="control_preprocessor",
                              supported=list(PREPROCESSORS))


@dataclass(frozen=True)
class Search:
    """How an inpaint's search prompt finds its region: "search:subject-mask" (inp.mask_image is set) or
    "search:clipseg" (the segmenter entry runs on the device thread)."""

    path: str
    segmenter: Any = None


def search_region(inp: Any, registry: Any, notes: list[str]) -> Search | None:
    """For an inpaint with a search prompt, which path finds the region; None when there is nothing to search (no
    prompt, or the request gives its own mask)."""
    prompt = inp.search_prompt.strip()
    if not prompt:
        return None
    if inp.mask_image is not None or inp.outpaint is not None or inp.mask_from_alpha:
        notes.append("search_prompt ignored: the request gives its own mask")
        return None
    if segmentation.names_subject(prompt):
        if inp.subject_mask is None:
            raise SubjectMaskRequired(f"search_prompt {prompt!r} names the main subject: the request needs "
                                      "subject_mask (BackgroundRemoval's mask of init_image)", field="subject_mask")
        inp.mask_image = segmentation.subject_region(inp.subject_mask, inp.init_image.size)
        if segmentation.coverage(inp.mask_image) == 0:
            raise InvalidArgument(f"search_prompt {prompt!r}: no subject was found in the image", field="search_prompt")
        notes.append(f"search_prompt {prompt!r} names the main subject: the background-removal subject mask is the "
                     "area repainted; pixels outside it are kept")
        return Search("search:subject-mask")
    segmenter = next((e for e in registry.entries.values() if SEGMENT in e.operations), None)
    if segmenter is None:
        raise NotImplementedYet("no segmentation model is configured to find the search_prompt's region; give "
                                "mask_image", field="search_prompt")
    return Search("search:clipseg", segmenter)


def plan_edit(inp: Any, operation: str, init_image: Image.Image | None, search: Search | None,
              notes: list[str]) -> EditPlan | None:
    """The EditPlan of a validated request (images already at the run size where they are inputs)."""
    if operation == CONTROL:
        name = inp.control_preprocessor or DEFAULT_PREPROCESSOR
        strength = DEFAULT_CONTROL_STRENGTH if inp.control_strength is None else \
            _range("control_strength", inp.control_strength, 0.0, 2.0)
        img2img = inp.control_image is not None
        source = inp.control_image.convert("RGB").resize(init_image.size, Image.LANCZOS) if img2img else init_image
        control_image = preprocess(source, name)
        how = {"canny": "Canny edges (OpenCV {}/{})".format(*CANNY_THRESHOLDS), "lineart": "lineart (PIL)",
               "scribble": "scribble (PIL)", "none": "no preprocessing"}[name]
        notes.append(f"control: {how} of the control image steer ControlNet at conditioning scale {strength:g}"
                     + (", repainting init_image" if img2img else ""))
        return EditPlan(path=f"controlnet:{name}" + (":img2img" if img2img else ""), control_image=control_image,
                        control_strength=strength, img2img=img2img)
    if operation == INSTRUCT:
        scale = DEFAULT_IMAGE_GUIDANCE if inp.image_guidance_scale is None else \
            _range("image_guidance_scale", inp.image_guidance_scale, 1.0, 5.0)
        notes.append(f"instruct edit: InstructPix2Pix at image guidance {scale:g}")
        return EditPlan(path="instruct-pix2pix", image_guidance_scale=scale)
    if operation in (STYLE, STYLE_TRANSFER):
        scale = DEFAULT_STYLE_STRENGTH if inp.style_strength is None else \
            _range("style_strength", inp.style_strength, 0.0, 1.0)
        notes.append(f"style: IP-Adapter image prompt from style_image at scale {scale:g}")
        return EditPlan(path="ip-adapter" if operation == STYLE else "ip-adapter:img2img",
                        style_image=inp.style_image.convert("RGB"), style_strength=scale,
                        batch_token=id(inp))
    if search is not None:
        return EditPlan(path=search.path, search_prompt=inp.search_prompt.strip(), segmenter=search.segmenter)
    return None


# -- on the device thread ---------------------------------------------------------------------------------------


def resolve_region(manager: Any, plan: Any) -> None:
    """search:clipseg: find the region with the segmentation model before the inpaint pipeline runs."""
    edit = plan.edit
    if edit is None or edit.path != "search:clipseg" or plan.mask_image is not None:
        return
    model, _ = manager.acquire(edit.segmenter, SEGMENT)
    mask = model.region(plan.init_image, edit.search_prompt)
    share = segmentation.coverage(mask)
    if share == 0:
        raise InvalidArgument(f"search_prompt {edit.search_prompt!r} selects nothing in the image; give mask_image",
                              field="search_prompt")
    plan.mask_image = mask
    plan.notes.append(f"search_prompt {edit.search_prompt!r}: {edit.segmenter.id} (CLIPSeg) selected "
                      f"{share:.0%} of the image, the area repainted; pixels outside it are kept")


def update_kwargs(pipe: Any, kwargs: dict[str, Any], plans: list[Any]) -> None:
    """The pipeline arguments of control, instruct and style calls (run_batch builds the common ones)."""
    first = plans[0]
    edit = first.edit
    if edit is None:
        return
    per_image = [(plan, seed) for plan in plans for seed in plan.seeds]
    if first.operation == CONTROL and edit.img2img:
        kwargs.update(control_image=[plan.edit.control_image for plan, _ in per_image], strength=first.strength,
                      width=first.width, height=first.height, controlnet_conditioning_scale=edit.control_strength)
    elif first.operation == CONTROL:
        kwargs.update(image=[plan.edit.control_image for plan, _ in per_image], width=first.width,
                      height=first.height, controlnet_conditioning_scale=edit.control_strength)
    elif first.operation == INSTRUCT:
        kwargs["image_guidance_scale"] = edit.image_guidance_scale
    elif first.operation in (STYLE, STYLE_TRANSFER):
        pipe.set_ip_adapter_scale(edit.style_strength)
        # One reference image per IP-Adapter; diffusers repeats its embedding for every image of the call.
        kwargs["ip_adapter_image"] = edit.style_image
        if first.operation == STYLE:
            kwargs.update(width=first.width, height=first.height)
        else:
            kwargs["strength"] = first.strength


def finish(plan: Any, images: list[Image.Image]) -> list[Image.Image]:
    """Search edits change the region only: the original is kept outside it."""
    if plan.edit is None or not plan.edit.path.startswith("search:"):
        return images
    original = plan.init_image.convert("RGB")
    return [Image.composite(image.convert("RGB").resize(original.size), original, plan.mask_image)
            for image in images]


def load_ip_adapter(pipe: Any, folder: Path) -> None:
    """An IP-Adapter in the published layout (ip-adapter.safetensors + image_encoder/), from a local folder."""
    pipe.load_ip_adapter(str(folder), subfolder="", weight_name=IP_ADAPTER_WEIGHTS)
