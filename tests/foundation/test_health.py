"""Health follows readiness: SERVING only when ready, and a stopped backend surfaces in the gateway."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.upscale.settings import UpscaleSettings
from shared.clients import check_health, create_channel
from shared.server import build_server
from tests.mesh import service_kwargs, start_mesh
from tests.polling import eventually


async def test_gateway_health_reports_every_service_serving(mesh):
    reply = await mesh.http.get("/health")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["status"] == "healthy"
    assert body["services"] == {name: "SERVING" for name in ("orchestrator", "generate", "background_removal", "upscale")}
    assert set(body) >= {"status", "version", "model", "device", "services"}


async def test_stopped_backend_surfaces_as_unavailable(tmp_path):
    running = await start_mesh(tmp_path)
    try:
        assert (await running.http.get("/health")).status_code == 200
        await running.stop("upscale")
        # /health reads a watch cache, which learns of the stop when the stream breaks: poll, do not race it.
        reply = await eventually(lambda: running.http.get("/health"),
                                 lambda r: r.json()["services"]["upscale"] == "UNAVAILABLE")
        assert reply.status_code == 503
        body = reply.json()
        assert body["status"] == "unhealthy"
        assert body["services"]["upscale"] == "UNAVAILABLE"
        assert body["services"]["orchestrator"] == "SERVING"
        # The slice now fails with the documented service_unavailable error, not a hang or a 500.
        from tests.images import b64, disc_rgba

        upscale = await running.http.post("/upscale", json={"image": b64(disc_rgba(8)), "scale_factor": 2})
        assert upscale.status_code == 503
        assert upscale.json()["error"]["type"] == "service_unavailable"
    finally:
        await running.close()


async def test_health_follows_readiness_probe(tmp_path):
    ready = {"value": False}

    async def readiness() -> bool:
        return ready["value"]

    runtime = build_server(UpscaleSettings(**service_kwargs(tmp_path)), lambda server: None,
                           ["imagemesh.v1.UpscaleService"], readiness)
    await runtime.start()
    channel = create_channel(f"127.0.0.1:{runtime.port}")
    try:
        assert await check_health(channel) == "NOT_SERVING"
        assert await check_health(channel, "imagemesh.v1.UpscaleService") == "NOT_SERVING"
        ready["value"] = True
        assert await runtime.refresh_health()
        assert await check_health(channel, "imagemesh.v1.UpscaleService") == "SERVING"
        assert await check_health(channel, "no.such.Service") == "SERVICE_UNKNOWN"
    finally:
        await channel.close()
        await runtime.stop(0)


async def test_a_crashing_probe_means_not_serving(tmp_path):
    async def readiness() -> bool:
        raise RuntimeError("store unreachable")

    runtime = build_server(UpscaleSettings(**service_kwargs(tmp_path)), lambda server: None, [], readiness)
    await runtime.start()
    channel = create_channel(f"127.0.0.1:{runtime.port}")
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await channel.close()
        await runtime.stop(0)


async def test_graceful_stop_ends_open_watches_instead_of_waiting_out_the_grace(tmp_path):
    """A long-lived Watch (the gateway keeps one per service) gets NOT_SERVING and then its end, so a graceful
    stop with a long grace period returns as soon as the real work is done."""
    runtime = build_server(UpscaleSettings(**service_kwargs(tmp_path)), lambda server: None, [])
    await runtime.start()
    channel = create_channel(f"127.0.0.1:{runtime.port}")
    try:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        # The bound only turns a regression into a failure instead of an hour-long hang.
        await asyncio.wait_for(runtime.stop(3600), timeout=60)
        seen = []
        while (reply := await watch.read()) is not grpc.aio.EOF:
            seen.append(reply.status)
        assert seen and set(seen) == {health_pb2.HealthCheckResponse.NOT_SERVING}
        assert await watch.code() == grpc.StatusCode.OK
    finally:
        await channel.close()


async def test_not_serving_until_the_start_work_is_done(tmp_path):
    """Model loads and worker loops run in on_start; the port may already answer, but health says NOT_SERVING
    (also for the overall "" service) until that work is done and the probe has said yes."""
    release = asyncio.Event()
    started = asyncio.Event()

    async def load_models() -> None:
        started.set()
        await release.wait()

    runtime = build_server(UpscaleSettings(**service_kwargs(tmp_path)), lambda server: None,
                           ["imagemesh.v1.UpscaleService"])
    runtime.on_start(load_models)
    starting = asyncio.create_task(runtime.start())
    await started.wait()
    channel = create_channel(f"127.0.0.1:{runtime.port}")
    try:
        assert await check_health(channel) == "NOT_SERVING"
        assert await check_health(channel, "imagemesh.v1.UpscaleService") == "NOT_SERVING"
        release.set()
        await starting
        assert await check_health(channel) == "SERVING"
        assert await check_health(channel, "imagemesh.v1.UpscaleService") == "SERVING"
    finally:
        await channel.close()
        await runtime.stop(0)
