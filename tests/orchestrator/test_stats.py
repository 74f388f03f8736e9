"""Queue statistics (004), per-owner analytics (000), selections and ranking, the owner's image gallery."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import update

from services.orchestrator.job_store import jobs
from shared import clients
from shared.errors import InvalidArgument, NotFound
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
from tests.orchestrator.helpers import submit, upscale_spec, wait_for, workflow_spec


async def _run(orch, spec, owner):
    return (await clients.call(orch.stub.RunJob, pb.RunJobRequest(spec=spec, owner=owner))).job


async def test_queue_stats_and_analytics(orch):
    owner = "stats"
    done = [await _run(orch, upscale_spec(), owner) for _ in range(3)]
    with pytest.raises(InvalidArgument):
        await _run(orch, upscale_spec(16, 99), owner)
    await orch.core.runner.stop()
    await submit(orch.stub, upscale_spec(), owner=owner)
    await submit(orch.stub, upscale_spec(), owner="someone else")

    stats = await clients.call(orch.stub.GetQueueStats, pb.GetQueueStatsRequest(owner=owner))
    assert dict(stats.counts) == {"completed": 3, "failed": 1, "pending": 1}
    assert dict(stats.counts_last_24h) == dict(stats.counts)
    assert stats.queue_size == 1 and stats.total == 5
    assert stats.failure_rate == pytest.approx(0.25)
    assert [(m.model_id, dict(m.counts)) for m in stats.models] == [("lanczos", {"completed": 3})]
    assert stats.average_processing_seconds > 0
    everyone = await clients.call(orch.stub.GetQueueStats, pb.GetQueueStatsRequest())
    assert everyone.total == 6 and everyone.queue_size == 2

    analytics = await clients.call(orch.stub.GetAnalytics, pb.GetAnalyticsRequest(owner=owner, days=30))
    assert (analytics.period_days, analytics.total, analytics.successful, analytics.failed) == (30, 5, 3, 1)
    assert analytics.success_rate == 60.0
    assert dict(analytics.models_used) == {"lanczos": 3}
    assert analytics.total_cost_cents == round(sum(j.cost.usd for j in done) * 100)
    assert [(d.date, d.generations) for d in analytics.daily] == [(time.strftime("%Y-%m-%d", time.gmtime()), 5)]
    assert analytics.average_processing_seconds > 0
    # Upscales are derived work, not generations.
    assert (analytics.generations.total, analytics.derived.total, analytics.derived.successful) == (0, 5, 3)
    assert dict(analytics.derived.models_used) == {"lanczos": 3} and not analytics.generations.models_used
    assert [(d.generation_jobs, d.derived_jobs) for d in analytics.daily] == [(0, 5)]

    # A job from 40 days ago counts in a 60-day window, not in a 30-day one.
    with orch.core.store.sync.engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == done[0].id).values(created_at=time.time() - 40 * 86400))
    recent = await clients.call(orch.stub.GetAnalytics, pb.GetAnalyticsRequest(owner=owner, days=30))
    wider = await clients.call(orch.stub.GetAnalytics, pb.GetAnalyticsRequest(owner=owner, days=60))
    assert (recent.total, wider.total, len(wider.daily)) == (4, 5, 2)
    default = await clients.call(orch.stub.GetAnalytics, pb.GetAnalyticsRequest(owner=owner))
    assert default.period_days == 30


async def test_selections_rank_models_per_category(orch):
    job = await submit(orch.stub, upscale_spec())
    for model, category in (("modnet", "portrait"), ("modnet", "portrait"), ("u2netp", "portrait"),
                            ("u2netp", "product")):
        reply = await clients.call(orch.stub.LogSelection, pb.LogSelectionRequest(
            job_id=job.id, owner="alice", selected_model_id=model, image_category=category))
        assert reply.selection_id.startswith("sel_")
    portrait = await clients.call(orch.stub.GetSelectionRanking,
                                  pb.GetSelectionRankingRequest(image_category="portrait"))
    assert [(r.model_id, r.selections) for r in portrait.ranking] == [("modnet", 2), ("u2netp", 1)]
    assert portrait.ranking[0].share == pytest.approx(2 / 3) and portrait.auto_model == "modnet"
    overall = await clients.call(orch.stub.GetSelectionRanking, pb.GetSelectionRankingRequest())
    assert [(r.model_id, r.selections) for r in overall.ranking] == [("modnet", 2), ("u2netp", 2)]
    assert await orch.core.rank("product") == ["u2netp"]
    assert await orch.core.rank("nothing yet") == []
    with pytest.raises(NotFound):
        await clients.call(orch.stub.LogSelection, pb.LogSelectionRequest(
            job_id=job.id, owner="mallory", selected_model_id="modnet", image_category="portrait"))


async def test_gallery_lists_searches_pages_and_deletes_the_owners_images(orch):
    owner = f"gallery-{uuid.uuid4().hex[:6]}"
    fox = workflow_spec("fan_out")
    fox.workflow.prompt = "a red fox"
    await wait_for(orch.stub, (await submit(orch.stub, fox, owner=owner)).id, owner=owner)
    await wait_for(orch.stub, (await submit(orch.stub, upscale_spec(), owner=owner)).id, owner=owner)

    async def listing(**kwargs):
        kwargs.setdefault("kinds", [common_pb2.IMAGE_KIND_DERIVED])
        return await clients.call(orch.stub.ListImages, pb.ListImagesRequest(owner=owner, **kwargs))

    # The gallery lists generated images by default: upscales and workflow steps over an input are not.
    assert (await listing(kinds=[])).total_size == 0
    everything = await listing()
    # Outputs only (three workflow steps, one upscale); the uploaded inputs are not derived work either.
    assert everything.total_size == 4
    assert all(r.owner == owner and r.metadata["model_id"] == "lanczos" and r.kind == common_pb2.IMAGE_KIND_DERIVED
               for r in everything.images)
    assert (await listing(kinds=[common_pb2.IMAGE_KIND_INPUT])).total_size == 2
    assert (await listing(search="FOX")).total_size == 3
    assert (await listing(search="zebra")).total_size == 0
    assert (await listing(model_id="lanczos")).total_size == 4
    assert (await listing(model_id="other")).total_size == 0
    second_page = await listing(page_size=3, page=2)
    assert len(second_page.images) == 1 and second_page.total_size == 4
    stranger = f"stranger-{uuid.uuid4().hex[:6]}"
    assert (await clients.call(orch.stub.ListImages, pb.ListImagesRequest(owner=stranger))).total_size == 0

    ref = everything.images[0].ref
    got = await clients.call(orch.stub.GetImage, pb.GetImageRequest(ref=ref, owner=owner))
    assert got.record.ref == ref and got.image.data and got.record.job_id
    await clients.call(orch.stub.DeleteImage, pb.DeleteImageRequest(ref=ref, owner=owner))
    with pytest.raises(NotFound):
        await clients.call(orch.stub.GetImage, pb.GetImageRequest(ref=ref, owner=owner))
    assert (await listing()).total_size == 3


async def test_queue_full_is_resource_exhausted(start_orchestrator, database_url):
    from shared.errors import QueueFull

    orch = await start_orchestrator(database_url, max_pending_jobs=2)
    await orch.core.runner.stop()
    await submit(orch.stub, upscale_spec())
    await submit(orch.stub, upscale_spec())
    with pytest.raises(QueueFull):
        await submit(orch.stub, upscale_spec())
    status = (await clients.call(orch.stub.ListJobs, pb.ListJobsRequest(owner="alice"))).jobs[0].status
    assert status == common_pb2.JOB_STATUS_PENDING


async def test_job_metrics_are_exported(start_orchestrator, database_url):
    import urllib.request

    orch = await start_orchestrator(database_url, metrics_port=0)
    await clients.call(orch.stub.RunJob, pb.RunJobRequest(spec=upscale_spec(), owner="alice"))
    text = urllib.request.urlopen(f"http://127.0.0.1:{orch.runtime.metrics_port}/metrics").read().decode()
    assert 'imagemesh_jobs_finished_total{kind="upscale",status="completed"} 1.0' in text
    assert 'imagemesh_job_duration_seconds_count{kind="upscale"} 1.0' in text
    assert 'imagemesh_job_queue_wait_seconds_count{kind="upscale"} 1.0' in text
    assert "imagemesh_jobs_pending" in text and "imagemesh_jobs_running" in text
