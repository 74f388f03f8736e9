"""Errors at the HTTP edge: each dialect renders the mesh's one error hierarchy in its own JSON format.

Routes are tagged with their dialect when the app is built; the exception handlers look the dialect up
from the matched route, so a dialect module only says how its errors look.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import (
    ImageMeshError,
    InvalidArgument,
    NotFound,
    PromptTooLong,
    RateLimited,
    Unauthenticated,
    bounded,
)

# When the current request started (perf_counter), set by the app's outermost middleware: renderers that report
# "time until the error occurred" (FLUX Krea's `duration`) read it.
REQUEST_STARTED: contextvars.ContextVar[float] = contextvars.ContextVar("request_started", default=0.0)

# A renderer turns an ImageMeshError into the dialect's JSON response.
ErrorRenderer = Callable[[ImageMeshError], JSONResponse]

# Metadata keys whose comma-joined values are lists (ErrorInfo metadata is a string map).
LIST_KEYS = frozenset({"supported_models", "supported", "supported_styles", "supported_providers",
                       "supported_operations", "supported_platforms", "supported_values"})


class ValidationFailed(InvalidArgument):
    """A request body or query that does not match the documented model. 422 for a missing field or a wrong
    type (the FastAPI convention two seeds document), 400 for a value outside its documented range."""

    reason = "VALIDATION_ERROR"

    def __init__(self, message: str, *, status: int = 400, **metadata: Any) -> None:
        super().__init__(message, **metadata)
        self.http_status = status


def details(error: ImageMeshError) -> dict[str, Any]:
    """The error's metadata with list-valued keys split back into lists."""
    out: dict[str, Any] = {}
    for key, value in error.metadata.items():
        out[key] = [item for item in value.split(",") if item] if key in LIST_KEYS else value
    return out


def default_renderer(error: ImageMeshError) -> JSONResponse:
    return JSONResponse(status_code=error.http_status,
                        content={"error": {"code": error.reason, "message": error.message, "details": details(error)}})


def renderer_for(request: Request) -> ErrorRenderer:
    return renderer_for_scope(request.app, request.scope)


def renderer_for_scope(app: Any, scope: dict) -> ErrorRenderer:
    """The renderer of the route that matched (or partly matched: a wrong method); for a path no route matches,
    the dialect whose routes share the most leading path segments with it (so /v1/nope answers in Freepik's
    format, /api/image-studio/nope in Image Studio's), else the default format."""
    route = scope.get("route")
    renderer = getattr(route, "imagemesh_error_renderer", None)
    if renderer is not None:
        return renderer
    return renderer_for_path(app, scope.get("path", "/"))


def renderer_for_path(app: Any, path: str) -> ErrorRenderer:
    prefixes: list[tuple[tuple[str, ...], tuple[str, ...], ErrorRenderer]] = getattr(app.state, "error_prefixes", [])
    segments = tuple(part for part in path.split("/") if part)[:8]
    scores: dict[ErrorRenderer, tuple[bool, int, int]] = {}
    for mount, prefix, renderer in prefixes:
        length = 0
        for mine, theirs in zip(prefix, segments):
            if mine != theirs:
                break
            length += 1
        if length == 0:
            continue
        # A dialect mounted above the path wins over one mounted beside it (/api/x is CyberImage's, not Image
        # Studio's); then the longest shared prefix; then the dialect with the most routes there (/v1 is Freepik's).
        score = (segments[:len(mount)] == mount, length, 1)
        old = scores.get(renderer)
        if old is None or score[:2] > old[:2]:
            scores[renderer] = score
        elif score[:2] == old[:2]:
            scores[renderer] = (old[0], old[1], old[2] + 1)
    if not scores:
        return app.state.default_error_renderer
    return max(scores, key=scores.__getitem__)


def static_segments(path: str) -> tuple[str, ...]:
    """A route path's leading literal segments (up to its first parameter)."""
    out = []
    for part in filter(None, path.split("/")):
        if "{" in part:
            break
        out.append(part)
    return tuple(out)


