"""Colour under transparent pixels, for models that only see RGB.

A super-resolution model looks at a neighbourhood: at a cut-out's edge it would mix the subject's colour with
whatever sits under alpha 0 (usually black), and the upscaled edge would get a dark halo once the separately
upscaled alpha is put back. Push-pull fills every fully transparent pixel with the colour of the nearest visible
ones (an alpha-weighted image pyramid, reduced then expanded), so the model sees the subject's colour continue
across the edge. Visible pixels keep their colour exactly.
"""

from __future__ import annotations

import numpy as np


def _reduce(arr: np.ndarray) -> np.ndarray:
    """2x2 sum, padding odd sides with zeros (zero weight = no contribution)."""
    h, w = arr.shape[:2]
    pad = [(0, h % 2), (0, w % 2)] + [(0, 0)] * (arr.ndim - 2)
    arr = np.pad(arr, pad)
    return arr[0::2, 0::2] + arr[1::2, 0::2] + arr[0::2, 1::2] + arr[1::2, 1::2]


def bleed_colour(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 RGB (HxWx3) and alpha (HxW) -> RGB where alpha == 0 pixels take their visible neighbours' colour."""
    visible = alpha > 0
    if visible.all() or not visible.any():
        return rgb
    weight = alpha.astype(np.float32) / 255.0
    colour = rgb.astype(np.float32) * weight[..., None]
    levels = [(colour, weight)]
    while min(levels[-1][1].shape) > 1:
        colour, weight = _reduce(colour), _reduce(weight)
        levels.append((colour, weight))
    colour, weight = levels[-1]
    fill = colour / np.maximum(weight, 1e-6)[..., None]
    for colour, weight in reversed(levels[:-1]):
        h, w = weight.shape
        up = np.repeat(np.repeat(fill, 2, axis=0), 2, axis=1)[:h, :w]
        known = weight > 1e-6
        fill = np.where(known[..., None], colour / np.maximum(weight, 1e-6)[..., None], up)
    out = np.where(visible[..., None], rgb, np.round(np.clip(fill, 0, 255)).astype(np.uint8))
    return out.astype(np.uint8)
