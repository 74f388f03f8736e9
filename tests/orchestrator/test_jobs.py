"""Durable jobs over both stores: submit/get/list, idempotency, cancel, owner isolation, RunJob."""

from __future__ import annotations

import asyncio

import pytest

from services.orchestrator.job_store import JobStore, NewJob, make_engine, spec_hash
from services.orchestrator.migrate import BASELINE
from shared import clients
from shared.errors import Cancelled, IdempotencyKeyReused, InvalidArgument, NotFound
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
from shared.gen.imagemesh.v1 import upscale_service_pb2 as up_pb
from tests.orchestrator.helpers import get, size_of, submit, upscale_spec, wait_for, workflow_spec


async def test_submit_returns_pending_id_then_completes_with_stored_result(orch):
    job = await submit(orch.stub, upscale_spec(16, 2))
    # The submit answers with the row it created: pending, whatever a worker does next.
    assert job.id.startswith("job_") and job.status == common_pb2.JOB_STATUS_PENDING
    # The uploaded image went to the image store; the row holds a reference.
    assert job.spec.upscale.image.WhichOneof("source") == "ref"
    done = await wait_for(orch.stub, job.id)
    assert done.status == common_pb2.JOB_STATUS_COMPLETED
    assert [s.name for s in done.steps] == ["upscale"] and done.steps[0].status == common_pb2.JOB_STATUS_COMPLETED
    ref = done.result.upscale.image.ref
    assert ref and done.steps[0].outputs[0].ref == ref
    image = await clients.call(orch.stub.GetImage, pb.GetImageRequest(ref=ref, owner="alice"))
    assert size_of(image.image.data) == (32, 32)
    assert done.result.upscale.output_dimensions.width == 32
    assert done.cost.device_seconds > 0 and done.cost.device_class == "cpu"
    assert done.cost.usd == pytest.approx(done.cost.device_seconds * orch.settings.price_per_second_usd["cpu"])
    assert done.model_id == "lanczos"


async def test_idempotent_submit_returns_the_same_job(orch):
    first = await submit(orch.stub, upscale_spec(), idempotency_key="key-1")
    again = await submit(orch.stub, upscale_spec(), idempotency_key="key-1")
    other_owner = await submit(orch.stub, upscale_spec(), owner="bob", idempotency_key="key-1")
    assert again.id == first.id
    assert other_owner.id != first.id
    listed = await clients.call(orch.stub.ListJobs, pb.ListJobsRequest(owner="alice"))
    assert listed.total_size == 1


async def test_concurrent_idempotent_submits_create_one_job(orch):
    jobs = await asyncio.gather(*(submit(orch.stub, upscale_spec(), idempotency_key="race") for _ in range(8)))
    assert len({job.id for job in jobs}) == 1


async def test_a_key_reused_for_another_spec_is_refused(orch):
    first = await submit(orch.stub, upscale_spec(16, 2), idempotency_key="key-2")
    with pytest.raises(IdempotencyKeyReused) as refused:
        await submit(orch.stub, upscale_spec(16, 4), idempotency_key="key-2")
    assert refused.value.reason == "IDEMPOTENCY_KEY_REUSED" and refused.value.grpc_code.name == "FAILED_PRECONDITION"
    assert refused.value.metadata == {"idempotency_key": "key-2", "job_id": first.id}
    # Another image is another request too; RunJob refuses the same way.
    with pytest.raises(IdempotencyKeyReused):
        await submit(orch.stub, upscale_spec(20, 2), idempotency_key="key-2")
    with pytest.raises(IdempotencyKeyReused):
        await clients.call(orch.stub.RunJob, pb.RunJobRequest(spec=upscale_spec(16, 4), owner="alice",
                                                              idempotency_key="key-2"))
    # The same request still gets the same job; the key is per owner.
    assert (await submit(orch.stub, upscale_spec(16, 2), idempotency_key="key-2")).id == first.id
    assert (await submit(orch.stub, upscale_spec(16, 4), owner="bob", idempotency_key="key-2")).id != first.id
    listed = await clients.call(orch.stub.ListJobs, pb.ListJobsRequest(owner="alice"))
    assert [job.id for job in listed.jobs] == [first.id]


async def test_racing_submits_of_one_key_with_two_specs_make_one_job(orch):
    scales = [2, 4] * 4
    replies = await asyncio.gather(*(submit(orch.stub, upscale_spec(16, scale), idempotency_key="race-2")
                                     for scale in scales), return_exceptions=True)
    jobs = [reply for reply in replies if isinstance(reply, pb.Job)]
    assert len({job.id for job in jobs}) == 1
    winner = jobs[0].spec.upscale.scale_factor
    for scale, reply in zip(scales, replies):
        if scale == winner:
            assert isinstance(reply, pb.Job) and reply.id == jobs[0].id
        else:
            assert isinstance(reply, IdempotencyKeyReused), reply


