"""Style presets (prompt templates) and aspect-ratio sizing."""

from __future__ import annotations

import math
import re

from shared.errors import InvalidArgument

# Templates from the dialects: Freepik's `style`, Image Studio's `style_preset`, CyberImage's enrich styles.
STYLE_PRESETS: dict[str, str] = {
    "photorealistic": "{prompt}, photorealistic, highly detailed photograph, natural lighting, sharp focus, 8k",
    "photographic": "{prompt}, professional photograph, 35mm, natural lighting, sharp focus",
    "realistic": "{prompt}, realistic, lifelike details, true-to-life colours, high resolution",
    "cinematic": "{prompt}, cinematic still, dramatic lighting, shallow depth of field, film grain",
    "anime": "{prompt}, anime style, vibrant colours, clean line art, studio anime key visual",
    "fantasy": "{prompt}, epic fantasy art, ethereal atmosphere, magical lighting, richly detailed, concept art",
    "cyberpunk": "{prompt}, cyberpunk, neon lights, rain-slicked streets, futuristic city, high contrast",
    "sci-fi": "{prompt}, science fiction, futuristic technology, sleek design, cinematic lighting",
    "digital-art": "{prompt}, digital art, detailed illustration, artstation",
    "comic-book": "{prompt}, comic book style, bold ink outlines, halftone shading",
    "3d-model": "{prompt}, 3d render, octane render, studio lighting, high detail",
    "pixel-art": "{prompt}, pixel art, 16-bit, limited palette",
    "line-art": "{prompt}, clean line art, black ink on white",
    "watercolor": "{prompt}, watercolour painting, soft washes, paper texture",
    "oil-painting": "{prompt}, oil painting, visible brushstrokes, rich colours",
    "enhance": "{prompt}, highly detailed, sharp focus, professional quality, beautiful composition",
}
_PRESET_ALIASES = {"photo": "photographic", "scifi": "sci-fi", "sci_fi": "sci-fi", "3d": "3d-model",
                   "digital_art": "digital-art", "comic": "comic-book", "watercolour": "watercolor"}
NO_PRESET = frozenset({"", "none", "auto"})

_RATIO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[:x/]\s*(\d+(?:\.\d+)?)\s*$")
MAX_ASPECT = 4.0


def apply_style(prompt: str, preset: str) -> tuple[str, str]:
    """(effective prompt, canonical preset name); an unknown preset is INVALID_ARGUMENT listing the known ones."""
    key = preset.strip().lower()
    if key in NO_PRESET:
        return prompt, ""
    key = _PRESET_ALIASES.get(key, key)
    if key not in STYLE_PRESETS:
        supported = sorted(STYLE_PRESETS)
        raise InvalidArgument(f"unknown style_preset {preset!r}; supported: {', '.join(supported)}",
                              field="style_preset", supported=supported)
    return STYLE_PRESETS[key].format(prompt=prompt), key


def parse_aspect_ratio(text: str) -> float:
    match = _RATIO.match(text)
    if not match:
        raise InvalidArgument(f"aspect_ratio must look like '16:9', got {text!r}", field="aspect_ratio")
    w, h = float(match.group(1)), float(match.group(2))
    if w <= 0 or h <= 0 or not (1 / MAX_ASPECT <= w / h <= MAX_ASPECT):
        raise InvalidArgument(f"aspect_ratio {text!r} is outside 1:{MAX_ASPECT:g} to {MAX_ASPECT:g}:1",
                              field="aspect_ratio")
    return w / h


def size_for_ratio(ratio: float, pixel_budget: int, multiple: int, min_size: int, max_size: int) -> tuple[int, int]:
    """Width x height at `ratio` with about `pixel_budget` pixels, each a multiple of `multiple`.

    Rounded down, so the budget (what the checkpoint was trained at, and memory) is not exceeded, unless the
    short side would fall under min_size: then the ratio wins over the budget.
    """
    width = math.sqrt(pixel_budget * ratio)
    height = width / ratio
    grow = max(1.0, min_size / min(width, height))
    shrink = min(1.0, max_size / (max(width, height) * grow))
    width, height = width * grow * shrink, height * grow * shrink

    def fit(value: float) -> int:
        return min(max_size, max(min_size, int(value + 1e-6) // multiple * multiple))

    return fit(width), fit(height)
