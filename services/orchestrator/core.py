"""The orchestrator core: runs a JobSpec by calling the service that does the work.

Plain Python over the backend stubs; the servicer only converts. Durable job storage, workflows and the
shotgun build on `execute`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

from google.protobuf import timestamp_pb2

from services.orchestrator.backends import Backends
from services.orchestrator.settings import OrchestratorSettings
from shared import clients
from shared.errors import InvalidArgument, NotImplementedYet
from shared.gen.imagemesh.v1 import common_pb2, orchestrator_service_pb2 as pb


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


class OrchestratorCore:
    def __init__(self, settings: OrchestratorSettings, backends: Backends) -> None:
        self.settings = settings
        self.backends = backends
        # Set by the shotgun wiring: runs a ShotgunSpec and returns its summary.
        self.shotgun_runner: Callable[[pb.ShotgunSpec], Awaitable[pb.ShotgunSummary]] | None = None

    async def execute(self, spec: pb.JobSpec) -> pb.JobResult:
        """Run one spec to completion and return its result; errors propagate as ImageMeshError."""
        kind = spec.WhichOneof("spec")
        timeout = self.settings.backend_timeout_s
        if kind == "upscale":
            response = await clients.call(self.backends.upscale.Upscale, spec.upscale, timeout=timeout)
            return pb.JobResult(upscale=response)
        if kind == "remove_background":
            response = await clients.call(self.backends.background_removal.RemoveBackground, spec.remove_background,
                                          timeout=timeout)
            return pb.JobResult(remove_background=response)
        if kind == "shotgun" and self.shotgun_runner is not None:
            return pb.JobResult(shotgun=await self.shotgun_runner(spec.shotgun))
        if kind is None:
            raise InvalidArgument("job spec is empty", field="spec")
        raise NotImplementedYet(f"jobs of kind {kind!r} are not available yet in this deployment", kind=kind)

    async def run_job(self, spec: pb.JobSpec, owner: str, labels: dict[str, str]) -> pb.Job:
        """Run a job synchronously and return it completed; a failure is raised as the backend's error, so a
        synchronous caller sees the same reason (e.g. IMAGE_TOO_LARGE) the service gave."""
        job = pb.Job(
            id=f"job_{uuid.uuid4().hex}", owner=owner, kind=spec.WhichOneof("spec") or "",
            status=common_pb2.JOB_STATUS_RUNNING, spec=spec, created_at=_now(), started_at=_now(), labels=labels,
        )
        started = time.perf_counter()
        job.result.CopyFrom(await self.execute(spec))
        job.status = common_pb2.JOB_STATUS_COMPLETED
        job.finished_at.CopyFrom(_now())
        job.cost.device_seconds = time.perf_counter() - started
        return job
