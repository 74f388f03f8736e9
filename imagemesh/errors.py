"""Errors the SDK raises: one class for what the gateway answered, one for a gateway that cannot be reached."""

from __future__ import annotations

from typing import Any


class ImageMeshError(Exception):
    """The gateway answered with an error. `code` is the mesh's reason (INVALID_MODEL, TASK_NOT_FOUND, ...) or the
    dialect's error type; `status` the HTTP status."""

    def __init__(self, message: str, *, status: int = 0, code: str = "", details: dict[str, Any] | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details or {}
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.code else self.message


class ConnectionFailed(ImageMeshError):
    """The gateway could not be reached (refused, timed out, name not found)."""


def from_response(status: int, body: Any, retry_after: float | None = None) -> ImageMeshError:
    """The error in any of the gateway's dialect formats (Freepik, shotgun, FLUX, Image Studio, CyberImage)."""
    code, message, details = "", "", {}
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            code = str(error.get("code") or error.get("type") or "")
            message = str(error.get("message") or "")
            details = error.get("details") if isinstance(error.get("details"), dict) else {}
        elif isinstance(error, str):
            message = error
        elif isinstance(body.get("detail"), str):
            message = body["detail"]
        elif isinstance(body.get("detail"), list):  # FastAPI's validation list
            message = "; ".join(f"{'.'.join(map(str, d.get('loc', [])[1:]))}: {d.get('msg')}" for d in body["detail"])
        elif isinstance(body.get("message"), str):
            message = body["message"]
    elif isinstance(body, str):
        message = body.strip()[:300]
    return ImageMeshError(message or f"HTTP {status}", status=status, code=code, details=details,
                          retry_after=retry_after)