def test_the_store_compares_spec_hashes_and_adds_the_column_to_an_old_database(database_url):
    store = JobStore(make_engine(database_url))
    # A database from before spec hashes were kept, which the upgrade to head gives the column.
    store.migrate(BASELINE)
    store.migrate()
    old, _ = store.create_job(NewJob(owner="o", kind="upscale", spec=upscale_spec(), idempotency_key="old"))
    # Its rows have no hash: a repeated key can't be compared and answers with the earlier job.
    assert store.find_idempotent("o", "old", spec_hash(upscale_spec(16, 4))).id == old.id
    new, created = store.create_job(NewJob(owner="o", kind="upscale", spec=upscale_spec(), idempotency_key="k",
                                           spec_hash=spec_hash(upscale_spec())))
    assert created
    again, created = store.create_job(NewJob(owner="o", kind="upscale", spec=upscale_spec(), idempotency_key="k",
                                             spec_hash=spec_hash(upscale_spec())))
    assert (again.id, created) == (new.id, False)
    with pytest.raises(IdempotencyKeyReused):
        store.create_job(NewJob(owner="o", kind="upscale", spec=upscale_spec(16, 4), idempotency_key="k",
                                spec_hash=spec_hash(upscale_spec(16, 4))))
    store.engine.dispose()


async def test_another_owners_job_is_not_found(orch):
    job = await submit(orch.stub, upscale_spec())
    for call, request in ((orch.stub.GetJob, pb.GetJobRequest(job_id=job.id, owner="mallory")),
                          (orch.stub.CancelJob, pb.CancelJobRequest(job_id=job.id, owner="mallory"))):
        with pytest.raises(NotFound):
            await clients.call(call, request)
    done = await wait_for(orch.stub, job.id)
    ref = done.result.upscale.image.ref
    with pytest.raises(NotFound):
        await clients.call(orch.stub.GetImage, pb.GetImageRequest(ref=ref, owner="mallory"))
    with pytest.raises(NotFound):
        await clients.call(orch.stub.DeleteImage, pb.DeleteImageRequest(ref=ref, owner="mallory"))
    with pytest.raises(NotFound):
        await clients.call(orch.stub.GetJob, pb.GetJobRequest(job_id="job_nope", owner="alice"))


async def test_cancel_pending_job_is_dropped(start_orchestrator, database_url):
    # No workers: the job stays pending until cancelled.
    orch = await start_orchestrator(database_url, job_workers=1)
    await orch.core.runner.stop()
    job = await submit(orch.stub, upscale_spec())
    cancelled = (await clients.call(orch.stub.CancelJob, pb.CancelJobRequest(job_id=job.id, owner="alice"))).job
    assert cancelled.status == common_pb2.JOB_STATUS_CANCELLED
    assert cancelled.error.reason == "CANCELLED" and not cancelled.steps


async def test_cancel_running_job_interrupts_it(orch):
    job = await submit(orch.stub, workflow_spec("slow", sleep_s=30))
    async with asyncio.timeout(30):
        while not any(s.name == "wait" and s.status == common_pb2.JOB_STATUS_RUNNING
                      for s in (await get(orch.stub, job.id)).steps):
            await asyncio.sleep(0.05)
    cancelled = (await clients.call(orch.stub.CancelJob, pb.CancelJobRequest(job_id=job.id, owner="alice"))).job
    assert cancelled.status == common_pb2.JOB_STATUS_CANCELLED
    assert cancelled.error.reason == "CANCELLED"
    steps = {s.name: s.status for s in cancelled.steps}
    # The waiting step was interrupted mid-run; the upscale after it never started.
    assert steps == {"wait": common_pb2.JOB_STATUS_CANCELLED, "upscale": common_pb2.JOB_STATUS_SKIPPED}


async def test_list_filters_and_paginates_newest_first(orch):
    ids = [(await submit(orch.stub, upscale_spec())).id for _ in range(5)]
    await submit(orch.stub, upscale_spec(), owner="bob")
    for job_id in ids:
        await wait_for(orch.stub, job_id)
    seen, token = [], ""
    while True:
        page = await clients.call(orch.stub.ListJobs, pb.ListJobsRequest(owner="alice", page_size=2, page_token=token))
        assert page.total_size == 5
        seen += [j.id for j in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(ids))
    completed = await clients.call(orch.stub.ListJobs, pb.ListJobsRequest(
        owner="alice", statuses=[common_pb2.JOB_STATUS_COMPLETED], kind="upscale", model_id="lanczos"))
    assert completed.total_size == 5
    none = await clients.call(orch.stub.ListJobs, pb.ListJobsRequest(owner="alice", kind="generate"))
    assert none.total_size == 0
    with pytest.raises(InvalidArgument):
        await clients.call(orch.stub.ListJobs, pb.ListJobsRequest(owner="alice", page_token="garbage!"))


