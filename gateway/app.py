"""create_app: one FastAPI process serving every dialect over the mesh."""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Counter, Histogram

from gateway import access_store, errors, images_out
from gateway.catalogues import load_catalogues
from gateway.dialects import a1111, common, cyberimage, flux, freepik, image_studio, openai_images, shotgun
from gateway.mesh import Mesh
from gateway.security import Security, ratelimit_headers
from gateway.settings import GatewaySettings
from shared.errors import ImageMeshError, ImageTooLarge, Internal

log = logging.getLogger(__name__)


class BodyTooLarge(HTTPException):
    """Raised while the body streams in, so an oversize upload is refused before it is buffered whole."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413)
        self.limit = limit


# (router, its error renderer, mount prefix) for every dialect; a dialect joins the gateway by a line here.
DIALECTS: list[tuple[APIRouter, errors.ErrorRenderer, str]] = [
    (common.router, errors.default_renderer, ""),
    # Before Freepik, which shares /v1: OpenAI's fixed paths (POST /v1/images/generations, ...) are matched first.
    (openai_images.router, openai_images.render_error, "/v1"),
    (freepik.router, freepik.render_error, "/v1"),
    (flux.router, flux.render_error, ""),
    (shotgun.router, shotgun.render_error, ""),
    (image_studio.router, image_studio.render_error, "/api/image-studio"),
    (cyberimage.router, cyberimage.render_error, "/api"),
    (a1111.router, a1111.render_error, ""),
    (images_out.router, errors.default_renderer, ""),
]


def create_app(settings: GatewaySettings | None = None, mesh: Mesh | None = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if app.state.mesh is None:
            app.state.mesh = Mesh.connect(settings)
        # /health reads what these background watches cache, so they run for the app's whole life.
        app.state.mesh.start()
        yield
        await app.state.mesh.close()
        await app.state.security.close()
        app.state.engine.dispose()

    app = FastAPI(title="imagemesh gateway", version=settings.version, lifespan=lifespan,
                  description="The five seed JSON APIs, the OpenAI Images API and AUTOMATIC1111's API over the "
                              "imagemesh gRPC mesh.")
    app.state.settings = settings
    app.state.mesh = mesh
    app.state.engine = access_store.create_store_engine(settings.resolved_database_url)
    app.state.security = Security(settings, app.state.engine)
    app.state.catalogues = load_catalogues(settings.resolved_catalogue_dir)
    app.state.default_error_renderer = errors.default_renderer
    for router, renderer, prefix in DIALECTS:
        # The matched route is the dialect router's own object, so the tag goes there.
        for route in router.routes:
            if isinstance(route, APIRoute):
                route.imagemesh_error_renderer = renderer  # type: ignore[attr-defined]
        app.include_router(router, prefix=prefix)

    # The studio is plain files calling the dialects above from the browser; it holds no rule and needs no key.
    app.mount("/studio", StaticFiles(directory=Path(__file__).parent / "studio", html=True), name="studio")
    app.add_exception_handler(ImageMeshError, errors.handle_mesh_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, errors.handle_validation_error)  # type: ignore[arg-type]

    async def body_too_large(request, exc: BodyTooLarge):
        return errors.renderer_for(request)(
            ImageTooLarge(f"request body exceeds the limit of {exc.limit} bytes ({exc.limit / 1048576:.0f} MB)",
                          max_bytes=exc.limit))

    app.add_exception_handler(BodyTooLarge, body_too_large)  # type: ignore[arg-type]

    async def unexpected(request, exc: Exception):
        # Anything unknown is INTERNAL with a generic message; the traceback goes to the log, not the client.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return errors.renderer_for(request)(Internal("internal error"))

    app.add_exception_handler(Exception, unexpected)
    app.state.metrics_registry = CollectorRegistry()
    app.add_middleware(GatewayMiddleware, registry=app.state.metrics_registry, max_body_bytes=settings.max_body_bytes)
    prefilter_included_routers(app)
    return app


def prefilter_included_routers(app: FastAPI) -> None:
    """Let each included dialect router refuse a path none of its routes can match with a plain regex check.

    FastAPI (0.16x) matches a request by asking every included router in turn, and each walks its routes with
    per-route context bookkeeping; for a route of the last dialects that was most of the gateway's cost per request
    (profile in bench/README.md). A router's `matches` is only worth calling when one of its routes' path regexes
    matches, so that check goes first; the answer is the same. Relies on FastAPI internals, so it does nothing on a
    FastAPI without them; routes must all be defined before create_app (they are: at import).
    """
    try:
        from fastapi.routing import _IncludedRouter
        from starlette.routing import Match, get_route_path
    except ImportError:  # pragma: no cover - another FastAPI: plain matching
        return
    for route in app.router.routes:
        if not isinstance(route, _IncludedRouter) or not hasattr(route, "effective_candidates"):
            continue
        regexes = []
        for candidate in route.effective_candidates():
            regex = getattr(candidate, "path_regex", None) or getattr(
                getattr(candidate, "starlette_route", None), "path_regex", None)
            if regex is None:
                break
            regexes.append(regex)
        else:
            route.matches = _prefiltered(route.matches, regexes, Match, get_route_path)  # type: ignore[method-assign]


def _prefiltered(matches: Any, regexes: list[Any], match_enum: Any, route_path: Any) -> Any:
    def prefiltered_matches(scope: dict) -> tuple[Any, dict]:
        path = route_path(scope)
        for regex in regexes:
            if regex.match(path):
                return matches(scope)
        return match_enum.NONE, {}

    return prefiltered_matches


class GatewayMiddleware:
    """The gateway's one middleware (pure ASGI; BaseHTTPMiddleware would re-wrap body errors), on every request:

    - the body limit: an upload past `max_body_bytes` raises BodyTooLarge while it streams in, before it is
      buffered whole (only requests that carry a body have their `receive` wrapped);
    - metrics: requests by matched route and status, and latency by route;
    - X-RateLimit-Limit/Remaining/Reset from the guard's count (security.py), on every response of a guarded
      route, errors included.

    One layer instead of three: each ASGI layer costs a wrapper per message on every request (bench/README.md).
    """

    def __init__(self, app: Any, registry: CollectorRegistry, max_body_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_body_bytes
        self.requests = Counter("imagemesh_http_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=registry)
        self.latency = Histogram("imagemesh_http_request_duration_seconds", "HTTP latency by route", ["route"],
                                 registry=registry)
        # Label lookups take a lock and hash the label tuple; the children are few (routes x statuses), so kept.
        self._counters: dict[tuple[str, int], Any] = {}
        self._histograms: dict[str, Any] = {}

    def _limited(self, receive: Any) -> Any:
        seen = 0

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        return limited_receive

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        errors.REQUEST_STARTED.set(started)
        state = scope.setdefault("state", {})
        status = 500
        for name, value in scope["headers"]:
            if name in (b"content-length", b"transfer-encoding") and value != b"0":
                receive = self._limited(receive)
                break

        async def observed_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                counted = state.get("ratelimit")
                if counted:
                    message = {**message, "headers": [*message.get("headers", []), *ratelimit_headers(counted)]}
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            counter = self._counters.get((route, status))
            if counter is None:
                counter = self._counters[(route, status)] = self.requests.labels(route, str(status))
            histogram = self._histograms.get(route)
            if histogram is None:
                histogram = self._histograms[route] = self.latency.labels(route)
            counter.inc()
            histogram.observe(time.perf_counter() - started)
