"""A generate job asking for more images than Generate takes in one request runs as several requests whose seeds
continue image by image: a real Generate server (tiny pipeline, limit 2 images a request) behind the orchestrator."""

from __future__ import annotations

import uuid

import pytest_asyncio

from shared import clients
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import generate_service_pb2 as gen_pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
from tests.generate.conftest import start_generate
from tests.orchestrator.helpers import submit, wait_for


@pytest_asyncio.fixture
async def limited_generate(tmp_path):
    server = await start_generate(tmp_path / "generate", max_images_per_request=2, max_batch_images=2,
                                  torch_threads=1)
    yield server
    await server.close()


def _spec(num_images: int, seed: int | None = None) -> pb.JobSpec:
    params = gen_pb.GenerateParameters(prompt="a lighthouse", steps=1, width=64, height=64, num_images=num_images)
    if seed is not None:
        params.seed = seed
    return pb.JobSpec(generate=params)


async def test_images_past_the_limit_are_batched_with_continuing_seeds(start_orchestrator, database_url,
                                                                      limited_generate):
    listing = await clients.call(limited_generate.stub.ListModels, gen_pb.ListModelsRequest())
    assert {m.max_images_per_request for m in listing.models} == {2}
    orch = await start_orchestrator(database_url, generate_address=f"127.0.0.1:{limited_generate.runtime.port}")
    owner = f"painter-{uuid.uuid4().hex[:6]}"
    job = await wait_for(orch.stub, (await submit(orch.stub, _spec(5, seed=100), owner=owner)).id, owner)
    assert job.status == common_pb2.JOB_STATUS_COMPLETED, job.error
    images = job.result.generate.images
    assert [item.seed for item in images] == [100, 101, 102, 103, 104]
    assert [item.index for item in images] == [0, 1, 2, 3, 4]
    assert len({item.image.ref for item in images}) == 5
    assert any("3 requests of at most 2 images" in note for note in job.result.generate.notes)
    assert job.result.generate.metadata.cost.device_seconds > 0

    # A random seed: Generate draws the first, the later batches continue from it.
    job = await wait_for(orch.stub, (await submit(orch.stub, _spec(3), owner=owner)).id, owner)
    assert job.status == common_pb2.JOB_STATUS_COMPLETED, job.error
    seeds = [item.seed for item in job.result.generate.images]
    assert seeds == [seeds[0], seeds[0] + 1, seeds[0] + 2]


async def test_a_job_past_the_orchestrators_image_cap_fails_naming_num_images(start_orchestrator, database_url,
                                                                             limited_generate):
    orch = await start_orchestrator(database_url, generate_address=f"127.0.0.1:{limited_generate.runtime.port}",
                                    max_images_per_job=4)
    owner = f"painter-{uuid.uuid4().hex[:6]}"
    job = await wait_for(orch.stub, (await submit(orch.stub, _spec(5, seed=1), owner=owner)).id, owner)
    assert job.status == common_pb2.JOB_STATUS_FAILED
    assert job.error.reason == "INVALID_ARGUMENT" and "num_images" in job.error.message
