"""Gateway fixtures: gateways with their own settings (keys, rate limits, database) over the shared mesh's real
services, and the seed documents' JSON examples to validate responses against."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from shared.errors import ImageMeshError

SEEDS = json.loads((Path(__file__).parent / "seed_examples.json").read_text())
KEYS = "key-alice:alice,key-bob:bob"


@asynccontextmanager
async def gateway(mesh, tmp: Path, **settings: Any):
    """A gateway app over the running mesh's services with its own settings; yields an httpx client."""
    from gateway.app import create_app
    from gateway.mesh import Mesh
    from gateway.settings import GatewaySettings

    addresses = {name + "_address": mesh.address(name)
                 for name in ("orchestrator", "generate", "background_removal", "upscale")}
    addresses.update({key: settings.pop(key) for key in list(settings) if key.endswith("_address")})
    gateway_settings = GatewaySettings(var_dir=tmp, **addresses, **settings)
    app = create_app(gateway_settings, mesh=Mesh.connect(gateway_settings))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway", timeout=300)
    client.app = app  # type: ignore[attr-defined]
    try:
        yield client
    finally:
        await client.aclose()
        await app.state.mesh.close()
        app.state.engine.dispose()


@pytest_asyncio.fixture(scope="session")
async def secured(mesh, tmp_path_factory):
    """Auth on (two keys), rate limits at their documented defaults."""
    async with gateway(mesh, tmp_path_factory.mktemp("secured"), api_keys=KEYS) as client:
        yield client


@pytest.fixture
def http(mesh):
    """The shared mesh's gateway: auth off (no keys), rate limits off."""
    return mesh.http


def alice() -> dict[str, str]:
    return {"Authorization": "Bearer key-alice"}


def bob() -> dict[str, str]:
    return {"X-API-Key": "key-bob"}


def assert_shape(actual: Any, example: Any, path: str = "$", nullable: frozenset[str] = frozenset(),
                 maps: frozenset[str] = frozenset()) -> None:
    """`actual` has every field of the seed's `example`, recursively, with the same JSON types. A field the
    example shows with a value may be null only when its path is listed in `nullable`; objects at a path in `maps`
    are keyed by data (model names, services), so only their values are checked against the example's first."""
    if example is None:
        return
    if actual is None:
        assert path in nullable or path.rsplit(".", 1)[-1] in nullable, f"{path} is null; the seed shows {example!r}"
        return
    if isinstance(example, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        if path in maps:
            first = next(iter(example.values()), None)
            for key, value in actual.items():
                assert_shape(value, first, f"{path}.{key}", nullable, maps)
            return
        for key, value in example.items():
            assert key in actual, f"{path}.{key} missing (seed field); got keys {sorted(actual)}"
            assert_shape(actual[key], value, f"{path}.{key}", nullable, maps)
    elif isinstance(example, list):
        assert isinstance(actual, list), f"{path}: expected a list, got {actual!r}"
        if example:
            for index, item in enumerate(actual):
                assert_shape(item, example[0], f"{path}[{index}]", nullable, maps)
    elif isinstance(example, bool):
        assert isinstance(actual, bool), f"{path}: expected a boolean, got {actual!r}"
    elif isinstance(example, (int, float)):
        assert isinstance(actual, (int, float)) and not isinstance(actual, bool), f"{path}: expected a number"
        if isinstance(example, int) and not isinstance(example, bool) and path not in nullable:
            assert float(actual) == int(actual) or isinstance(actual, float), f"{path}: expected an integer"
    elif isinstance(example, str):
        assert isinstance(actual, str), f"{path}: expected a string, got {actual!r}"


def assert_error_format(dialect: str, reply: httpx.Response, status: int, code: str | None = None) -> Any:
    """The reply is `status` in the dialect's documented error format (and carries `code` where it has one)."""
    assert reply.status_code == status, reply.text
    body = reply.json()
    if dialect == "freepik":
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
        assert isinstance(body["error"]["details"], dict) and body["error"]["message"]
        if code:
            assert body["error"]["code"] == code, body
    elif dialect == "flux":
        assert_shape(body, SEEDS["001"]["error"])
        assert body["success"] is False and body["error"]
    elif dialect == "shotgun":
        assert set(body) == {"error"} and set(body["error"]) == {"type", "message", "details"}
        assert isinstance(body["error"]["details"], dict) and body["error"]["message"]
        if code:
            assert body["error"]["type"] == code, body
    elif dialect == "image_studio":
        assert set(body) == {"detail"} and isinstance(body["detail"], str) and body["detail"]
    elif dialect == "cyberimage":
        assert body["status"] == "error" and isinstance(body["message"], str) and body["message"]
    else:  # pragma: no cover
        raise AssertionError(dialect)
    return body


__all__ = [
    "KEYS",
    "SEEDS",
    "ImageMeshError",
    "alice",
    "assert_error_format",
    "assert_shape",
    "bob",
    "gateway",
]


class _LocalServer:
    """A loopback HTTP server in a thread: serves test images, records POSTs (webhook deliveries)."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from tests.images import disc_rgba, png_bytes

        files = {"/disc.png": png_bytes(disc_rgba(32))}
        received: list[tuple[dict[str, str], bytes]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                body = files.get(self.path)
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append((dict(self.headers), self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str = "hook") -> str:
        return f"http://127.0.0.1:{self.server.server_port}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def image_server():
    server = _LocalServer()
    yield server
    server.close()


@pytest.fixture
def webhook_sink():
    server = _LocalServer()
    server.url = server.url("hook")  # type: ignore[assignment]
    yield server
    server.close()


@asynccontextmanager
async def live(mesh, tmp: Path, **settings: Any):
    """A real uvicorn server on 127.0.0.1:<free port> in this event loop, over the mesh; yields its base URL.
    Synchronous clients (requests) must run in a thread (asyncio.to_thread) so this loop keeps serving."""
    import asyncio
    import socket

    import uvicorn

    from gateway.app import create_app
    from gateway.mesh import Mesh
    from gateway.settings import GatewaySettings

    addresses = {name + "_address": mesh.address(name)
                 for name in ("orchestrator", "generate", "background_removal", "upscale")}
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # Result URLs are built from the public base URL (never the Host header): here, this server's own address.
    settings.setdefault("public_base_url", f"http://127.0.0.1:{port}")
    gateway_settings = GatewaySettings(var_dir=tmp, **addresses, **settings)
    app = create_app(gateway_settings, mesh=Mesh.connect(gateway_settings))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", ws="websockets-sansio"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest_asyncio.fixture(scope="session")
async def live_gateway(mesh, tmp_path_factory):
    """Like `make run`: no keys (auth off), documented rate limits on."""
    async with live(mesh, tmp_path_factory.mktemp("live")) as url:
        yield url


@pytest_asyncio.fixture(scope="session")
async def live_secured_gateway(mesh, tmp_path_factory):
    async with live(mesh, tmp_path_factory.mktemp("live_secured"), api_keys=KEYS) as url:
        yield url
