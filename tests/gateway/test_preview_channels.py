"""Live previews reach every progress channel through a real mesh and gateway, before the job ends: the
orchestrator's WatchJob stream (gRPC), the FLUX WebSocket (`progress.data.preview`, a PNG data URL), SSE job
events, CyberImage status and A1111's /sdapi/v1/progress `current_image`.

The shared mesh runs Generate's defaults: a preview every 4 steps, longest side 128 px. The decoders themselves
are tested in tests/generate/test_previews.py."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid

import websockets

from services.generate.preview import preview_size
from services.generate.settings import GenerateSettings
from shared.clients import create_channel
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import generate_service_pb2 as gen_pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as orch_pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2_grpc as orch_grpc
from shared.mesh_client import is_terminal
from tests.gateway.helpers import decode_image

DEFAULTS = GenerateSettings()
# Enough steps after the first preview (step 4) that watchers and pollers see the job running with it; 128 px
# keeps each step quick on CPU.
RUN = {"width": 128, "height": 128, "steps": 12}
EXPECTED = preview_size(128, 128, DEFAULTS.preview_max_side)


def assert_png_preview(value: str, size: tuple[int, int] = EXPECTED) -> None:
    image = decode_image(value)
    assert image.format == "PNG" and image.size == size


async def test_watch_job_stream_carries_previews_and_the_finished_job_drops_them(mesh):
    owner = f"preview-{uuid.uuid4().hex[:6]}"
    channel = create_channel(mesh.address("orchestrator"))
    try:
        stub = orch_grpc.OrchestratorServiceStub(channel)
        spec = orch_pb.JobSpec(generate=gen_pb.GenerateParameters(prompt="a lighthouse", seed=3, **RUN))
        job = (await stub.SubmitJob(orch_pb.SubmitJobRequest(spec=spec, owner=owner))).job
        previews = []
        async for event in stub.WatchJob(orch_pb.WatchJobRequest(job_id=job.id, owner=owner)):
            if is_terminal(event.job.status):
                final = event.job
                break
            if event.job.progress.HasField("preview"):
                previews.append(event.job.progress.preview)
        assert final.status == common_pb2.JOB_STATUS_COMPLETED
        assert previews, "no preview arrived before the job ended"
        for preview in previews:
            assert preview.media_type == "image/png" and (preview.width, preview.height) == EXPECTED
            assert_png_preview(base64.b64encode(preview.data).decode())
        # The job record keeps only the latest preview while it runs; the finished job carries none.
        assert not final.progress.HasField("preview")
        got = await stub.GetJob(orch_pb.GetJobRequest(job_id=job.id, owner=owner))
        assert not got.job.progress.HasField("preview")
    finally:
        await channel.close()


async def test_flux_websocket_progress_carries_a_png_data_url_preview(live_gateway):
    async with websockets.connect(live_gateway.replace("http", "ws") + "/ws") as ws:
        # The FLUX dialect's smallest size is 512 px and 20 steps.
        await ws.send(json.dumps({"type": "generate", "data": {
            "prompt": "A beautiful sunset", "steps": 20, "width": 512, "height": 512, "seed": 42}}))
        messages = []
        while not messages or messages[-1]["type"] not in ("complete", "error"):
            messages.append(json.loads(await ws.recv()))
    assert messages[-1]["type"] == "complete", messages[-1]
    previews = [m["data"]["preview"] for m in messages if m["type"] == "progress" and "preview" in m["data"]]
    assert previews, "no progress message carried a preview"
    for preview in previews:
        assert preview.startswith("data:image/png;base64,")
        assert_png_preview(preview, preview_size(512, 512, DEFAULTS.preview_max_side))
    # A preview rides on a progress message only when it is new.
    assert len(previews) == len(set(previews))


async def test_sse_job_events_carry_previews_before_the_terminal_event(http):
    reply = await http.post("/v1/generate", json={"prompt": "a forest", "seed": 5, **RUN})
    assert reply.status_code == 200, reply.text
    task_id = reply.json()["task_id"]
    events = []
    async with http.stream("GET", f"/v1/jobs/{task_id}/events") as stream:
        name = None
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    assert events[-1][1]["status"] == "completed"
    with_preview = [i for i, (_, body) in enumerate(events) if "preview" in body["progress"]]
    assert with_preview and with_preview[0] < len(events) - 1
    for index in with_preview:
        assert events[index][1]["status"] == "running"
        assert_png_preview(events[index][1]["progress"]["preview"])


async def test_cyberimage_status_shows_the_latest_preview_while_processing(http):
    model_id = (await http.get("/api/models")).json()["default"]
    reply = await http.post("/api/generate", json={
        "model_id": model_id, "prompt": "a cyberpunk city",
        "settings": {"num_inference_steps": RUN["steps"], "width": RUN["width"], "height": RUN["height"],
                     "seed": 8}})
    assert reply.status_code == 200, reply.text
    job_id = reply.json()["job_id"]
    seen = None
    while True:
        status = (await http.get(f"/api/status/{job_id}")).json()
        if status["status"] in ("completed", "failed"):
            break
        if status["progress"].get("preview"):
            seen = seen or status
        await asyncio.sleep(0.02)
    assert status["status"] == "completed"
    assert seen is not None, "no status poll showed a preview while the job ran"
    assert seen["status"] == "processing" and seen["progress"]["completed"] is False
    assert_png_preview(seen["progress"]["preview"])
    assert status["progress"]["preview"] is None


async def test_a1111_progress_current_image_is_the_latest_preview(http):
    run = asyncio.create_task(http.post("/sdapi/v1/txt2img", json={"prompt": "a cat", "seed": 4, **RUN}))
    seen, skipped = None, []
    while not run.done():
        progress = (await http.get("/sdapi/v1/progress")).json()
        if progress["current_image"] and seen is None:
            seen = progress
        skipped.append((await http.get("/sdapi/v1/progress", params={"skip_current_image": "true"})).json())
        await asyncio.sleep(0.02)
    assert (await run).status_code == 200
    assert seen is not None, "no /progress poll showed current_image while the job ran"
    assert seen["state"]["job_count"] == 1 and seen["state"]["sampling_steps"] == RUN["steps"]
    assert not seen["current_image"].startswith("data:")  # A1111 sends plain base64
    assert_png_preview(seen["current_image"])
    assert all(reply["current_image"] is None for reply in skipped)
