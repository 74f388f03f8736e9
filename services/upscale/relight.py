"""Classical relighting: exposure and contrast curves, colour temperature, a directional key light with a soft
fill shaped by a subject mask, background separation and a vignette. No generative model is involved: the
lighting of the scene is not re-rendered, existing pixels are re-weighted. Alpha is carried through untouched.

Exposure, key, fill and vignette are gains in (approximately) linear light: sRGB is linearised with gamma 2.2,
multiplied by 2**EV, and re-encoded. Contrast and saturation act on the display-referred result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from shared.errors import InvalidArgument

GAMMA = 2.2
CLASSICAL_NOTE = ("classical relighting (curves, colour temperature, masked key/fill, vignette); "
                  "not a generative relighting model")


@dataclass(frozen=True)
class LightingStyle:
    name: str
    description: str
    exposure_ev: float = 0.0
    contrast: float = 0.0  # S-curve strength in (-1, 1); negative flattens
    temperature: float = 0.0  # -1 (cool, bluer) .. +1 (warm, redder)
    saturation: float = 1.0
    key_ev: float = 0.0  # EV added on the lit side of the subject and taken from the far side
    key_from_deg: float = 135.0  # where the key light comes from: 0 = right, 90 = top, 180 = left
    fill: float = 0.5  # share of the key's shadow that the fill light lifts back (0 = none, 1 = all)
    background_ev: float = 0.0  # EV outside the subject (needs a mask)
    vignette_ev: float = 0.0  # EV taken from the corners
    # The documented, tested effect on the whole image: +1 brighter / warmer, -1 darker / cooler, 0 = not claimed.
    luminance_direction: int = 0
    temperature_direction: int = 0


STYLES: dict[str, LightingStyle] = {s.name: s for s in (
    LightingStyle("professional", "clean portrait light: +0.3 EV, key from the upper left with a generous fill, "
                  "slightly warm, mild contrast, light vignette", exposure_ev=0.3, contrast=0.15, temperature=0.1,
                  key_ev=0.35, key_from_deg=135, fill=0.6, background_ev=-0.1, vignette_ev=0.15,
                  luminance_direction=1),
    LightingStyle("dramatic", "low-key: -0.4 EV, hard side key from the left with little fill, dark background, "
                  "strong contrast and vignette", exposure_ev=-0.4, contrast=0.45, saturation=0.9, key_ev=0.8,
                  key_from_deg=170, fill=0.1, background_ev=-0.7, vignette_ev=0.5, luminance_direction=-1),
    LightingStyle("natural", "daylight: a touch brighter (+0.15 EV) and warmer, soft key from above, much fill",
                  exposure_ev=0.15, contrast=0.05, temperature=0.08, key_ev=0.2, key_from_deg=100, fill=0.7,
                  vignette_ev=0.05, luminance_direction=1),
    LightingStyle("studio", "high-key studio: +0.45 EV, frontal key from above, bright background, neutral colour",
                  exposure_ev=0.45, contrast=0.1, key_ev=0.25, key_from_deg=90, fill=0.8, background_ev=0.2,
                  luminance_direction=1),
    LightingStyle("warm", "tungsten/sunset colour: temperature shifted warm, slightly brighter",
                  exposure_ev=0.05, temperature=0.6, saturation=1.05, temperature_direction=1),
    LightingStyle("cool", "overcast/moonlight colour: temperature shifted cool, slightly darker",
                  exposure_ev=-0.05, temperature=-0.6, saturation=0.95, luminance_direction=-1,
                  temperature_direction=-1),
    LightingStyle("soft", "soft box: +0.2 EV, lowered contrast, fill almost equal to the key",
                  exposure_ev=0.2, contrast=-0.25, key_ev=0.15, key_from_deg=120, fill=0.9, luminance_direction=1),
    LightingStyle("golden_hour", "late sun: low warm key from the right, +0.2 EV, warm and saturated",
                  exposure_ev=0.2, contrast=0.15, temperature=0.7, saturation=1.15, key_ev=0.5, key_from_deg=15,
                  fill=0.4, vignette_ev=0.2, luminance_direction=1, temperature_direction=1),
)}


def style(name: str) -> LightingStyle:
    try:
        return STYLES[(name or "").lower()]
    except KeyError:
        raise InvalidArgument(f"unknown lighting_style {name!r}; supported: {', '.join(STYLES)}",
                              field="lighting_style", supported=list(STYLES)) from None


def subject_mask(img: Image.Image, mask: Image.Image | None) -> tuple[np.ndarray | None, str]:
    """The subject as float 0..1 (HxW), and where it came from; None when there is no way to tell."""
    if mask is not None:
        if mask.size != img.size:
            mask = mask.resize(img.size, Image.Resampling.BILINEAR)
        m = np.asarray(mask.convert("RGBA").getchannel("A") if _has_real_alpha(mask) else mask.convert("L"))
        return m.astype(np.float32) / 255.0, "subject mask from the supplied mask"
    if img.mode == "RGBA" and _has_real_alpha(img):
        return np.asarray(img.getchannel("A"), np.float32) / 255.0, "subject mask from the image's alpha"
    return None, "no subject mask (opaque image, none supplied): key light and fill span the whole frame"


def _has_real_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA") and img.getchannel("A").getextrema()[0] < 250


def relight(img: Image.Image, style_name: str, mask: Image.Image | None = None,
            intensity: float = 1.0) -> tuple[Image.Image, list[str]]:
    """Relight an RGB or RGBA image; returns the image (same mode, alpha untouched) and notes."""
    if not 0.0 <= intensity <= 1.0:
        raise InvalidArgument("intensity must be between 0 and 1", field="intensity", received=intensity)
    spec = style(style_name)
    t = float(intensity)
    rgb = np.asarray(img.convert("RGB"), np.float32) / 255.0
    height, width = rgb.shape[:2]
    m, source = subject_mask(img, mask)
    notes = [source, CLASSICAL_NOTE]

    ev = np.full((height, width), spec.exposure_ev * t, np.float32)
    ev += _key_light(m, width, height, spec) * t
    if m is not None and spec.background_ev:
        soft = _soften(m, width, height)
        ev += (1.0 - soft) * spec.background_ev * t
    if spec.vignette_ev:
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        r2 = ((xs + 0.5) / width - 0.5) ** 2 + ((ys + 0.5) / height - 0.5) ** 2
        ev -= spec.vignette_ev * t * (r2 / 0.5)  # 0 at the centre, the full amount in the corners

    linear = rgb ** GAMMA
    linear *= np.exp2(ev)[..., None]
    temp = spec.temperature * t
    linear *= np.array([1 + 0.25 * temp, 1 + 0.03 * temp, 1 - 0.25 * temp], np.float32)
    out = np.clip(linear, 0.0, 1.0) ** (1.0 / GAMMA)

    k = spec.contrast * t
    if k:
        # y = x - k sin(2 pi x) / (2 pi): slope 1 + k at mid-grey, 1 - k at the ends; monotone for |k| < 1.
        out = out - k * np.sin(2 * math.pi * out) / (2 * math.pi)
    sat = 1.0 + (spec.saturation - 1.0) * t
    if sat != 1.0:
        luma = (out @ np.array([0.2126, 0.7152, 0.0722], np.float32))[..., None]
        out = luma + sat * (out - luma)
    result = Image.fromarray(np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8), "RGB")
    if img.mode == "RGBA":
        result.putalpha(img.getchannel("A"))
    return result, notes


def _soften(m: np.ndarray, width: int, height: int) -> np.ndarray:
    radius = max(1.0, 0.02 * max(width, height))
    blurred = Image.fromarray(np.round(m * 255).astype(np.uint8), "L").filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(blurred, np.float32) / 255.0


def _key_light(m: np.ndarray | None, width: int, height: int, spec: LightingStyle) -> np.ndarray:
    """EV map of the key light and its fill: a ramp across the subject's extent toward the light, brighter on the
    lit side, darker on the far side (of which `fill` is lifted back); zero outside a masked subject."""
    if not spec.key_ev:
        return np.zeros((height, width), np.float32)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if m is not None and m.sum() > 0:
        weight = m / m.sum()
        cx, cy = float((xs * weight).sum()), float((ys * weight).sum())
        rows, cols = np.nonzero(m > 0.5)
        if len(rows):
            rx = max(1.0, (cols.max() - cols.min() + 1) / 2)
            ry = max(1.0, (rows.max() - rows.min() + 1) / 2)
        else:
            rx, ry = width / 2, height / 2
    else:
        cx, cy, rx, ry = width / 2, height / 2, width / 2, height / 2
    angle = math.radians(spec.key_from_deg)
    # Image y grows downward; "from the top" (90 degrees) means negative y.
    toward_light = np.array([math.cos(angle), -math.sin(angle)], np.float32)
    ramp = np.clip(((xs - cx) / rx) * toward_light[0] + ((ys - cy) / ry) * toward_light[1], -1.0, 1.0)
    shade = ramp * spec.key_ev
    shade = np.where(shade < 0, shade * (1.0 - spec.fill), shade)
    if m is not None:
        shade *= _soften(m, width, height)
    return shade.astype(np.float32)
