"""Thin gRPC servicer of the Orchestrator: protobuf in, OrchestratorCore, protobuf out."""

from __future__ import annotations

import grpc

from services.orchestrator.core import OrchestratorCore
from services.orchestrator.shotgun import Shotgun
from shared.errors import NotImplementedYet
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb, orchestrator_service_pb2_grpc as pb_grpc

_NOT_YET = "is not available yet in this deployment (durable jobs land with the orchestrator issue)"


class OrchestratorServicer(pb_grpc.OrchestratorServiceServicer):
    # Set by create_server (services/orchestrator/shotgun.py).
    shotgun: Shotgun | None = None

    def __init__(self, core: OrchestratorCore) -> None:
        self.core = core

    async def RunJob(self, request: pb.RunJobRequest, context: grpc.aio.ServicerContext) -> pb.RunJobResponse:
        job = await self.core.run_job(request.spec, request.owner, dict(request.labels))
        return pb.RunJobResponse(job=job)

    async def RunShotgun(self, request: pb.RunShotgunRequest, context: grpc.aio.ServicerContext) -> pb.RunShotgunResponse:
        # Through the job path, so the shotgun is a job whose id LogSelection can refer to later.
        job = await self.core.run_job(pb.JobSpec(shotgun=request.spec), request.owner, {})
        summary = pb.ShotgunSummary()
        summary.CopyFrom(job.result.shotgun)
        summary.job_id = job.id
        return pb.RunShotgunResponse(summary=summary)

    async def StreamShotgun(self, request: pb.StreamShotgunRequest, context: grpc.aio.ServicerContext):
        async for event in self.shotgun.stream(request.spec):
            yield event


def _unimplemented(name: str, streaming: bool = False):
    message = f"{name} {_NOT_YET}"
    if streaming:
        async def stream_method(self, request, context):  # noqa: ANN001
            raise NotImplementedYet(message)
            yield  # pragma: no cover
        return stream_method

    async def method(self, request, context):  # noqa: ANN001
        raise NotImplementedYet(message)
    return method


# Declared in the contract, answered with a clear UNIMPLEMENTED until their issue lands.
for _name in ("SubmitJob", "GetJob", "CancelJob", "ListJobs", "ListWorkflows", "ExecuteWorkflow",
              "LogSelection", "GetSelectionRanking", "GetQueueStats", "ResetQueue", "GetAnalytics", "GetImage",
              "DeleteImage", "ListImages"):
    setattr(OrchestratorServicer, _name, _unimplemented(_name))
for _name in ("WatchJob",):
    setattr(OrchestratorServicer, _name, _unimplemented(_name, streaming=True))
