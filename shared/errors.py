"""The one error hierarchy of imagemesh.

Each class carries its gRPC status code, its HTTP status and an UPPER_SNAKE reason (the google-api-core
pattern). Services raise these from plain-Python cores; `shared.interceptors.ErrorMappingInterceptor` maps
them to a gRPC status with a `google.rpc.ErrorInfo` detail in one place, and `error_from_rpc` rebuilds the
same exception on the client side, so the gateway can render the reason in each dialect's format.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from shared.gen.imagemesh.v1 import common_pb2

ERROR_DOMAIN = "imagemesh.dev"


class ImageMeshError(Exception):
    """Base class: an error with a gRPC code, an HTTP status and a machine-readable reason."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500
    reason: str = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None, **metadata: Any) -> None:
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason
        # ErrorInfo metadata is a string map; keep it that way from the start so both ends agree.
        self.metadata: dict[str, str] = {k: _to_str(v) for k, v in metadata.items() if v is not None}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason}: {self.message})"


def _to_str(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


class InvalidArgument(ImageMeshError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400
    reason = "INVALID_ARGUMENT"


class MissingImage(InvalidArgument):
    reason = "MISSING_IMAGE"


class InvalidFormat(InvalidArgument):
    reason = "INVALID_FORMAT"


class InvalidModel(InvalidArgument):
    reason = "INVALID_MODEL"


class PromptTooLong(InvalidArgument):
    reason = "PROMPT_TOO_LONG"


class ImageTooLarge(ImageMeshError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 413
    reason = "IMAGE_TOO_LARGE"


class NotFound(ImageMeshError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404
    reason = "NOT_FOUND"


class AlreadyExists(ImageMeshError):
    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    http_status = 409
    reason = "ALREADY_EXISTS"


class FailedPrecondition(ImageMeshError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 409
    reason = "FAILED_PRECONDITION"


class IdempotencyKeyReused(FailedPrecondition):
    """An idempotency key the owner already used for a different request (as Stripe answers it)."""

    reason = "IDEMPOTENCY_KEY_REUSED"


class SubjectMaskRequired(FailedPrecondition):
    """Generate needs the background-removal subject mask of the image (a search prompt naming the subject); the
    orchestrator, which chains services, fetches it and asks again."""

    reason = "SUBJECT_MASK_REQUIRED"


class Unauthenticated(ImageMeshError):
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401
    reason = "INVALID_API_KEY"


class PermissionDenied(ImageMeshError):
    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403
    reason = "PERMISSION_DENIED"


class ResourceExhausted(ImageMeshError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429
    reason = "RESOURCE_EXHAUSTED"


class QueueFull(ResourceExhausted):
    reason = "QUEUE_FULL"


class RateLimited(ResourceExhausted):
    reason = "RATE_LIMIT_EXCEEDED"


class ModelUnavailable(ImageMeshError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503
    reason = "MODEL_UNAVAILABLE"


class ServiceUnavailable(ImageMeshError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503
    reason = "SERVICE_UNAVAILABLE"


class DeadlineExceeded(ImageMeshError):
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504
    reason = "DEADLINE_EXCEEDED"


class Cancelled(ImageMeshError):
    grpc_code = grpc.StatusCode.CANCELLED
    http_status = 499
    reason = "CANCELLED"


class NotImplementedYet(ImageMeshError):
    """A capability that is declared in the contract but not built (yet) in this deployment."""

    grpc_code = grpc.StatusCode.UNIMPLEMENTED
    http_status = 501
    reason = "NOT_IMPLEMENTED"


class Internal(ImageMeshError):
    grpc_code = grpc.StatusCode.INTERNAL
    http_status = 500
    reason = "INTERNAL"


# The class a client rebuilds for a status code when the server sent no ErrorInfo (or an unknown reason).
_CLASS_BY_CODE: dict[grpc.StatusCode, type[ImageMeshError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: ServiceUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNIMPLEMENTED: NotImplementedYet,
}


def _all_subclasses(cls: type[ImageMeshError]) -> list[type[ImageMeshError]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


def _class_for(code: grpc.StatusCode, reason: str) -> type[ImageMeshError]:
    for cls in _all_subclasses(ImageMeshError):
        if cls.reason == reason and cls.grpc_code == code:
            return cls
    return _CLASS_BY_CODE.get(code, Internal)


# Bounds on what an error carries over the wire: gRPC's metadata (grpc-message, percent-encoded, and the status
# details) defaults to 8 KiB, and a message that echoes a client's 10k-character id would overflow it (the client then
# sees RESOURCE_EXHAUSTED instead of the error). UTF-8 bytes, so percent-encoding stays well inside the limit.
MAX_WIRE_MESSAGE_BYTES = 512
MAX_WIRE_METADATA_VALUE_BYTES = 256
MAX_WIRE_METADATA_BYTES = 1536


def bounded(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` UTF-8 bytes (on a character boundary), marked with an ellipsis when cut."""
    data = text.encode("utf-8", "replace")
    if len(data) <= max_bytes:
        return text
    return data[: max_bytes - 3].decode("utf-8", "ignore") + "…"


def wire_message(error: ImageMeshError) -> str:
    return bounded(error.message, MAX_WIRE_MESSAGE_BYTES)


def wire_metadata(error: ImageMeshError) -> dict[str, str]:
    out: dict[str, str] = {}
    budget = MAX_WIRE_METADATA_BYTES
    for key, value in error.metadata.items():
        key = bounded(key, 64)
        value = bounded(value, MAX_WIRE_METADATA_VALUE_BYTES)
        size = len(key.encode()) + len(value.encode())
        if size > budget:
            break
        budget -= size
        out[key] = value
    return out


def to_rpc_status(error: ImageMeshError) -> status_pb2.Status:
    """The google.rpc.Status (with ErrorInfo) that carries `error` over gRPC, bounded in size."""
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=wire_metadata(error))
    detail = any_pb2.Any()
    detail.Pack(info)
    return status_pb2.Status(code=error.grpc_code.value[0], message=wire_message(error), details=[detail])


def error_from_rpc(exc: grpc.RpcError) -> ImageMeshError:
    """Rebuild the ImageMeshError a server raised, from a failed call (reason and metadata kept)."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    message = exc.details() if hasattr(exc, "details") else str(exc)
    reason, metadata = None, {}
    status = None
    try:
        status = rpc_status.from_call(exc)  # works for sync calls
    except Exception:  # noqa: BLE001 - aio errors are not calls; fall through to trailing metadata
        status = None
    if status is None:
        for key, value in (exc.trailing_metadata() or ()) if hasattr(exc, "trailing_metadata") else ():
            if key == "grpc-status-details-bin":
                status = status_pb2.Status.FromString(value)
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Is(info.DESCRIPTOR):
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
    if code == grpc.StatusCode.UNAVAILABLE and reason is None:
        reason = ServiceUnavailable.reason
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and reason is None:
        message = message or "deadline exceeded"
    cls = _class_for(code, reason or "")
    error = cls(message or code.name.lower(), reason=reason)
    error.metadata = metadata
    return error


def status_code_name(code: int) -> str:
    return code_pb2.Code.Name(code)


# ErrorDetail metadata key that keeps an error's gRPC status code with a recorded job, step or per-model result, so
# a caller reading it later (RunJob, a dialect) can raise the same status again.
GRPC_CODE_KEY = "grpc_code"


def to_detail(error: ImageMeshError, message: str | None = None) -> common_pb2.ErrorDetail:
    """The ErrorDetail recorded for `error` (a job's, a step's, a shotgun model's); `from_detail` reverses it."""
    return common_pb2.ErrorDetail(reason=error.reason, message=message if message is not None else error.message,
                                  metadata={**error.metadata, GRPC_CODE_KEY: error.grpc_code.name})


def from_detail(detail: common_pb2.ErrorDetail) -> ImageMeshError:
    """The ImageMeshError a recorded detail describes: the class with its reason and status code, else the first
    with its status code (reasons without a class of their own: IMAGE_NOT_FOUND, WORKER_LOST), else INTERNAL."""
    metadata = dict(detail.metadata)
    code = metadata.pop(GRPC_CODE_KEY, "")
    classes = [ImageMeshError, *_all_subclasses(ImageMeshError)]
    chosen = next((c for c in classes if c.reason == detail.reason and (not code or c.grpc_code.name == code)), None)
    if chosen is None:
        chosen = next((c for c in classes if code and c.grpc_code.name == code), Internal)
    error = chosen(detail.message, reason=detail.reason or None)
    error.metadata = metadata
    return error
