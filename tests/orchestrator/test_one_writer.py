"""The orchestrator is the image store's only writer and the only reader on a backend's behalf.

Generated images are stored by the orchestrator with their job, owner, kind and recipe (image_number 1..n of
total_images n); a synchronous job answers from the bytes in hand; the gallery lists generated images; analytics
counts generations apart from derived work; an image reference is resolved under the job's owner on every path
to a backend. A scripted GenerateService (the real one is tested in tests/generate) returns n images inline.
"""

from __future__ import annotations

import uuid

import grpc
import pytest
import pytest_asyncio
from PIL import Image

from services.orchestrator.server import OrchestratorDeps, build_deps
from services.orchestrator.server import create_server as create_orchestrator
from shared import clients
from shared.clients import create_channel
from shared.errors import NotFound
from shared.gen.imagemesh.v1 import background_removal_service_pb2 as br_pb
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import generate_service_pb2 as gen_pb
from shared.gen.imagemesh.v1 import generate_service_pb2_grpc as gen_grpc
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2_grpc as orch_grpc
from shared.gen.imagemesh.v1 import upscale_service_pb2 as up_pb
from shared.image_store import LocalImageStore
from tests.images import png_bytes
from tests.orchestrator.conftest import Orchestrator, orchestrator_settings
from tests.orchestrator.helpers import png_image, size_of, submit, upscale_spec, wait_for, workflow_spec


class ScriptedGenerate(gen_grpc.GenerateServiceServicer):
    """Answers GenerateStream with `num_images` inline PNGs, seeds 100, 101, ... and a fixed recipe."""

    async def GenerateStream(self, request, context):
        p = request.parameters
        size = (p.width or 16, p.height or 16)
        yield gen_pb.GenerateStreamResponse(result=gen_pb.GenerateResponse(
            images=[gen_pb.GeneratedImage(image=common_pb2.Image(
                data=png_bytes(Image.new("RGB", size, (10 * i, 90, 160))), media_type="image/png",
                width=size[0], height=size[1]), seed=100 + i, index=i) for i in range(p.num_images or 1)],
            metadata=gen_pb.GenerationMetadata(
                model_id="tiny-sd", effective_prompt=f"{p.prompt}, scripted", steps=p.steps or 4,
                guidance_scale=7.5, width=size[0], height=size[1], device="cpu", scheduler="DDIMScheduler",
                cost=common_pb2.Cost(device_seconds=0.1, device_class="cpu"))))


