"""Output sizes: explicit width x height, aspect ratios and size templates, each an exact output size; the size the
model runs at (its nearest supported one); and the final resize-and-crop from one to the other.

Clients ask for what they will publish (LinkedIn's 1200x628), models run at multiples of 8 or 64 within their
limits: the difference is Generate's to absorb, so every client gets the size it asked for from one rule.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from pathlib import Path

import yaml
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.generate.catalog import ModelEntry
from shared.errors import InvalidArgument

_RATIO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[:x/]\s*(\d+(?:\.\d+)?)\s*$")
MAX_ASPECT = 4.0
# Exact integer ratios are searched up to this numerator/denominator ("1.91:1" is 191:100).
_MAX_RATIO_TERM = 1000


class SizeTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(ge=1)
    height: int = Field(ge=1)


class TemplatesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    templates: dict[str, SizeTemplate]


def load_templates(path: Path) -> dict[str, tuple[int, int]]:
    try:
        parsed = TemplatesFile.model_validate(yaml.safe_load(Path(path).read_text()))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ValueError(f"cannot read size templates {path}: {exc}") from exc
    return {key: (t.width, t.height) for key, t in parsed.templates.items()}


def parse_aspect_ratio(text: str) -> Fraction:
    match = _RATIO.match(text)
    if not match:
        raise InvalidArgument(f"aspect_ratio must look like '16:9', got {text!r}", field="aspect_ratio")
    w, h = Fraction(match.group(1)), Fraction(match.group(2))
    if w <= 0 or h <= 0 or not (1 / MAX_ASPECT <= w / h <= MAX_ASPECT):
        raise InvalidArgument(f"aspect_ratio {text!r} is outside 1:{MAX_ASPECT:g} to {MAX_ASPECT:g}:1",
                              field="aspect_ratio")
    return (w / h).limit_denominator(_MAX_RATIO_TERM)


def size_for_ratio(ratio: Fraction, pixel_budget: int, min_size: int, max_size: int) -> tuple[int, int]:
    """An output size of exactly `ratio` with about `pixel_budget` pixels (what the checkpoint was trained at),
    the short side at least min_size and the long side at most max_size where the ratio allows both.

    Exact means p*k x q*k for the ratio p:q in lowest terms; when no k fits the limits (a ratio with large terms
    such as 191:100 on a small model), the nearest whole pixels to the ratio.
    """
    p, q = ratio.numerator, ratio.denominator
    width = math.sqrt(pixel_budget * ratio)
    height = width / float(ratio)
    low_k = math.ceil(min_size / min(p, q))
    high_k = max_size // max(p, q)
    k = min(high_k, max(low_k, round(width / p)))
    if 1 <= k and low_k <= high_k:
        return p * k, q * k
    grow = max(1.0, min_size / min(width, height))
    shrink = min(1.0, max_size / (max(width, height) * grow))
    width, height = width * grow * shrink, height * grow * shrink
    width_px = max(1, round(width))
    return width_px, max(1, round(width_px / float(ratio)))


def other_side(given: int, ratio: Fraction, given_is_width: bool) -> int:
    """The missing side for one given side, at the ratio (nearest whole pixel)."""
    return max(1, round(given / ratio if given_is_width else given * ratio))


def run_size(width: int, height: int, entry: ModelEntry) -> tuple[int, int]:
    """The size the model runs at for a wanted output: the same shape, scaled into its side and pixel limits,
    each side the nearest multiple of its size_multiple."""
    m = entry.size_multiple
    scale = min(1.0, entry.max_size / max(width, height), math.sqrt(entry.pixel_cap / (width * height)))
    scale = max(scale, min(entry.min_size / min(width, height), entry.max_size / max(width, height)))

    def side(value: float) -> int:
        return min(entry.max_size, max(entry.min_size, round(value / m) * m))

    w, h = side(width * scale), side(height * scale)
    while w * h > entry.pixel_cap and max(w, h) > entry.min_size:
        # Rounding up can pass the pixel cap by a row; give it back on the long side.
        if w >= h:
            w -= m
        else:
            h -= m
    return w, h


def fit_exactly(image: Image.Image, width: int, height: int) -> Image.Image:
    """Resized to cover width x height (the aspect kept), then centre-cropped to exactly that size."""
    if image.size == (width, height):
        return image
    scale = max(width / image.width, height / image.height)
    cover = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    resized = image.resize(cover, Image.LANCZOS)
    left, top = (cover[0] - width) // 2, (cover[1] - height) // 2
    return resized.crop((left, top, left + width, top + height))


def check_template(name: str, templates: dict[str, tuple[int, int]]) -> tuple[int, int]:
    key = name.strip().lower()
    if key not in templates:
        raise InvalidArgument(f"unknown template {name!r}; supported: {', '.join(sorted(templates))}",
                              field="template", supported=sorted(templates))
    return templates[key]
