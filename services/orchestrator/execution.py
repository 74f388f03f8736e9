"""Running one claimed job: a single service call as a one-step job, or a workflow as a DAG of steps.

Every step's state is written through `StepSink` (fenced by the worker's claim), so a job taken over after a
crash resumes: steps already completed keep their outputs and are not run again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

from services.orchestrator.job_store import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    SKIPPED,
    STATUS_NAME,
    StepRecord,
)
from services.orchestrator.pricing import sum_costs
from services.orchestrator.workflows import Scope, StepDef, Workflow, WorkflowCatalog, build_spec, resolve
from shared.errors import (
    DeadlineExceeded,
    ImageMeshError,
    InvalidArgument,
    ModelUnavailable,
    ResourceExhausted,
    ServiceUnavailable,
    to_detail,
)
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb

log = logging.getLogger("imagemesh.orchestrator.execution")

# Failures worth another attempt: the backend was away, busy or slow. A bad request stays bad.
RETRYABLE = (ServiceUnavailable, ModelUnavailable, ResourceExhausted, DeadlineExceeded)


@dataclass
class CallOutcome:
    result: pb.JobResult
    outputs: list[common_pb2.Image]
    cost: common_pb2.Cost
    model_id: str = ""


# Receives a backend's own progress events (denoising steps) while a call runs.
OnProgress = Callable[[common_pb2.Progress], Awaitable[None]]
# Runs one single-call JobSpec against its backend and stores its output images (core.call_backend).
Caller = Callable[[pb.JobSpec, pb.Job, OnProgress | None], Awaitable[CallOutcome]]


class StepSink(Protocol):
    async def save_step(self, step: StepRecord, progress: common_pb2.Progress | None = None) -> None: ...

    async def save_progress(self, progress: common_pb2.Progress) -> None: ...


class StepFailed(Exception):
    def __init__(self, step: str, error: ImageMeshError) -> None:
        super().__init__(f"step {step!r} failed: {error.message}")
        self.step = step
        self.error = error
        # What the steps that did run cost (a failed workflow still used its devices).
        self.cost: common_pb2.Cost | None = None


@dataclass
class JobOutcome:
    status: str
    result: pb.JobResult | None
    cost: common_pb2.Cost
    model_id: str = ""
    error: ImageMeshError | None = None


def _record(step: StepDef) -> StepRecord:
    return StepRecord(name=step.name, index=step.index, action=step.action, status=PENDING,
                      depends_on=list(step.depends_on), optional=step.optional)


def _from_proto(step: pb.JobStep) -> StepRecord:
    return StepRecord(name=step.name, index=step.index, action=step.action, status=STATUS_NAME[step.status],
                      depends_on=list(step.depends_on), optional=step.optional, attempts=step.attempts,
                      outputs=list(step.outputs), cost=step.cost,
                      started_at=step.started_at.ToNanoseconds() / 1e9 if step.HasField("started_at") else None,
                      finished_at=step.finished_at.ToNanoseconds() / 1e9 if step.HasField("finished_at") else None)


async def run_single(job: pb.Job, sink: StepSink, call: Caller) -> JobOutcome:
    """A one-call job, recorded as a single step named after its kind."""
    step = StepRecord(name=job.kind, index=1, action=job.kind, status=RUNNING, attempts=1, started_at=time.time())
    try:
        await sink.save_step(step)
        outcome = await call(job.spec, job, sink.save_progress)
    except ImageMeshError as exc:
        step.status, step.error, step.finished_at = FAILED, to_detail(exc), time.time()
        await sink.save_step(step)
        raise
    except asyncio.CancelledError:
        step.status, step.finished_at = CANCELLED, time.time()
        await _quietly(sink.save_step(step))
        raise
    status = COMPLETED
    if outcome.result.WhichOneof("result") == "shotgun":
        # 002: some models failed = partial; every model failed = the job failed.
        # The job still carries the summary: each model's error is the report a caller wants.
        status = STATUS_NAME.get(outcome.result.shotgun.status, COMPLETED)
    error = None
    if status == FAILED:
        errors = [r.error for r in outcome.result.shotgun.results if r.error]
        error = ModelUnavailable(f"every model failed: {'; '.join(errors) or 'no result'}")
        step.error = to_detail(error)
    step.status, step.outputs, step.cost, step.finished_at = status, outcome.outputs, outcome.cost, time.time()
    await sink.save_step(step, common_pb2.Progress(stage=common_pb2.STAGE_DONE, fraction=1.0, message=status))
    return JobOutcome(status, outcome.result, outcome.cost, outcome.model_id, error)


@dataclass
class WorkflowRun:
    workflow: Workflow
    job: pb.Job
    sink: StepSink
    call: Caller
    records: dict[str, StepRecord] = field(default_factory=dict)
    outputs: dict[str, list[common_pb2.Image]] = field(default_factory=dict)

    async def run(self) -> JobOutcome:
        spec = self.job.spec.workflow
        params = {**self.workflow.params, **_struct_to_dict(spec.params)}
        previous = {step.name: _from_proto(step) for step in self.job.steps}
        for step in self.workflow.steps:
            self.records[step.name] = previous.get(step.name) or _record(step)
        running: dict[asyncio.Task, str] = {}
        try:
            await self._prepare(previous)
            scope = Scope(request=spec, params=params, outputs=self.outputs)
            await self._loop(scope, running)
        except BaseException as exc:
            if isinstance(exc, StepFailed):
                exc.cost = sum_costs([r.cost for r in self.records.values()])
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            for record in self.records.values():
                # Interrupted mid-run: cancelled. Never started: skipped.
                if record.status in (PENDING, RUNNING):
                    record.status = CANCELLED if record.status == RUNNING else SKIPPED
                    record.finished_at = time.time()
                    await _quietly(self.sink.save_step(record))
            raise
        images = [image for name in self.workflow.output_steps for image in self.outputs.get(name, [])]
        values = {name: json.dumps({"status": record.status, "images": [i.ref for i in self.outputs.get(name, [])]})
                  for name, record in self.records.items()}
        result = pb.JobResult(workflow=pb.WorkflowOutputs(images=images, values=values))
        return JobOutcome(COMPLETED, result, sum_costs([r.cost for r in self.records.values()]))

    async def _prepare(self, previous: dict[str, StepRecord]) -> None:
        for step in self.workflow.steps:
            earlier = previous.get(step.name)
            if earlier is not None and earlier.status == COMPLETED:
                # Resumed after a lost worker: a finished step keeps its outputs and is not run again.
                self.records[step.name] = earlier
                self.outputs[step.name] = list(earlier.outputs)
            else:
                record = _record(step)
                record.attempts = earlier.attempts if earlier else 0
                self.records[step.name] = record
                await self.sink.save_step(record)

    async def _loop(self, scope: Scope, running: dict[asyncio.Task, str]) -> None:
        while True:
            for step in self.workflow.steps:
                record = self.records[step.name]
                if record.status != PENDING or any(self.records[d].status in (PENDING, RUNNING)
                                                   for d in step.depends_on):
                    continue
                if any(self.records[d].status != COMPLETED for d in step.depends_on):
                    record.status, record.finished_at = SKIPPED, time.time()
                    await self.sink.save_step(record, self._progress())
                    continue
                record.status = RUNNING
                running[asyncio.create_task(self._run_step(step, scope))] = step.name
            if not running:
                break
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                name = running.pop(task)
                error = task.exception()
                if error is None:
                    continue
                if not isinstance(error, StepFailed):
                    raise error
                if not self.workflow.step(name).optional:
                    raise error

    def _progress(self, current: StepDef | None = None) -> common_pb2.Progress:
        total = len(self.records)
        finished = sum(1 for r in self.records.values() if r.status in (COMPLETED, SKIPPED, FAILED))
        message = f"{finished}/{total} steps done"
        if current is not None:
            message = f"Step {current.index}/{total}: {current.action} ({current.name}); {message}"
        return common_pb2.Progress(stage=common_pb2.STAGE_GENERATING, step=finished, total_steps=total,
                                   fraction=finished / total if total else 0.0, message=message)

    async def _run_step(self, step: StepDef, scope: Scope) -> None:
        record = self.records[step.name]
        record.started_at = time.time()
        while True:
            record.attempts += 1
            record.status, record.error = RUNNING, None
            await self.sink.save_step(record, self._progress(step))
            try:
                outputs, costs = await asyncio.wait_for(self._attempt(step, scope), timeout=step.timeout_s)
            except (ImageMeshError, asyncio.TimeoutError) as exc:
                error = exc if isinstance(exc, ImageMeshError) else DeadlineExceeded(
                    f"step {step.name!r} exceeded its timeout of {step.timeout_s:g}s", step=step.name)
                if isinstance(error, RETRYABLE) and record.attempts < step.attempts:
                    log.info("step %s attempt %d failed (%s); retrying", step.name, record.attempts, error.reason)
                    await asyncio.sleep(step.backoff_s * 2 ** (record.attempts - 1))
                    continue
                record.status, record.error, record.finished_at = FAILED, to_detail(error), time.time()
                await self.sink.save_step(record, self._progress())
                raise StepFailed(step.name, error) from None
            self.outputs[step.name] = outputs
            record.status, record.outputs, record.finished_at = COMPLETED, outputs, time.time()
            record.cost = sum_costs(costs)
            await self.sink.save_step(record, self._progress())
            return

    async def _attempt(self, step: StepDef, scope: Scope) -> tuple[list[common_pb2.Image], list[common_pb2.Cost]]:
        if step.for_each:
            items = resolve(step.for_each, scope)
            if not isinstance(items, list):
                raise InvalidArgument(f"for_each of step {step.name!r} is not a list", field=step.name)
            scopes = [Scope(scope.request, scope.params, scope.outputs, item) for item in items]
        else:
            scopes = [scope]
        results = await asyncio.gather(*(self._one_call(step, s) for s in scopes))
        return [image for images, _ in results for image in images], [cost for _, cost in results]

    async def _one_call(self, step: StepDef, scope: Scope) -> tuple[list[common_pb2.Image], common_pb2.Cost]:
        params = resolve(step.params, scope)
        if step.action == "noop":
            return await _noop(params)
        async def on_progress(progress: common_pb2.Progress) -> None:
            overall = self._progress(step)
            overall.message = f"{overall.message}: {progress.message}" if progress.message else overall.message
            overall.stage, overall.image_index = progress.stage, progress.image_index
            if progress.HasField("preview"):
                overall.preview.CopyFrom(progress.preview)
            await self.sink.save_progress(overall)

        outcome = await self.call(build_spec(step.action, params), self.job, on_progress)
        return outcome.outputs, outcome.cost


async def _noop(params: dict[str, Any]) -> tuple[list[common_pb2.Image], common_pb2.Cost]:
    """The orchestrator's own step: waits `sleep_s`, passes `image`/`images` through unchanged."""
    await asyncio.sleep(float(params.get("sleep_s", 0)))
    images = []
    for key in ("image", "images"):
        value = params.get(key)
        images.extend(value if isinstance(value, list) else [value] if value is not None else [])
    if not all(isinstance(i, common_pb2.Image) for i in images):
        raise InvalidArgument("noop passes through images only", field="image")
    return images, common_pb2.Cost(device_seconds=0.0, device_class="")


async def _quietly(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:  # noqa: BLE001 - best effort while unwinding (the lease may already be gone)
        log.debug("could not record a step while unwinding", exc_info=True)


def _struct_to_dict(struct) -> dict[str, Any]:  # noqa: ANN001
    from google.protobuf import json_format

    params = json_format.MessageToDict(struct)
    # Struct numbers are doubles; an integral one is meant as an int (scale factors, counts).
    return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in params.items()}


async def run_job(job: pb.Job, sink: StepSink, call: Caller, registry: WorkflowCatalog) -> JobOutcome:
    if job.kind == "workflow":
        return await WorkflowRun(registry.get(job.spec.workflow.workflow_id), job, sink, call).run()
    return await run_single(job, sink, call)
