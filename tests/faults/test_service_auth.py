"""Service-to-service authentication (issue 14, class 10): with IMAGEMESH_INTERNAL_TOKEN set, every RPC but
grpc.health.v1 needs `authorization: Bearer <token>`; without it the mesh is open (make run on loopback)."""

from __future__ import annotations

import io

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from services.orchestrator.server import create_server as create_orchestrator
from services.orchestrator.settings import OrchestratorSettings
from services.upscale.server import create_server as create_upscale
from services.upscale.settings import UpscaleSettings
from shared.clients import create_channel
from shared.errors import Unauthenticated, error_from_rpc
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as orch_pb
from shared.gen.imagemesh.v1 import upscale_service_pb2 as up_pb
from shared.gen.imagemesh.v1 import upscale_service_pb2_grpc as up_grpc
from shared.mesh_client import MeshClient, status_name
from tests.mesh import service_kwargs

TOKEN = "test-internal-token-0123456789"


@pytest.fixture
async def upscale_server(request, tmp_path):
    """An Upscale server with the token given by the test's parameter ("" = unconfigured)."""
    runtime, port = create_upscale(UpscaleSettings(**service_kwargs(tmp_path), internal_token=request.param))
    await runtime.start()
    yield f"127.0.0.1:{port}"
    await runtime.stop(0)


async def _list_platforms(address: str, token: str) -> grpc.StatusCode:
    channel = create_channel(address, token=token)
    try:
        await up_grpc.UpscaleServiceStub(channel).ListPlatformFormats(up_pb.ListPlatformFormatsRequest(), timeout=10)
        return grpc.StatusCode.OK
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    finally:
        await channel.close()


@pytest.mark.parametrize("upscale_server", [TOKEN], indirect=True)
@pytest.mark.parametrize(("token", "code"), [
    ("", grpc.StatusCode.UNAUTHENTICATED),
    ("wrong-token", grpc.StatusCode.UNAUTHENTICATED),
    (TOKEN, grpc.StatusCode.OK),
])
async def test_configured_token_is_required(upscale_server, token, code):
    assert await _list_platforms(upscale_server, token) == code


@pytest.mark.parametrize("upscale_server", [TOKEN], indirect=True)
async def test_refusal_carries_an_error_info_reason(upscale_server):
    channel = create_channel(upscale_server)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await up_grpc.UpscaleServiceStub(channel).ListPlatformFormats(up_pb.ListPlatformFormatsRequest(),
                                                                          timeout=10)
    finally:
        await channel.close()
    error = error_from_rpc(caught.value)
    assert isinstance(error, Unauthenticated)
    assert error.reason == "INTERNAL_TOKEN_MISSING"


@pytest.mark.parametrize("upscale_server", [TOKEN], indirect=True)
async def test_health_stays_open_and_reflection_does_not(upscale_server):
    """Kubelet gRPC probes send no metadata: health answers without the token; reflection lists the contract,
    so it needs the token like any other RPC."""
    channel = create_channel(upscale_server)
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                     timeout=10):
                pass
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await channel.close()


@pytest.mark.parametrize("upscale_server", [""], indirect=True)
async def test_unconfigured_server_is_open(upscale_server):
    assert await _list_platforms(upscale_server, "") == grpc.StatusCode.OK


@pytest.mark.parametrize("upscale_server", [TOKEN], indirect=True)
async def test_orchestrator_sends_the_token_to_its_backends(upscale_server, tmp_path):
    """A job through an orchestrator that requires the token, run on an Upscale that requires it too: the mesh
    client and the orchestrator's backend channel both carry it; a client without it is refused."""
    settings = OrchestratorSettings(**service_kwargs(tmp_path), upscale_address=upscale_server,
                                    database_url=f"sqlite:///{tmp_path / 'jobs.db'}", internal_token=TOKEN,
                                    poll_interval_s=0.1, watch_poll_s=0.05)
    runtime, port = create_orchestrator(settings)
    await runtime.start()
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buf, "PNG")
    spec = orch_pb.JobSpec(upscale=up_pb.UpscaleRequest(
        image=common_pb2.Image(data=buf.getvalue(), media_type="image/png"), scale_factor=2, method="lanczos"))
    anonymous = MeshClient.connect(f"127.0.0.1:{port}", owner="alice")
    client = MeshClient.connect(f"127.0.0.1:{port}", owner="alice", token=TOKEN)
    try:
        with pytest.raises(Unauthenticated):
            await anonymous.list_jobs()
        job = await client.run_job(spec)
        assert status_name(job.status) == "completed"
        assert job.result.upscale.image.width == 32
    finally:
        await anonymous.close()
        await client.close()
        await runtime.stop(0)