@pytest_asyncio.fixture
async def generate_address():
    server = grpc.aio.server()
    gen_grpc.add_GenerateServiceServicer_to_server(ScriptedGenerate(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(0)


class CountingStore:
    """The real store, recording which references were read (get) and written (put)."""

    def __init__(self, inner: LocalImageStore) -> None:
        self.inner = inner
        self.got: list[str] = []
        self.put_refs: list[str] = []

    def get(self, ref, owner=None):
        self.got.append(ref)
        return self.inner.get(ref, owner)

    def put(self, *args, **kwargs):
        record = self.inner.put(*args, **kwargs)
        self.put_refs.append(record.ref)
        return record

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest_asyncio.fixture
async def counted(tmp_path, database_url, upscale_address, shared_images, generate_address):
    """An orchestrator over a CountingStore (handed in through its deps), with the scripted Generate."""
    store = CountingStore(LocalImageStore(shared_images))
    settings = orchestrator_settings(tmp_path / "counted", database_url, upscale_address, shared_images,
                                     generate_address=generate_address)
    deps = build_deps(settings, OrchestratorDeps(image_store=store))
    runtime, port = create_orchestrator(settings, deps)
    await runtime.start()
    channel = create_channel(f"127.0.0.1:{port}")
    orchestrator = Orchestrator(runtime, port, channel, orch_grpc.OrchestratorServiceStub(channel), settings, deps)
    orchestrator.images = store  # type: ignore[attr-defined]
    yield orchestrator
    await orchestrator.stop()


def _owner(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"  # the image store is shared by the session's tests


def _generate(prompt: str, num_images: int) -> pb.JobSpec:
    return pb.JobSpec(generate=gen_pb.GenerateParameters(
        model="flux-1", prompt=prompt, negative_prompt="blurry", num_images=num_images, steps=3, width=24,
        height=16))


async def _run(orch, spec: pb.JobSpec, owner: str, **labels: str) -> pb.Job:
    reply = await clients.call(orch.stub.RunJob, pb.RunJobRequest(spec=spec, owner=owner, labels=labels))
    return reply.job


async def test_generated_images_are_stored_by_the_orchestrator_with_their_recipe_and_place(counted):
    owner = _owner("painter")
    job = await submit(counted.stub, _generate("a tall lighthouse", 3), owner=owner,
                       labels={"model_requested": "FLUX-1"})
    done = await wait_for(counted.stub, job.id, owner=owner)
    assert done.status == common_pb2.JOB_STATUS_COMPLETED
    refs = [item.image.ref for item in done.result.generate.images]
    assert len(refs) == 3 and all(refs)
    for number, ref in enumerate(refs, start=1):
        record = (await clients.call(counted.stub.GetImage, pb.GetImageRequest(ref=ref, owner=owner))).record
        assert (record.job_id, record.owner, record.kind) == (job.id, owner, common_pb2.IMAGE_KIND_GENERATED)
        meta = dict(record.metadata)
        assert (meta["image_number"], meta["total_images"], meta["seed"]) == (str(number), "3", str(99 + number))
        assert (meta["prompt"], meta["negative_prompt"], meta["effective_prompt"]) == (
            "a tall lighthouse", "blurry", "a tall lighthouse, scripted")
        assert (meta["model_requested"], meta["model_id"]) == ("FLUX-1", "tiny-sd")
        assert (meta["steps"], meta["guidance_scale"], meta["width"], meta["height"]) == ("3", "7.5", "24", "16")


async def test_without_a_label_the_model_named_in_the_spec_is_recorded(counted):
    owner = _owner("flow")
    done = await _run(counted, _generate("a quiet harbour", 2), owner)
    stored = counted.images.inner.list(owner)
    assert {r.metadata["model_requested"] for r in stored} == {"flux-1"}  # no label: the spec's name
    assert sorted(r.metadata["image_number"] for r in stored) == ["1", "2"]
    assert all(item.image.data for item in done.result.generate.images)


@pytest.mark.parametrize("spec", [
    pytest.param(lambda: _generate("a red kite", 2), id="generate"),
    pytest.param(upscale_spec, id="upscale"),
    pytest.param(lambda: workflow_spec("fan_out"), id="workflow"),
])
async def test_run_job_answers_from_the_bytes_in_hand(counted, spec):
    """A synchronous job writes its uploads and outputs once and never reads them back, not even to hand a
    later step its input."""
    owner = _owner("sync")
    counted.images.got.clear()
    job = await _run(counted, spec(), owner)
    assert job.status == common_pb2.JOB_STATUS_COMPLETED
    outputs = [image for image in _images(job.result)]
    assert outputs and all(image.WhichOneof("source") == "data" and size_of(image.data) for image in outputs)
    assert counted.images.got == []
    # Stored once all the same: every image the job made is in the store under its job id.
    mine = counted.images.inner.list(owner)
    assert mine and {r.job_id for r in mine} == {job.id}
    assert {r.ref for r in mine} <= set(counted.images.put_refs)


def _images(result: pb.JobResult) -> list[common_pb2.Image]:
    kind = result.WhichOneof("result")
    if kind == "generate":
        return [item.image for item in result.generate.images]
    if kind == "workflow":
        return list(result.workflow.images)
    return [getattr(result, kind).image]


async def test_submitted_jobs_are_still_read_from_the_store(counted):
    """Only a waiting RunJob holds bytes; a submitted job's result is references, read on demand."""
    owner = _owner("later")
    done = await wait_for(counted.stub, (await submit(counted.stub, upscale_spec(), owner=owner)).id, owner=owner)
    ref = done.result.upscale.image.ref
    assert ref and done.result.upscale.image.WhichOneof("source") == "ref"
    got = await clients.call(counted.stub.GetImage, pb.GetImageRequest(ref=ref, owner=owner))
    assert size_of(got.image.data) == (32, 32)


async def test_gallery_lists_generated_images_only_and_analytics_count_them_apart(counted):
    owner = _owner("gallery")
    generated = await _run(counted, _generate("a green comet", 2), owner, model_requested="flux-1")
    upscaled = await _run(counted, upscale_spec(), owner)
    gallery = await clients.call(counted.stub.ListImages, pb.ListImagesRequest(owner=owner))
    assert gallery.total_size == 2
    assert all(r.kind == common_pb2.IMAGE_KIND_GENERATED and r.metadata["prompt"] == "a green comet"
               and r.metadata["model_id"] == "tiny-sd" and r.metadata["model_requested"] == "flux-1"
               for r in gallery.images)
    assert {r.job_id for r in gallery.images} == {generated.id}
    derived = await clients.call(counted.stub.ListImages, pb.ListImagesRequest(
        owner=owner, kinds=[common_pb2.IMAGE_KIND_DERIVED]))
    assert [r.job_id for r in derived.images] == [upscaled.id] and not derived.images[0].metadata["prompt"]

    analytics = await clients.call(counted.stub.GetAnalytics, pb.GetAnalyticsRequest(owner=owner))
    assert analytics.total == 2
    assert (analytics.generations.total, analytics.generations.successful) == (1, 1)
    assert dict(analytics.generations.models_used) == {"tiny-sd": 1}
    assert (analytics.derived.total, dict(analytics.derived.models_used)) == (1, {"lanczos": 1})
    assert [(d.generations, d.generation_jobs, d.derived_jobs) for d in analytics.daily] == [(2, 1, 1)]


def _with_ref(ref: str) -> dict:
    image = common_pb2.Image(ref=ref)
    return {
        "upscale": pb.JobSpec(upscale=up_pb.UpscaleRequest(image=image, scale_factor=2)),
        "relight": pb.JobSpec(relight=up_pb.RelightRequest(image=image, lighting_style="professional")),
        "optimize_social": pb.JobSpec(optimize_social=up_pb.OptimizeSocialRequest(image=image,
                                                                                  platforms=["instagram"])),
        "remove_background": pb.JobSpec(remove_background=br_pb.RemoveBackgroundRequest(image=image)),
        "generate_init_image": pb.JobSpec(generate=gen_pb.GenerateParameters(
            prompt="x", operation=gen_pb.GENERATE_OPERATION_IMAGE_TO_IMAGE, init_image=image)),
        "generate_mask_image": pb.JobSpec(generate=gen_pb.GenerateParameters(
            prompt="x", operation=gen_pb.GENERATE_OPERATION_INPAINT, init_image=png_image(),
            mask_image=image)),
        "shotgun": pb.JobSpec(shotgun=pb.ShotgunSpec(image=image, models=["u2netp"])),
        "workflow": pb.JobSpec(workflow=pb.WorkflowSpec(workflow_id="fan_out", image=image)),
    }


PATHS = list(_with_ref("img_" + "0" * 32))


@pytest.mark.parametrize("path", PATHS)
async def test_another_owners_reference_reaches_no_backend(counted, path):
    alice = _owner("alice")
    done = await wait_for(counted.stub, (await submit(counted.stub, upscale_spec(), owner=alice)).id, owner=alice)
    stolen = _with_ref(done.result.upscale.image.ref)[path]
    with pytest.raises(NotFound) as err:
        await _run(counted, stolen, "mallory")
    assert err.value.reason == "IMAGE_NOT_FOUND"
    queued = await wait_for(counted.stub, (await submit(counted.stub, stolen, owner="mallory")).id, owner="mallory")
    assert queued.status == common_pb2.JOB_STATUS_FAILED and queued.error.reason == "IMAGE_NOT_FOUND"


async def test_stream_shotgun_reads_a_reference_under_its_owner(counted):
    alice = _owner("alice")
    done = await wait_for(counted.stub, (await submit(counted.stub, upscale_spec(), owner=alice)).id, owner=alice)
    spec = pb.ShotgunSpec(image=common_pb2.Image(ref=done.result.upscale.image.ref), models=["u2netp"])
    with pytest.raises(NotFound) as err:
        async for _ in clients.stream(counted.stub.StreamShotgun, pb.StreamShotgunRequest(spec=spec, owner="mallory")):
            pass
    assert err.value.reason == "IMAGE_NOT_FOUND"
