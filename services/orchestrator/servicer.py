"""Thin gRPC servicer of the Orchestrator: protobuf in, OrchestratorCore, protobuf out."""

from __future__ import annotations

import time

import grpc

from services.orchestrator import media
from services.orchestrator.core import OrchestratorCore, WorkCounts
from services.orchestrator.job_store import STATUS_NAME, timestamp
from services.orchestrator.pricing import cents
from services.orchestrator.shotgun import Shotgun
from shared.errors import NotImplementedYet
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2_grpc as pb_grpc
from shared.image_store import StoredImage


def image_record(record: StoredImage) -> common_pb2.ImageRecord:
    return common_pb2.ImageRecord(
        ref=record.ref, owner=record.owner, job_id=record.job_id, media_type=record.media_type, width=record.width,
        height=record.height, size_bytes=record.size_bytes, created_at=timestamp(record.created_at),
        metadata=record.metadata, kind=media.KIND_ENUM.get(record.kind, common_pb2.IMAGE_KIND_UNSPECIFIED))


def work_counts(counts: WorkCounts) -> pb.WorkCounts:
    return pb.WorkCounts(total=counts.total, successful=counts.successful, failed=counts.failed,
                         cost_cents=cents(counts.cost.usd), cost=counts.cost,
                         models_used=counts.models_used)


