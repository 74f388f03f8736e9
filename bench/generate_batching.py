"""Dynamic batching throughput: N concurrent compatible requests (own prompt and seed each) against a server
that batches them (window 20 ms, up to 8 images per call) and one with batching off, same pipeline, same work.
ratio = batched wall time / unbatched wall time; throughput gain = 1 / ratio."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from bench.harness import Comparison, compare

CASES = [(4, 64, 8), (8, 64, 8), (4, 128, 8), (8, 128, 8)]  # (concurrent requests, size, steps)
REPEATS = 3


async def run() -> list[Comparison]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from services.generate.server import build_deps, create_server
    from services.generate.settings import GenerateSettings
    from shared.clients import call, create_channel
    from shared.gen.imagemesh.v1 import generate_service_pb2 as pb
    from shared.gen.imagemesh.v1 import generate_service_pb2_grpc as pb_grpc
    from tests.mesh import service_kwargs

    torch.set_num_threads(1)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        servers = {}
        for label, batch in (("batched", 8), ("unbatched", 1)):
            settings = GenerateSettings(**service_kwargs(Path(tmp) / label), batch_window_ms=20,
                                        max_batch_images=batch, torch_threads=1)
            deps = build_deps(settings)  # kept: the report names the device the core runs on
            runtime, port = create_server(settings, deps)
            await runtime.start()
            channel = create_channel(f"127.0.0.1:{port}")
            servers[label] = (runtime, channel, pb_grpc.GenerateServiceStub(channel), deps)
        try:
            device = servers["batched"][3].core.device
            for n, size, steps in CASES:
                def burst(stub, n=n, size=size, steps=steps):
                    async def go():
                        replies = await asyncio.gather(*(
                            call(stub.Generate, pb.GenerateRequest(parameters=pb.GenerateParameters(
                                prompt=f"prompt number {i}", seed=i, width=size, height=size, steps=steps)))
                            for i in range(n)))
                        return [r.metadata.batch_size for r in replies]
                    return go

                comparison = await compare(
                    f"{n} concurrent {size}x{size} {steps} steps ({device})",
                    ("batched (20 ms window, max 8)", burst(servers["batched"][2])),
                    ("batching off", burst(servers["unbatched"][2])), repeats=REPEATS,
                )
                sizes = await burst(servers["batched"][2])()
                comparison.notes = (f"throughput x{1 / comparison.ratio:.2f}; batch sizes seen {sorted(set(sizes))}; "
                                    "torch threads 1")
                results.append(comparison)
        finally:
            for runtime, channel, _stub, _deps in servers.values():
                await channel.close()
                await runtime.stop(0)
    return results
