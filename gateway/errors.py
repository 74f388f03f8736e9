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

from shared.errors import ImageMeshError, InvalidArgument, PromptTooLong, RateLimited, Unauthenticated

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
    route = request.scope.get("route")
    return getattr(route, "imagemesh_error_renderer", None) or request.app.state.default_error_renderer


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
                           "value_error", "assertion_error", "string_pattern_mismatch"})


def validation_error(exc: RequestValidationError) -> ImageMeshError:
    first = exc.errors()[0] if exc.errors() else {}
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    field = ".".join(location) or "body"
    kind = first.get("type", "")
    message = f"invalid request: {field}: {first.get('msg', 'invalid value')}"
    if kind == "string_too_long" and field.endswith("prompt"):
        ctx = first.get("ctx") or {}
        return PromptTooLong(f"{field} exceeds the maximum length of {ctx.get('max_length')} characters",
                             field=field, max_length=ctx.get("max_length"))
    return ValidationFailed(message, status=400 if kind in _RANGE_ERRORS else 422, field=field, error_type=kind)


async def handle_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return renderer_for(request)(validation_error(exc))
