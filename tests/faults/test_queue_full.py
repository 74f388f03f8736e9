"""When the job queue is full, every dialect answers 429 with Retry-After (issue 14, "Faults and load"): a gateway
over an orchestrator whose queue takes no pending job, one submitting route per dialect."""

from __future__ import annotations

import pytest

from services.orchestrator.server import create_server as create_orchestrator
from services.orchestrator.settings import OrchestratorSettings
from tests.gateway.conftest import gateway
from tests.images import disc_rgba, png_bytes
from tests.mesh import service_kwargs


def _b64() -> str:
    import base64

    return base64.b64encode(png_bytes(disc_rgba(16))).decode()


# One route per dialect that queues a job (synchronous routes queue one too, then wait for it).
ROUTES = {
    "freepik": ("/v1/post-process/upscale", lambda: {"image_url": "data:image/png;base64," + _b64(),
                                                      "scale_factor": 2}),
    "flux": ("/generate", lambda: {"prompt": "a full queue", "steps": 20, "width": 512, "height": 512}),
    "shotgun": ("/upscale", lambda: {"image": _b64(), "scale_factor": 2}),
    "image_studio": ("/api/image-studio/upscale", lambda: {"image_base64": _b64(), "mode": "fast"}),
    "cyberimage": ("/api/generate", lambda: {"model_id": "flux-1", "prompt": "a full queue",
                                             "settings": {"width": 64, "height": 64, "num_inference_steps": 2}}),
    "openai": ("/v1/images/generations", lambda: {"prompt": "a full queue", "size": "64x64"}),
    "a1111": ("/sdapi/v1/txt2img", lambda: {"prompt": "a full queue", "steps": 2, "width": 64, "height": 64}),
}


@pytest.fixture(scope="module")
async def full_orchestrator(mesh, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("full")
    settings = OrchestratorSettings(
        **service_kwargs(tmp), database_url=f"sqlite:///{tmp / 'jobs.db'}", max_pending_jobs=0,
        generate_address=mesh.address("generate"), background_removal_address=mesh.address("background_removal"),
        upscale_address=mesh.address("upscale"))
    runtime, port = create_orchestrator(settings)
    await runtime.start()
    yield f"127.0.0.1:{port}"
    await runtime.stop(0)


@pytest.mark.parametrize("dialect", list(ROUTES))
async def test_a_full_queue_is_429_with_retry_after(mesh, full_orchestrator, tmp_path, dialect):
    path, body = ROUTES[dialect]
    async with gateway(mesh, tmp_path, orchestrator_address=full_orchestrator, retry_after_s=7) as client:
        reply = await client.post(path, json=body())
    assert reply.status_code == 429, reply.text
    assert reply.headers["Retry-After"] == "7"
    assert "queue is full" in reply.text, reply.text  # the orchestrator's message, in the dialect's format
