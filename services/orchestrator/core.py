"""The orchestrator core: durable jobs over the job store, run by the worker loops against the backends.

Plain Python; the servicer only converts. `execute` is the raw backend call of one single-call JobSpec;
`submit`/`run_job`/`watch`/`cancel_job` are the job API; workflows, statistics, selections and the image
gallery sit beside them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from google.protobuf.message import Message
from opentelemetry import propagate

from services.orchestrator import media
from services.orchestrator.backends import Backends
from services.orchestrator.catalog import MeshCatalog
from services.orchestrator.execution import (
    CallOutcome,
    JobOutcome,
    OnProgress,
    StepFailed,
)
from services.orchestrator.execution import (
    run_job as run_claimed_job,
)
from services.orchestrator.job_runner import ClaimSink, JobRunner, Pulse
from services.orchestrator.job_store import (
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
from services.orchestrator.metrics import JobMetrics
from services.orchestrator.pricing import PriceTable, sum_costs
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.webhooks import FORMAT_LABEL as WEBHOOK_FORMAT_LABEL
from services.orchestrator.webhooks import FORMATS as webhook_formats
from services.orchestrator.webhooks import FREEPIK as FREEPIK_FORMAT
from services.orchestrator.webhooks import WebhookSender
from services.orchestrator.workflows import Workflow, WorkflowCatalog
from shared import clients, ssrf
from shared.errors import (
    Cancelled,
    ImageMeshError,
    Internal,
    InvalidArgument,
    NotImplementedYet,
    SubjectMaskRequired,
    from_detail,
)
from shared.gen.imagemesh.v1 import background_removal_service_pb2 as br_pb
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import generate_service_pb2 as gen_pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
from shared.image_store import ImageStore, StoredImage
from shared.images import ImageLimits

log = logging.getLogger("imagemesh.orchestrator")
# Job label holding what Generate said it would run, checked at submit (JSON: model_id, width, height, steps,
# guidance_scale, notes).
PLAN_LABEL = "generate_plan"
COST = common_pb2.Cost.DESCRIPTOR.full_name
M = TypeVar("M", bound=Message)


class WebhookSecretMissing(InvalidArgument):
    reason = "WEBHOOK_SECRET_MISSING"


def _batch_progress(on_progress: OnProgress | None, start: int, count: int, total: int) -> OnProgress | None:
    """Progress of one batch as progress of the whole job: images numbered within the job, fraction of all."""
    if on_progress is None:
        return None

    async def forward(event: common_pb2.Progress) -> None:
        scaled = common_pb2.Progress()
        scaled.CopyFrom(event)
        scaled.image_index = start + event.image_index
        scaled.fraction = (start + event.fraction * count) / total
        await on_progress(scaled)

    return forward


def _merge(merged: gen_pb.GenerateResponse, reply: gen_pb.GenerateResponse, start: int) -> None:
    """Append one batch's images (indexes within the job) and add up its timings and cost."""
    for item in reply.images:
        merged.images.add(image=item.image, seed=item.seed, index=start + item.index)
    if not merged.HasField("metadata"):
        merged.metadata.CopyFrom(reply.metadata)
    else:
        meta, more = merged.metadata, reply.metadata
        for name in ("queue_ms", "load_ms", "inference_ms", "encode_ms", "total_ms"):
            setattr(meta.timings, name, getattr(meta.timings, name) + getattr(more.timings, name))
        meta.cost.usd += more.cost.usd
        meta.cost.device_seconds += more.cost.device_seconds
    merged.notes.extend(note for note in reply.notes if note not in merged.notes)


def _model_of(spec: pb.JobSpec) -> str:
    kind = spec.WhichOneof("spec")
    if kind == "generate":
        return spec.generate.model
    if kind == "remove_background":
        return spec.remove_background.model
    if kind == "upscale":
        return spec.upscale.method
    return ""


