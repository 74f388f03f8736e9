"""The shipped workflows end to end over the real services: tiny Stable Diffusion (Generate), u2netp
(BackgroundRemoval), Lanczos/relight/social crops (Upscale). One store (SQLite): the store's behaviour is covered
on both backends elsewhere; here the point is the chains themselves."""

from __future__ import annotations

import io

import pytest
import pytest_asyncio
from PIL import Image

from services.background_removal.server import create_server as create_br
from services.background_removal.settings import BackgroundRemovalSettings
from services.generate.server import create_server as create_generate
from services.generate.settings import GenerateSettings
from shared import clients
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
from tests.images import png_bytes
from tests.mesh import MODELS_DIR, service_kwargs
from tests.orchestrator.helpers import wait_for

COMPLETED = common_pb2.JOB_STATUS_COMPLETED
SIZE = {"width": 64, "height": 64, "steps": 2}


@pytest.fixture(scope="module", autouse=True)
def _few_threads():
    import torch

    torch.set_num_threads(1)


@pytest_asyncio.fixture(scope="module")
async def backends(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("backends")
    generate, generate_port = create_generate(GenerateSettings(**service_kwargs(tmp / "generate"), device="cpu",
                                                               torch_threads=1, batch_window_ms=0))
    removal, removal_port = create_br(BackgroundRemovalSettings(**service_kwargs(tmp / "br"), default_model="u2netp"))
    await generate.start()
    await removal.start()
    yield {"generate_address": f"127.0.0.1:{generate_port}",
           "background_removal_address": f"127.0.0.1:{removal_port}"}
    await generate.stop(0)
    await removal.stop(0)


@pytest_asyncio.fixture
async def real(start_orchestrator, backends, tmp_path):
    return await start_orchestrator(f"sqlite:///{tmp_path / 'jobs.db'}", **backends)


async def _image(orch, ref: str) -> Image.Image:
    reply = await clients.call(orch.stub.GetImage, pb.GetImageRequest(ref=ref, owner="alice"))
    img = Image.open(io.BytesIO(reply.image.data))
    img.load()
    return img


async def _run(orch, spec: pb.WorkflowSpec) -> pb.Job:
    job = (await clients.call(orch.stub.ExecuteWorkflow, pb.ExecuteWorkflowRequest(spec=spec, owner="alice"))).job
    done = await wait_for(orch.stub, job.id, timeout=240)
    assert done.status == COMPLETED, (done.error, [(s.name, s.error) for s in done.steps])
    assert all(step.status == COMPLETED and step.attempts == 1 for step in done.steps)
    return done


def _spec(workflow_id: str, **params) -> pb.WorkflowSpec:
    spec = pb.WorkflowSpec(workflow_id=workflow_id, prompt="a ceramic mug on a table")
    spec.params.update(params)
    return spec


async def test_product_shot(real):
    done = await _run(real, _spec("product_shot", **SIZE))
    assert [s.name for s in done.steps] == ["generate", "remove_background", "upscale"]
    final = await _image(real, done.result.workflow.images[0].ref)
    # A cut-out (alpha kept through the upscale) at twice the generated size.
    assert final.size == (128, 128) and final.mode == "RGBA"
    assert done.cost.usd == pytest.approx(sum(s.cost.usd for s in done.steps)) and done.cost.usd > 0


async def test_professional_headshot(real):
    done = await _run(real, _spec("professional_headshot", **SIZE))
    assert [s.action for s in done.steps] == ["generate", "relight", "remove_background", "upscale"]
    assert (await _image(real, done.result.workflow.images[0].ref)).size == (256, 256)  # upscale_factor 4


async def test_social_pack(real):
    done = await _run(real, _spec("social_pack", platforms=["instagram"], **SIZE))
    sizes = sorted([(await _image(real, image.ref)).size for image in done.result.workflow.images])
    assert (1080, 1080) in sizes and len(sizes) >= 2


async def test_process_runs_the_shotgun_then_upscales_every_result(real):
    photo = Image.open(MODELS_DIR / "testdata" / "chelsea.png").convert("RGB").resize((96, 64))
    spec = pb.WorkflowSpec(workflow_id="process", image=common_pb2.Image(data=png_bytes(photo)))
    spec.params.update({"models": ["u2netp", "modnet"]})
    done = await _run(real, spec)
    shotgun, upscale = done.steps
    assert len(shotgun.outputs) == 2 and len(upscale.outputs) == 2
    for image in done.result.workflow.images:
        assert (await _image(real, image.ref)).size == (192, 128)


async def test_logged_selections_drive_the_shotguns_top_k_and_auto(real):
    photo = png_bytes(Image.open(MODELS_DIR / "testdata" / "chelsea.png").convert("RGB").resize((64, 48)))
    first = await clients.call(real.stub.RunShotgun, pb.RunShotgunRequest(
        spec=pb.ShotgunSpec(image=common_pb2.Image(data=photo), models=["u2netp", "modnet"]), owner="alice"))
    assert {r.model_id for r in first.summary.results} == {"u2netp", "modnet"}
    for _ in range(2):
        await clients.call(real.stub.LogSelection, pb.LogSelectionRequest(
            job_id=first.summary.job_id, owner="alice", selected_model_id="modnet", image_category="cats"))
    await clients.call(real.stub.LogSelection, pb.LogSelectionRequest(
        job_id=first.summary.job_id, owner="alice", selected_model_id="u2netp", image_category="cats"))
    top = await clients.call(real.stub.RunShotgun, pb.RunShotgunRequest(spec=pb.ShotgunSpec(
        image=common_pb2.Image(data=photo), top_k=1, image_category="cats"), owner="alice"))
    auto = await clients.call(real.stub.RunShotgun, pb.RunShotgunRequest(spec=pb.ShotgunSpec(
        image=common_pb2.Image(data=photo), models=["auto"], image_category="cats"), owner="alice"))
    assert [r.model_id for r in top.summary.results] == ["modnet"]
    assert [r.model_id for r in auto.summary.results] == ["modnet"]
