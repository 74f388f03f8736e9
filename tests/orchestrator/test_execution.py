"""Job execution without a server: how a single-call job's outcome becomes the job's status."""

from __future__ import annotations

import pytest

from services.orchestrator.execution import CallOutcome, run_single
from shared.errors import ModelUnavailable
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb


class Sink:
    def __init__(self):
        self.steps = []

    async def save_step(self, step, progress=None):
        self.steps.append((step.name, step.status))

    async def save_progress(self, progress):
        pass


def _shotgun(status, errors=()):
    results = [pb.ShotgunResult(model_id=f"m{i}", error=e) for i, e in enumerate(errors)]
    return pb.JobResult(shotgun=pb.ShotgunSummary(status=status, results=results))


@pytest.mark.parametrize("summary_status,job_status", [
    (common_pb2.JOB_STATUS_COMPLETED, "completed"), (common_pb2.JOB_STATUS_PARTIAL, "partial"),
])
async def test_shotgun_summary_status_becomes_the_job_status(summary_status, job_status):
    async def call(spec, job, on_progress):
        return CallOutcome(_shotgun(summary_status), [], common_pb2.Cost())

    sink = Sink()
    outcome = await run_single(pb.Job(id="j", kind="shotgun"), sink, call)
    assert outcome.status == job_status and sink.steps[-1] == ("shotgun", job_status)


async def test_a_shotgun_where_every_model_failed_fails_the_job():
    async def call(spec, job, on_progress):
        return CallOutcome(_shotgun(common_pb2.JOB_STATUS_FAILED, ["timeout", "bad input"]), [], common_pb2.Cost())

    sink = Sink()
    outcome = await run_single(pb.Job(id="j", kind="shotgun"), sink, call)
    # Failed, with the summary kept (each model's error is the report) and the reason on the job.
    assert outcome.status == "failed" and outcome.result.shotgun.results[1].error == "bad input"
    assert isinstance(outcome.error, ModelUnavailable) and "timeout; bad input" in outcome.error.message
    assert sink.steps[-1] == ("shotgun", "failed")