def _models_of_job(job: pb.Job) -> list[str] | None:
    """The models a selection may name for a shotgun job (seed 002): every model of its results, failed ones
    included, or the ones it names before it has run. None when that cannot be told (an "all" shotgun still
    pending) or the job is not a shotgun (a selection then only records a preference)."""
    if job.result.WhichOneof("result") == "shotgun":
        return [r.model_id for r in job.result.shotgun.results]
    if job.kind != "shotgun":
        return None
    named = [m for m in job.spec.shotgun.models if m]
    if named and not any(m in ("all", "auto") for m in named) and job.spec.shotgun.top_k <= 0:
        return named
    return None


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
    cost: common_pb2.Cost = field(default_factory=common_pb2.Cost)
    models_used: dict[str, int] = field(default_factory=dict)

    def add(self, status: str, model_id: str, cost: common_pb2.Cost) -> None:
        self.total += 1
        self.successful += status == COMPLETED
        self.failed += status == FAILED
        self.cost = sum_costs([self.cost, cost])
        if model_id:
            self.models_used[model_id] = self.models_used.get(model_id, 0) + 1


@dataclass
class DailyCounts:
    date: str
    jobs: int = 0
    cost: common_pb2.Cost = field(default_factory=common_pb2.Cost)
    generations: int = 0
    derived: int = 0

    def add(self, cost: common_pb2.Cost, generation: bool) -> None:
        self.jobs += 1
        self.cost = sum_costs([self.cost, cost])
        self.generations += generation
        self.derived += not generation


@dataclass
class Analytics:
    period_days: int
    total: int
    successful: int
    failed: int
    success_rate: float
    total_cost: common_pb2.Cost
    average_processing_s: float
    models_used: dict[str, int] = field(default_factory=dict)
    daily: list[DailyCounts] = field(default_factory=list)
    generations: WorkCounts = field(default_factory=WorkCounts)
    derived: WorkCounts = field(default_factory=WorkCounts)


@dataclass
class CostEstimate:
    cost: common_pb2.Cost
    credits: float
    usd_per_credit: float
    source: str


async def ranked_models(store: AsyncStore, category: str) -> list[str]:
    """The selection store's ranking as a RankingSource body: model ids most picked first for a category."""
    return [model_id for model_id, _ in await store.ranking(category)]


