"""The server interceptor every service runs: tracing, metrics and the one mapping of errors to statuses."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from typing import Any, AsyncIterator, Awaitable, Callable

import grpc
from grpc.experimental import aio as _aio  # noqa: F401 - makes grpc.aio importable on older grpcio

from shared import telemetry
from shared.errors import ImageMeshError, Unauthenticated, to_rpc_status
from shared.metrics import RpcMetrics

log = logging.getLogger("imagemesh.rpc")

_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class _Outcome:
    """Status code of one call, filled in by the wrapper as the call ends."""

    __slots__ = ("code",)

    def __init__(self) -> None:
        self.code = grpc.StatusCode.OK


async def _abort_with(context: grpc.aio.ServicerContext, error: ImageMeshError, outcome: _Outcome) -> None:
    outcome.code = error.grpc_code
    status = to_rpc_status(error)
    await context.abort(error.grpc_code, status.message, trailing_metadata=((_STATUS_DETAILS_KEY, status.SerializeToString()),))


async def _handle_exception(exc: BaseException, context: grpc.aio.ServicerContext, method: str, outcome: _Outcome) -> None:
    if isinstance(exc, ImageMeshError):
        log.info("%s failed: %s", method, exc.message, extra={"method": method, "code": exc.reason})
        await _abort_with(context, exc, outcome)
    if isinstance(exc, asyncio.CancelledError):
        outcome.code = grpc.StatusCode.CANCELLED
        raise exc
    if isinstance(exc, grpc.aio.AbortError) or type(exc).__name__ == "AbortError":
        outcome.code = context.code() or grpc.StatusCode.UNKNOWN  # type: ignore[assignment]
        raise exc
    # Unknown failures never leak their text to clients; the traceback goes to the log with the trace id.
    log.exception("%s crashed", method, extra={"method": method})
    from shared.errors import Internal

    await _abort_with(context, Internal("internal error"), outcome)


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every handler once: a span (W3C context from metadata), metrics, and error mapping."""

    def __init__(self, metrics: RpcMetrics | None) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        if method.startswith("/grpc.health") or method.startswith("/grpc.reflection"):
            return handler
        metadata = details.invocation_metadata
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method, metadata),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method, metadata),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # client streaming is not used by the contract

    @contextlib.asynccontextmanager
    async def _observed(self, method: str, metadata: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        """One call's span (joined to the caller's W3C context), in-flight gauge, count and latency by final
        code, and the mapping of whatever it raised to a status; shared by unary and streaming handlers."""
        outcome = _Outcome()
        started = time.perf_counter()
        if self._metrics:
            self._metrics.in_flight.labels(method).inc()
        ctx = telemetry.extract_context(metadata)
        with telemetry.tracer().start_as_current_span(method, context=ctx, kind=_server_kind()):
            try:
                yield
            except GeneratorExit:
                # The client went away while a stream was being written.
                outcome.code = grpc.StatusCode.CANCELLED
                raise
            except BaseException as exc:  # noqa: BLE001 - mapped (and re-raised as an abort), never swallowed
                await _handle_exception(exc, context, method, outcome)
            finally:
                if self._metrics:
                    self._metrics.in_flight.labels(method).dec()
                    self._metrics.requests.labels(method, outcome.code.name).inc()
                    self._metrics.latency.labels(method).observe(time.perf_counter() - started)

    def _wrap_unary(self, behavior: Callable[..., Any], method: str, metadata: Any) -> Callable[..., Any]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with self._observed(method, metadata, context):
                return await behavior(request, context)

        return wrapper

    def _wrap_stream(self, behavior: Callable[..., Any], method: str, metadata: Any) -> Callable[..., Any]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with self._observed(method, metadata, context):
                async for item in behavior(request, context):
                    yield item

        return wrapper


# Service-to-service authentication: the one metadata key the mesh's clients send and its servers check.
AUTH_METADATA_KEY = "authorization"
# Left open when a token is configured: the kubelet's native gRPC probes and container HEALTHCHECKs cannot send
# metadata, and health says nothing about jobs, prompts or images. Reflection is not open: it lists the contract.
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)


def _bearer(token: str) -> str:
    return f"Bearer {token}"


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses, as UNAUTHENTICATED (reason INTERNAL_TOKEN_INVALID), every call that does not carry the mesh's
    shared token in `authorization: Bearer <token>`, except grpc.health.v1 (OPEN_METHOD_PREFIXES). Installed by
    build_server only when IMAGEMESH_INTERNAL_TOKEN is set; the comparison takes constant time."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("TokenAuthInterceptor needs a non-empty token")
        self._expected = _bearer(token).encode()

    def _authorized(self, metadata: Any) -> bool:
        for key, value in metadata or ():
            if key == AUTH_METADATA_KEY:
                given = value.encode() if isinstance(value, str) else bytes(value)
                return hmac.compare_digest(given, self._expected)
        return False

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        if self._authorized(details.invocation_metadata):
            return handler
        missing = not any(key == AUTH_METADATA_KEY for key, _ in details.invocation_metadata or ())
        error = Unauthenticated("missing service token" if missing else "invalid service token",
                                reason="INTERNAL_TOKEN_MISSING" if missing else "INTERNAL_TOKEN_INVALID")
        trailing = ((_STATUS_DETAILS_KEY, to_rpc_status(error).SerializeToString()),)

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(error.grpc_code, error.message, trailing_metadata=trailing)

        async def deny_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(error.grpc_code, error.message, trailing_metadata=trailing)
            yield  # pragma: no cover - makes this an async generator

        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(deny_stream, request_deserializer=handler.request_deserializer,
                                                        response_serializer=handler.response_serializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(deny, request_deserializer=handler.request_deserializer,
                                                       response_serializer=handler.response_serializer)
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(deny_stream, request_deserializer=handler.request_deserializer,
                                                         response_serializer=handler.response_serializer)
        return grpc.stream_unary_rpc_method_handler(deny, request_deserializer=handler.request_deserializer,
                                                    response_serializer=handler.response_serializer)


def _server_kind() -> Any:
    from opentelemetry.trace import SpanKind

    return SpanKind.SERVER


class _ClientTracing:
    """Starts a client span and injects W3C trace context (and the mesh's service token, when one is configured)
    into the outgoing metadata."""

    def __init__(self, token: str = "") -> None:
        self._auth = ((AUTH_METADATA_KEY, _bearer(token)),) if token else ()

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = telemetry.inject_metadata(details.metadata)
        if self._auth and not any(key == AUTH_METADATA_KEY for key, _ in metadata):
            metadata.extend(self._auth)
        return grpc.aio.ClientCallDetails(
            method=details.method,
            timeout=details.timeout,
            metadata=metadata,
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )


class ClientUnaryTracing(_ClientTracing, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[override]
        from opentelemetry.trace import SpanKind

        name = client_call_details.method.decode() if isinstance(client_call_details.method, bytes) else client_call_details.method
        with telemetry.tracer().start_as_current_span(name, kind=SpanKind.CLIENT):
            call = await continuation(self._details(client_call_details), request)
            return await call


class ClientStreamTracing(_ClientTracing, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[override]
        return await continuation(self._details(client_call_details), request)


def client_interceptors(token: str = "") -> list[grpc.aio.ClientInterceptor]:
    """Tracing on every call; `token` (IMAGEMESH_INTERNAL_TOKEN) is sent as `authorization: Bearer <token>`."""
    return [ClientUnaryTracing(token), ClientStreamTracing(token)]
