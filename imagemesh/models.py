"""Typed results of the SDK: plain dataclasses built from the gateway's JSON (the Freepik dialect at /v1, the
shotgun dialect's /remove-background, /health). Each keeps the raw JSON in `raw` for fields not modelled here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TERMINAL = frozenset({"completed", "failed", "cancelled", "partial"})


@dataclass(frozen=True)
class GenerateSubmission:
    """The answer to POST /v1/generate (seed 000's fields)."""

    task_id: str
    model_used: str
    status: str
    estimated_completion: str
    webhook_callback: bool
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> GenerateSubmission:
        return cls(task_id=body["task_id"], model_used=body.get("model_used", ""), status=body.get("status", ""),
                   estimated_completion=body.get("estimated_completion", ""),
                   webhook_callback=bool(body.get("webhook_callback")), raw=body)


@dataclass(frozen=True)
class Task:
    """A job as GET /v1/jobs/{id} shows it; `images` are every result's URL (stored image or data URI)."""

    task_id: str
    status: str
    kind: str | None = None
    model_used: str | None = None
    image_url: str | None = None
    images: tuple[str, ...] = ()
    progress: float | None = None
    processing_time: float | None = None
    created_at: str | None = None
    completed_at: str | None = None
    error: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Task:
        images = tuple(body.get("images") or ([body["image_url"]] if body.get("image_url") else []))
        return cls(task_id=body["task_id"], status=body["status"], kind=body.get("kind"),
                   model_used=body.get("model_used"), image_url=body.get("image_url"), images=images,
                   progress=body.get("progress"), processing_time=body.get("processing_time"),
                   created_at=body.get("created_at"), completed_at=body.get("completed_at"), error=body.get("error"),
                   raw=body)


@dataclass(frozen=True)
class JobPage:
    jobs: tuple[Task, ...]
    total: int
    next_page_token: str | None = None


@dataclass(frozen=True)
class ProgressEvent:
    """One event of a job's stream: `event` is status, progress, step or error."""

    task_id: str
    event: str
    status: str
    percentage: float = 0.0
    step: int = 0
    total_steps: int = 0
    stage: str = ""
    message: str = ""
    step_name: str = ""
    error: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_json(cls, event: str, body: dict[str, Any]) -> ProgressEvent:
        progress = body.get("progress") or {}
        return cls(task_id=body.get("task_id", ""), event=event, status=body.get("status", ""),
                   percentage=float(progress.get("percentage") or 0.0), step=int(progress.get("step") or 0),
                   total_steps=int(progress.get("total_steps") or 0), stage=progress.get("stage") or "",
                   message=progress.get("message") or "", step_name=body.get("step") or "", error=body.get("error"))


@dataclass(frozen=True)
class WorkflowInfo:
    id: str
    name: str
    description: str
    estimated_time: str
    estimated_cost: str
    steps_count: int

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> WorkflowInfo:
        return cls(id=body["id"], name=body.get("name", ""), description=body.get("description", ""),
                   estimated_time=body.get("estimated_time", ""), estimated_cost=body.get("estimated_cost", ""),
                   steps_count=int(body.get("steps_count") or 0))


@dataclass(frozen=True)
class WorkflowStep:
    step: int
    action: str
    status: str
    result_url: str | None = None


@dataclass(frozen=True)
class WorkflowExecution:
    """The answer to POST /v1/workflows/{id}/execute (seed 000's fields)."""

    workflow_execution_id: str
    workflow_name: str
    status: str
    estimated_completion: str
    steps: tuple[WorkflowStep, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> WorkflowExecution:
        steps = tuple(WorkflowStep(step=s["step"], action=s["action"], status=s["status"],
                                   result_url=s.get("result_url")) for s in body.get("steps") or [])
        return cls(workflow_execution_id=body["workflow_execution_id"], workflow_name=body.get("workflow_name", ""),
                   status=body.get("status", ""), estimated_completion=body.get("estimated_completion", ""),
                   steps=steps, raw=body)


@dataclass(frozen=True)
class Cutout:
    """One background-removal model's result; `image` is the PNG/WebP bytes when it succeeded."""

    model_id: str
    status: str
    image: bytes | None = field(default=None, repr=False)
    model_name: str | None = None
    error: str | None = None
    processing_time_ms: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True)
class Cutouts:
    job_id: str
    status: str
    results: tuple[Cutout, ...]
    total_cost_usd: float | None = None


@dataclass(frozen=True)
class Health:
    status: str
    version: str | None = None
    model: str | None = None
    device: str | None = None
    services: dict[str, str] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return self.status in ("healthy", "ok", "SERVING")

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Health:
        return cls(status=str(body.get("status", "")), version=body.get("version"), model=body.get("model"),
                   device=body.get("device"), services=dict(body.get("services") or {}))
