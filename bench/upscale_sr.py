"""Real-ESRGAN animevideov3 x4 throughput (input megapixels per second), tiled against untiled, in-process on
onnxruntime. Tiling bounds memory; this measures what the overlap costs."""

from __future__ import annotations

import asyncio

import numpy as np
from PIL import Image

from bench.harness import Comparison, compare
from services.upscale.sr import load_engines
from services.upscale.tiling import upscale_tiled


async def run() -> list[Comparison]:
    from tests.mesh import MODELS_DIR

    engine = load_engines(MODELS_DIR, "auto", 0)["realesrgan-x4"]
    if not engine.available:
        raise RuntimeError(f"realesrgan-x4 unavailable: {engine.reason}")
    rgb = np.asarray(Image.open(MODELS_DIR / "testdata" / "astronaut.png").convert("RGB").crop((128, 0, 384, 256)))
    megapixels = rgb.shape[0] * rgb.shape[1] / 1e6
    results = []
    for tile, overlap in ((128, 32), (64, 16)):
        async def tiled(tile=tile, overlap=overlap):
            await asyncio.to_thread(upscale_tiled, rgb, engine.run, 4, tile, overlap)

        async def untiled():
            await asyncio.to_thread(upscale_tiled, rgb, engine.run, 4, 0, 0)

        row = await compare(f"realesrgan-x4 256x256 -> 1024x1024, tiles {tile}+{overlap}",
                            (f"tiled {tile}px overlap {overlap}", tiled), ("untiled", untiled), repeats=3,
                            notes=f"provider {engine.provider}")
        row.extra = {"tiled_mp_per_s": round(megapixels / row.subject_s, 4),
                     "untiled_mp_per_s": round(megapixels / row.baseline_s, 4), "input_megapixels": megapixels}
        row.notes += (f"; {row.extra['tiled_mp_per_s']:.3f} vs {row.extra['untiled_mp_per_s']:.3f} input MP/s "
                      "(tiled vs untiled)")
        results.append(row)
    return results
