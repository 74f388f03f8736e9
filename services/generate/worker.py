"""One worker per device: a bounded queue in front, dynamic batching, pipelines run serially in one thread.

diffusers pipelines are not thread-safe (the scheduler keeps state), so a single thread owns the device.
Requests with the same batch key that arrive within `window_s` of the first one (or are already waiting
when the device frees up) run as one pipeline call of at most `max_batch_images` images.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from services.generate import control
from services.generate.loaded import ModelManager
from services.generate.metrics import GenerateMetrics
from services.generate.pipeline_call import Interrupted, run_batch, scheduler_name, truncation_notes
from services.generate.preview import Previewer, family_of
from services.generate.request import Plan
from shared.errors import Cancelled, ImageMeshError, Internal, QueueFull
from shared.gen.imagemesh.v1 import common_pb2

log = logging.getLogger("imagemesh.generate.worker")

ProgressFn = Callable[[common_pb2.Progress], None]


@dataclass
class Outcome:
    """What the worker hands back for one request."""

    images: list[Image.Image]
    scheduler: str
    queue_s: float
    load_s: float
    inference_s: float  # the whole batch's pipeline time
    device_seconds: float  # this request's share of it, by image count
    batch_requests: int
    batch_images: int
    notes: list[str] = field(default_factory=list)


@dataclass(eq=False)  # identity: two requests with equal parameters are still two jobs
class Job:
    plan: Plan
    loop: asyncio.AbstractEventLoop
    progress: ProgressFn | None
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)
    cancelled: threading.Event = field(default_factory=threading.Event)
    # The last step the device had finished when the job was cancelled while running (-1: not running).
    cancelled_at_step: int = -1

    def emit(self, event: common_pb2.Progress) -> None:
        """Thread-safe: progress callbacks run on the event loop, in order."""
        if self.progress is not None and not self.cancelled.is_set():
            self.loop.call_soon_threadsafe(self.progress, event)


@dataclass
class WorkerStats:
    """Counters tests and metrics read: how many batches ran, how big, and where interrupted calls stopped."""

    batches: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    interrupted: list[tuple[int, int]] = field(default_factory=list)  # (steps run, total steps)
    # Per interrupted call: steps that ran after the last caller cancelled (0 or 1: the step in flight).
    steps_after_cancel: list[int] = field(default_factory=list)


class DeviceWorker:
    def __init__(self, manager: ModelManager, *, max_queue: int, window_s: float, max_batch_images: int,
                 preload: list[Any] | None = None, metrics: GenerateMetrics | None = None,
                 previewer: Previewer | None = None) -> None:
        self.manager = manager
        self.previewer = previewer
        self.max_queue = max(0, max_queue)
        self.window_s = max(0.0, window_s)
        self.max_batch_images = max(1, max_batch_images)
        self.stats = WorkerStats()
        self.metrics = metrics
        self._preload = list(preload or [])
        self._pending: collections.deque[Job] = collections.deque()
        self._arrived: asyncio.Event | None = None
        self._running: list[Job] = []
        self._step = 0  # the last finished step of the running call (written by the device thread)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"generate-{manager.device.name}")
        self._task: asyncio.Task | None = None

    @property
    def batching(self) -> bool:
        return self.max_batch_images > 1

    @property
    def queued(self) -> int:
        return len(self._pending)

    def ensure_started(self) -> None:
        if self._task is None:
            self._arrived = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="generate-worker")

    def submit(self, plan: Plan, progress: ProgressFn | None) -> Job:
        self.ensure_started()
        if len(self._pending) >= self.max_queue:
            raise QueueFull(f"generation queue is full: {len(self._running)} running, {len(self._pending)} "
                            f"queued (limit {self.max_queue})", max_queue=self.max_queue)
        loop = asyncio.get_running_loop()
        job = Job(plan, loop, progress, loop.create_future())
        job.emit(common_pb2.Progress(stage=common_pb2.STAGE_QUEUED, queue_position=len(self._pending),
                                     total_steps=plan.steps, message=f"Queued at position {len(self._pending)}"))
        self._pending.append(job)
        self._set_queue_gauge()
        self._arrived.set()
        return job

    def cancel(self, job: Job) -> None:
        """Forget a queued job, or make a running batch stop at its next step if nobody else is in it."""
        if job in self._running:
            job.cancelled_at_step = self._step
        job.cancelled.set()
        if job in self._pending:
            self._pending.remove(job)
            self._set_queue_gauge()
        if not job.future.done():
            job.future.set_exception(Cancelled("generation cancelled by the client"))

    async def stop(self) -> None:
        for job in [*self._pending, *self._running]:
            self.cancel(job)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
        await asyncio.get_running_loop().run_in_executor(None, lambda: self._pool.shutdown(wait=True))
        self.manager.unload_all()

    # -- the loop -------------------------------------------------------------------------------------------
    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        for entry in self._preload:
            try:
                await loop.run_in_executor(self._pool, self.manager.acquire, entry, entry.operations[0])
            except ImageMeshError as exc:
                log.error("preloading %s failed: %s", entry.id, exc.message)
        while True:
            if not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            batch = await self._collect()
            if not batch:
                continue
            self._running = batch
            try:
                outcomes = await loop.run_in_executor(self._pool, self._run, batch)
            except Exception:
                log.exception("generation batch failed")
                outcomes = {id(job): Internal("generation failed") for job in batch}
            finally:
                self._running = []
            for job in batch:
                if not job.future.done():
                    result = outcomes[id(job)]
                    if isinstance(result, BaseException):
                        job.future.set_exception(result)
                    else:
                        job.future.set_result(result)

    async def _collect(self) -> list[Job]:
        first = self._pending.popleft()
        batch = [first]
        if self.batching and first.plan.num_images < self.max_batch_images:
            deadline = time.monotonic() + self.window_s
            while True:
                self._take_compatible(batch)
                remaining = deadline - time.monotonic()
                if sum(j.plan.num_images for j in batch) >= self.max_batch_images or remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    pass
        self._set_queue_gauge()
        # A job cancelled while the window was open has its answer already; drop it here.
        return [job for job in batch if not job.cancelled.is_set()]

    def _take_compatible(self, batch: list[Job]) -> None:
        key = batch[0].plan.batch_key()
        images = sum(j.plan.num_images for j in batch)
        for job in list(self._pending):
            if job.plan.batch_key() == key and images + job.plan.num_images <= self.max_batch_images:
                self._pending.remove(job)
                batch.append(job)
                images += job.plan.num_images

    # -- the device thread ----------------------------------------------------------------------------------
    def _run(self, batch: list[Job]) -> dict[int, Outcome | BaseException]:
        started = time.perf_counter()
        plan = batch[0].plan
        live = [job for job in batch if not job.cancelled.is_set()]
        if not live:
            return {id(job): Cancelled("generation cancelled by the client") for job in batch}

        def loading() -> None:
            for job in live:
                job.emit(common_pb2.Progress(stage=common_pb2.STAGE_LOADING, message=f"Loading model {plan.entry.id}"))

        # Search edits find their region first (a segmentation model); a request whose search finds nothing fails
        # alone.
        refused: dict[int, BaseException] = {}
        for job in live:
            try:
                control.resolve_region(self.manager, job.plan)
            except ImageMeshError as exc:
                refused[id(job)] = exc
        live = [job for job in live if id(job) not in refused]
        if not live:
            return {id(job): refused.get(id(job), Cancelled("generation cancelled by the client")) for job in batch}
        try:
            pipe, load_s = self.manager.acquire(plan.entry, plan.pipeline_operation, loading)
        except ImageMeshError as exc:
            return {id(job): exc for job in batch}
        # Callers may have left while the model loaded.
        live = [job for job in live if not job.cancelled.is_set()]
        if not live:
            return {id(job): Cancelled("generation cancelled by the client") for job in batch}
        n_images = sum(j.plan.num_images for j in live)

        previews = self._previews(pipe, plan, live)

        def on_step(step: int, total: int, latents: Any = None) -> None:
            self._step = step
            shown = previews(step, latents)
            for job in live:
                n = job.plan.num_images
                what = "image" if n == 1 else f"{n} images"
                job.emit(common_pb2.Progress(
                    stage=common_pb2.STAGE_GENERATING, step=step, total_steps=total, image_index=0,
                    fraction=step / total if total else 0.0, message=f"Generating {what}... Step {step}/{total}",
                    preview=shown.get(id(job)),
                ))

        def should_stop() -> bool:
            return all(job.cancelled.is_set() for job in live)

        inference_started = time.perf_counter()
        self._step = 0
        try:
            images = run_batch(pipe, [job.plan for job in live], on_step=on_step, should_stop=should_stop)
        except Interrupted as exc:
            log.info("generation interrupted after step %d of %d: every caller left", exc.step, exc.total)
            self.stats.interrupted.append((exc.step, exc.total))
            self.stats.steps_after_cancel.append(exc.step - max(max(job.cancelled_at_step for job in live), 0))
            if self.metrics is not None:
                self.metrics.interrupted.inc()
            return {id(job): Cancelled("generation cancelled by the client") for job in batch}
        except Exception as exc:
            log.exception("pipeline %s failed", plan.entry.id)
            return {id(job): Internal(f"generation failed: {type(exc).__name__}") for job in batch}
        inference_s = time.perf_counter() - inference_started
        self.stats.batches += 1
        self.stats.batch_sizes.append(len(live))
        if self.metrics is not None:
            self.metrics.observe_batch(plan.entry.id, len(live), n_images, inference_s)
        used_scheduler = scheduler_name(pipe, plan.scheduler)
        outcomes: dict[int, Outcome | BaseException] = {
            id(job): refused.get(id(job), Cancelled("generation cancelled by the client")) for job in batch
        }
        for job, job_images in zip(live, images):
            outcomes[id(job)] = Outcome(
                images=job_images, scheduler=used_scheduler, queue_s=started - job.enqueued, load_s=load_s,
                inference_s=inference_s, device_seconds=inference_s * job.plan.num_images / n_images,
                batch_requests=len(live), batch_images=n_images, notes=truncation_notes(pipe, job.plan),
            )
        return outcomes

    def _previews(self, pipe: Any, plan: Plan, live: list[Job]) -> Callable[[int, Any], dict[int, Any]]:
        """Per step: the preview of each watched job's first image when one is due (job id -> Image), else {}.
        Only jobs with a progress listener (streams) get one; a failed preview is logged, never fatal."""
        previewer = self.previewer
        watched = [(job, offset) for job, offset in zip(live, _offsets(live)) if job.progress is not None]
        if previewer is None or not previewer.config.enabled or not watched:
            return lambda step, latents: {}
        family = family_of(pipe, plan.entry)
        scale = int(getattr(pipe, "vae_scale_factor", 8) or 8)

        def previews(step: int, latents: Any) -> dict[int, Any]:
            if latents is None or not previewer.due(step):
                return {}
            jobs = [(job, offset) for job, offset in watched if not job.cancelled.is_set()]
            try:
                images = previewer.decode(latents, [offset for _, offset in jobs], family=family,
                                          width=plan.width, height=plan.height, vae_scale_factor=scale)
            except Exception:  # noqa: BLE001 - a preview must never fail a generation
                log.exception("preview of %s at step %d failed", plan.entry.id, step)
                return {}
            return {id(job): image for (job, _), image in zip(jobs, images)}

        return previews

    def _set_queue_gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(len(self._pending))


def _offsets(jobs: list[Job]) -> list[int]:
    """Index of each job's first image in the batch's latents."""
    offsets, at = [], 0
    for job in jobs:
        offsets.append(at)
        at += job.plan.num_images
    return offsets
