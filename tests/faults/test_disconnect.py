"""A synchronous request whose HTTP client goes away cancels its job (issue 14, class 5): FLUX /generate through a
real uvicorn server over the real mesh, the client dropped once the job is running."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import httpx

from shared import clients
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as orch_pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2_grpc as orch_grpc
from tests.gateway.conftest import live

# Long enough on the tiny CPU model that the job is still running when the client leaves.
LONG = {"prompt": "A lighthouse at dusk", "steps": 50, "width": 768, "height": 768, "seed": 7}


async def _running_job(stub, owner: str) -> orch_pb.Job:
    while True:
        jobs = (await clients.call(stub.ListJobs, orch_pb.ListJobsRequest(owner=owner))).jobs
        if jobs and jobs[0].status == common_pb2.JOB_STATUS_RUNNING and jobs[0].progress.step > 0:
            return jobs[0]
        await asyncio.sleep(0.1)


async def test_flux_sync_generate_client_leaving_cancels_its_job(mesh, tmp_path):
    owner = f"sync-leaver-{uuid.uuid4().hex[:6]}"
    channel = clients.create_channel(mesh.address("orchestrator"))
    stub = orch_grpc.OrchestratorServiceStub(channel)
    try:
        async with live(mesh, tmp_path, api_keys=f"key-sync-leaver:{owner}") as url:
            async with httpx.AsyncClient(base_url=url, timeout=600) as http:
                request = asyncio.create_task(http.post("/generate", json=LONG,
                                                        headers={"X-API-Key": "key-sync-leaver"}))
                job = await asyncio.wait_for(_running_job(stub, owner), 120)
                request.cancel()  # the client goes away: httpx closes its connection
                with contextlib.suppress(asyncio.CancelledError):
                    await request
            async for event in clients.stream(stub.WatchJob, orch_pb.WatchJobRequest(job_id=job.id, owner=owner),
                                              timeout=120):
                job = event.job
    finally:
        await channel.close()
    assert job.status == common_pb2.JOB_STATUS_CANCELLED, job
