"""Small helpers shared by the orchestrator tests."""

from __future__ import annotations

import asyncio
import io

from PIL import Image

from shared import clients
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
from shared.gen.imagemesh.v1 import upscale_service_pb2 as up_pb
from tests.images import disc_rgba, png_bytes

TERMINAL = {common_pb2.JOB_STATUS_COMPLETED, common_pb2.JOB_STATUS_FAILED, common_pb2.JOB_STATUS_CANCELLED,
            common_pb2.JOB_STATUS_PARTIAL}


def png_image(size: int = 16) -> common_pb2.Image:
    return common_pb2.Image(data=png_bytes(disc_rgba(size)), media_type="image/png")


def upscale_spec(size: int = 16, scale: int = 2) -> pb.JobSpec:
    return pb.JobSpec(upscale=up_pb.UpscaleRequest(image=png_image(size), scale_factor=scale))


def workflow_spec(workflow_id: str, image_size: int = 16, **params) -> pb.JobSpec:
    spec = pb.WorkflowSpec(workflow_id=workflow_id, image=png_image(image_size))
    spec.params.update(params)
    return pb.JobSpec(workflow=spec)


async def submit(stub, spec: pb.JobSpec, owner: str = "alice", **kwargs) -> pb.Job:
    reply = await clients.call(stub.SubmitJob, pb.SubmitJobRequest(spec=spec, owner=owner, **kwargs))
    return reply.job


async def get(stub, job_id: str, owner: str = "alice") -> pb.Job:
    return (await clients.call(stub.GetJob, pb.GetJobRequest(job_id=job_id, owner=owner))).job


async def wait_for(stub, job_id: str, owner: str = "alice", statuses=TERMINAL, timeout: float = 60) -> pb.Job:
    """Poll until the job reaches one of `statuses` (a deadline only against hangs; nothing is timed)."""
    async with asyncio.timeout(timeout):
        while True:
            job = await get(stub, job_id, owner)
            if job.status in statuses:
                return job
            await asyncio.sleep(0.05)


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size