class OrchestratorCore:
    def __init__(self, settings: OrchestratorSettings, backends: Backends, store: AsyncStore,
                 images: ImageStore, registry: WorkflowCatalog, metrics: JobMetrics | None = None,
                 shotgun_runner: Callable[[pb.ShotgunSpec], Awaitable[pb.ShotgunSummary]] | None = None) -> None:
        """`shotgun_runner` runs a ShotgunSpec and returns its summary (services/orchestrator/shotgun.py);
        without it, shotgun jobs answer NOT_IMPLEMENTED."""
        self.settings = settings
        self.backends = backends
        self.store = store
        self.images = images
        self.registry = registry
        self.catalog = MeshCatalog(backends)
        self.prices = PriceTable.from_settings(settings)
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
        self.shotgun_runner = shotgun_runner
        self._upload_limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
        # Images (uploads, then outputs) of the jobs a synchronous caller (run_job) waits for, by job id then ref:
        # later steps and the answer use the bytes in hand instead of reading back what was just written.
        self._held: dict[str, dict[str, common_pb2.Image]] = {}

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

    async def _generate(self, parameters: gen_pb.GenerateParameters,
                        on_progress: OnProgress | None) -> gen_pb.GenerateResponse:
        """Generate, chaining BackgroundRemoval when Generate asks for the image's subject mask (an inpaint whose
        search prompt names the main subject: Generate's rule, docs/generate.md)."""
        try:
            return await self._generate_batches(parameters, on_progress)
        except SubjectMaskRequired:
            if parameters.HasField("subject_mask") or not parameters.HasField("init_image"):
                raise
        cut = await clients.call(self.backends.background_removal.RemoveBackground, br_pb.RemoveBackgroundRequest(
            image=parameters.init_image, output_format=common_pb2.IMAGE_FORMAT_PNG,
            options=br_pb.RemovalOptions(only_mask=True)), timeout=self.settings.backend_timeout_s)
        with_mask = gen_pb.GenerateParameters()
        with_mask.CopyFrom(parameters)
        with_mask.subject_mask.CopyFrom(cut.image)
        reply = await self._generate_batches(with_mask, on_progress)
        reply.notes.append(f"subject mask by background removal ({cut.model_id})")
        return reply

    async def _generate_batches(self, parameters: gen_pb.GenerateParameters,
                                on_progress: OnProgress | None) -> gen_pb.GenerateResponse:
        """One Generate request, or, past the model's per-request image limit, consecutive requests of at most
        that many images whose seeds continue image by image, merged into one response."""
        total = parameters.num_images or 1
        limit = await self._image_limit(parameters.model) if total > 1 else 0
        if not limit or total <= limit:
            return await self._generate_once(parameters, on_progress)
        if total > self.settings.max_images_per_job:
            raise InvalidArgument(f"num_images {total} is more than the {self.settings.max_images_per_job} images "
                                  "one job may ask for", field="num_images", max=self.settings.max_images_per_job)
        seed = parameters.seed if parameters.HasField("seed") and parameters.seed >= 0 else None
        merged = gen_pb.GenerateResponse()
        for start in range(0, total, limit):
            part = gen_pb.GenerateParameters()
            part.CopyFrom(parameters)
            part.num_images = min(limit, total - start)
            if seed is not None:
                part.seed = seed + start
            reply = await self._generate_once(part, _batch_progress(on_progress, start, part.num_images, total))
            if seed is None and reply.images:
                # A random first seed: the later batches continue from the one Generate drew.
                seed = reply.images[0].seed
            _merge(merged, reply, start)
        merged.notes.append(f"generated in {-(-total // limit)} requests of at most {limit} images (the model's "
                            "per-request limit)")
        return merged

    async def _generate_once(self, parameters: gen_pb.GenerateParameters,
                             on_progress: OnProgress | None) -> gen_pb.GenerateResponse:
        """Generate through its stream, so denoising steps reach the job's progress (004's "Step 15/30")."""
        request = gen_pb.GenerateStreamRequest(parameters=parameters)
        async for event in clients.stream(self.backends.generate.GenerateStream, request,
                                          timeout=self.settings.backend_timeout_s):
            if event.WhichOneof("event") == "result":
                return event.result
            if on_progress is not None:
                await on_progress(event.progress)
        raise Internal("the generate stream ended without a result")

    async def _image_limit(self, model: str) -> int:
        """Generate's per-request image limit for `model` (0 when unknown: Generate then answers for itself)."""
        try:
            listing = await self.catalog.section(pb.CATALOG_SECTION_GENERATION_MODELS)
        except ImageMeshError as exc:
            # No listing (a Generate that lists nothing, or one briefly away): one call, and Generate's own limit
            # check answers if the request is too big.
            log.warning("generate's model listing failed (%s): running the job as one call", exc.reason)
            return 0
        wanted = model.strip().lower()
        for info in listing.models:
            names = {info.id.lower(), *(alias.lower() for alias in info.aliases)}
            if wanted in names or (wanted in ("", "auto", "default") and info.id == listing.default_model):
                return info.max_images_per_request
        return 0

    async def call_backend(self, spec: pb.JobSpec, job: pb.Job, on_progress: OnProgress | None = None) -> CallOutcome:
        """`execute`, priced (measured device seconds x the price table, pricing.py) and with its output images
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
        cost = self._price(result, wall_s)
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

    def _price(self, result: pb.JobResult, wall_s: float) -> common_pb2.Cost:
        """The call's cost from the backend's measured seconds and class (wall time when it measured none), with
        the priced figure written back into the result, so the result a client reads says what the job says."""
        kind = result.WhichOneof("result") or ""
        if kind == "shotgun":
            # Each model was priced with this same table as it finished (shotgun.py); the job is their sum.
            summary = result.shotgun
            total = sum_costs([r.cost for r in summary.results])
            summary.total_cost.CopyFrom(total)
            summary.total_cost_usd = total.usd
            return total
        reported = next(iter(media.messages_of(result, COST)), None)
        if reported is None:
            return self.prices.price(wall_s, service=kind)
        return self.prices.reprice(reported, kind, fallback_seconds=wall_s)

    async def _run_claimed(self, job: pb.Job, sink: ClaimSink) -> JobOutcome:
        try:
            outcome = await run_claimed_job(job, sink, self.call_backend, self.registry)
        except StepFailed as exc:
            await self._drop_refused_inputs(job, exc.error)
            raise
        except ImageMeshError as exc:
            await self._drop_refused_inputs(job, exc)
            raise
        if outcome.error is not None:
            await self._drop_refused_inputs(job, outcome.error)
        return outcome

    async def _drop_refused_inputs(self, job: pb.Job, error: ImageMeshError) -> None:
        """A backend refused the job's input (a 400/413/422 error: an image it cannot read, too large for it):
        the uploads stored for this job are deleted, so rejected input is never kept or served. Only this
        job's own uploads (kind input, this job id) go; an image the spec names by reference stays."""
        if error.http_status not in (400, 413, 422):
            return

        def drop() -> int:
            dropped = 0
            for ref in media.refs_in(job.spec):
                try:
                    record = self.images.record(ref)
                    if record.kind == media.INPUT and record.job_id == job.id:
                        self.images.delete(ref)
                        dropped += 1
                except ImageMeshError:
                    continue
            return dropped

        dropped = await asyncio.to_thread(drop)
        if dropped:
            log.info("job %s: input refused (%s); %d stored upload(s) deleted", job.id, error.reason, dropped)

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
        await self._check_names(spec)
        planned = await self._check_generate(spec)
        if planned is not None:
            labels = {**(labels or {}), PLAN_LABEL: planned}
        url, secret, progress = "", "", False
        if webhook is not None and webhook.url:
            await ssrf.resolve_checked(webhook.url, self.policy, "webhook_url")
            url, progress = webhook.url, webhook.include_progress
            secret = webhook.secret or self.settings.webhook_secrets.get(owner) or self.settings.webhook_default_secret
            if not secret:
                raise WebhookSecretMissing(
                    "no webhook secret: pass one, or configure IMAGEMESH_WEBHOOK_SECRETS for this key",
                    field="webhook_secret")
            if webhook.format and webhook.format not in webhook_formats:
                raise InvalidArgument(f"unknown webhook format '{webhook.format[:32]}'; supported: "
                                      f"{', '.join(webhook_formats)}", field="webhook.format")
            # The body format rides with the job (webhooks.py shapes each delivery from the job).
            labels = {**(labels or {}), WEBHOOK_FORMAT_LABEL: webhook.format or FREEPIK_FORMAT}
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
        # Checked (header only) before anything is written: refused input is never stored.
        stored = await asyncio.to_thread(media.externalize, new.spec, self.images, owner, new.id, None,
                                         media.INPUT, None, self._upload_limits)
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

    async def _check_generate(self, spec: pb.JobSpec) -> str | None:
        """A generation Generate would refuse (a size, steps or guidance past the model's limits, an unknown
        model) is refused at submit with Generate's own error, not accepted and failed later. What Generate would
        run (model, size, steps, guidance, notes) comes back as JSON for the job's `generate_plan` label. Generate
        away or older (no CheckParameters): None, and Generate answers when the job runs."""
        if spec.WhichOneof("spec") != "generate":
            return None
        parameters = gen_pb.GenerateParameters()
        parameters.CopyFrom(spec.generate)
        parameters.num_images = 1  # past Generate's per-request limit the job is split (_generate): not checked here
        try:
            plan = await clients.call(self.backends.generate.CheckParameters,
                                      gen_pb.CheckParametersRequest(parameters=parameters),
                                      timeout=self.settings.submit_check_timeout_s)
        except ImageMeshError as exc:
            if exc.http_status in (400, 413):
                raise
            log.warning("generate could not check a submit (%s): checked when the job runs", exc.reason)
            return None
        return json.dumps({"model_id": plan.model_id, "width": plan.width, "height": plan.height,
                           "steps": plan.steps, "guidance_scale": round(plan.guidance_scale, 4),
                           "notes": list(plan.notes)}, separators=(",", ":"))

    async def _check_names(self, spec: pb.JobSpec) -> None:
        """A name the owning service does not list is refused at submit (INVALID_ARGUMENT), not accepted and failed
        later: a relight's lighting_style (or a workflow's lighting_style parameter) against Upscale's own list of
        styles. A catalogue that cannot be read now
        leaves the check to the service when the job runs."""
        kind = spec.WhichOneof("spec")
        style: object = ""
        if kind == "relight":
            style = spec.relight.lighting_style
        elif kind == "workflow" and "lighting_style" in spec.workflow.params:
            style = spec.workflow.params["lighting_style"]  # a workflow's relight step takes it (000's example)
        if not style or not isinstance(style, str):
            return
        try:
            listing = await self.catalog.section(pb.CATALOG_SECTION_UPSCALE_METHODS)
        except ImageMeshError as exc:
            log.warning("upscale's catalogue could not be read (%s): lighting_style checked when the job runs",
                        exc.reason)
            return
        styles = list(listing.lighting_styles)
        if styles and style.lower() not in styles:
            raise InvalidArgument(f"unknown lighting_style '{style[:64]}'; supported: "
                                  f"{', '.join(sorted(styles))}", field="lighting_style", supported=sorted(styles))

    async def get_job(self, job_id: str, owner: str) -> pb.Job:
        return await self.store.get_job(job_id, owner)

    async def list_jobs(self, owner: str | None, statuses: list[str], kind: str, model_id: str, page_size: int,
                        page_token: str) -> tuple[list[pb.Job], str, int]:
        jobs, token, total = await self.store.list_jobs(owner, statuses, kind, model_id, page_size, page_token)
        # A listing carries no previews (a page of running jobs would carry one picture each): GetJob and
        # WatchJob do.
        for job in jobs:
            job.progress.ClearField("preview")
        return jobs, token, total

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
        await self.store.get_job(job_id, owner)  # the owner's check, before anything is read
        # The version first, then the job: a job read before its version can be older than that version, and a
        # change made between the two reads (a fast job finishing) would never be seen as a change.
        version = await self.store.version(job_id)
        job = await self.store.get_job(job_id, owner)
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
            raise from_detail(job.error)
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
            out.append(await self._workflow_estimate(workflow))
        return out

    async def _workflow_estimate(self, workflow: Workflow) -> WorkflowEstimate:
        """Past runs' median seconds and cost (each priced by this table when it ran); without history, the
        definition's seconds priced as device seconds of the default class."""
        history = await self.store.workflow_history(workflow.id)
        if history:
            return WorkflowEstimate(workflow, statistics.median(s for s, _ in history),
                                    statistics.median(c for _, c in history), "history")
        priced = self.prices.price(workflow.estimated_seconds, service="workflow")
        return WorkflowEstimate(workflow, workflow.estimated_seconds, priced.usd, "configured")

    async def estimate_cost(self, action: str, model_id: str = "", width: int = 0, height: int = 0,
                            count: int = 0) -> CostEstimate:
        """What work would cost, from the same table as finished work: a workflow id uses its estimate (times
        count); any other action the catalogue's seconds per megapixel (pricing.py)."""
        if action in self.registry.workflows:
            estimate = await self._workflow_estimate(self.registry.workflows[action])
            n = count or 1
            cost = common_pb2.Cost(usd=estimate.cost_usd * n, device_seconds=estimate.seconds * n,
                                   device_class=self.prices.default_device_class)
            source = estimate.source
        else:
            cost, source = self.prices.estimate(action, model_id, width, height, count), "configured"
        return CostEstimate(cost, self.prices.credits(cost.usd), self.prices.usd_per_credit, source)

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
        daily: dict[str, DailyCounts] = {}
        work = {True: WorkCounts(), False: WorkCounts()}
        for status, model_id, created_at, _seconds, cost, kind, workflow_id in rows:
            generation = self._generates(kind, workflow_id)
            if model_id:
                models[model_id] = models.get(model_id, 0) + 1
            work[generation].add(status, model_id, cost)
            day = time.strftime("%Y-%m-%d", time.gmtime(created_at))
            daily.setdefault(day, DailyCounts(day)).add(cost, generation)
        times = [r[3] for r in completed if r[3] is not None]
        # Sums of the jobs' own recorded figures, never a re-pricing: analytics says what GetJob said.
        return Analytics(
            period_days=days, total=len(rows), successful=len(completed), failed=failed,
            success_rate=round(100.0 * len(completed) / len(rows), 1) if rows else 0.0,
            total_cost=sum_costs([r[4] for r in rows]),
            average_processing_s=statistics.fmean(times) if times else 0.0, models_used=models,
            daily=[daily[day] for day in sorted(daily)],
            generations=work[True], derived=work[False],
        )

    # --- selections ----------------------------------------------------------------------------------------------

    async def log_selection(self, job_id: str, owner: str, model_id: str, category: str, notes: str) -> str:
        if not model_id:
            raise InvalidArgument("selected_model_id is required", field="selected_model_id")
        if job_id:
            job = await self.store.get_job(job_id, owner)  # NOT_FOUND for another owner's job
            ran = _models_of_job(job)
            if ran is not None and model_id not in ran:
                # Seed 002: a selection names one of the models of that job (validation_error).
                raise InvalidArgument(
                    f"selected_model_id '{model_id[:100]}' was not part of job {job_id}; its models: "
                    f"{', '.join(ran) or 'none'}", field="selected_model_id", reason="VALIDATION_ERROR",
                    received=model_id[:100], models=ran)
        return await self.store.log_selection(job_id, owner, model_id, category or "general", notes)

    async def selection_ranking(self, category: str = "") -> list[tuple[str, int]]:
        return await self.store.ranking(category)

    async def rank(self, category: str) -> list[str]:
        """Model ids most picked first for a category (the shotgun's top-k and "auto")."""
        return await ranked_models(self.store, category)

    # --- images --------------------------------------------------------------------------------------------------

    async def resolve_images(self, message: M, owner: str, held: dict[str, common_pb2.Image] | None = None) -> M:
        """A copy of `message` with every image reference replaced by its bytes: from `held` (a synchronous job's
        own images, still in memory) or read under `owner`."""
        message = type(message).FromString(message.SerializeToString())
        await asyncio.to_thread(media.hydrate, message, self.images, owner, held)
        return message

    async def get_image(self, ref: str, owner: str, *, thumbnail: bool = False) -> tuple[bytes, StoredImage]:
        if not thumbnail:
            return await asyncio.to_thread(self.images.get, ref, owner)
        record = await asyncio.to_thread(self.images.record, ref, owner)
        return await asyncio.to_thread(self.images.get_thumbnail, ref, owner), record

    async def image_url(self, ref: str, owner: str, *, thumbnail: bool = False) -> tuple[str | None, StoredImage]:
        """A direct URL for the image (or its thumbnail) when the store gives one (S3: presigned, expiring after
        image_url_expires_s); None for a local store, whose bytes the gateway serves."""
        record = await asyncio.to_thread(self.images.record, ref, owner)
        url = await asyncio.to_thread(self.images.url_for, ref, owner, self.settings.image_url_expires_s,
                                      thumbnail=thumbnail)
        return url, record

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


__all__ = ["RUNNING", "OrchestratorCore"]
