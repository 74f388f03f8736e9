"""One pipeline call for a batch of validated requests, each with its own prompts, seeds and images.

Every image gets its own CPU torch.Generator seeded with its own seed, so an image depends on its seed and
parameters only, not on which other requests shared its batch (up to float rounding in batched kernels).
CPU generators also make a seed give the same starting noise on every kind of device.

The family (families.py) decides the call's shape: FLUX gets no negative prompt; SD3 and FLUX get the entry's
`max_sequence_length`; a pipeline that takes width and height gets them for every operation (FluxImg2Img would
otherwise resize the source to 1024x1024).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image

from services.generate import control, families
from services.generate.diffusers_lookup import diffusers_class
from services.generate.request import Plan


class Interrupted(Exception):
    """Raised from the step callback to stop a pipeline call within one step (everyone in the batch left)."""

    def __init__(self, step: int, total: int) -> None:
        super().__init__(f"interrupted after step {step} of {total}")
        self.step, self.total = step, total


def _swap_scheduler(pipe: Any, name: str) -> Any | None:
    """Install the asked scheduler for this call; returns the one to put back afterwards."""
    if not name or type(pipe.scheduler).__name__ == name:
        return None
    original = pipe.scheduler
    pipe.scheduler = diffusers_class(name).from_config(original.config)
    return original


def run_batch(pipe: Any, plans: Sequence[Plan], *, on_step: Callable[[int, int, Any], None],
              should_stop: Callable[[], bool]) -> list[list[Image.Image]]:
    """Run `plans` (compatible: same batch_key) as one call; returns the images of each plan, in order.
    `on_step(step, total, latents)` sees the batch's latents after each step (previews decode them)."""
    import torch

    first = plans[0]
    prompts: list[str] = []
    negatives: list[str] = []
    generators: list[torch.Generator] = []
    init_images: list[Image.Image] = []
    masks: list[Image.Image] = []
    for plan in plans:
        for seed in plan.seeds:
            prompts.append(plan.effective_prompt)
            # "" is what the pipeline uses for "no negative prompt", so mixing requests with and without one
            # gives each the same result it would get alone.
            negatives.append(plan.negative_prompt)
            generators.append(torch.Generator(device="cpu").manual_seed(seed))
            if plan.init_image is not None:
                init_images.append(plan.init_image)
            if plan.mask_image is not None:
                masks.append(plan.mask_image)

    def callback(p: Any, step: int, _timestep: Any, tensors: dict) -> dict:
        total = int(getattr(p, "num_timesteps", 0) or first.steps)
        on_step(step + 1, total, tensors.get("latents"))
        if should_stop():
            raise Interrupted(step + 1, total)
        return tensors

    family = families.family(first.entry.family)
    accepted = _call_parameters(pipe)
    kwargs: dict[str, Any] = dict(
        prompt=prompts, num_inference_steps=first.steps, guidance_scale=first.guidance_scale, generator=generators,
        callback_on_step_end=callback, output_type="pil",
    )
    if family.negative_prompt:
        kwargs["negative_prompt"] = negatives if any(negatives) else None
    if family.t5_tokenizer and "max_sequence_length" in accepted:
        kwargs["max_sequence_length"] = first.entry.max_sequence_length
    if first.operation == "text_to_image" or {"width", "height"} <= accepted:
        kwargs.update(width=first.width, height=first.height)
    if first.operation != "text_to_image" and init_images:
        kwargs["image"] = init_images
    if first.operation == "image_to_image":
        kwargs["strength"] = first.strength
    if first.operation == "inpaint":
        kwargs["mask_image"] = masks
    control.update_kwargs(pipe, kwargs, list(plans))

    original = _swap_scheduler(pipe, first.scheduler)
    try:
        images = pipe(**kwargs).images
    finally:
        if original is not None:
            pipe.scheduler = original
    out, offset = [], 0
    for plan in plans:
        out.append(control.finish(plan, list(images[offset:offset + plan.num_images])))
        offset += plan.num_images
    return out


def _call_parameters(pipe: Any) -> set[str]:
    import inspect

    return set(inspect.signature(type(pipe).__call__).parameters)


def scheduler_name(pipe: Any, override: str) -> str:
    return override or type(pipe.scheduler).__name__


def truncation_notes(pipe: Any, plan: Plan) -> list[str]:
    """Say so when the text encoder cuts the prompt; diffusers only logs it. CLIP reads 77 tokens; in families
    with a T5 encoder (SD3, FLUX) the T5 reads the long prompt, `max_sequence_length` tokens of it."""
    family = families.family(plan.entry.family)
    if family.t5_tokenizer:
        tokenizer, limit = getattr(pipe, family.t5_tokenizer, None), plan.entry.max_sequence_length
        encoder = f"T5 text encoder reads max_sequence_length={limit} tokens"
    else:
        tokenizer = getattr(pipe, "tokenizer", None)
        limit = getattr(tokenizer, "model_max_length", 0) or 0
        encoder = f"text encoder reads {limit} tokens"
    if tokenizer is None or not 0 < limit < 100_000:
        return []
    notes = []
    for name, text in (("prompt", plan.effective_prompt), ("negative_prompt", plan.negative_prompt)):
        if text:
            count = len(tokenizer(text, truncation=False).input_ids)
            if count > limit:
                notes.append(f"{name} truncated: the {encoder}, the {name.replace('_', ' ')} has {count}")
    return notes
