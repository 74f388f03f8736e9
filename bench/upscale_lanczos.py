"""Upscale service overhead: one gRPC call to the Upscale service (1024x1024 RGBA PNG, Lanczos 4x, PNG back)
against the same decode + premultiplied Lanczos + encode in this process."""

from __future__ import annotations

import asyncio
import io
import tempfile
from pathlib import Path


from bench.harness import Comparison, compare, rgba_test_image
from services.upscale.lanczos import lanczos_resize
from shared import clients, images
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import upscale_service_pb2 as pb
from shared.gen.imagemesh.v1 import upscale_service_pb2_grpc as pb_grpc

MESSAGE_LIMIT = 96 * 1024 * 1024



async def run() -> list[Comparison]:
    from services.upscale.server import create_server
    from services.upscale.settings import UpscaleSettings
    from tests.mesh import service_kwargs

    buf = io.BytesIO()
    rgba_test_image().save(buf, "PNG")
    data = buf.getvalue()

    async def in_process(fmt: str):
        decoded = images.decode_bytes(data)
        out = await asyncio.to_thread(lanczos_resize, decoded, 4096, 4096)
        if fmt == "RAW":
            out.tobytes()
        else:
            images.encode(out, fmt)

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        # 4096x4096 raw RGBA is exactly 64 MiB: raise the message limit on both ends for this bench.
        runtime, port = create_server(UpscaleSettings(**service_kwargs(Path(tmp)), max_message_bytes=MESSAGE_LIMIT))
        await runtime.start()
        channel = clients.create_channel(f"127.0.0.1:{port}", MESSAGE_LIMIT)
        stub = pb_grpc.UpscaleServiceStub(channel)
        try:
            for label, fmt, enum in (("PNG out", "PNG", common_pb2.IMAGE_FORMAT_PNG),
                                     ("raw RGBA out", "RAW", common_pb2.IMAGE_FORMAT_RAW_RGBA)):
                request = pb.UpscaleRequest(image=common_pb2.Image(data=data, media_type="image/png"),
                                            scale_factor=4, mode="fast", output_format=enum)

                async def service(request=request):
                    await clients.call(stub.Upscale, request, timeout=300)

                async def local(fmt=fmt):
                    await in_process(fmt)

                results.append(await compare(
                    f"upscale service lanczos 1024x1024 RGBA x4 ({label})", ("gRPC Upscale", service),
                    ("in-process decode+lanczos+encode", local), repeats=3,
                    notes="one gRPC hop on loopback; 4096x4096 output"))
        finally:
            await channel.close()
            await runtime.stop(0)
    return results
