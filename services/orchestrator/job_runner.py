"""Worker loops of one orchestrator process: claim pending jobs (bounded), keep their leases alive, notice
cancels, take over jobs whose worker died, and write the outcome.

Any number of runners (processes, replicas) may share one database: the store's claim is a compare-and-set
and every write is fenced by the claim token, so a job never runs in two places at once; a runner that loses
its lease stops touching the job.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable

from opentelemetry import propagate

from services.orchestrator.execution import JobOutcome, StepFailed
from services.orchestrator.job_store import (
    CANCELLED,
    FAILED,
    AsyncStore,
    Claim,
    LostLease,
    StepRecord,
)
from services.orchestrator.metrics import JobMetrics
from shared import telemetry
from shared.errors import Cancelled, ImageMeshError, Internal, to_detail
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb

log = logging.getLogger("imagemesh.orchestrator.runner")

Execute = Callable[[pb.Job, "ClaimSink"], Awaitable[JobOutcome]]


class Pulse:
    """Wakes every waiter when something changed locally (a submit, a step, a finish)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            pass


class ClaimSink:
    """The fenced writes one running job may make."""

    def __init__(self, store: AsyncStore, claim: Claim, pulse: Pulse, progress_interval_s: float = 0.05) -> None:
        self.store, self.claim, self.pulse = store, claim, pulse
        self._last: asyncio.Future | None = None
        self._progress_at: float | None = None
        self._progress_stage: int | None = None
        self._preview: common_pb2.Image | None = None
        self.progress_interval_s = progress_interval_s

    async def _settle(self) -> None:
        if self._last is not None and not self._last.done():
            await asyncio.wait([self._last])

    async def save_step(self, step: StepRecord, progress: common_pb2.Progress | None = None) -> None:
        # Writes of one job land in order: a write whose caller was cancelled still runs to the end in its
        # thread, so the next write (e.g. "cancelled" after "running") waits for it instead of racing it.
        await self._settle()
        record = StepRecord(**vars(step))  # the caller keeps mutating its record
        await self._ordered(self.store.save_step(self.claim.job.id, self.claim.token, record, progress))

    async def save_progress(self, progress: common_pb2.Progress) -> None:
        # Backends may report many steps a second; the store gets at most one progress write per interval.
        # A change of stage (loading -> generating -> encoding) is always written: watchers must see it, and so
        # is a new preview. The job keeps only its latest preview: later progress carries it along (pollers of
        # status see it between previews), and the terminal write drops it, so a job row holds at most one
        # small preview, and only while the job runs.
        now = time.monotonic()
        fresh = progress.HasField("preview")
        if fresh:
            self._preview = progress.preview
        elif self._preview is not None:
            carried = common_pb2.Progress()
            carried.CopyFrom(progress)
            carried.preview.CopyFrom(self._preview)
            progress = carried
        same_stage = progress.stage == self._progress_stage
        if (same_stage and not fresh and self._progress_at is not None
                and now - self._progress_at < self.progress_interval_s):
            return
        self._progress_at, self._progress_stage = now, progress.stage
        await self._settle()
        await self._ordered(self.store.save_progress(self.claim.job.id, self.claim.token, progress))

    async def _ordered(self, write) -> None:
        self._last = asyncio.ensure_future(write)
        await asyncio.shield(self._last)
        self.pulse.notify()


