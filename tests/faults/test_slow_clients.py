"""The gateway's own server bounds slow and idle clients (issue 14, class 5): an idle connection, a header that
never completes and a body that stalls get 408 and a closed connection; an idle keep-alive connection is closed;
past the connection limit the answer is 503 at once. The bounds are set small here; every wait below is a
generous upper bound for a failure, never a measured figure."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest
import uvicorn

from gateway.server import uvicorn_config
from gateway.settings import GatewaySettings

BOUND = 0.5
WAIT = 15.0  # a connection still open after this long has not been bounded


async def hello(scope, receive, send):
    """A tiny ASGI app that reads the whole body and answers its length."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        if scope["path"] == "/slow":
            await asyncio.sleep(3)
        body = str(size).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def served(**settings):
    values = {"http_header_timeout_s": BOUND, "http_body_timeout_s": BOUND, "http_keep_alive_timeout_s": 1,
              "log_level": "warning"}
    values.update(settings)
    config = uvicorn_config(hello, GatewaySettings(**values), port=0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        sock.close()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), WAIT)


@pytest.mark.parametrize("sent", [
    pytest.param(b"", id="idle-connection"),
    pytest.param(b"POST /x HTTP/1.1\r\nHost: gw\r\nContent-Le", id="slow-header"),
    pytest.param(b"POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n0123456789", id="stalled-body"),
])
async def test_a_client_that_stalls_gets_408_and_a_closed_connection(sent):
    async with served() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(sent)
        await writer.drain()
        answer = await read_until_closed(reader)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")


async def test_a_steady_body_is_not_cut_and_an_idle_keep_alive_connection_is_closed():
    async with served() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 12\r\n\r\n")
        for piece in (b"0123", b"4567", b"89ab"):
            await asyncio.sleep(BOUND / 2)  # each pause within the bound, the whole body longer than it
            writer.write(piece)
            await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        body = await asyncio.wait_for(reader.readexactly(2), WAIT)
        assert head.startswith(b"HTTP/1.1 200 ") and body == b"12"
        # Nothing more is sent: the keep-alive timeout closes the connection, with nothing further written.
        assert await read_until_closed(reader) == b""
        writer.close()


async def test_past_the_connection_limit_the_answer_is_503():
    # uvicorn counts open connections (and requests in flight): two busy ones, and the third reaches the limit.
    async with served(http_max_connections=3, retry_after_s=7) as port:
        busy = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        for _, writer in busy:
            writer.write(b"GET /slow HTTP/1.1\r\nHost: gw\r\n\r\n")
            await writer.drain()
        await asyncio.sleep(0.2)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /x HTTP/1.1\r\nHost: gw\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        writer.close()
        for _, w in busy:
            w.close()
    assert head.startswith(b"HTTP/1.1 503 ")
    assert b"\r\nretry-after: 7\r\n" in head.lower()
