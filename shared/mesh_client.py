"""The one typed client every surface uses to reach the mesh: the gateway's dialects, the CLI and the SDKs.

It talks to the orchestrator only (jobs, images, workflows, selections, analytics and the catalogues the
orchestrator reads from the services that own them). It holds the channel, a deadline per kind of call, the
caller's owner (stamped on every request, so one key never sees another key's data) and retries on UNAVAILABLE
for the calls that are safe to repeat.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import grpc

from shared.clients import create_channel
from shared.errors import error_from_rpc
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2_grpc as pb_grpc

TERMINAL_STATUSES = frozenset({common_pb2.JOB_STATUS_COMPLETED, common_pb2.JOB_STATUS_FAILED,
                               common_pb2.JOB_STATUS_CANCELLED, common_pb2.JOB_STATUS_PARTIAL})


def status_name(status: int) -> str:
    """A JobStatus as the surfaces spell it: completed, failed, pending, ..."""
    return common_pb2.JobStatus.Name(status).removeprefix("JOB_STATUS_").lower()


def is_terminal(status: int) -> bool:
    return status in TERMINAL_STATUSES


def job_images(job: pb.Job) -> list[common_pb2.Image]:
    """The images a terminal job produced, whatever kind it was."""
    result = job.result
    kind = result.WhichOneof("result")
    if kind == "generate":
        return [item.image for item in result.generate.images]
    if kind in ("upscale", "remove_background", "relight"):
        return [getattr(result, kind).image]
    if kind == "optimize_social":
        return [item.image for item in result.optimize_social.images]
    if kind == "shotgun":
        return [item.image for item in result.shotgun.results if item.image.ByteSize()]
    if kind == "workflow":
        return list(result.workflow.images)
    return []


@dataclass(frozen=True)
class Deadlines:
    """Seconds each kind of call may take. `run` bounds the synchronous endpoints (a whole job); `watch` a stream."""

    read: float = 10.0
    write: float = 30.0
    run: float = 600.0
    watch: float = 3600.0


@dataclass(frozen=True)
class RetryPolicy:
    """Retries on UNAVAILABLE (a replica restarting, a connection not yet up): capped exponential backoff with
    jitter. Only calls that are safe to repeat are retried: reads, cancels, and submits that carry an
    idempotency key (the orchestrator answers a repeat with the first job)."""

    attempts: int = 3
    first_delay_s: float = 0.1
    max_delay_s: float = 1.0

    def delay(self, attempt: int) -> float:
        return min(self.max_delay_s, self.first_delay_s * 2**attempt) * (0.5 + random.random() / 2)


class MeshClient:
    def __init__(self, channel: grpc.aio.Channel, *, owner: str = "", deadlines: Deadlines | None = None,
                 retry: RetryPolicy | None = None) -> None:
        self.channel = channel
        self.owner = owner
        self.deadlines = deadlines or Deadlines()
        self.retry = retry or RetryPolicy()
        self._stub = pb_grpc.OrchestratorServiceStub(channel)

    @classmethod
    def connect(cls, address: str, *, max_message_bytes: int = 64 * 1024 * 1024, token: str = "",
                **kwargs: Any) -> MeshClient:
        """A client on a new channel to the orchestrator at `address` (host:port, a comma list, dns:///name:port);
        `token` is the mesh's service token (IMAGEMESH_INTERNAL_TOKEN), sent on every call when set."""
        return cls(create_channel(address, max_message_bytes, token), **kwargs)

    def as_owner(self, owner: str) -> MeshClient:
        """The same channel, calling on behalf of `owner` (cheap: one per request)."""
        client = MeshClient.__new__(MeshClient)
        client.__dict__.update(self.__dict__)
        client.owner = owner
        return client

    def with_deadlines(self, **seconds: float) -> MeshClient:
        client = self.as_owner(self.owner)
        client.deadlines = replace(self.deadlines, **seconds)
        return client

    async def close(self) -> None:
        await self.channel.close()

    # --- plumbing ------------------------------------------------------------------------------------------------

    async def _unary(self, method: str, request: Any, timeout: float, *, retry: bool) -> Any:
        attempts = self.retry.attempts if retry else 1
        for attempt in range(attempts):
            try:
                return await getattr(self._stub, method)(request, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt == attempts - 1:
                    raise error_from_rpc(exc) from None
            await asyncio.sleep(self.retry.delay(attempt))
        raise AssertionError("unreachable")

    async def _stream(self, method: str, request: Any, timeout: float) -> AsyncIterator[Any]:
        try:
            async for item in getattr(self._stub, method)(request, timeout=timeout):
                yield item
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None

    # --- jobs ----------------------------------------------------------------------------------------------------

    async def submit_job(self, spec: pb.JobSpec, *, labels: Mapping[str, str] | None = None,
                         webhook: pb.Webhook | None = None, idempotency_key: str = "") -> pb.Job:
        request = pb.SubmitJobRequest(spec=spec, owner=self.owner, webhook=webhook, idempotency_key=idempotency_key,
                                      labels=dict(labels or {}))
        reply = await self._unary("SubmitJob", request, self.deadlines.write, retry=bool(idempotency_key))
        return reply.job

    async def run_job(self, spec: pb.JobSpec, *, labels: Mapping[str, str] | None = None,
                      idempotency_key: str = "") -> pb.Job:
        """Run a job to its end (the synchronous endpoints); a failure comes back as the service's error."""
        request = pb.RunJobRequest(spec=spec, owner=self.owner, idempotency_key=idempotency_key,
                                   labels=dict(labels or {}))
        reply = await self._unary("RunJob", request, self.deadlines.run, retry=bool(idempotency_key))
        return reply.job

    async def get_job(self, job_id: str) -> pb.Job:
        reply = await self._unary("GetJob", pb.GetJobRequest(job_id=job_id, owner=self.owner), self.deadlines.read,
                                  retry=True)
        return reply.job

    def watch_job(self, job_id: str) -> AsyncIterator[pb.WatchJobResponse]:
        return self._stream("WatchJob", pb.WatchJobRequest(job_id=job_id, owner=self.owner), self.deadlines.watch)

    async def cancel_job(self, job_id: str) -> pb.Job:
        reply = await self._unary("CancelJob", pb.CancelJobRequest(job_id=job_id, owner=self.owner),
                                  self.deadlines.write, retry=True)
        return reply.job

    async def list_jobs(self, *, statuses: list[int] | None = None, kind: str = "", model_id: str = "",
                        page_size: int = 0, page_token: str = "") -> pb.ListJobsResponse:
        request = pb.ListJobsRequest(owner=self.owner, statuses=statuses or [], kind=kind, model_id=model_id,
                                     page_size=page_size, page_token=page_token)
        return await self._unary("ListJobs", request, self.deadlines.read, retry=True)

    # --- shotgun and selections --------------------------------------------------------------------------------------

    async def run_shotgun(self, spec: pb.ShotgunSpec) -> pb.ShotgunSummary:
        reply = await self._unary("RunShotgun", pb.RunShotgunRequest(spec=spec, owner=self.owner), self.deadlines.run,
                                  retry=False)
        return reply.summary

    def stream_shotgun(self, spec: pb.ShotgunSpec) -> AsyncIterator[pb.StreamShotgunResponse]:
        return self._stream("StreamShotgun", pb.StreamShotgunRequest(spec=spec, owner=self.owner), self.deadlines.run)

    async def log_selection(self, job_id: str, selected_model_id: str, *, image_category: str = "",
                            notes: str = "") -> pb.LogSelectionResponse:
        request = pb.LogSelectionRequest(job_id=job_id, selected_model_id=selected_model_id,
                                         image_category=image_category, notes=notes, owner=self.owner)
        return await self._unary("LogSelection", request, self.deadlines.write, retry=False)

    async def selection_ranking(self, image_category: str = "") -> pb.GetSelectionRankingResponse:
        return await self._unary("GetSelectionRanking", pb.GetSelectionRankingRequest(image_category=image_category),
                                 self.deadlines.read, retry=True)

    # --- workflows -------------------------------------------------------------------------------------------------

    async def list_workflows(self) -> list[pb.WorkflowInfo]:
        reply = await self._unary("ListWorkflows", pb.ListWorkflowsRequest(), self.deadlines.read, retry=True)
        return list(reply.workflows)

    async def execute_workflow(self, spec: pb.WorkflowSpec, *, webhook: pb.Webhook | None = None,
                               idempotency_key: str = "") -> pb.Job:
        request = pb.ExecuteWorkflowRequest(spec=spec, owner=self.owner, webhook=webhook,
                                            idempotency_key=idempotency_key)
        reply = await self._unary("ExecuteWorkflow", request, self.deadlines.write, retry=bool(idempotency_key))
        return reply.job

    # --- queue and analytics ---------------------------------------------------------------------------------------

    async def queue_stats(self) -> pb.GetQueueStatsResponse:
        return await self._unary("GetQueueStats", pb.GetQueueStatsRequest(owner=self.owner), self.deadlines.read,
                                 retry=True)

    async def reset_queue(self) -> pb.ResetQueueResponse:
        return await self._unary("ResetQueue", pb.ResetQueueRequest(owner=self.owner), self.deadlines.write,
                                 retry=True)

    async def analytics(self, days: int) -> pb.GetAnalyticsResponse:
        return await self._unary("GetAnalytics", pb.GetAnalyticsRequest(owner=self.owner, days=days),
                                 self.deadlines.read, retry=True)

    # --- images ----------------------------------------------------------------------------------------------------

    async def get_image(self, ref: str, *, thumbnail: bool = False, prefer_url: bool = False) -> pb.GetImageResponse:
        """A stored image (or its thumbnail): the bytes, or with `prefer_url` a direct expiring URL where the store
        gives one (S3); the reply's `url` is empty when the bytes came instead."""
        request = pb.GetImageRequest(ref=ref, owner=self.owner, thumbnail=thumbnail, prefer_url=prefer_url)
        return await self._unary("GetImage", request, self.deadlines.read, retry=True)

    async def delete_image(self, ref: str) -> None:
        await self._unary("DeleteImage", pb.DeleteImageRequest(ref=ref, owner=self.owner), self.deadlines.write,
                          retry=True)

    async def list_images(self, *, page: int = 1, page_size: int = 20, search: str = "",
                          model_id: str = "") -> pb.ListImagesResponse:
        request = pb.ListImagesRequest(owner=self.owner, page=page, page_size=page_size, search=search,
                                       model_id=model_id)
        return await self._unary("ListImages", request, self.deadlines.read, retry=True)

    async def estimate_cost(self, action: str, *, model_id: str = "", width: int = 0, height: int = 0,
                            count: int = 1) -> pb.EstimateCostResponse:
        """What `count` runs of `action` would cost, from the orchestrator's price table (USD and credits)."""
        request = pb.EstimateCostRequest(action=action, model_id=model_id, width=width, height=height, count=count)
        return await self._unary("EstimateCost", request, self.deadlines.read, retry=True)

    # --- catalogues ------------------------------------------------------------------------------------------------

    async def catalog(self, *sections: int, platform: str = "") -> pb.GetCatalogResponse:
        """The sections asked for (CATALOG_SECTION_*), or every section; the orchestrator caches them briefly."""
        return await self._unary("GetCatalog", pb.GetCatalogRequest(sections=list(sections), platform=platform),
                                 self.deadlines.read, retry=True)
