"""The orchestrator core: durable jobs over the job store, run by the worker loops against the backends.

Plain Python; the servicer only converts. `execute` is the raw backend call of one single-call JobSpec;
`submit`/`run_job`/`watch`/`cancel_job` are the job API; workflows, statistics, selections and the image
gallery sit beside them.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from google.protobuf.message import Message
from opentelemetry import propagate

from services.orchestrator import media
from services.orchestrator.backends import Backends
from services.orchestrator.execution import (
    GRPC_CODE_KEY,
    CallOutcome,
    JobOutcome,
    OnProgress,
)
from services.orchestrator.execution import (
    run_job as run_claimed_job,
)
from services.orchestrator.metrics import JobMetrics
from services.orchestrator.runner import ClaimSink, JobRunner, Pulse
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.store import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    STATUS_NAME,
    TERMINAL,
    AsyncStore,
    NewJob,
    spec_hash,
)
from services.orchestrator.webhooks import WebhookSender
from services.orchestrator.workflows import Registry, Workflow
from shared import clients, ssrf
from shared.errors import Cancelled, ImageMeshError, Internal, InvalidArgument, NotImplementedYet
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import generate_service_pb2 as gen_pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
from shared.image_store import LocalImageStore, StoredImage

COST = common_pb2.Cost.DESCRIPTOR.full_name
M = TypeVar("M", bound=Message)


class WebhookSecretMissing(InvalidArgument):
    reason = "WEBHOOK_SECRET_MISSING"


def error_from_detail(detail: common_pb2.ErrorDetail) -> ImageMeshError:
    """The ImageMeshError a failed job recorded, rebuilt so a synchronous caller sees the backend's reason and
    status code (the code travels in the detail's `grpc_code` metadata, which is not handed back)."""
    metadata = dict(detail.metadata)
    code = metadata.pop(GRPC_CODE_KEY, "")
    classes, pending = [], [ImageMeshError]
    while pending:
        cls = pending.pop(0)
        classes.append(cls)
        pending.extend(cls.__subclasses__())
    chosen = next((c for c in classes if c.reason == detail.reason and (not code or c.grpc_code.name == code)), None)
    if chosen is None:
        # A reason without its own class (IMAGE_NOT_FOUND, WORKER_LOST): the first class with the same status code.
        chosen = next((c for c in classes if code and c.grpc_code.name == code), Internal)
    error = chosen(detail.message, reason=detail.reason or None)
    error.metadata = metadata
    return error


def _model_of(spec: pb.JobSpec) -> str:
    kind = spec.WhichOneof("spec")
    if kind == "generate":
        return spec.generate.model
    if kind == "remove_background":
        return spec.remove_background.model
    if kind == "upscale":
        return spec.upscale.method
    return ""


@dataclass
class ImagePage:
    images: list[StoredImage]
    total: int


@dataclass
class WorkflowEstimate:
    workflow: Workflow
    seconds: float
    cost_usd: float
    source: str


@dataclass
class QueueStats:
    counts: dict[str, int]
    counts_24h: dict[str, int]
    models: dict[str, dict[str, int]]
    model_average_s: dict[str, float]
    average_s: float
    failure_rate: float
    queue_size: int
    total: int


@dataclass
class WorkCounts:
    """One kind of work (generations, or derived work) within an analytics period."""

    total: int = 0
    successful: int = 0
    failed: int = 0
    cost_usd: float = 0.0
    models_used: dict[str, int] = field(default_factory=dict)

    def add(self, status: str, model_id: str, cost_usd: float) -> None:
        self.total += 1
        self.successful += status == COMPLETED
        self.failed += status == FAILED
        self.cost_usd += cost_usd
        if model_id:
            self.models_used[model_id] = self.models_used.get(model_id, 0) + 1


@dataclass
class DailyCounts:
    date: str
    jobs: int
    cost_cents: int
    generations: int
    derived: int


@dataclass
class Analytics:
    period_days: int
    total: int
    successful: int
    failed: int
    success_rate: float
    total_cost_cents: int
    average_processing_s: float
    models_used: dict[str, int] = field(default_factory=dict)
    daily: list[DailyCounts] = field(default_factory=list)
    generations: WorkCounts = field(default_factory=WorkCounts)
    derived: WorkCounts = field(default_factory=WorkCounts)


class OrchestratorCore:
    def __init__(self, settings: OrchestratorSettings, backends: Backends, store: AsyncStore,
                 images: LocalImageStore, registry: Registry, metrics: JobMetrics | None = None) -> None:
        self.settings = settings
        self.backends = backends
        self.store = store
        self.images = images
        self.registry = registry
        self.pulse = Pulse()
        self.policy = ssrf.UrlPolicy.from_setting(settings.url_allow_list)
        self.runner = JobRunner(
            store, self._run_claimed, workers=settings.job_workers, lease_s=settings.lease_s,
            heartbeat_s=settings.heartbeat_s, poll_interval_s=settings.poll_interval_s,
            max_attempts=settings.max_job_attempts, pulse=self.pulse, metrics=metrics,
            progress_interval_s=settings.progress_interval_s,
        )
        self.webhooks = WebhookSender(
            store, self.policy, delays_s=settings.webhook_retry_delays_s, jitter=settings.webhook_jitter,
            max_retry_after_s=settings.webhook_max_retry_after_s, timeout_s=settings.webhook_timeout_s,
            poll_interval_s=settings.webhook_poll_interval_s,
        )
        # Images (uploads, then outputs) of the jobs a synchronous caller (run_job) waits for, by job id then ref:
        # later steps and the answer use the bytes in hand instead of reading back what was just written.
        self._held: dict[str, dict[str, common_pb2.Image]] = {}
        # Set by the shotgun wiring: runs a ShotgunSpec and returns its summary.
        self.shotgun_runner: Callable[[pb.ShotgunSpec], Awaitable[pb.ShotgunSummary]] | None = None

    async def start(self) -> None:
        await self.runner.start()
        self.webhooks.start()

    async def stop(self, grace_s: float = 0.0) -> None:
        await self.runner.stop(grace_s)
        await self.webhooks.stop()

    # --- one backend call --------------------------------------------------------------------------------------

    async def execute(self, spec: pb.JobSpec, on_progress: OnProgress | None = None) -> pb.JobResult:
        """Run one single-call spec against its backend and return its result; errors propagate. Backends that
        stream progress (Generate) report it through `on_progress`."""
        kind = spec.WhichOneof("spec")
        timeout = self.settings.backend_timeout_s
        if kind == "upscale":
            return pb.JobResult(upscale=await clients.call(self.backends.upscale.Upscale, spec.upscale,
                                                           timeout=timeout))
        if kind == "relight":
            return pb.JobResult(relight=await clients.call(self.backends.upscale.Relight, spec.relight,
                                                           timeout=timeout))
        if kind == "optimize_social":
            return pb.JobResult(optimize_social=await clients.call(
                self.backends.upscale.OptimizeSocial, spec.optimize_social, timeout=timeout))
        if kind == "remove_background":
            return pb.JobResult(remove_background=await clients.call(
                self.backends.background_removal.RemoveBackground, spec.remove_background, timeout=timeout))
        if kind == "generate":
            return pb.JobResult(generate=await self._generate(spec.generate, on_progress))
        if kind == "shotgun" and self.shotgun_runner is not None:
            return pb.JobResult(shotgun=await self.shotgun_runner(spec.shotgun))
        if kind is None:
            raise InvalidArgument("job spec is empty", field="spec")
        raise NotImplementedYet(f"jobs of kind {kind!r} are not available yet in this deployment", kind=kind)

    async def _generate(self, parameters, on_progress: OnProgress | None):
        """Generate through its stream, so denoising steps reach the job's progress (004's "Step 15/30")."""
        request = gen_pb.GenerateStreamRequest(parameters=parameters)
        async for event in clients.stream(self.backends.generate.GenerateStream, request,
                                          timeout=self.settings.backend_timeout_s):
            if event.WhichOneof("event") == "result":
                return event.result
            if on_progress is not None:
                await on_progress(event.progress)
        raise Internal("the generate stream ended without a result")

    async def call_backend(self, spec: pb.JobSpec, job: pb.Job, on_progress: OnProgress | None = None) -> CallOutcome:
        """`execute`, priced (measured service seconds x the device class's price) and with its output images
        moved into the image store under the job's owner: generated images with their recipe, the rest as
        derived work."""
        # Backends get the pixels inline, read here under the job's owner: no backend reads the image store (one
        # given a reference answers IMAGE_REF_NOT_ACCEPTED), and a spec can never reach another owner's image by
        # naming its reference.
        held = self._held.get(job.id)
        spec = await self.resolve_images(spec, job.owner, held)
        started = time.perf_counter()
        result = await self.execute(spec, on_progress)
        wall_s = time.perf_counter() - started
        reported = next(iter(media.messages_of(result, COST)), common_pb2.Cost())
        seconds = reported.device_seconds or wall_s
        device_class = reported.device_class or self.settings.default_device_class
        cost = common_pb2.Cost(usd=seconds * self.settings.price_per_second_usd.get(device_class, 0.0),
                               device_seconds=seconds, device_class=device_class)
        kind = spec.WhichOneof("spec")
        model_id = _model_of(spec)
        if kind == "generate" and result.generate.metadata.model_id:
            model_id = result.generate.metadata.model_id
        elif kind == "remove_background" and result.remove_background.model_id:
            model_id = result.remove_background.model_id
        elif kind == "upscale" and result.upscale.method_used:
            model_id = result.upscale.method_used
        if kind == "generate":
            # The name the client asked for (a dialect's alias) travels as a job label; a workflow step has none.
            requested = job.labels.get("model_requested", "") if job.kind == "generate" else ""
            image_kind, metadata = media.GENERATED, {"action": kind}
            per_image = media.generation_records(spec.generate, result.generate, requested)
        else:
            image_kind, per_image = media.DERIVED, None
            metadata = {"model_id": model_id, "prompt": job.spec.workflow.prompt, "action": kind or ""}
        stored = await asyncio.to_thread(media.externalize, result, self.images, job.owner, job.id, metadata,
                                         image_kind, per_image)
        if held is not None:
            held.update(stored)
        return CallOutcome(result, list(media.images_in(result)), cost, model_id)

    async def _run_claimed(self, job: pb.Job, sink: ClaimSink) -> JobOutcome:
        return await run_claimed_job(job, sink, self.call_backend, self.registry)

    # --- the job API -------------------------------------------------------------------------------------------

    async def submit(self, spec: pb.JobSpec, owner: str, idempotency_key: str = "",
                     webhook: pb.Webhook | None = None, labels: dict[str, str] | None = None,
                     held: dict[str, common_pb2.Image] | None = None) -> pb.Job:
        """Create a job. `held` (run_job's) collects the job's images inline as this process stores them (its
        uploads, then its outputs); it is registered before the row exists, so even a job that finishes at once
        is caught."""
        kind = spec.WhichOneof("spec")
        if kind is None:
            raise InvalidArgument("job spec is empty", field="spec")
        workflow_id = ""
        if kind == "workflow":
            workflow_id = self.registry.get(spec.workflow.workflow_id).id
        url, secret, progress = "", "", False
        if webhook is not None and webhook.url:
            await ssrf.resolve_checked(webhook.url, self.policy, "webhook_url")
            url, progress = webhook.url, webhook.include_progress
            secret = webhook.secret or self.settings.webhook_secrets.get(owner) or self.settings.webhook_default_secret
            if not secret:
                raise WebhookSecretMissing(
                    "no webhook secret: pass one, or configure IMAGEMESH_WEBHOOK_SECRETS for this key",
                    field="webhook_secret")
        # Hashed as submitted (inline images included), before images move to the store under fresh refs.
        digest = spec_hash(spec) if idempotency_key else ""
        if idempotency_key:
            existing = await self.store.find_idempotent(owner, idempotency_key, digest)
            if existing is not None:
                return existing
        new = NewJob(owner=owner, kind=kind, spec=pb.JobSpec(), model_id=_model_of(spec), workflow_id=workflow_id,
                     idempotency_key=idempotency_key, spec_hash=digest, labels=dict(labels or {}), webhook_url=url,
                     webhook_secret=secret, webhook_progress=progress)
        propagate.inject(new.trace_context)
        new.spec.CopyFrom(spec)
        # Uploaded images go to the image store; the row keeps references.
        stored = await asyncio.to_thread(media.externalize, new.spec, self.images, owner, new.id, None,
                                         media.INPUT)
        if held is not None:
            held.update(stored)  # the uploads: the backend gets them from memory too
            self._held[new.id] = held
        created = False
        try:
            job, created = await self.store.create_job(new)
        finally:
            if not created:
                self._held.pop(new.id, None)
                # The earlier job of a repeated key answers, or the submit was refused (a key reused for another
                # request, a full queue): these uploads belong to no job.
                for ref, _ in stored:
                    await asyncio.to_thread(self.images.delete, ref)
        if created:
            self.runner.wake.set()
        return job

    async def get_job(self, job_id: str, owner: str) -> pb.Job:
        return await self.store.get_job(job_id, owner)

    async def list_jobs(self, owner: str | None, statuses: list[str], kind: str, model_id: str, page_size: int,
                        page_token: str) -> tuple[list[pb.Job], str, int]:
        return await self.store.list_jobs(owner, statuses, kind, model_id, page_size, page_token)

    async def cancel_job(self, job_id: str, owner: str) -> pb.Job:
        job = await self.store.request_cancel(job_id, owner)
        # Running here: interrupt now (the backend call is cancelled with it). Running in another replica:
        # its heartbeat sees the flag.
        if job.status == common_pb2.JOB_STATUS_RUNNING and self.runner.interrupt(job_id, "cancel"):
            job = await self.wait(job_id, owner)
        self.pulse.notify()
        return job

    async def watch(self, job_id: str, owner: str) -> AsyncIterator[tuple[int, pb.Job, str]]:
        """(event type, job, step name) until the terminal status event."""
        job = await self.store.get_job(job_id, owner)
        version = await self.store.version(job_id)
        yield pb.JOB_EVENT_TYPE_STATUS, job, ""
        while STATUS_NAME[job.status] not in TERMINAL:
            await self.pulse.wait(self.settings.watch_poll_s)
            current = await self.store.version(job_id)
            if current == version:
                continue
            version = current
            previous, job = job, await self.store.get_job(job_id, owner)
            before = {s.name: (s.status, s.attempts) for s in previous.steps}
            for step in job.steps:
                if before.get(step.name) != (step.status, step.attempts):
                    yield pb.JOB_EVENT_TYPE_STEP, job, step.name
            if job.progress != previous.progress and STATUS_NAME[job.status] not in TERMINAL:
                yield pb.JOB_EVENT_TYPE_PROGRESS, job, ""
            if job.status != previous.status:
                yield pb.JOB_EVENT_TYPE_STATUS, job, ""

    async def wait(self, job_id: str, owner: str | None) -> pb.Job:
        while True:
            job = await self.store.get_job(job_id, owner)
            if STATUS_NAME[job.status] in TERMINAL:
                return job
            await self.pulse.wait(self.settings.watch_poll_s)

    async def run_job(self, spec: pb.JobSpec, owner: str, labels: dict[str, str],
                      idempotency_key: str = "") -> pb.Job:
        """Submit and wait; the terminal job comes back with its images inline. A failed job raises the error
        it recorded (the backend's reason, e.g. IMAGE_TOO_LARGE), so a synchronous caller can render it."""
        held: dict[str, common_pb2.Image] = {}
        job = await self.submit(spec, owner, idempotency_key, labels=labels, held=held)
        try:
            job = await self.wait(job.id, owner)
        except asyncio.CancelledError:
            # The synchronous caller went away: nobody will read this result.
            await asyncio.shield(self.store.request_cancel(job.id, owner))
            self.runner.interrupt(job.id, "cancel")
            raise
        finally:
            if self._held.get(job.id) is held:
                del self._held[job.id]
        status = STATUS_NAME[job.status]
        if status == FAILED and not job.result.WhichOneof("result"):
            raise error_from_detail(job.error)
        if status == CANCELLED:
            raise Cancelled(job.error.message or "the job was cancelled", job_id=job.id)
        # Outputs stored by this process come from `held`; only a job run elsewhere (another replica, an earlier
        # job of the same idempotency key) is read back from the store.
        await asyncio.to_thread(media.hydrate, job.result, self.images, owner, held)
        return job

    # --- workflows ---------------------------------------------------------------------------------------------

    async def list_workflows(self) -> list[WorkflowEstimate]:
        out = []
        for workflow in sorted(self.registry.workflows.values(), key=lambda w: w.id):
            history = await self.store.workflow_history(workflow.id)
            if history:
                out.append(WorkflowEstimate(workflow, statistics.median(s for s, _ in history),
                                            statistics.median(c for _, c in history), "history"))
            else:
                out.append(WorkflowEstimate(workflow, workflow.estimated_seconds, workflow.estimated_cost_usd,
                                            "configured"))
        return out

    async def execute_workflow(self, spec: pb.WorkflowSpec, owner: str, idempotency_key: str,
                               webhook: pb.Webhook | None) -> pb.Job:
        return await self.submit(pb.JobSpec(workflow=spec), owner, idempotency_key, webhook,
                                 {"workflow": spec.workflow_id})

    # --- queue, analytics ----------------------------------------------------------------------------------------

    async def queue_stats(self, owner: str = "") -> QueueStats:
        owner_filter = owner or None
        counts = await self.store.status_counts(owner_filter)
        recent = await self.store.status_counts(owner_filter, since=time.time() - 86400)
        models = await self.store.status_counts(owner_filter, by_model=True)
        model_avg = await self.store.average_processing(owner_filter, by_model=True)
        average = (await self.store.average_processing(owner_filter))[""]
        finished = counts.get(COMPLETED, 0) + counts.get(FAILED, 0)
        return QueueStats(
            counts=counts, counts_24h=recent, models={m: c for m, c in models.items() if m},
            model_average_s=model_avg, average_s=average,
            failure_rate=counts.get(FAILED, 0) / finished if finished else 0.0,
            queue_size=counts.get(PENDING, 0), total=sum(counts.values()),
        )

    async def reset_queue(self, owner: str = "") -> tuple[int, int]:
        requeued, failed = await self.store.reset_stalled(self.settings.max_job_attempts, owner or None)
        if requeued or failed:
            self.runner.wake.set()
            self.pulse.notify()
        return requeued, failed

    def _generates(self, kind: str, workflow_id: str) -> bool:
        """Whether a job is a generation (for analytics): generate, or a workflow with a generate step."""
        if kind == "generate":
            return True
        workflow = self.registry.workflows.get(workflow_id) if kind == "workflow" else None
        return workflow is not None and any(step.action == "generate" for step in workflow.steps)

    async def analytics(self, owner: str, days: int = 30) -> Analytics:
        days = days if days > 0 else 30
        if days > 3660:
            raise InvalidArgument("days must be at most 3660", field="days", max=3660)
        since = time.time() - days * 86400
        rows = await self.store.owner_jobs_since(owner, since)
        completed = [r for r in rows if r[0] == COMPLETED]
        failed = sum(1 for r in rows if r[0] == FAILED)
        models: dict[str, int] = {}
        daily: dict[str, list[float]] = {}
        work = {True: WorkCounts(), False: WorkCounts()}
        for status, model_id, created_at, _seconds, cost, kind, workflow_id in rows:
            generation = self._generates(kind, workflow_id)
            if model_id:
                models[model_id] = models.get(model_id, 0) + 1
            work[generation].add(status, model_id, cost or 0.0)
            day = time.strftime("%Y-%m-%d", time.gmtime(created_at))
            entry = daily.setdefault(day, [0, 0.0, 0, 0])
            entry[0] += 1
            entry[1] += cost or 0.0
            entry[2 if generation else 3] += 1
        times = [r[3] for r in completed if r[3] is not None]
        total_cost = sum(r[4] or 0.0 for r in rows)
        return Analytics(
            period_days=days, total=len(rows), successful=len(completed), failed=failed,
            success_rate=round(100.0 * len(completed) / len(rows), 1) if rows else 0.0,
            total_cost_cents=round(total_cost * 100), average_processing_s=statistics.fmean(times) if times else 0.0,
            models_used=models,
            daily=[DailyCounts(day, int(n), round(cost * 100), int(generations), int(derived))
                   for day, (n, cost, generations, derived) in sorted(daily.items())],
            generations=work[True], derived=work[False],
        )

    # --- selections ----------------------------------------------------------------------------------------------

    async def log_selection(self, job_id: str, owner: str, model_id: str, category: str, notes: str) -> str:
        if not model_id:
            raise InvalidArgument("selected_model_id is required", field="selected_model_id")
        if job_id:
            await self.store.get_job(job_id, owner)  # NOT_FOUND for another owner's job
        return await self.store.log_selection(job_id, owner, model_id, category or "general", notes)

    async def selection_ranking(self, category: str = "") -> list[tuple[str, int]]:
        return await self.store.ranking(category)

    async def rank(self, category: str) -> list[str]:
        """Model ids most picked first for a category (the shotgun's top-k and "auto")."""
        return [model_id for model_id, _ in await self.store.ranking(category)]

    # --- images --------------------------------------------------------------------------------------------------

    async def resolve_images(self, message: M, owner: str, held: dict[str, common_pb2.Image] | None = None) -> M:
        """A copy of `message` with every image reference replaced by its bytes: from `held` (a synchronous job's
        own images, still in memory) or read under `owner`."""
        message = type(message).FromString(message.SerializeToString())
        await asyncio.to_thread(media.hydrate, message, self.images, owner, held)
        return message

    async def get_image(self, ref: str, owner: str) -> tuple[bytes, StoredImage]:
        return await asyncio.to_thread(self.images.get, ref, owner)

    async def delete_image(self, ref: str, owner: str) -> None:
        await asyncio.to_thread(self.images.delete, ref, owner)

    async def list_images(self, owner: str, page: int, page_size: int, search: str, model_id: str,
                          kinds: list[str] | None = None) -> ImagePage:
        """The gallery: generated images by default; derived work and uploaded inputs only when asked for."""
        page = max(1, page)
        page_size = 20 if page_size <= 0 else min(page_size, 100)
        wanted = set(kinds or [media.GENERATED])
        records = await asyncio.to_thread(self.images.list, owner, search=search, model_id=model_id)
        records = [r for r in records if r.kind in wanted]
        start = (page - 1) * page_size
        return ImagePage(records[start:start + page_size], len(records))


__all__ = ["RUNNING", "OrchestratorCore", "error_from_detail"]
