"""Mesh overhead of the upscale slice: gateway -> orchestrator -> upscale against the same Lanczos
function called in-process, for a 1024x1024 RGBA image at 4x."""

from __future__ import annotations

import asyncio
import base64
import io
import tempfile
from pathlib import Path


from bench.harness import Comparison, compare, rgba_test_image
from services.upscale.lanczos import lanczos_resize
from shared import images



async def run() -> list[Comparison]:
    from tests.mesh import start_mesh

    img = rgba_test_image()
    buf = io.BytesIO()
    img.save(buf, "PNG")
    payload = {"image": base64.b64encode(buf.getvalue()).decode(), "scale_factor": 4}

    async def in_process():
        # The same work the mesh does, minus the hops: decode, resample, encode.
        decoded = images.decode_bytes(buf.getvalue())
        out = await asyncio.to_thread(lanczos_resize, decoded, 4096, 4096)
        images.encode(out, "PNG")

    with tempfile.TemporaryDirectory() as tmp:
        mesh = await start_mesh(Path(tmp))
        try:
            async def through_mesh():
                reply = await mesh.http.post("/upscale", json=payload, timeout=300)
                reply.raise_for_status()
                base64.b64decode(reply.json()["image_base64"])

            result = await compare("upscale slice 1024x1024 RGBA x4", ("gateway->orchestrator->upscale", through_mesh),
                                   ("in-process decode+lanczos+encode", in_process), repeats=3,
                                   notes="in-process gateway (ASGI) over real gRPC hops")
        finally:
            await mesh.close()
    return [result]
