"""Rejected input is never stored (issue 14, class 6): an upload the orchestrator cannot read as an image is
refused at submit before anything is written; an upload a backend refuses (a 400/413) is deleted with its job's
failure; an image named by reference is never deleted for it."""

from __future__ import annotations

import base64
import io
import os
import uuid
import zlib

import pytest
from PIL import Image

from services.orchestrator.server import create_server as create_orchestrator
from services.orchestrator.settings import OrchestratorSettings
from services.upscale.server import create_server as create_upscale
from services.upscale.settings import UpscaleSettings
from shared import clients
from shared.clients import create_channel
from shared.errors import ImageTooLarge, InvalidFormat
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as orch_pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2_grpc as orch_grpc
from shared.gen.imagemesh.v1 import upscale_service_pb2 as up_pb
from shared.image_store import LocalImageStore
from shared.mesh_client import MeshClient, status_name
from tests.gateway.conftest import gateway
from tests.mesh import service_kwargs


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose header declares width x height (the pixels are never there)."""
    data = bytearray(png(8, 8))
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # the IHDR chunk's CRC
    return bytes(data)


@pytest.fixture
async def small_mesh(tmp_path):
    """Upscale (output limit 100x100) and an orchestrator on SQLite over one image store folder."""
    base = {**service_kwargs(tmp_path), "image_store_dir": tmp_path / "images"}
    upscale, upscale_port = create_upscale(UpscaleSettings(**base, max_output_pixels=100 * 100))
    await upscale.start()
    orchestrator, port = create_orchestrator(OrchestratorSettings(
        **base, upscale_address=f"127.0.0.1:{upscale_port}", database_url=f"sqlite:///{tmp_path / 'jobs.db'}",
        poll_interval_s=0.1, watch_poll_s=0.05, max_image_pixels=4096 * 4096))
    await orchestrator.start()
    client = MeshClient.connect(f"127.0.0.1:{port}", owner="mallory")
    yield client, LocalImageStore(tmp_path / "images")
    await client.close()
    await orchestrator.stop(0)
    await upscale.stop(0)


def upscale_spec(data: bytes, scale: int = 2, **image) -> orch_pb.JobSpec:
    return orch_pb.JobSpec(upscale=up_pb.UpscaleRequest(
        image=common_pb2.Image(data=data, **image), scale_factor=scale, method="lanczos"))


@pytest.mark.parametrize(("data", "error"), [
    pytest.param(os.urandom(1 << 20), InvalidFormat, id="not-an-image"),
    # A real 1x1 GIF: random bytes after "GIF89a" can declare a gigapixel, which is refused as too large first.
    pytest.param(base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"), InvalidFormat,
                 id="unsupported-format"),
    pytest.param(png_declaring(8000, 8000), ImageTooLarge, id="header-declares-64-megapixels"),
])
@pytest.mark.parametrize("how", ["submit", "run"])
async def test_unreadable_upload_is_refused_before_it_is_stored(small_mesh, data, error, how):
    client, store = small_mesh
    with pytest.raises(error):
        if how == "submit":
            await client.submit_job(upscale_spec(data, media_type="image/png"))
        else:
            await client.run_job(upscale_spec(data, media_type="image/png"))
    assert store.list() == []
    assert (await client.list_jobs()).jobs == []


async def test_upload_a_backend_refuses_is_deleted_with_the_failed_job(small_mesh):
    client, store = small_mesh
    job = await client.submit_job(upscale_spec(png(64, 64)))  # readable; 128x128 passes Upscale's output limit
    async for event in client.watch_job(job.id):
        job = event.job
    assert status_name(job.status) == "failed" and job.error.reason == "IMAGE_TOO_LARGE"
    assert store.list() == []


async def test_a_referenced_image_survives_a_refused_job(small_mesh):
    client, store = small_mesh
    kept = store.put(png(64, 64), "image/png", 64, 64, owner="mallory", kind="generated")
    spec = orch_pb.JobSpec(upscale=up_pb.UpscaleRequest(image=common_pb2.Image(ref=kept.ref), scale_factor=2,
                                                        method="lanczos"))
    job = await client.submit_job(spec)
    async for event in client.watch_job(job.id):
        job = event.job
    assert status_name(job.status) == "failed"
    assert [r.ref for r in store.list()] == [kept.ref]


async def test_gateway_refuses_a_non_image_body_and_stores_nothing(mesh, tmp_path):
    owner = f"junk-{uuid.uuid4().hex[:6]}"
    async with gateway(mesh, tmp_path, api_keys=f"junk-key:{owner}") as client:
        reply = await client.post("/upscale", headers={"X-API-Key": "junk-key"},
                                  json={"image": base64.b64encode(os.urandom(1 << 20)).decode(), "scale_factor": 2})
    assert reply.status_code == 400, reply.text
    channel = create_channel(mesh.address("orchestrator"))
    try:
        listing = await clients.call(orch_grpc.OrchestratorServiceStub(channel).ListImages, orch_pb.ListImagesRequest(
            owner=owner, kinds=[common_pb2.IMAGE_KIND_INPUT, common_pb2.IMAGE_KIND_DERIVED,
                                common_pb2.IMAGE_KIND_GENERATED]), timeout=10)
    finally:
        await channel.close()
    assert list(listing.images) == []
