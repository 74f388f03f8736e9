"""One bootstrap for every gRPC service: aio server, health that follows readiness, reflection, metrics,
the error/tracing interceptor, message-size limits and graceful SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from shared import telemetry
from shared.config import ServiceSettings
from shared.health_servicer import HealthServicer
from shared.interceptors import ServerInterceptor, TokenAuthInterceptor
from shared.metrics import RpcMetrics, serve_metrics

log = logging.getLogger("imagemesh.server")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

# A readiness probe returns True when the service can do its work now (model loadable, store reachable).
Readiness = Callable[[], Awaitable[bool]]


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Message-size limits for both ends (the 4 MB default breaks at about 1200x1200 RGB)."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


@dataclass
class ServiceRuntime:
    """What `build_server` hands back beside the server: health, metrics and the background tasks."""

    server: grpc.aio.Server
    port: int
    health: HealthServicer
    metrics: RpcMetrics
    metrics_port: int | None
    service_names: list[str]
    readiness: Readiness
    poll_interval_s: float
    _metrics_http: object | None = None
    _poller: asyncio.Task | None = None
    _on_start: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def refresh_health(self) -> bool:
        try:
            ready = await self.readiness()
        except Exception:  # noqa: BLE001 - a failing probe means not ready, never a crashed poller
            log.exception("readiness probe failed")
            ready = False
        status = SERVING if ready else NOT_SERVING
        for name in ["", *self.service_names]:
            await self.health.set(name, status)
        return ready

    async def start(self) -> None:
        # Not serving until the start work (model loads, worker loops) is done and the probe has said so: the
        # library's health servicer would otherwise answer SERVING for "" from the moment the port opens.
        for name in ["", *self.service_names]:
            await self.health.set(name, NOT_SERVING)
        await self.server.start()
        for callback in self._on_start:
            await callback()
        await self.refresh_health()
        self._poller = asyncio.create_task(self._poll_health())

    async def _poll_health(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            await self.refresh_health()

    def on_start(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run `callback` once the server is started, before the first readiness probe: the place for work
        (model loads, worker loops that need the running event loop). Readiness probes only report state."""
        self._on_start.append(callback)

    def on_stop(self, callback: Callable[[], Awaitable[None]]) -> None:
        self._on_stop.append(callback)

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking work (health NOT_SERVING, no new RPCs), let in-flight calls finish within `grace`."""
        if self._poller:
            self._poller.cancel()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        for callback in self._on_stop:
            await callback()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()  # type: ignore[attr-defined]
            self._metrics_http.server_close()  # type: ignore[attr-defined]


async def _always_ready() -> bool:
    return True


def build_server(
    settings: ServiceSettings,
    register: Callable[[grpc.aio.Server], None],
    service_names: Iterable[str],
    readiness: Readiness = _always_ready,
    registry: CollectorRegistry | None = None,
) -> ServiceRuntime:
    """Build (not start) a server with the mesh's standard equipment; binds now so the port is known.

    `registry` is the Prometheus registry the service's own metrics already live on (made before the server, so
    cores get their metrics in their constructors); the RPC metrics join it and the metrics port serves it."""
    telemetry.configure_tracing(settings.service_name, settings.otel_exporter_otlp_endpoint, settings.otel_console)
    metrics = RpcMetrics.create(registry)
    interceptors: list[grpc.aio.ServerInterceptor] = [ServerInterceptor(metrics)]
    token = settings.internal_token.get_secret_value()
    if token:
        # Inside the metrics/error interceptor, so refused calls are counted (as UNAUTHENTICATED) like any other.
        interceptors.append(TokenAuthInterceptor(token))
    server = grpc.aio.server(
        interceptors=interceptors,
        options=channel_options(settings.max_message_bytes),
    )
    register(server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    names = list(service_names)
    reflection.enable_server_reflection([*names, reflection.SERVICE_NAME, "grpc.health.v1.Health"], server)
    port = server.add_insecure_port(f"{settings.host}:{settings.grpc_port}")
    if port == 0:
        raise OSError(f"could not bind {settings.host}:{settings.grpc_port}")
    metrics_http, metrics_port = serve_metrics(metrics.registry, settings.host, settings.metrics_port)
    return ServiceRuntime(
        server=server,
        port=port,
        health=health,
        metrics=metrics,
        metrics_port=metrics_port,
        service_names=names,
        readiness=readiness,
        poll_interval_s=settings.health_poll_interval_s,
        _metrics_http=metrics_http,
    )


async def serve_until_signalled(runtime: ServiceRuntime, grace_period_s: float, label: str) -> None:
    """Run until SIGTERM/SIGINT, then shut down gracefully (Python as PID 1 needs an explicit handler)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await runtime.start()
    log.info("%s listening on %s (metrics on %s)", label, runtime.port, runtime.metrics_port)
    await stop.wait()
    log.info("%s stopping: finishing in-flight work for up to %.0fs", label, grace_period_s)
    await runtime.stop(grace_period_s)
    log.info("%s stopped", label)


def run_service(create_server: Callable[..., tuple[ServiceRuntime, int]], settings: ServiceSettings) -> None:
    """Entry point body for `python -m services.<name>`: logging, the server (every collaborator built from
    `settings`), graceful exit 0."""
    telemetry.configure_logging(settings.log_level, settings.log_json)

    async def main() -> None:
        runtime, _port = create_server(settings)
        await serve_until_signalled(runtime, settings.grace_period_s, settings.service_name)

    asyncio.run(main())
