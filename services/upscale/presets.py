"""Named output targets for Upscale (seed 003: web, print, social). Each fixes the long side; aspect is kept."""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import InvalidArgument


@dataclass(frozen=True)
class Preset:
    name: str
    long_side: int
    description: str


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("web", 2048, "long side 2048 px, aspect kept: sharp on HiDPI screens, light enough for the web"),
    Preset("print", 3508, "long side 3508 px, aspect kept: A4 (297 mm) at 300 dpi; 3508x2480 for an A4 page"),
    Preset("social", 1080, "long side 1080 px, aspect kept: the common social feed width"),
)}


def preset(name: str) -> Preset:
    try:
        return PRESETS[name.lower()]
    except KeyError:
        raise InvalidArgument(f"unknown preset {name!r}; supported: {', '.join(PRESETS)}", field="preset",
                              supported=list(PRESETS)) from None


def preset_size(p: Preset, width: int, height: int) -> tuple[int, int]:
    if width >= height:
        return p.long_side, max(1, round(height * p.long_side / width))
    return max(1, round(width * p.long_side / height)), p.long_side
