"""GenerateStream progress, cancellation (client gone, deadline) and the bounded queue."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import pytest_asyncio

from shared.clients import call, stream
from shared.errors import ImageMeshError
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import generate_service_pb2 as pb
from tests.generate.conftest import params, start_generate

LONG = 800  # steps: ~10 ms each at 64x64; every run below is cancelled after a few


async def events_of(server, **kwargs) -> list[pb.GenerateStreamResponse]:
    request = pb.GenerateStreamRequest(parameters=params(**kwargs))
    return [event async for event in stream(server.stub.GenerateStream, request)]


async def wait_for(predicate, what: str, timeout_s: float = 60.0) -> None:
    """Poll a server-side fact; the cap only turns a hang into a failure, it is not a timing assertion."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest_asyncio.fixture(scope="module")
async def busy(tmp_path_factory):
    """A server with room for one queued request, to fill its queue on purpose."""
    server = await start_generate(tmp_path_factory.mktemp("busy"), max_queue=1)
    yield server
    await server.close()


@pytest.mark.parametrize("steps,num_images", [(5, 1), (4, 2)])
async def test_one_progress_event_per_step_then_the_result(gen, steps, num_images):
    events = await events_of(gen, steps=steps, num_images=num_images)
    assert events[-1].WhichOneof("event") == "result"
    assert len(events[-1].result.images) == num_images
    progress = [e.progress for e in events[:-1]]
    assert all(e.WhichOneof("event") == "progress" for e in events[:-1])
    generating = [p for p in progress if p.stage == common_pb2.STAGE_GENERATING]
    assert len(generating) == steps
    assert [p.step for p in generating] == list(range(1, steps + 1))
    assert {p.total_steps for p in generating} == {steps}
    assert generating[-1].fraction == 1.0 and generating[0].message.endswith(f"Step 1/{steps}")
    assert progress[0].stage == common_pb2.STAGE_QUEUED and progress[-1].stage == common_pb2.STAGE_ENCODING
    stages = [p.stage for p in progress]
    assert stages == sorted(stages)  # queued -> (loading) -> generating -> encoding, never backwards


async def test_image_to_image_reports_the_steps_it_really_runs(gen):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 10)).save(buf, "PNG")
    events = await events_of(gen, steps=8, strength=0.5, operation=pb.GENERATE_OPERATION_IMAGE_TO_IMAGE,
                             init_image=common_pb2.Image(data=buf.getvalue()))
    generating = [e.progress for e in events if e.HasField("progress") and
                  e.progress.stage == common_pb2.STAGE_GENERATING]
    assert [p.step for p in generating] == [1, 2, 3, 4] and {p.total_steps for p in generating} == {4}


async def test_a_cancelled_stream_stops_the_pipeline_and_frees_the_worker(busy):
    worker = busy.core.worker
    reference = await call(busy.stub.Generate, pb.GenerateRequest(parameters=params(seed=5)))
    before = len(worker.stats.interrupted)
    call_ = busy.stub.GenerateStream(pb.GenerateStreamRequest(parameters=params(steps=LONG)))
    seen = 0
    async for event in call_:
        if event.HasField("progress") and event.progress.stage == common_pb2.STAGE_GENERATING:
            seen = event.progress.step
            if seen >= 2:
                call_.cancel()
                break
    assert seen >= 2
    await wait_for(lambda: len(worker.stats.interrupted) > before, "the pipeline to be interrupted")
    steps_run, total = worker.stats.interrupted[-1]
    assert total == LONG and seen <= steps_run < LONG
    # The worker is free: the next request runs and completes.
    reply = await call(busy.stub.Generate, pb.GenerateRequest(parameters=params(seed=5)))
    assert reply.images[0].seed == 5 and reply.metadata.batch_size == 1
    # An interrupted call leaves no state behind in the pipeline or its scheduler.
    assert reply.images[0].image.data == reference.images[0].image.data


async def test_a_passed_deadline_stops_the_pipeline_and_frees_the_worker(busy):
    worker = busy.core.worker
    before = len(worker.stats.interrupted)
    with pytest.raises(ImageMeshError) as info:
        await call(busy.stub.Generate, pb.GenerateRequest(parameters=params(steps=LONG)), timeout=1.5)
    assert info.value.reason == "DEADLINE_EXCEEDED"
    await wait_for(lambda: len(worker.stats.interrupted) > before, "the pipeline to be interrupted")
    assert worker.stats.interrupted[-1][0] < LONG
    reply = await call(busy.stub.Generate, pb.GenerateRequest(parameters=params()))
    assert len(reply.images) == 1


async def test_past_the_queue_bound_requests_get_queue_full(busy):
    worker = busy.core.worker
    running = busy.stub.GenerateStream(pb.GenerateStreamRequest(parameters=params(steps=LONG)))
    async for event in running:
        if event.HasField("progress") and event.progress.stage == common_pb2.STAGE_GENERATING:
            break
    # Different size: not batchable with the running call, so it waits in the queue (bound 1).
    queued = asyncio.create_task(call(busy.stub.Generate, pb.GenerateRequest(parameters=params(width=72))))
    await wait_for(lambda: worker.queued == 1, "the second request to be queued")
    with pytest.raises(ImageMeshError) as info:
        await call(busy.stub.Generate, pb.GenerateRequest(parameters=params()))
    assert info.value.reason == "QUEUE_FULL" and info.value.grpc_code == grpc.StatusCode.RESOURCE_EXHAUSTED
    # A queued request whose caller leaves gives its place back.
    queued.cancel()
    await wait_for(lambda: worker.queued == 0, "the cancelled request to leave the queue")
    running.cancel()
    reply = await call(busy.stub.Generate, pb.GenerateRequest(parameters=params()))
    assert len(reply.images) == 1


async def test_a_bad_stream_request_fails_with_the_same_error_as_unary(gen):
    with pytest.raises(ImageMeshError) as info:
        await events_of(gen, steps=10_000)
    assert (info.value.reason, info.value.metadata["field"]) == ("INVALID_ARGUMENT", "steps")
