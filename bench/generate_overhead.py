"""Generate overhead: a unary Generate call through the in-process gRPC service against calling the same
pipeline (loaded from the same folder the same way) in-process with the same prompt, seed, steps and size,
plus the same PNG encode. The difference is validation, queueing, the thread hop, gRPC and protobuf."""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.harness import Comparison, compare

CASES = [(64, 8), (256, 20)]  # (size, steps): overhead-dominated, then compute-dominated
REPEATS = 7


async def run() -> list[Comparison]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from services.generate.server import build_deps, create_server
    from services.generate.settings import GenerateSettings
    from shared import images
    from shared.clients import call, create_channel
    from shared.gen.imagemesh.v1 import generate_service_pb2 as pb
    from shared.gen.imagemesh.v1 import generate_service_pb2_grpc as pb_grpc
    from tests.mesh import service_kwargs

    torch.set_num_threads(1)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        # Batching off: a lone request must not wait for a batching window here.
        settings = GenerateSettings(**service_kwargs(Path(tmp)), max_batch_images=1, torch_threads=1)
        deps = build_deps(settings)  # kept: the baseline uses the service's own model manager
        runtime, port = create_server(settings, deps)
        await runtime.start()
        channel = create_channel(f"127.0.0.1:{port}")
        stub = pb_grpc.GenerateServiceStub(channel)
        try:
            core = deps.core
            entry = core.registry.default
            # The service's own loader gives the baseline the very same pipeline object.
            pipe, _ = await asyncio.to_thread(core.manager.acquire, entry, "text_to_image")
            for size, steps in CASES:
                prompt = "a photo of an astronaut riding a horse"

                def direct(size=size, steps=steps, prompt=prompt):
                    generator = [torch.Generator().manual_seed(7)]
                    image = pipe(prompt=[prompt], width=size, height=size, num_inference_steps=steps,
                                 guidance_scale=7.5, generator=generator).images[0]
                    images.encode(image, "PNG")

                async def in_process(direct=direct):
                    await asyncio.to_thread(direct)

                request = pb.GenerateRequest(parameters=pb.GenerateParameters(
                    prompt=prompt, width=size, height=size, steps=steps, seed=7, guidance_scale=7.5))

                seen: list = []

                async def service(request=request, seen=seen):
                    started = time.perf_counter()
                    reply = await call(stub.Generate, request)
                    seen.append((time.perf_counter() - started, reply.metadata.timings))

                comparison = await compare(
                    f"generate {size}x{size} {steps} steps ({entry.id}, {core.device})",
                    ("gRPC Generate (in-process server)", service), ("same pipeline in-process + PNG", in_process),
                    repeats=REPEATS,
                )
                # Where the service's time goes, from its own metadata: the pipeline, the rest inside the
                # service (validation, queue, thread hops, encode), and the gRPC round trip.
                wall = statistics.median(w for w, _ in seen) * 1000
                inference = statistics.median(t.inference_ms for _, t in seen)
                total = statistics.median(t.total_ms for _, t in seen)
                comparison.notes = (f"torch threads 1; service median: pipeline {inference:.0f} ms, rest of service "
                                    f"{total - inference:.0f} ms, gRPC {wall - total:.0f} ms")
                comparison.extra = {"pipeline_ms": inference, "service_other_ms": total - inference,
                                    "grpc_ms": wall - total}
                results.append(comparison)
        finally:
            await channel.close()
            await runtime.stop(0)
    return results
