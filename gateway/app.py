"""create_app: one FastAPI process serving every dialect over the mesh."""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from gateway import access_store, errors, images_out
from gateway.catalogues import load_catalogues
from gateway.dialects import a1111, common, cyberimage, flux, freepik, image_studio, openai_images, shotgun
from gateway.mesh import Mesh
from gateway.openapi_errors import openapi_with_errors
from gateway.security import RateLimitHeadersMiddleware, Security, key_from_request_headers
from gateway.settings import GatewaySettings
from shared.errors import ImageMeshError, ImageTooLarge, Internal

log = logging.getLogger(__name__)


class BodyTooLarge(HTTPException):
    """Raised while the body streams in, so an oversize upload is refused before it is buffered whole."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413)
        self.limit = limit


def _too_large(limit: int) -> ImageTooLarge:
    return ImageTooLarge(f"request body exceeds the limit of {limit} bytes ({limit / 1048576:.0f} MB)",
                         max_bytes=limit)


async def _send_error(app: Any, scope: dict, send: Any, error: ImageMeshError) -> None:
    """Answer with `error` in the dialect's format without running the route (nor reading the body: the server
    discards what the client still sends, so the client reads this answer and the connection stays usable)."""
    response = errors.with_headers(error, errors.renderer_for_scope(app, scope)(error))
    await response(scope, _no_body, send)


async def _no_body() -> dict:  # pragma: no cover - a rendered JSONResponse never reads the request
    return {"type": "http.disconnect"}


def matched_route(app: Any, scope: dict) -> Any:
    """The dialect route that fully matches this request (path and method), or None; routing happens later.
    Remembered per (method, path) in a bounded map: the hot paths (/health, listings) skip the scan."""
    path, method = scope.get("path", ""), scope.get("method", "GET")
    cache: dict[tuple[str, str], Any] = app.state.route_cache
    key = (method, path)
    if key in cache:
        return cache[key]
    found = None
    for pattern, methods, _, route in app.state.route_table:
        if (method in methods or (method == "HEAD" and "GET" in methods)) and pattern.match(path):
            found = route
            break
    if len(path) <= 256:
        if len(cache) >= 4096:
            cache.clear()
        cache[key] = found
    return found


class BodyLimitMiddleware:
    """413 past `max_bytes`: at once from a declared Content-Length, else as soon as the streamed body passes it."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            app = scope["app"]
            return await _send_error(app, {**scope, "route": matched_route(app, scope)}, send,
                                     _too_large(self.max_bytes))
        seen = 0

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: dict) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class AuthFirstMiddleware:
    """Checks the API key of a guarded route before anything reads its body: no 422 (nor a 45 MB read) before
    the 401. The route's own guard then authenticates again (cached) and counts the rate limit."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        app = scope["app"]
        security: Security = app.state.security
        if security.auth_enabled:
            route = matched_route(app, scope)
            basic = getattr(route, "imagemesh_guard_basic", None)
            if basic is not None:
                headers = Headers(scope=scope)
                try:
                    await security.owner_for(key_from_request_headers(headers, basic))
                except ImageMeshError as exc:
                    return await _send_error(app, {**scope, "route": route}, send, exc)
        await self.app(scope, receive, send)


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
    app.state.error_prefixes = []
    # (path regex, methods, path as OpenAPI shows it, route) of every dialect HTTP route, for the middlewares that
    # act before routing (auth, body limit) and for the OpenAPI error responses.
    app.state.route_table = []
    app.state.route_cache = {}
    for router, renderer, prefix in DIALECTS:
        # The matched route is the dialect router's own object, so the tag goes there.
        for route in router.routes:
            if isinstance(route, APIRoute):
                route.imagemesh_error_renderer = renderer  # type: ignore[attr-defined]
                guards = [d.dependency for d in route.dependencies
                          if hasattr(d.dependency, "imagemesh_guard_basic")]
                if guards:
                    route.imagemesh_guard_basic = guards[0].imagemesh_guard_basic  # type: ignore[attr-defined]
            if isinstance(route, APIRoute):
                pattern, path_format, _ = compile_path(prefix + route.path)
                app.state.route_table.append((pattern, route.methods or set(), path_format, route))
            if isinstance(route, (APIRoute, APIWebSocketRoute)) and renderer is not errors.default_renderer:
                # Unknown paths answer in the format of the dialect that owns the longest shared prefix.
                app.state.error_prefixes.append((errors.static_segments(prefix), errors.static_segments(prefix + route.path),
                                                 renderer))
        app.include_router(router, prefix=prefix)

    # The studio is plain files calling the dialects above from the browser; it holds no rule and needs no key.
    app.mount("/studio", StaticFiles(directory=Path(__file__).parent / "studio", html=True), name="studio")
    app.add_exception_handler(ImageMeshError, errors.handle_mesh_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, errors.handle_validation_error)  # type: ignore[arg-type]
    # Unknown routes, wrong methods, bodies that do not parse (invalid UTF-8, nesting): the dialect's format too.
    app.add_exception_handler(StarletteHTTPException, errors.handle_http_exception)  # type: ignore[arg-type]

    async def body_too_large(request, exc: BodyTooLarge):
        return errors.renderer_for(request)(_too_large(exc.limit))

    app.add_exception_handler(BodyTooLarge, body_too_large)  # type: ignore[arg-type]

    async def unexpected(request, exc: Exception):
        # Anything unknown is INTERNAL with a generic message; the traceback goes to the log, not the client.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return errors.renderer_for(request)(Internal("internal error"))

    app.add_exception_handler(Exception, unexpected)
    app.state.metrics_registry = CollectorRegistry()
    app.add_middleware(RateLimitHeadersMiddleware)
    # Outermost first on the way in: metrics (and the request's start time), auth, then the body limit.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AuthFirstMiddleware)
    app.add_middleware(MetricsMiddleware, registry=app.state.metrics_registry)
    openapi_with_errors(app)
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


class MetricsMiddleware:
    """Counts requests by matched route and status (pure ASGI: BaseHTTPMiddleware would re-wrap body errors)."""

    def __init__(self, app: Any, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter("imagemesh_http_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=registry)
        self.latency = Histogram("imagemesh_http_request_duration_seconds", "HTTP latency by route", ["route"],
                                 registry=registry)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        errors.REQUEST_STARTED.set(started)
        status = {"code": 500}

        async def observed_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            name = getattr(scope.get("route"), "path", "unmatched")
            self.requests.labels(name, str(status["code"])).inc()
            self.latency.labels(name).observe(time.perf_counter() - started)
