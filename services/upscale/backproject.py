"""Iterative back-projection (Irani & Peleg 1991): make an upscale consistent with its input.

A super-resolution model invents detail; "conservative" promises that the output, downscaled, gives the input
back. Each iteration downscales the current output to the input's size (Lanczos, the same downscale the tests
and most viewers use), takes the residual against the input, upsamples it (bicubic) and adds it back, clipped
to the valid range. Detail the model added above the input's Nyquist frequency survives (the downscale removes
it, so the residual never sees it); what it changed below that frequency (colour shifts, smoothed texture, a
"painted" face) is pulled back to the input. Stops when the downscaled output matches the input to TARGET_DB
PSNR or after MAX_ITERATIONS. Runs on float32 planes with Pillow's "F" mode resamplers: no extra dependency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

TARGET_DB = 45.0
MAX_ITERATIONS = 8


@dataclass(frozen=True)
class Consistency:
    iterations: int
    before_db: float  # PSNR of the downscaled output against the input, before back-projection
    after_db: float  # and after (on the 8-bit result)


def _resize(plane: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    return np.asarray(Image.fromarray(plane, "F").resize(size, resample))


def _mse(residual: np.ndarray) -> float:
    return float(np.mean(residual.astype(np.float64) ** 2))


def _db(mse: float) -> float:
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def back_project(output_rgb: np.ndarray, input_rgb: np.ndarray, target_db: float = TARGET_DB,
                 max_iterations: int = MAX_ITERATIONS) -> tuple[np.ndarray, Consistency]:
    """`output_rgb` (uint8 HxWxC, the upscale) made consistent with `input_rgb` (uint8 hxwxC, smaller). Channels
    are independent, so they are done one at a time: memory stays at a few float32 planes of the output."""
    small = (input_rgb.shape[1], input_rgb.shape[0])
    large = (output_rgb.shape[1], output_rgb.shape[0])
    result = np.empty_like(output_rgb)
    before, after, iterations = [], [], 0
    for c in range(output_rgb.shape[-1]):
        target = np.ascontiguousarray(input_rgb[..., c], dtype=np.float32)
        x = np.ascontiguousarray(output_rgb[..., c], dtype=np.float32)
        residual = target - _resize(x, small, Image.Resampling.LANCZOS)
        before.append(_mse(residual))
        current, steps = before[-1], 0
        while _db(current) < target_db and steps < max_iterations:
            # The state stays on the 8-bit grid, so the figure measured is the one the delivered image has.
            x = np.round(np.clip(x + _resize(residual, large, Image.Resampling.BICUBIC), 0.0, 255.0))
            residual = target - _resize(x, small, Image.Resampling.LANCZOS)
            current, steps = _mse(residual), steps + 1
        after.append(current)
        iterations = max(iterations, steps)
        result[..., c] = x.astype(np.uint8)
    return result, Consistency(iterations, _db(float(np.mean(before))), _db(float(np.mean(after))))
