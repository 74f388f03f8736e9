"""One cost figure everywhere (docs/orchestrator.md, "Cost"): for every dialect that shows what real work cost, the
figure it renders, the job record's (GetJob) and the owner's analytics total (GetAnalytics, and the dialect's own
analytics endpoint where it has one) are the same number, within the rounding the docs declare. Estimates
(Image Studio's credits, the workflow list's dollars) are the Orchestrator's EstimateCost/ListWorkflows figures.

The Orchestrator here is this module's own, over the shared mesh's backends, with a price table steep enough
(dollars per device second) that a few milliseconds of work is many cents and rounding cannot hide a mismatch.
Each case runs under its own owner, so its analytics hold exactly its one job.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_asyncio

from services.orchestrator.server import create_server as create_orchestrator
from services.orchestrator.settings import OrchestratorSettings
from shared import clients
from shared.clients import create_channel
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2_grpc as pb_grpc
from tests.gateway.conftest import gateway
from tests.images import b64, disc_rgba
from tests.mesh import service_kwargs

PRICE = 1000.0  # US dollars per device second, every class
TERMINAL = {common_pb2.JOB_STATUS_COMPLETED, common_pb2.JOB_STATUS_PARTIAL, common_pb2.JOB_STATUS_FAILED,
            common_pb2.JOB_STATUS_CANCELLED}


@pytest_asyncio.fixture(scope="module")
async def priced(mesh, tmp_path_factory):
    """(orchestrator stub, its address, its settings): an Orchestrator with PRICE over the shared backends."""
    tmp: Path = tmp_path_factory.mktemp("cost")
    settings = OrchestratorSettings(
        **service_kwargs(tmp), generate_address=mesh.address("generate"),
        background_removal_address=mesh.address("background_removal"), upscale_address=mesh.address("upscale"),
        price_per_second_usd={"cpu": PRICE, "cuda": PRICE, "mps": PRICE})
    runtime, port = create_orchestrator(settings)
    await runtime.start()
    channel = create_channel(f"127.0.0.1:{port}")
    try:
        yield pb_grpc.OrchestratorServiceStub(channel), f"127.0.0.1:{port}", settings
    finally:
        await channel.close()
        await runtime.stop(0)


async def _job(stub, job_id: str, owner: str) -> pb.Job:
    for _ in range(1200):
        job = (await clients.call(stub.GetJob, pb.GetJobRequest(job_id=job_id, owner=owner))).job
        if job.status in TERMINAL:
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def _image() -> str:
    return b64(disc_rgba(48))


# Each case: (dialect, how to run one real job through it) -> (job id, the cost in US dollars the dialect shows).

async def _shotgun_remove_background(http, stub, owner):
    body = (await http.post("/remove-background", json={"image": _image(), "include_models": ["u2netp"]})).json()
    assert body["status"] == "completed", body
    # The per-model figures add up to the rendered total.
    assert body["total_cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in body["results"]), rel=1e-12)
    return body["job_id"], body["total_cost_usd"]


async def _shotgun_process(http, stub, owner):
    body = (await http.post("/process", json={"image": _image(), "bg_models": ["u2netp"], "upscale_factor": 2})).json()
    assert body["status"] == "completed" and body["results"][0]["upscale_status"] == "success", body
    assert body["total_cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in body["results"]), rel=1e-12)
    return body["job_id"], body["total_cost_usd"]


async def _shotgun_upscale(http, stub, owner):
    body = (await http.post("/upscale", json={"image": _image(), "scale_factor": 2})).json()
    assert body["status"] == "completed", body
    return body["job_id"], body["cost_usd"]


async def _freepik_post_process(http, stub, owner):
    reply = await http.post("/v1/post-process/upscale", json={"image": _image(), "scale_factor": 2})
    assert reply.status_code == 200, reply.text
    job = await _job(stub, reply.json()["task_id"], owner)
    assert job.status == common_pb2.JOB_STATUS_COMPLETED
    # Freepik shows cost only in its analytics, in whole cents (rounded to the nearest, as documented).
    analytics = (await http.get("/v1/analytics/user", params={"days": 30})).json()
    return job.id, analytics["total_cost_cents"] / 100


CASES = {
    "shotgun-remove-background": _shotgun_remove_background,
    "shotgun-process": _shotgun_process,
    "shotgun-upscale": _shotgun_upscale,
    "freepik-post-process-upscale": _freepik_post_process,
}
# The rounding each rendering declares (docs/orchestrator.md, "Cost"): dollars as floats, cents to the nearest.
ROUNDING = {"freepik-post-process-upscale": 0.005}


@pytest.mark.parametrize("case", list(CASES))
async def test_rendered_cost_is_the_job_record_and_the_analytics_total(mesh, priced, tmp_path, case):
    stub, address, _settings = priced
    owner = f"cost-{case}"
    async with gateway(mesh, tmp_path, orchestrator_address=address, anonymous_owner=owner,
                       rate_limit_enabled=False) as http:
        job_id, rendered_usd = await CASES[case](http, stub, owner)
    job = await _job(stub, job_id, owner)
    analytics = await clients.call(stub.GetAnalytics, pb.GetAnalyticsRequest(owner=owner, days=30))
    assert analytics.total == 1  # this case's one job, so its total is that job's figure
    # The figure is the price table applied to the measured seconds, and it is not vanishingly small.
    assert job.cost.device_seconds > 0 and job.cost.usd == pytest.approx(job.cost.device_seconds * PRICE)
    assert job.cost.usd >= 0.02  # whole cents, so the rounded cents below are not trivially 0
    assert analytics.total_cost.usd == pytest.approx(job.cost.usd, rel=1e-12)
    assert analytics.total_cost_cents == round(job.cost.usd * 100)
    assert rendered_usd == pytest.approx(job.cost.usd, rel=1e-12, abs=ROUNDING.get(case, 0.0))
    if job.result.WhichOneof("result") == "shotgun":
        summary = job.result.shotgun
        assert summary.total_cost.usd == pytest.approx(job.cost.usd, rel=1e-12)
        assert sum(r.cost.usd for r in summary.results) == pytest.approx(job.cost.usd, rel=1e-12)


async def test_estimates_are_the_orchestrators(mesh, priced, tmp_path):
    """Image Studio's credits and the workflow list's dollars are renderings of the Orchestrator's figures."""
    stub, address, settings = priced
    async with gateway(mesh, tmp_path, orchestrator_address=address, rate_limit_enabled=False) as http:
        credits = (await http.post("/api/image-studio/estimate-cost", json={
            "provider": "stability", "model": "core", "num_images": 3, "width": 1024, "height": 512})).json()
        upscale_credits = (await http.post("/api/image-studio/estimate-cost", json={
            "provider": "stability", "operation": "upscale"})).json()
        workflows = (await http.get("/v1/workflows")).json()["workflows"]
    estimate = await clients.call(stub.EstimateCost, pb.EstimateCostRequest(
        action="generate", model_id="core", width=1024, height=512, count=3))
    seconds = settings.estimate_seconds_per_megapixel["generate"] * (1024 * 512 / 1e6) * 3
    assert estimate.cost.usd == pytest.approx(seconds * PRICE)
    assert estimate.usd_per_credit == settings.usd_per_credit
    assert credits["estimated_cost"] == round(estimate.cost.usd / settings.usd_per_credit, 2)
    upscale = await clients.call(stub.EstimateCost, pb.EstimateCostRequest(action="upscale"))
    assert upscale_credits["estimated_cost"] == round(upscale.credits, 2) > 0
    listed = {w.id: w for w in (await clients.call(stub.ListWorkflows, pb.ListWorkflowsRequest())).workflows}
    for rendered in workflows:
        assert rendered["estimated_cost"] == f"${listed[rendered['id']].estimated_cost_usd:.2f}"
    headshot = listed["professional_headshot"]
    assert headshot.estimated_cost_usd == pytest.approx(headshot.estimated_seconds * PRICE)
