"""In-process Generate servers for the Generate benches, one per settings variant, and the concurrent burst they
send. Torch runs on one thread in every variant, so a comparison measures the variant, not thread contention."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class GenerateServer:
    stub: Any  # GenerateServiceStub
    core: Any  # the server's GenerateCore (device, worker)


@contextlib.asynccontextmanager
async def generate_servers(tmp: Path, variants: dict[str, dict[str, Any]]) -> AsyncIterator[dict[str, GenerateServer]]:
    """label -> GenerateSettings overrides; yields label -> a started server. Everything stops on exit."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from services.generate.server import build_deps, create_server
    from services.generate.settings import GenerateSettings
    from shared.clients import create_channel
    from shared.gen.imagemesh.v1 import generate_service_pb2_grpc as pb_grpc
    from tests.mesh import service_kwargs

    torch.set_num_threads(1)
    started: list[tuple[Any, Any]] = []
    servers: dict[str, GenerateServer] = {}
    try:
        for label, overrides in variants.items():
            settings = GenerateSettings(**service_kwargs(tmp / label), torch_threads=1, **overrides)
            deps = build_deps(settings)
            runtime, port = create_server(settings, deps)
            await runtime.start()
            channel = create_channel(f"127.0.0.1:{port}")
            started.append((runtime, channel))
            servers[label] = GenerateServer(pb_grpc.GenerateServiceStub(channel), deps.core)
        yield servers
    finally:
        for runtime, channel in started:
            await channel.close()
            await runtime.stop(0)


def burst(stub: Any, n: int, size: int, steps: int, model: str = "") -> Callable[[], Awaitable[list[int]]]:
    """`n` concurrent compatible Generate calls (own prompt and seed each); returns the batch size each ran in."""
    from shared.clients import call
    from shared.gen.imagemesh.v1 import generate_service_pb2 as pb

    async def go() -> list[int]:
        replies = await asyncio.gather(*(
            call(stub.Generate, pb.GenerateRequest(parameters=pb.GenerateParameters(
                model=model, prompt=f"prompt number {i}", seed=i, width=size, height=size, steps=steps)))
            for i in range(n)))
        return [r.metadata.batch_size for r in replies]
    return go
