"""gRPC channels to the mesh's services: message limits, client-side round robin, trace propagation,
and failed calls turned back into the ImageMeshError the server raised."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared.errors import DeadlineExceeded, ImageMeshError, ServiceUnavailable, error_from_rpc
from shared.interceptors import client_interceptors
from shared.server import channel_options

# round_robin spreads calls over every address a name resolves to (dns:///bg-removal-headless:50053),
# so a fan-out really reaches every replica instead of pinning one subchannel.
_SERVICE_CONFIG = json.dumps({
    "loadBalancingConfig": [{"round_robin": {}}],
})


def create_channel(address: str, max_message_bytes: int = 64 * 1024 * 1024, token: str = "") -> grpc.aio.Channel:
    """An insecure aio channel; `address` may be host:port, a comma list of them, or dns:///name:port. `token`
    (the mesh's IMAGEMESH_INTERNAL_TOKEN) is sent on every call as `authorization: Bearer <token>`."""
    target = address
    if "," in address:
        # Several replicas given by literal address (e.g. two local processes): gRPC's ipv4 resolver takes a
        # comma list, and round_robin then spreads calls over all of them. Names belong in dns:///name:port.
        target = "ipv4:" + address
    options = [*channel_options(max_message_bytes), ("grpc.service_config", _SERVICE_CONFIG),
               ("grpc.enable_retries", 1)]
    return grpc.aio.insecure_channel(target, options=options, interceptors=client_interceptors(token))


async def call(method: Any, request: Any, *, timeout: float | None = None, metadata: Any = None) -> Any:
    """Call a unary stub method, raising the server's ImageMeshError instead of a bare RpcError."""
    try:
        return await method(request, timeout=timeout, metadata=metadata)
    except grpc.aio.AioRpcError as exc:
        raise error_from_rpc(exc) from None


async def stream(method: Any, request: Any, *, timeout: float | None = None, metadata: Any = None) -> AsyncIterator[Any]:
    """Iterate a server-streaming stub method, raising the server's ImageMeshError on failure."""
    try:
        async for item in method(request, timeout=timeout, metadata=metadata):
            yield item
    except grpc.aio.AioRpcError as exc:
        raise error_from_rpc(exc) from None


async def check_health(channel: grpc.aio.Channel, service: str = "", timeout: float = 2.0) -> str:
    """SERVING / NOT_SERVING / UNKNOWN / SERVICE_UNKNOWN, or UNAVAILABLE when nothing answers."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return "SERVICE_UNKNOWN"
        return "UNAVAILABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


__all__ = [
    "DeadlineExceeded", "ImageMeshError", "ServiceUnavailable", "call", "check_health", "create_channel", "stream",
]
