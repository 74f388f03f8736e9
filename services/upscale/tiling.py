"""Run a super-resolution model over overlapping tiles and cross-fade them into one seamless output.

Each tile is the core cell grown by `overlap` input pixels of context on every inner side. Of the strip two
neighbours share (2 * overlap wide), the outer quarters are context only (weight 0: pixels near a tile's edge
see zero padding instead of the real neighbourhood), and the middle half is a linear cross-fade whose weights
sum to exactly 1, so no normalisation pass is needed. Work is done one row of tiles at a time: only one band of
float32 output is alive at once, plus the uint8 result, so memory is bounded by the tile size and the width.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# model(rgb float32 HxWx3 in 0..1) -> float32 (H*s)x(W*s)x3
Model = Callable[[np.ndarray], np.ndarray]


def _spans(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(core_start, core_end, pad_start, pad_end) along one axis, in input pixels."""
    spans = []
    for start in range(0, length, tile):
        end = min(length, start + tile)
        spans.append((start, end, max(0, start - overlap), min(length, end + overlap)))
    return spans


def _weights(span: tuple[int, int, int, int], length: int, overlap: int, scale: int) -> np.ndarray:
    """1-D blend weights (output pixels) of one padded tile."""
    core_start, core_end, pad_start, pad_end = span
    pos = (np.arange(pad_start * scale, pad_end * scale, dtype=np.float32) + 0.5) / scale  # centres, input units
    weight = np.ones_like(pos)
    if overlap > 0:
        # Ramps of width `overlap` centred on each inner boundary; a neighbour's ramp is the complement.
        if core_start > 0:
            weight *= np.clip((pos - (core_start - overlap / 2)) / overlap, 0.0, 1.0)
        if core_end < length:
            weight *= np.clip(((core_end + overlap / 2) - pos) / overlap, 0.0, 1.0)
    return weight


def upscale_tiled(rgb: np.ndarray, model: Model, scale: int, tile: int, overlap: int) -> np.ndarray:
    """Upscale uint8 HxWx3 by `scale` through `model`, tiling when the image is larger than `tile`."""
    height, width = rgb.shape[:2]
    x = rgb.astype(np.float32) / 255.0
    if tile <= 0 or (height <= tile and width <= tile):
        return _to_uint8(model(x))
    overlap = max(0, min(overlap, tile))
    rows, cols = _spans(height, tile, overlap), _spans(width, tile, overlap)
    col_weights = [_weights(c, width, overlap, scale) for c in cols]
    out = np.empty((height * scale, width * scale, 3), np.uint8)
    band = None  # float32 accumulator covering output rows [band_start, ...)
    band_start = 0
    for r_index, row in enumerate(rows):
        _, _, pad_top, pad_bottom = row
        row_w = _weights(row, height, overlap, scale)[:, None, None]
        top, bottom = pad_top * scale, pad_bottom * scale
        # Grow the band to this row's padded extent, keeping what earlier rows left in the shared strip.
        new_band = np.zeros((bottom - band_start, width * scale, 3), np.float32)
        if band is not None:
            new_band[: band.shape[0]] = band
        band = new_band
        for col, col_w in zip(cols, col_weights):
            _, _, pad_left, pad_right = col
            pred = model(x[pad_top:pad_bottom, pad_left:pad_right])
            weight = row_w * col_w[None, :, None]
            band[top - band_start: bottom - band_start, pad_left * scale: pad_right * scale] += pred * weight
        # Rows above the next tile row's padded start are final.
        final_end = rows[r_index + 1][2] * scale if r_index + 1 < len(rows) else height * scale
        out[band_start:final_end] = _to_uint8(band[: final_end - band_start])
        band = band[final_end - band_start:]
        band_start = final_end
    return out


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    return np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