class OrchestratorServicer(pb_grpc.OrchestratorServiceServicer):
    def __init__(self, core: OrchestratorCore, shotgun: Shotgun | None = None) -> None:
        """`shotgun` streams StreamShotgun's per-model results (services/orchestrator/shotgun.py)."""
        self.core = core
        self.shotgun = shotgun

    # --- jobs ----------------------------------------------------------------------------------------------------

    async def SubmitJob(self, request: pb.SubmitJobRequest, context: grpc.aio.ServicerContext) -> pb.SubmitJobResponse:
        job = await self.core.submit(request.spec, request.owner, request.idempotency_key,
                                     request.webhook if request.HasField("webhook") else None, dict(request.labels))
        return pb.SubmitJobResponse(job=job)

    async def RunJob(self, request: pb.RunJobRequest, context: grpc.aio.ServicerContext) -> pb.RunJobResponse:
        job = await self.core.run_job(request.spec, request.owner, dict(request.labels), request.idempotency_key)
        return pb.RunJobResponse(job=job)

    async def GetJob(self, request: pb.GetJobRequest, context: grpc.aio.ServicerContext) -> pb.GetJobResponse:
        return pb.GetJobResponse(job=await self.core.get_job(request.job_id, request.owner))

    async def WatchJob(self, request: pb.WatchJobRequest, context: grpc.aio.ServicerContext):
        async for event_type, job, step_name in self.core.watch(request.job_id, request.owner):
            yield pb.WatchJobResponse(type=event_type, job=job, step_name=step_name)

    async def CancelJob(self, request: pb.CancelJobRequest, context: grpc.aio.ServicerContext) -> pb.CancelJobResponse:
        return pb.CancelJobResponse(job=await self.core.cancel_job(request.job_id, request.owner))

    async def ListJobs(self, request: pb.ListJobsRequest, context: grpc.aio.ServicerContext) -> pb.ListJobsResponse:
        jobs, token, total = await self.core.list_jobs(
            request.owner or None, [STATUS_NAME[s] for s in request.statuses if s in STATUS_NAME], request.kind,
            request.model_id, request.page_size, request.page_token)
        return pb.ListJobsResponse(jobs=jobs, next_page_token=token, total_size=total)

    # --- workflows -------------------------------------------------------------------------------------------------

    async def ListWorkflows(self, request: pb.ListWorkflowsRequest,
                            context: grpc.aio.ServicerContext) -> pb.ListWorkflowsResponse:
        return pb.ListWorkflowsResponse(workflows=[
            pb.WorkflowInfo(
                id=e.workflow.id, name=e.workflow.name, description=e.workflow.description,
                steps=[pb.WorkflowStepInfo(name=s.name, action=s.action, depends_on=s.depends_on, optional=s.optional)
                       for s in e.workflow.steps],
                estimated_seconds=e.seconds, estimated_cost_usd=e.cost_usd, estimate_source=e.source)
            for e in await self.core.list_workflows()
        ])

    async def ExecuteWorkflow(self, request: pb.ExecuteWorkflowRequest,
                              context: grpc.aio.ServicerContext) -> pb.ExecuteWorkflowResponse:
        job = await self.core.execute_workflow(request.spec, request.owner, request.idempotency_key,
                                               request.webhook if request.HasField("webhook") else None)
        return pb.ExecuteWorkflowResponse(job=job)

    # --- queue and analytics ---------------------------------------------------------------------------------------

    async def GetQueueStats(self, request: pb.GetQueueStatsRequest,
                            context: grpc.aio.ServicerContext) -> pb.GetQueueStatsResponse:
        stats = await self.core.queue_stats(request.owner)
        return pb.GetQueueStatsResponse(
            counts=stats.counts, counts_last_24h=stats.counts_24h,
            models=[pb.ModelQueueStats(model_id=m, counts=c,
                                       average_processing_seconds=stats.model_average_s.get(m, 0))
                    for m, c in sorted(stats.models.items())],
            average_processing_seconds=stats.average_s, failure_rate=stats.failure_rate,
            queue_size=stats.queue_size, total=stats.total)

    async def ResetQueue(self, request: pb.ResetQueueRequest,
                         context: grpc.aio.ServicerContext) -> pb.ResetQueueResponse:
        requeued, failed = await self.core.reset_queue(request.owner)
        return pb.ResetQueueResponse(requeued=requeued, failed=failed)

    async def GetAnalytics(self, request: pb.GetAnalyticsRequest,
                           context: grpc.aio.ServicerContext) -> pb.GetAnalyticsResponse:
        a = await self.core.analytics(request.owner, request.days)
        return pb.GetAnalyticsResponse(
            period_days=a.period_days, total=a.total, successful=a.successful, failed=a.failed,
            success_rate=a.success_rate, total_cost_cents=cents(a.total_cost.usd), total_cost=a.total_cost,
            average_processing_seconds=a.average_processing_s, models_used=a.models_used,
            daily=[pb.DailyStat(date=d.date, generations=d.jobs, cost_cents=cents(d.cost.usd), cost=d.cost,
                                generation_jobs=d.generations, derived_jobs=d.derived) for d in a.daily],
            generations=work_counts(a.generations), derived=work_counts(a.derived))

    async def EstimateCost(self, request: pb.EstimateCostRequest,
                           context: grpc.aio.ServicerContext) -> pb.EstimateCostResponse:
        e = await self.core.estimate_cost(request.action, request.model_id, request.width, request.height,
                                          request.count)
        return pb.EstimateCostResponse(cost=e.cost, credits=e.credits, usd_per_credit=e.usd_per_credit,
                                       estimate_source=e.source)

    # --- selections --------------------------------------------------------------------------------------------------

    async def LogSelection(self, request: pb.LogSelectionRequest,
                           context: grpc.aio.ServicerContext) -> pb.LogSelectionResponse:
        selection_id = await self.core.log_selection(request.job_id, request.owner, request.selected_model_id,
                                                     request.image_category, request.notes)
        return pb.LogSelectionResponse(selection_id=selection_id)

    async def GetSelectionRanking(self, request: pb.GetSelectionRankingRequest,
                                  context: grpc.aio.ServicerContext) -> pb.GetSelectionRankingResponse:
        ranking = await self.core.selection_ranking(request.image_category)
        total = sum(n for _, n in ranking)
        return pb.GetSelectionRankingResponse(
            ranking=[pb.ModelRank(model_id=m, selections=n, share=n / total if total else 0.0) for m, n in ranking],
            auto_model=ranking[0][0] if ranking else "")

    # --- images ------------------------------------------------------------------------------------------------------

    async def GetImage(self, request: pb.GetImageRequest, context: grpc.aio.ServicerContext) -> pb.GetImageResponse:
        if request.prefer_url:
            url, record = await self.core.image_url(request.ref, request.owner, thumbnail=request.thumbnail)
            if url:
                return pb.GetImageResponse(
                    image=common_pb2.Image(media_type="image/webp" if request.thumbnail else record.media_type),
                    record=image_record(record), url=url,
                    url_expires_at=timestamp(time.time() + self.core.settings.image_url_expires_s))
        data, record = await self.core.get_image(request.ref, request.owner, thumbnail=request.thumbnail)
        if request.thumbnail:
            return pb.GetImageResponse(image=common_pb2.Image(data=data, media_type="image/webp"),
                                       record=image_record(record))
        return pb.GetImageResponse(
            image=common_pb2.Image(data=data, media_type=record.media_type, width=record.width, height=record.height),
            record=image_record(record))

    async def DeleteImage(self, request: pb.DeleteImageRequest,
                          context: grpc.aio.ServicerContext) -> pb.DeleteImageResponse:
        await self.core.delete_image(request.ref, request.owner)
        return pb.DeleteImageResponse()

    async def ListImages(self, request: pb.ListImagesRequest,
                         context: grpc.aio.ServicerContext) -> pb.ListImagesResponse:
        page = await self.core.list_images(request.owner, request.page, request.page_size, request.search,
                                           request.model_id, [media.KIND_NAME[k] for k in request.kinds
                                                              if k in media.KIND_NAME])
        return pb.ListImagesResponse(images=[image_record(r) for r in page.images], total_size=page.total)

    # --- shotgun (services/orchestrator/shotgun.py) -------------------------------------------------------------

    async def RunShotgun(self, request: pb.RunShotgunRequest,
                         context: grpc.aio.ServicerContext) -> pb.RunShotgunResponse:
        # Through the job path, so the shotgun is a job whose id LogSelection can refer to later.
        job = await self.core.run_job(pb.JobSpec(shotgun=request.spec), request.owner, {})
        summary = pb.ShotgunSummary()
        summary.CopyFrom(job.result.shotgun)
        summary.job_id = job.id
        return pb.RunShotgunResponse(summary=summary)

    async def StreamShotgun(self, request: pb.StreamShotgunRequest, context: grpc.aio.ServicerContext):
        if self.shotgun is None:
            raise NotImplementedYet("the shotgun is not available in this deployment")
        # Streamed results are never stored, but an input reference is still read under the caller's owner.
        spec = await self.core.resolve_images(request.spec, request.owner)
        async for event in self.shotgun.stream(spec):
            yield event

    # --- catalogues ------------------------------------------------------------------------------------------------

    async def GetCatalog(self, request: pb.GetCatalogRequest, context: grpc.aio.ServicerContext) -> pb.GetCatalogResponse:
        return await self.core.catalog.get(list(request.sections), request.platform)
