"""The OpenAPI document lists every status code an operation can answer, each with its dialect's error body.

FastAPI documents 200 and its own 422 shape; the gateway answers more (400 for a value out of range, 401, 404,
409, 413, 429, 499, 500, 501, 503, 504) and in the dialect's format. This adds those responses to every dialect
operation once the document is built, so a client (or schemathesis) can hold each answer to its schema.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel

from gateway import errors
from gateway.dialects import a1111, common, cyberimage, flux, freepik, image_studio, openai_images, shotgun


class MeshErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class MeshError(BaseModel):
    """Freepik (seed 000) and the dialect-neutral routes: {"error": {"code", "message", "details"}}."""

    error: MeshErrorBody


class FluxError(BaseModel):
    """FLUX Krea (seed 001)."""

    success: bool
    error: str
    duration: float


class ShotgunErrorBody(BaseModel):
    type: str
    message: str
    details: dict[str, Any]


class ShotgunError(BaseModel):
    """shotgun (seed 002)."""

    error: ShotgunErrorBody


class ImageStudioError(BaseModel):
    """Image Studio (seed 003)."""

    detail: str


class CyberImageError(BaseModel):
    """CyberImage (seed 004); retry_after with a 429."""

    status: Literal["error"]
    message: str
    retry_after: int | None = None


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(BaseModel):
    """The OpenAI Images API."""

    error: OpenAIErrorBody


class A1111Error(BaseModel):
    """AUTOMATIC1111's api_middleware shape (plus the mesh's reason)."""

    error: str
    detail: str
    body: str
    errors: str
    reason: str


class A1111ValidationItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class A1111ValidationError(BaseModel):
    """FastAPI's own 422 shape, which A1111 keeps for request validation."""

    detail: list[A1111ValidationItem]


# renderer -> (error model, status codes it never answers with: OpenAI folds 413 and 422 into 400).
_MODELS: dict[Any, tuple[type[BaseModel], frozenset[int]]] = {
    errors.default_renderer: (MeshError, frozenset()),
    freepik.render_error: (MeshError, frozenset()),
    flux.render_error: (FluxError, frozenset()),
    shotgun.render_error: (ShotgunError, frozenset()),
    image_studio.render_error: (ImageStudioError, frozenset()),
    cyberimage.render_error: (CyberImageError, frozenset()),
    openai_images.render_error: (OpenAIError, frozenset({413, 422})),
    a1111.render_error: (A1111Error, frozenset()),
}

_DESCRIPTIONS = {400: "Invalid request (a value outside its documented range, a malformed body)",
                 401: "Missing or invalid API key", 404: "Not found", 409: "Conflict with the resource's state",
                 413: "Payload too large", 422: "Unprocessable request", 429: "Rate limit or queue full "
                 "(Retry-After)", 499: "Cancelled", 500: "Internal error", 501: "Not available on this deployment",
                 503: "A backend service is unavailable", 504: "Deadline exceeded"}
_ALWAYS = (400, 404, 409, 422, 429, 499, 500, 501, 503, 504)


def _statuses(method: str, guarded: bool) -> list[int]:
    codes = list(_ALWAYS)
    if guarded:
        codes.append(401)
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        codes.append(413)
    return sorted(codes)


def _ref(components: dict[str, Any], model: type[BaseModel]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components.setdefault(model.__name__, schema)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def add_error_responses(app: FastAPI, schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for _, methods, path, route in app.state.route_table:
        model, never = _MODELS.get(getattr(route, "imagemesh_error_renderer", None), (MeshError, frozenset()))
        guarded = getattr(route, "imagemesh_guard_basic", None) is not None
        for method in methods:
            operation = schema["paths"].get(path, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for code in _statuses(method, guarded):
                if code in never:
                    responses.pop(str(code), None)
                    continue
                body = A1111ValidationError if model is A1111Error and code == 422 else model
                responses[str(code)] = {"description": _DESCRIPTIONS[code],
                                        "content": {"application/json": {"schema": _ref(components, body)}}}
            if route.endpoint is common.health:
                # /health answers 503 with its own body when a service is down.
                responses["503"] = {"description": "A service is not serving",
                                    "content": {"application/json": {"schema": _ref(components,
                                                                                    common.HealthResponse)}}}
    return schema


def openapi_with_errors(app: FastAPI) -> None:
    original = app.openapi

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_error_responses(app, original())
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]
