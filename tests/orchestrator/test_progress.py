"""Progress from a backend's own stream (Generate's denoising steps) reaches the job and WatchJob.

The Generate service is built in its own issue; here a scripted GenerateService speaks its streaming contract
(progress events, then the result) on a real gRPC server, only to test how the orchestrator carries progress,
prices the call by the device class the service reports, and stores the image. It is a test double, not a
generator.
"""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
import pytest_asyncio
from PIL import Image

from shared import clients
from shared.gen.imagemesh.v1 import (
    common_pb2,
)
from shared.gen.imagemesh.v1 import (
    generate_service_pb2 as gen_pb,
)
from shared.gen.imagemesh.v1 import (
    generate_service_pb2_grpc as gen_grpc,
)
from shared.gen.imagemesh.v1 import (
    orchestrator_service_pb2 as pb,
)
from tests.images import png_bytes
from tests.orchestrator.helpers import submit


# A prompt listed here holds its generation after step 1 until the test sets the event (it has seen step 1).
GATES: dict[str, asyncio.Event] = {}


class ScriptedGenerate(gen_grpc.GenerateServiceServicer):
    async def GenerateStream(self, request, context):
        total = request.parameters.steps
        for step in range(1, total + 1):
            yield gen_pb.GenerateStreamResponse(progress=common_pb2.Progress(
                stage=common_pb2.STAGE_GENERATING, step=step, total_steps=total, fraction=step / total,
                message=f"Step {step}/{total}"))
            gate = GATES.get(request.parameters.prompt)
            if step == 1 and gate is not None:
                await asyncio.wait_for(gate.wait(), 120)
            await asyncio.sleep(0.3)  # longer than the orchestrator's progress write interval
        size = (request.parameters.width, request.parameters.height)
        yield gen_pb.GenerateStreamResponse(result=gen_pb.GenerateResponse(
            images=[gen_pb.GeneratedImage(image=common_pb2.Image(
                data=png_bytes(Image.new("RGB", size, (40, 90, 160))), media_type="image/png",
                width=size[0], height=size[1]), seed=7)],
            metadata=gen_pb.GenerationMetadata(model_id="scripted", cost=common_pb2.Cost(
                device_seconds=0.5, device_class="cuda"))))


@pytest_asyncio.fixture
async def generate_address():
    server = grpc.aio.server()
    gen_grpc.add_GenerateServiceServicer_to_server(ScriptedGenerate(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(0)


async def test_generation_progress_is_watched_and_the_call_priced_by_its_device(start_orchestrator, database_url,
                                                                               generate_address):
    orch = await start_orchestrator(database_url, generate_address=generate_address)
    spec = pb.JobSpec(generate=gen_pb.GenerateParameters(prompt="a lighthouse", steps=4, width=24, height=16))
    owner = f"painter-{uuid.uuid4().hex[:6]}"  # the image store is shared by the session's tests
    job = await submit(orch.stub, spec, owner=owner)
    progress_steps = []
    async for event in clients.stream(orch.stub.WatchJob, pb.WatchJobRequest(job_id=job.id, owner=owner)):
        if event.type == pb.JOB_EVENT_TYPE_PROGRESS and event.job.progress.step:
            progress_steps.append((event.job.progress.step, event.job.progress.message))
        last = event.job
    assert last.status == common_pb2.JOB_STATUS_COMPLETED
    steps = [step for step, _ in progress_steps]
    assert len(set(steps)) >= 3 and steps == sorted(steps)
    assert all(message == f"Step {step}/4" for step, message in progress_steps)
    # Priced from the service's own measured seconds and device class.
    assert (last.cost.device_seconds, last.cost.device_class) == (0.5, "cuda")
    assert last.cost.usd == pytest.approx(0.5 * orch.settings.price_per_second_usd["cuda"])
    assert last.model_id == "scripted"
    ref = last.result.generate.images[0].image.ref
    gallery = await clients.call(orch.stub.ListImages, pb.ListImagesRequest(owner=owner, search="lighthouse"))
    assert [r.ref for r in gallery.images] == [ref]
    assert gallery.images[0].metadata["model_id"] == "scripted"


async def test_progress_interval_is_a_setting_and_drops_steps_without_inventing_any(start_orchestrator, database_url,
                                                                                     generate_address):
    # Steps come every 0.3 s; with a 60 s interval only the first step of the generating stage is ever written
    # (a change of stage always is).
    orch = await start_orchestrator(database_url, generate_address=generate_address, progress_interval_s=60.0)
    owner = f"painter-{uuid.uuid4().hex[:6]}"
    prompt = f"a slow lighthouse {owner}"
    GATES[prompt] = asyncio.Event()  # step 1 is held until this watcher has seen it: it cannot be missed
    job = await submit(orch.stub, pb.JobSpec(generate=gen_pb.GenerateParameters(
        prompt=prompt, steps=3, width=8, height=8)), owner=owner)
    steps = []
    try:
        async for event in clients.stream(orch.stub.WatchJob, pb.WatchJobRequest(job_id=job.id, owner=owner)):
            if event.job.progress.step:
                steps.append(event.job.progress.step)
                GATES[prompt].set()
            last = event.job
    finally:
        GATES.pop(prompt).set()
    assert last.status == common_pb2.JOB_STATUS_COMPLETED
    # Step 1 is written (the first of its stage), steps 2 and 3 came within the interval and never show.
    assert set(steps) == {1}


class _RecordingStore:
    def __init__(self) -> None:
        self.writes: list[tuple[int, int]] = []

    async def save_progress(self, job_id, token, progress) -> None:
        self.writes.append((progress.stage, progress.step))


class _Claim:
    class job:  # noqa: N801 - mimics Claim.job
        id = "job_x"

    token = "t"


class _Pulse:
    def notify(self) -> None:
        pass


@pytest.mark.parametrize("interval,expected", [
    # Throttled: the first write of each stage only (a change of stage is always written).
    (60.0, [(common_pb2.STAGE_LOADING, 0), (common_pb2.STAGE_GENERATING, 1), (common_pb2.STAGE_ENCODING, 0)]),
    # No throttle: every event.
    (0.0, [(common_pb2.STAGE_LOADING, 0), (common_pb2.STAGE_GENERATING, 1), (common_pb2.STAGE_GENERATING, 2),
           (common_pb2.STAGE_GENERATING, 3), (common_pb2.STAGE_ENCODING, 0)]),
])
async def test_progress_writes_are_throttled_per_stage(interval, expected):
    from services.orchestrator.job_runner import ClaimSink

    store = _RecordingStore()
    sink = ClaimSink(store, _Claim(), _Pulse(), progress_interval_s=interval)
    for stage, step in [(common_pb2.STAGE_LOADING, 0), (common_pb2.STAGE_GENERATING, 1),
                        (common_pb2.STAGE_GENERATING, 2), (common_pb2.STAGE_GENERATING, 3),
                        (common_pb2.STAGE_ENCODING, 0)]:
        await sink.save_progress(common_pb2.Progress(stage=stage, step=step, total_steps=3))
    assert store.writes == expected
