"""/health answers from cached grpc.health.v1 Watch streams: it follows backends changing state, going away and
coming back, and a request costs no RPC. The backends here are stand-ins (a health servicer, an orchestrator whose
catalogue lists Generate's models) that count every RPC they receive."""

from __future__ import annotations

import asyncio
import collections
from contextlib import asynccontextmanager
from typing import Any

import grpc
import httpx
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared.gen.imagemesh.v1 import generate_service_pb2, orchestrator_service_pb2, orchestrator_service_pb2_grpc
from shared.health_servicer import HealthServicer
from tests.polling import eventually

SERVICES = ("orchestrator", "generate", "background_removal", "upscale")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
WATCH = "/grpc.health.v1.Health/Watch"
GET_CATALOG = "/imagemesh.v1.OrchestratorService/GetCatalog"


class _Counter(grpc.aio.ServerInterceptor):
    def __init__(self, calls: collections.Counter) -> None:
        self.calls = calls

    async def intercept_service(self, continuation, handler_call_details):
        self.calls[handler_call_details.method] += 1
        return await continuation(handler_call_details)


class _Orchestrator(orchestrator_service_pb2_grpc.OrchestratorServiceServicer):
    async def GetCatalog(self, request, context):
        return orchestrator_service_pb2.GetCatalogResponse(
            generation_models=generate_service_pb2.ListModelsResponse(default_model="tiny-sd", device="cpu"))


class Backend:
    """One stand-in service; `restart` binds the same port again, as a restarted pod behind a stable address."""

    def __init__(self) -> None:
        self.calls: collections.Counter = collections.Counter()
        self.port = 0
        self.server: grpc.aio.Server | None = None
        self.health: HealthServicer | None = None

    async def start(self, status: int = SERVING) -> None:
        self.server = grpc.aio.server(interceptors=[_Counter(self.calls)])
        self.health = HealthServicer()
        await self.health.set("", status)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        orchestrator_service_pb2_grpc.add_OrchestratorServiceServicer_to_server(_Orchestrator(), self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop(0)


@pytest_asyncio.fixture
async def backends():
    running = {name: Backend() for name in SERVICES}
    for backend in running.values():
        await backend.start()
    yield running
    for backend in running.values():
        await backend.stop()


@asynccontextmanager
async def gateway_over(backends: dict[str, Backend], tmp_path, **settings: Any):
    """The real gateway app over the stand-ins with its lifespan running (the watches start there)."""
    from gateway.app import create_app
    from gateway.mesh import Mesh
    from gateway.settings import GatewaySettings

    addresses = {f"{name}_address": f"127.0.0.1:{backend.port}" for name, backend in backends.items()}
    gateway_settings = GatewaySettings(var_dir=tmp_path, rate_limit_enabled=False, **addresses, **settings)
    app = create_app(gateway_settings, mesh=Mesh.connect(gateway_settings))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


async def test_status_follows_a_backend_from_not_serving_to_serving(backends, tmp_path):
    await backends["generate"].health.set("", NOT_SERVING)
    async with gateway_over(backends, tmp_path) as http:
        reply = await http.get("/health")
        assert reply.status_code == 503
        body = reply.json()
        assert body["status"] == "unhealthy" and body["services"]["generate"] == "NOT_SERVING"
        assert body["services"]["upscale"] == "SERVING" and body["model"] == ""

        await backends["generate"].health.set("", SERVING)
        reply = await eventually(lambda: http.get("/health"), lambda r: r.status_code == 200)
        body = reply.json()
        assert body["status"] == "healthy" and set(body["services"].values()) == {"SERVING"}
        # The model listing is refreshed when Generate turns SERVING, not per request.
        assert (body["model"], body["device"]) == ("tiny-sd", "cpu")


async def test_a_stopped_backend_is_unavailable_until_it_is_back(backends, tmp_path):
    async with gateway_over(backends, tmp_path) as http:
        assert (await http.get("/health")).status_code == 200

        await backends["upscale"].stop()
        reply = await eventually(lambda: http.get("/health"),
                                 lambda r: r.json()["services"]["upscale"] == "UNAVAILABLE")
        assert reply.status_code == 503 and reply.json()["services"]["generate"] == "SERVING"
        studio = (await http.get("/api/image-studio/health")).json()
        assert studio["modules"]["upscale_studio"] == "unavailable" and studio["status"] == "degraded"

        await backends["upscale"].start()
        reply = await eventually(lambda: http.get("/health"), lambda r: r.status_code == 200)
        assert reply.json()["services"]["upscale"] == "SERVING"


async def test_health_requests_make_no_rpc(backends, tmp_path):
    async with gateway_over(backends, tmp_path, health_models_refresh_s=3600) as http:
        assert (await http.get("/health")).status_code == 200
        before = {name: dict(backend.calls) for name, backend in backends.items()}
        for _ in range(25):
            assert (await http.get("/health")).status_code == 200
            assert (await http.get("/api/image-studio/health")).status_code == 200
        after = {name: dict(backend.calls) for name, backend in backends.items()}
    assert after == before
    # One watch per backend for the app's life, one listing (through the orchestrator's catalogue) from Generate
    # turning SERVING, and no Check at all.
    assert {name: calls.get(WATCH) for name, calls in after.items()} == dict.fromkeys(SERVICES, 1)
    assert after["orchestrator"].get(GET_CATALOG) == 1
    assert not any(method.endswith("/Check") for calls in after.values() for method in calls)


def _background_tasks() -> set[asyncio.Task]:
    return {t for t in asyncio.all_tasks() if t.get_name().startswith(("health-watch-", "generate-info"))}


async def test_lifespan_end_stops_every_watch(backends, tmp_path):
    others = _background_tasks()  # other suites' gateways may be watching their own meshes
    async with gateway_over(backends, tmp_path) as http:
        assert (await http.get("/health")).status_code == 200
        ours = _background_tasks() - others
        assert sorted(t.get_name() for t in ours) == sorted(
            ["generate-info", *(f"health-watch-{name}" for name in SERVICES)])
    assert all(task.done() for task in ours)