class MethodNotAllowed(ImageMeshError):
    http_status = 405
    reason = "METHOD_NOT_ALLOWED"


class RouteNotFound(NotFound):
    reason = "NOT_FOUND"


def from_http_exception(request: Request, exc: StarletteHTTPException) -> ImageMeshError:
    """Starlette's own errors (no route, wrong method, a body that does not parse) as the mesh's errors."""
    path = bounded(request.url.path, 200)
    if exc.status_code == 404:
        return RouteNotFound(f"no such endpoint: {request.method} {path}")
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return MethodNotAllowed(f"method {bounded(request.method, 20)} is not allowed on {path}"
                                + (f"; allowed: {allowed}" if allowed else ""), allowed=allowed or None)
    if exc.status_code == 400:
        if exc.detail == "There was an error parsing the body":
            # FastAPI's words for a JSON body that does not decode: invalid UTF-8, nesting past the parser's depth.
            return ValidationFailed("invalid request body: not a JSON document this API can read (check the "
                                    "encoding is UTF-8 and the nesting is shallow)", status=400, field="body",
                                    error_type="json_invalid")
        # Starlette's multipart parser (too many files or fields, a broken boundary) and the like.
        return ValidationFailed(f"invalid request body: {bounded(str(exc.detail), 300)}", status=400, field="body",
                                error_type="body_invalid")
    error = ImageMeshError(bounded(str(exc.detail), 500))
    error.http_status = exc.status_code
    error.reason = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 413: "IMAGE_TOO_LARGE",
                    415: "UNSUPPORTED_MEDIA_TYPE"}.get(exc.status_code, "HTTP_ERROR")
    return error


async def handle_http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    response = with_headers_for(from_http_exception(request, exc), renderer_for(request))
    for key, value in (exc.headers or {}).items():
        response.headers.setdefault(key, value)
    return response


def with_headers_for(error: ImageMeshError, renderer: ErrorRenderer) -> JSONResponse:
    return with_headers(error, renderer(error))


def with_headers(error: ImageMeshError, response: JSONResponse, retry_after_s: int = 5) -> JSONResponse:
    """Headers every dialect's error carries: Retry-After on every 429 and 503 (a rate limit's own window, else
    `retry_after_s`: a full queue, a service down or restarting), WWW-Authenticate on a 401."""
    if isinstance(error, RateLimited) and "retry_after" in error.metadata:
        response.headers["Retry-After"] = error.metadata["retry_after"]
    elif response.status_code in (429, 503):
        response.headers["Retry-After"] = error.metadata.get("retry_after") or str(retry_after_s)
    if isinstance(error, Unauthenticated):
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def handle_mesh_error(request: Request, exc: ImageMeshError) -> JSONResponse:
    settings = getattr(request.app.state, "settings", None)
    return with_headers(exc, renderer_for(request)(exc), getattr(settings, "retry_after_s", 5))


# pydantic error types that mean "value out of its documented range" rather than "missing or wrong type".
_RANGE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal", "string_too_long",
                           "string_too_short", "too_long", "too_short", "multiple_of", "literal_error", "enum",
                           "value_error", "assertion_error", "string_pattern_mismatch",
                           # Bytes that are not text (a lone surrogate): malformed input, like invalid UTF-8.
                           "string_unicode"})


def validation_error(exc: RequestValidationError) -> ImageMeshError:
    first = exc.errors()[0] if exc.errors() else {}
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    field = bounded(".".join(location) or "body", 200)
    kind = first.get("type", "")
    message = f"invalid request: {field}: {first.get('msg', 'invalid value')}"
    if kind == "string_too_long" and field.endswith("prompt"):
        ctx = first.get("ctx") or {}
        return PromptTooLong(f"{field} exceeds the maximum length of {ctx.get('max_length')} characters",
                             field=field, max_length=ctx.get("max_length"))
    return ValidationFailed(message, status=400 if kind in _RANGE_ERRORS else 422, field=field, error_type=kind)


async def handle_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return renderer_for(request)(validation_error(exc))