class JobRunner:
    def __init__(self, store: AsyncStore, execute: Execute, *, workers: int = 4, lease_s: float = 30.0,
                 heartbeat_s: float = 5.0, poll_interval_s: float = 0.5, max_attempts: int = 3,
                 pulse: Pulse | None = None, worker_id: str = "", metrics: JobMetrics | None = None,
                 progress_interval_s: float = 0.05) -> None:
        self.store = store
        self.execute = execute
        self.workers = max(1, workers)
        self.lease_s, self.heartbeat_s, self.poll_interval_s = lease_s, heartbeat_s, poll_interval_s
        self.max_attempts = max_attempts
        self.progress_interval_s = progress_interval_s
        self.metrics = metrics
        self.pulse = pulse or Pulse()
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.wake = asyncio.Event()
        self.running: dict[str, tuple[asyncio.Task, Claim]] = {}
        # Why a running task was interrupted: "cancel" (a client asked), "lost" (lease gone), "stop" (shutdown).
        self._interrupted: dict[str, str] = {}
        self._tasks: list[asyncio.Task] = []
        self._stopping = False

    async def start(self) -> None:
        # Jobs left running by a dead process: requeued (or failed with WORKER_LOST) once their lease ran out.
        await self.recover()
        self._tasks = [asyncio.create_task(self._claim_loop(), name="jobs-claim"),
                       asyncio.create_task(self._heartbeat_loop(), name="jobs-heartbeat")]

    async def recover(self) -> tuple[int, int]:
        requeued, failed = await self.store.reset_stalled(self.max_attempts)
        if requeued or failed:
            log.warning("recovered stalled jobs: %d requeued, %d failed", requeued, failed)
            self.wake.set()
            self.pulse.notify()
        return requeued, failed

    def interrupt(self, job_id: str, why: str) -> bool:
        entry = self.running.get(job_id)
        if entry is None:
            return False
        self._interrupted.setdefault(job_id, why)
        entry[0].cancel()
        return True

    async def stop(self, grace_s: float = 0.0) -> None:
        """Stop claiming; give running jobs `grace_s` to finish, then hand the rest back to the queue."""
        self._stopping = True
        self.wake.set()
        # The claim loop is not cancelled mid-claim: a claim already sent to the database would still land in
        # its thread and strand the job as running with nobody to run it. It finishes its round and exits;
        # whatever it claimed is handled below like any running job.
        claim_loop, *others = self._tasks or [None]
        for task in others:
            task.cancel()
        if claim_loop is not None:
            try:
                await asyncio.wait_for(asyncio.shield(claim_loop), timeout=30)
            except TimeoutError:
                claim_loop.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.running and grace_s > 0:
            await asyncio.wait([task for task, _ in self.running.values()], timeout=grace_s)
        for job_id in list(self.running):
            self.interrupt(job_id, "stop")
        if self.running:
            await asyncio.gather(*(task for task, _ in self.running.values()), return_exceptions=True)

    async def _claim_loop(self) -> None:
        while not self._stopping:
            free = self.workers - len(self.running)
            claims = []
            if free > 0:
                try:
                    claims = await self.store.claim(self.worker_id, free, self.lease_s)
                except Exception:
                    log.exception("claiming jobs failed")
            for claim in claims:
                task = asyncio.create_task(self._run(claim), name=f"job-{claim.job.id}")
                self.running[claim.job.id] = (task, claim)
                if self.metrics is not None:
                    wait_s = time.time() - claim.job.created_at.ToNanoseconds() / 1e9
                    self.metrics.queue_wait.labels(claim.job.kind).observe(max(0.0, wait_s))
            if self.metrics is not None:
                self.metrics.running.set(len(self.running))
            if claims:
                self.pulse.notify()
            if (claims and len(claims) == free) or self._stopping:
                continue
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), self.poll_interval_s)
            except TimeoutError:
                pass

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                if self.running:
                    tokens = {job_id: claim.token for job_id, (_, claim) in self.running.items()}
                    for job_id, state in (await self.store.heartbeat(tokens, self.lease_s)).items():
                        if state in ("cancel", "lost"):
                            self.interrupt(job_id, state)
                await self.recover()
                if self.metrics is not None:
                    self.metrics.pending.set((await self.store.status_counts()).get("pending", 0))
            except Exception:
                log.exception("heartbeat failed")

    async def _run(self, claim: Claim) -> None:
        job_id, token = claim.job.id, claim.token
        sink = ClaimSink(self.store, claim, self.pulse, self.progress_interval_s)
        try:
            try:
                # The work joins the submitter's trace (W3C context stored with the job).
                with telemetry.tracer().start_as_current_span(
                        f"job {claim.job.kind}", context=propagate.extract(claim.trace_context),
                        attributes={"imagemesh.job_id": job_id, "imagemesh.job_kind": claim.job.kind}):
                    outcome = await self.execute(claim.job, sink)
                error = to_detail(outcome.error) if outcome.error is not None else None
                await self._finish(job_id, token, outcome.status, outcome.result, error, outcome.cost, outcome.model_id)
            except asyncio.CancelledError:
                why = self._interrupted.get(job_id, "stop")
                if why == "cancel":
                    await self._finish(job_id, token, CANCELLED, None, to_detail(
                        Cancelled("cancelled while running")), None)
                elif why == "stop":
                    await self.store.release(job_id, token)
                # "lost": another worker owns the job now; write nothing.
            except LostLease:
                log.warning("job %s: lease lost; another worker took it over", job_id)
            except StepFailed as exc:
                error = exc.error
                error.metadata.setdefault("step", exc.step)
                await self._fail(job_id, token, type(error)(f"step {exc.step!r} failed: {error.message}",
                                                             reason=error.reason, **error.metadata), exc.cost)
            except ImageMeshError as exc:
                await self._fail(job_id, token, exc)
            except Exception:
                log.exception("job %s crashed", job_id)
                await self._fail(job_id, token, Internal("internal error while running the job"))
        except LostLease:
            log.warning("job %s: lease lost before its outcome was written", job_id)
        except Exception:
            log.exception("job %s: could not record its outcome", job_id)
        finally:
            self.running.pop(job_id, None)
            self._interrupted.pop(job_id, None)
            if self.metrics is not None:
                self.metrics.running.set(len(self.running))
            self.wake.set()
            self.pulse.notify()

    async def _fail(self, job_id: str, token: str, error: ImageMeshError, cost: common_pb2.Cost | None = None) -> None:
        await self._finish(job_id, token, FAILED, None, to_detail(error), cost)

    async def _finish(self, job_id: str, token: str, status: str, *args) -> None:
        job = await self.store.finish(job_id, token, status, *args)
        if self.metrics is not None:
            self.metrics.finished.labels(job.kind, status).inc()
            seconds = (job.finished_at.ToNanoseconds() - job.started_at.ToNanoseconds()) / 1e9
            self.metrics.duration.labels(job.kind).observe(max(0.0, seconds))
