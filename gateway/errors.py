"""Errors at the HTTP edge: each dialect renders the mesh's one error hierarchy in its own JSON format.

Routes are tagged with their dialect when the app is built; the exception handlers look the dialect up
from the matched route, so a dialect module only says how its errors look.
"""

from __future__ import annotations

from typing import Callable

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from shared.errors import ImageMeshError, InvalidArgument

# A renderer turns an ImageMeshError into the dialect's JSON response.
ErrorRenderer = Callable[[ImageMeshError], JSONResponse]


def default_renderer(error: ImageMeshError) -> JSONResponse:
    return JSONResponse(status_code=error.http_status,
                        content={"error": {"code": error.reason, "message": error.message, "details": error.metadata}})


def renderer_for(request: Request) -> ErrorRenderer:
    route = request.scope.get("route")
    return getattr(route, "imagemesh_error_renderer", None) or request.app.state.default_error_renderer


async def handle_mesh_error(request: Request, exc: ImageMeshError) -> JSONResponse:
    return renderer_for(request)(exc)


async def handle_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    field = ".".join(location) or "body"
    error = InvalidArgument(f"invalid request: {field}: {first.get('msg', 'invalid value')}", field=field,
                            reason="VALIDATION_ERROR")
    return renderer_for(request)(error)
