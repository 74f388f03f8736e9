"""A surface's documented defaults (GenerateParameters.defaults), fitted into a model's limits.

A value the client gave is checked and refused when the model cannot take it (request.py). A default the client
never asked for (CyberImage's 1024x1024, 30 steps, guidance 7.5) is the surface's promise, not the client's: it
fills what the request left unset, fitted into the model's limits, and each change is said in a note. A default
size is treated like a size Generate derives from an aspect ratio: about the pixel count the checkpoint was trained
at (its default size), so 1024x1024 stays 1024x1024 on a 1024 model and becomes 128x128 on the tiny test model.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from services.generate import sizing
from services.generate.catalog import ModelEntry
from services.generate.request import GenerateInput


@dataclass(frozen=True)
class SurfaceDefaults:
    width: int = 0
    height: int = 0
    steps: int = 0
    guidance_scale: float | None = None


def _within(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


def fill(inp: GenerateInput, entry: ModelEntry, defaults: SurfaceDefaults) -> list[str]:
    """Set the unset values of `inp` from `defaults`, within `entry`'s limits; the notes say what was fitted."""
    notes: list[str] = []
    shaped = inp.aspect_ratio.strip() or inp.template.strip() or inp.init_image is not None
    if defaults.width > 0 and defaults.height > 0 and not shaped and not (inp.width and inp.height):
        # A default is a derived size, not the client's: like a size from an aspect ratio it keeps to about the
        # pixel count the checkpoint was trained at (its default size) and to its side limits.
        width, height = defaults.width, defaults.height
        if width * height > entry.pixel_budget:
            width, height = sizing.size_for_ratio(Fraction(width, height), entry.pixel_budget, entry.min_size,
                                                  entry.max_size)
        width, height = sizing.run_size(width, height, entry)
        if not inp.width and not inp.height:
            if (width, height) != (defaults.width, defaults.height):
                notes.append(f"default size {defaults.width}x{defaults.height} is past model {entry.id}'s size "
                             f"({entry.default_width}x{entry.default_height} pixels trained, {entry.min_size} to "
                             f"{entry.max_size} a side): {width}x{height} used")
            inp.width, inp.height = width, height
        else:
            # One side given: the other is the surface's default side, fitted the same way.
            name, default, side = ("height", defaults.height, height) if inp.width else ("width", defaults.width,
                                                                                          width)
            if side != default:
                notes.append(f"default {name} {default} is past model {entry.id}'s size "
                             f"({entry.default_width}x{entry.default_height} pixels trained, {entry.min_size} to "
                             f"{entry.max_size} a side): {side} used")
            setattr(inp, name, side)
    if defaults.steps > 0 and not inp.steps and not inp.quality.strip():
        steps = int(_within(defaults.steps, entry.min_steps, entry.max_steps))
        if steps != defaults.steps:
            notes.append(f"default steps {defaults.steps} is outside model {entry.id}'s range {entry.min_steps} to "
                         f"{entry.max_steps}: {steps} used")
        inp.steps = steps
    if defaults.guidance_scale is not None and inp.guidance_scale is None:
        guidance = _within(defaults.guidance_scale, entry.min_guidance, entry.max_guidance)
        if guidance != defaults.guidance_scale:
            notes.append(f"default guidance_scale {defaults.guidance_scale:g} is outside model {entry.id}'s range "
                         f"{entry.min_guidance:g} to {entry.max_guidance:g}: {guidance:g} used")
        inp.guidance_scale = guidance
    return notes
