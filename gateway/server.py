"""The gateway's own HTTP server: uvicorn with bounds on slow and idle clients (issue 14, class 5).

uvicorn bounds the idle time between requests on a keep-alive connection (`timeout_keep_alive`) and the number of
connections and requests in flight (`limit_concurrency`, answered 503), but not how long a client may take to send
its request: a connection that sends nothing, a header sent a byte at a time, or a body that stalls half-way held a
connection (and its buffers) for as long as the client liked. `GuardedHttpToolsProtocol` adds those two bounds:

- header timeout: from the moment a connection opens (or a keep-alive connection starts its next request) until
  the request's headers are complete;
- body timeout: the longest pause between two pieces of a request body (reset by every piece, and not counted
  while the gateway itself has paused reading because the app has not consumed what arrived).

Past either bound the client gets `408 Request Timeout` (when no response has started) and the connection is
closed; an app waiting for the rest of the body sees `http.disconnect`. docs/gateway.md ("Slow clients") lists the
settings; the chart's ingress sets matching timeouts in front of it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.settings import GatewaySettings

_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                     b"connection: close\r\ncontent-length: 16\r\n\r\nrequest timeout\n")


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout and a body (inactivity) timeout. The bounds travel on
    uvicorn's Config (`uvicorn_config` sets them), so the class stays importable by name (uvicorn workers)."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.header_timeout_s: float = getattr(config, "imagemesh_header_timeout_s", 10.0)
        self.body_timeout_s: float = getattr(config, "imagemesh_body_timeout_s", 30.0)
        self.retry_after_s: int = getattr(config, "imagemesh_retry_after_s", 5)
        self._guard: asyncio.TimerHandle | None = None
        self._awaiting_body = False

    # --- timers ----------------------------------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._guard = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
            self._guard = None

    def _expired(self) -> None:
        self._guard = None
        if self.transport.is_closing():
            return
        if self._awaiting_body and self.flow.read_paused:
            # Our own back-pressure (the app has not read what came): not the client's stall.
            self._arm(self.body_timeout_s)
            return
        started = self.cycle is not None and self.cycle.response_started
        if not started:
            self.transport.write(_TIMEOUT_RESPONSE)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
        self.transport.close()

    # --- connection and parser hooks -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that sends nothing at all is a request whose headers never complete.
        self._arm(self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._guard is None and self.cycle is not None and self.cycle.response_complete and data:
            # The next request on a keep-alive connection: its headers are bounded too.
            self._arm(self.header_timeout_s)
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._guard is None:
            self._arm(self.header_timeout_s)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        if self.parser is not None and not self.parser.should_upgrade():
            self._awaiting_body = True
            self._arm(self.body_timeout_s)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        if self._awaiting_body:
            self._arm(self.body_timeout_s)

    def on_message_complete(self) -> None:
        self._awaiting_body = False
        self._disarm()
        super().on_message_complete()

    # --- past the connection limit -----------------------------------------------------------------------------

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if app is httptools_impl.service_unavailable:
            app = self._overloaded  # uvicorn's own 503, with the Retry-After every 503 of the gateway carries
        super()._start_asgi_task(cycle, app)

    async def _overloaded(self, scope: Any, receive: Any, send: Any) -> None:
        body = b"Service Unavailable: too many connections\n"
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(self.retry_after_s).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def uvicorn_config(app: Any, settings: GatewaySettings, **overrides: Any) -> uvicorn.Config:
    """The one uvicorn configuration of the gateway (`python -m gateway` and the tests that run it live)."""
    values: dict[str, Any] = {
        "host": settings.host, "port": settings.http_port, "log_level": settings.log_level.lower(),
        "http": GuardedHttpToolsProtocol,
        "timeout_keep_alive": settings.http_keep_alive_timeout_s,
        # Connections plus requests in flight; past it uvicorn answers 503 at once instead of queueing.
        "limit_concurrency": settings.http_max_connections or None,
        "backlog": settings.http_backlog,
        "timeout_graceful_shutdown": 10,
    }
    values.update(overrides)
    config = uvicorn.Config(app, **values)
    config.imagemesh_header_timeout_s = settings.http_header_timeout_s  # type: ignore[attr-defined]
    config.imagemesh_body_timeout_s = settings.http_body_timeout_s  # type: ignore[attr-defined]
    config.imagemesh_retry_after_s = settings.retry_after_s  # type: ignore[attr-defined]
    return config
