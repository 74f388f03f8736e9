"""The mesh's `grpc.health.v1` servicer: the library servicer's API (`set`, `enter_graceful_shutdown`), except that
graceful shutdown also ends the open Watch streams once they have sent NOT_SERVING.

The server waits for in-flight calls during its grace period, so a long-lived watcher (the gateway keeps one Watch
per service) would otherwise hold every graceful stop for the whole grace period. grpc_health's own servicer keeps
its state private and its Watch loops forever, hence this small one rather than a subclass.
"""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthServicer(health_pb2_grpc.HealthServicer):
    def __init__(self) -> None:
        self._statuses: dict[str, int] = {"": SERVING}
        self._changed = asyncio.Condition()
        self._closing = False

    async def Check(self, request: health_pb2.HealthCheckRequest,
                    context: grpc.aio.ServicerContext) -> health_pb2.HealthCheckResponse:
        status = self._statuses.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND)
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> None:
        last = None
        async with self._changed:
            while True:
                status = self._statuses.get(request.service, SERVICE_UNKNOWN)
                # Only the latest status matters to a watcher; intermediate ones may be skipped.
                if status != last:
                    await context.write(health_pb2.HealthCheckResponse(status=status))
                    last = status
                if self._closing:
                    return
                await self._changed.wait()

    async def set(self, service: str, status: int) -> None:
        """Set a service's status ("" is the whole server); ignored once graceful shutdown has begun."""
        async with self._changed:
            if self._closing or self._statuses.get(service) == status:
                return
            self._statuses[service] = status
            self._changed.notify_all()

    async def enter_graceful_shutdown(self) -> None:
        """Every status becomes NOT_SERVING for good, and each open Watch ends after saying so."""
        async with self._changed:
            self._closing = True
            self._statuses = dict.fromkeys(self._statuses, NOT_SERVING)
            self._changed.notify_all()
