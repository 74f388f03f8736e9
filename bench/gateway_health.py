"""Gateway GET /health under load: the real gateway (answering from its cached grpc.health.v1 Watch streams and
its cached model listing) against a bare FastAPI app answering the same JSON, both under uvicorn (1 worker) on
loopback in their own processes; a third app doing what /health did before (four health Checks and a ListModels
per request) shows what the cache saves. Load as in gateway_throughput: `hey` at 64 clients (`make bench`
installs Debian's hey where it can), else an httpx asyncio load generator, named in the notes.

The four backends are stand-ins served from this process (the mesh's own health servicer, every service
SERVING, and an orchestrator whose catalogue lists Generate's models): /health reads only their health and that listing, and
no model has to load for it.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile

import grpc
from grpc_health.v1 import health_pb2_grpc

from bench.gateway_throughput import CONCURRENCY, REPEATS, REQUESTS, Server, _load, _load_with, rows_against_bare
from bench.harness import Comparison
from shared.gen.imagemesh.v1 import (
    generate_service_pb2,
    generate_service_pb2_grpc,
    orchestrator_service_pb2,
    orchestrator_service_pb2_grpc,
)
from shared.health_servicer import HealthServicer

PATH = "/health"
SERVICES = ("orchestrator", "generate", "background_removal", "upscale")
MODEL, DEVICE, VERSION = "tiny-sd", "cpu", "1.0.0"


def expected_body() -> dict:
    return {"status": "healthy", "version": VERSION, "model": MODEL, "device": DEVICE,
            "services": dict.fromkeys(SERVICES, "SERVING")}


def bare_app():
    """The baseline: FastAPI answering the healthy mesh's /health JSON, nothing else."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()
    body = expected_body()

    @app.get(PATH)
    async def health() -> JSONResponse:
        return JSONResponse(body)

    return app


def gateway_app():
    from gateway.app import create_app
    from gateway.settings import GatewaySettings

    return create_app(GatewaySettings())


def fanout_app():
    """What /health did before the watch cache: four health Checks in parallel and a ListModels per request."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from gateway.settings import GatewaySettings
    from shared.clients import check_health, create_channel

    settings = GatewaySettings()
    app = FastAPI()
    state: dict = {}

    @app.get(PATH)
    async def health() -> JSONResponse:
        if not state:  # channels belong to uvicorn's loop, so they are made on the first request
            state.update({name: create_channel(getattr(settings, f"{name}_address")) for name in SERVICES})
        statuses = await asyncio.gather(*(check_health(state[name], timeout=2.0) for name in SERVICES))
        services = dict(zip(SERVICES, statuses))
        listing = await generate_service_pb2_grpc.GenerateServiceStub(state["generate"]).ListModels(
            generate_service_pb2.ListModelsRequest(), timeout=2.0)
        healthy = all(status == "SERVING" for status in statuses)
        return JSONResponse({"status": "healthy" if healthy else "unhealthy", "version": settings.version,
                             "model": listing.default_model, "device": listing.device, "services": services},
                            status_code=200 if healthy else 503)

    return app


class _Generate(generate_service_pb2_grpc.GenerateServiceServicer):
    async def ListModels(self, request, context):
        return generate_service_pb2.ListModelsResponse(default_model=MODEL, device=DEVICE)


class _Orchestrator(orchestrator_service_pb2_grpc.OrchestratorServiceServicer):
    """The gateway reads Generate's listing through the orchestrator's catalogue."""

    async def GetCatalog(self, request, context):
        return orchestrator_service_pb2.GetCatalogResponse(
            generation_models=generate_service_pb2.ListModelsResponse(default_model=MODEL, device=DEVICE))


async def _backends() -> tuple[list[grpc.aio.Server], dict[str, str]]:
    servers, env = [], {}
    for name in SERVICES:
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(HealthServicer(), server)
        if name == "generate":
            generate_service_pb2_grpc.add_GenerateServiceServicer_to_server(_Generate(), server)
        if name == "orchestrator":
            orchestrator_service_pb2_grpc.add_OrchestratorServiceServicer_to_server(_Orchestrator(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        env[f"IMAGEMESH_{name.upper()}_ADDRESS"] = f"127.0.0.1:{port}"
    return servers, env


async def _start(factory: str, env: dict[str, str], workers: int = 1) -> Server:
    # Server() polls until the app answers 200; the backends answering that poll live on this loop.
    return await asyncio.to_thread(Server, factory, env, PATH, __name__, workers)


async def run() -> list[Comparison]:
    tool = "hey" if shutil.which("hey") else "httpx asyncio"
    grpc_servers, addresses = await _backends()
    from services.background_removal.threads import available_cpus

    cores = available_cpus()
    results: dict[str, list[dict[str, float]]] = {"bare": [], "gateway": [], "fanout": []}
    if cores > 1:
        results["gateway_workers"] = []
    servers: dict[str, Server] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {"IMAGEMESH_VAR_DIR": tmp, "IMAGEMESH_LOG_JSON": "false", "IMAGEMESH_VERSION": VERSION, **addresses}
        try:
            for name, factory in (("bare", "bare_app"), ("gateway", "gateway_app"), ("fanout", "fanout_app")):
                servers[name] = await _start(factory, env)
            if cores > 1:  # does a worker per core pay, on this machine, with the load tool beside it?
                servers["gateway_workers"] = await _start("gateway_app", env, workers=cores)
            for server in servers.values():  # warm-up
                await _load_with(server.url, 200)
            for _ in range(REPEATS):  # interleaved so drift on this shared machine hits all three
                for name, server in servers.items():
                    results[name].append(await _load(server.url))
        finally:
            for server in servers.values():
                server.stop()
            for grpc_server in grpc_servers:
                await grpc_server.stop(0)

    notes = (f"{tool}, {REQUESTS} GETs x {REPEATS} at {CONCURRENCY} clients, loopback, 1 uvicorn worker each, "
             "stand-in backends")
    subjects = [("gateway", "gateway /health (watch cache)"),
                ("fanout", "per-request fan-out (4 Checks + ListModels)")]
    if "gateway_workers" in results:
        subjects.append(("gateway_workers", f"gateway /health, {cores} uvicorn workers"))
    return rows_against_bare(results, "GET /health (goal >= 0.8x throughput, p99 <= 50 ms)", subjects, notes,
                             rps_ratio=True)