async def test_run_job_returns_the_terminal_job_with_inline_image(orch):
    reply = await clients.call(orch.stub.RunJob, pb.RunJobRequest(spec=upscale_spec(16, 4), owner="alice"))
    assert reply.job.status == common_pb2.JOB_STATUS_COMPLETED
    assert size_of(reply.job.result.upscale.image.data) == (64, 64)


async def test_run_job_raises_the_backends_error(orch):
    with pytest.raises(InvalidArgument) as err:
        await clients.call(orch.stub.RunJob, pb.RunJobRequest(spec=upscale_spec(16, 99), owner="alice"))
    assert err.value.metadata.get("field") == "scale_factor"
    failed = await clients.call(orch.stub.ListJobs, pb.ListJobsRequest(owner="alice",
                                                                       statuses=[common_pb2.JOB_STATUS_FAILED]))
    assert failed.total_size == 1 and failed.jobs[0].error.reason == "INVALID_ARGUMENT"


async def test_watch_streams_until_terminal(orch):
    job = await submit(orch.stub, workflow_spec("fan_out"))
    events = []
    async for event in clients.stream(orch.stub.WatchJob, pb.WatchJobRequest(job_id=job.id, owner="alice")):
        events.append(event)
    assert events[0].type == pb.JOB_EVENT_TYPE_STATUS
    assert events[-1].type == pb.JOB_EVENT_TYPE_STATUS and events[-1].job.status == common_pb2.JOB_STATUS_COMPLETED
    stepped = {e.step_name for e in events if e.type == pb.JOB_EVENT_TYPE_STEP}
    assert stepped == {"base", "wide_a", "wide_b", "gather"}


async def test_watch_of_another_owners_job_is_not_found(orch):
    job = await submit(orch.stub, upscale_spec())
    with pytest.raises(NotFound):
        async for _ in clients.stream(orch.stub.WatchJob, pb.WatchJobRequest(job_id=job.id, owner="mallory")):
            pass


async def test_cancelled_run_job_raises_cancelled(orch):
    task = asyncio.create_task(clients.call(orch.stub.RunJob, pb.RunJobRequest(
        spec=workflow_spec("slow", sleep_s=30), owner="alice")))
    listed = None
    async with asyncio.timeout(30):
        while not listed:
            listed = (await clients.call(orch.stub.ListJobs, pb.ListJobsRequest(
                owner="alice", statuses=[common_pb2.JOB_STATUS_RUNNING]))).jobs
            await asyncio.sleep(0.05)
    await clients.call(orch.stub.CancelJob, pb.CancelJobRequest(job_id=listed[0].id, owner="alice"))
    with pytest.raises(Cancelled):
        await task
    assert (await get(orch.stub, listed[0].id)).status == common_pb2.JOB_STATUS_CANCELLED


async def test_cancel_running_single_call_job_marks_its_step_cancelled(start_orchestrator, database_url):
    # A backend that never answers (a listening socket nobody serves) keeps the upscale call in flight.
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        orch = await start_orchestrator(database_url, upscale_address=f"127.0.0.1:{silent.getsockname()[1]}")
        job = await submit(orch.stub, upscale_spec())
        await wait_for(orch.stub, job.id, statuses={common_pb2.JOB_STATUS_RUNNING})
        cancelled = (await clients.call(orch.stub.CancelJob, pb.CancelJobRequest(job_id=job.id, owner="alice"))).job
        assert cancelled.status == common_pb2.JOB_STATUS_CANCELLED
        assert [(s.name, s.status) for s in cancelled.steps] == [("upscale", common_pb2.JOB_STATUS_CANCELLED)]
    finally:
        silent.close()


async def test_a_spec_cannot_read_another_owners_image_by_reference(orch):
    done = await wait_for(orch.stub, (await submit(orch.stub, upscale_spec())).id)
    alices = done.result.upscale.image.ref
    stolen = pb.JobSpec(upscale=up_pb.UpscaleRequest(image=common_pb2.Image(ref=alices), scale_factor=2))
    with pytest.raises(NotFound) as err:
        await clients.call(orch.stub.RunJob, pb.RunJobRequest(spec=stolen, owner="mallory"))
    assert err.value.reason == "IMAGE_NOT_FOUND"
    # Her own reference works: a gallery image as the input of a new job.
    reused = await clients.call(orch.stub.RunJob, pb.RunJobRequest(
        spec=pb.JobSpec(upscale=up_pb.UpscaleRequest(image=common_pb2.Image(ref=alices), scale_factor=2)),
        owner="alice"))
    assert size_of(reused.job.result.upscale.image.data) == (64, 64)
