"""Two real BackgroundRemoval replicas, an Upscale service and an Orchestrator over them, in-process on port 0."""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from services.background_removal.server import create_server as create_br
from services.background_removal.settings import BackgroundRemovalSettings
from services.orchestrator.server import OrchestratorDeps
from services.orchestrator.server import create_server as create_orchestrator
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.shotgun import InMemoryRanking
from services.upscale.server import create_server as create_upscale
from services.upscale.settings import UpscaleSettings
from shared import clients
from shared.clients import create_channel
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2_grpc as pb_grpc
from shared.server import ServiceRuntime
from tests.mesh import service_kwargs

REMOVE = "/imagemesh.v1.BackgroundRemovalService/RemoveBackground"


def removal_calls(runtime: ServiceRuntime) -> float:
    """RemoveBackground calls a replica answered (any status)."""
    total = 0.0
    for metric in runtime.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == "imagemesh_grpc_requests_total" and sample.labels.get("method") == REMOVE:
                total += sample.value
    return total


def in_flight(runtime: ServiceRuntime) -> float:
    return runtime.metrics.registry.get_sample_value("imagemesh_grpc_in_flight", {"method": REMOVE}) or 0.0


@dataclass
class ShotgunMesh:
    replicas: list[ServiceRuntime]
    upscale: ServiceRuntime
    orchestrator: ServiceRuntime
    stub: pb_grpc.OrchestratorServiceStub
    ranking: InMemoryRanking

    async def run(self, **spec) -> pb.ShotgunSummary:
        reply = await clients.call(self.stub.RunShotgun, pb.RunShotgunRequest(spec=pb.ShotgunSpec(**spec)),
                                   timeout=120)
        return reply.summary


async def start_replica(tmp: Path, name: str, **overrides) -> ServiceRuntime:
    runtime, _ = create_br(BackgroundRemovalSettings(**{**service_kwargs(tmp / name), **overrides}))
    await runtime.start()
    return runtime


@asynccontextmanager
async def shotgun_mesh(tmp: Path, replicas: int = 2, br_addresses: str | None = None, replica_settings=None,
                       **orchestrator_overrides):
    started: list[ServiceRuntime] = []
    channel = None
    try:
        br = [await start_replica(tmp, f"br{i}", **(replica_settings or {})) for i in range(replicas)]
        started += br
        upscale, _ = create_upscale(UpscaleSettings(**service_kwargs(tmp / "upscale")))
        await upscale.start()
        started.append(upscale)
        ranking = InMemoryRanking()
        address = br_addresses or ",".join(f"127.0.0.1:{r.port}" for r in br)
        orchestrator, port = create_orchestrator(OrchestratorSettings(
            **service_kwargs(tmp / "orchestrator"), background_removal_address=address,
            upscale_address=f"127.0.0.1:{upscale.port}", generate_address="127.0.0.1:1", **orchestrator_overrides,
        ), OrchestratorDeps(ranking=ranking))
        await orchestrator.start()
        started.append(orchestrator)
        channel = create_channel(f"127.0.0.1:{port}")
        yield ShotgunMesh(br, upscale, orchestrator, pb_grpc.OrchestratorServiceStub(channel), ranking)
    finally:
        if channel is not None:
            await channel.close()
        for runtime in reversed(started):
            await runtime.stop(0)


@pytest_asyncio.fixture(scope="module")
async def mesh2(tmp_path_factory: pytest.TempPathFactory):
    """Two replicas behind one comma-list address (client-side round robin)."""
    async with shotgun_mesh(tmp_path_factory.mktemp("shotgun")) as running:
        yield running
