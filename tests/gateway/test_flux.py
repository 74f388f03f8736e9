"""Contract of the FLUX Krea dialect (seed 001) at /: /generate, /models, the WebSocket, against the real mesh."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
import websockets

from shared import clients
from shared.clients import create_channel
from shared.errors import NotFound
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as orch_pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2_grpc as orch_grpc
from tests.gateway.conftest import SEEDS, assert_error_format, assert_shape, live
from tests.gateway.helpers import decode_image

SEED = SEEDS["001"]
DIALECT = "flux"
SMALL = {"steps": 20, "width": 512, "height": 512, "seed": 42}


async def test_models(http):
    reply = await http.get("/models")
    assert reply.status_code == 200
    assert_shape(reply.json(), SEED["models"])


async def test_generate_returns_a_data_uri_png(http):
    reply = await http.post("/generate", json={"prompt": "A serene Japanese garden", "cfg_scale": 4.0, **SMALL})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert_shape(body, SEED["generate_response"])
    assert body["success"] is True and body["image"].startswith("data:image/png;base64,")
    assert decode_image(body["image"]).size == (512, 512)


@pytest.mark.parametrize("payload,status", [
    ({"prompt": "x", "steps": 19}, 400), ({"prompt": "x", "steps": 51}, 400),
    ({"prompt": "x", "cfg_scale": 0.5}, 400), ({"prompt": "x", "cfg_scale": 10.5}, 400),
    ({"prompt": "x", "seed": -2}, 400), ({"prompt": "x", "width": 511}, 400), ({"prompt": "x", "width": 2056}, 400),
    ({"prompt": "x", "height": 516}, 400), ({"prompt": "x" * 1001}, 400), ({"prompt": "  "}, 400),
    ({}, 422), ({"prompt": "x", "steps": "many"}, 422),
], ids=["steps-low", "steps-high", "cfg-low", "cfg-high", "seed", "width-low", "width-high", "height-multiple",
        "prompt-too-long", "blank-prompt", "missing-prompt", "steps-type"])
async def test_invalid_parameters(http, payload, status):
    reply = await http.post("/generate", json=payload)
    body = assert_error_format(DIALECT, reply, status)
    assert isinstance(body["duration"], (int, float)) and body["duration"] >= 0


async def _ws_generation(ws, data: dict) -> list[dict]:
    """Send one generate message; every message up to and including `complete` / `error`."""
    await ws.send(json.dumps({"type": "generate", "data": data}))
    messages = []
    while True:
        message = json.loads(await ws.recv())
        messages.append(message)
        if message["type"] in ("complete", "error"):
            return messages


async def test_websocket_progress_then_complete_is_a_job_of_the_key(mesh, tmp_path):
    """The WebSocket runs an orchestrator job: progress from the job's recorded denoising steps, the image from its
    result; the job belongs to the key's owner (its analytics, its job list) and no other key sees it."""
    owner, other = f"ws-{uuid.uuid4().hex[:6]}", f"other-{uuid.uuid4().hex[:6]}"
    async with live(mesh, tmp_path, api_keys=f"key-ws:{owner},key-other:{other}") as url:
        ws_url = url.replace("http", "ws") + "/ws"
        async with websockets.connect(ws_url, additional_headers={"X-API-Key": "key-ws"}) as ws:
            messages = await _ws_generation(ws, {"prompt": "A beautiful sunset", **SMALL})
            assert messages[-1]["type"] == "complete", messages[-1]
            assert_shape(messages[-1], SEED["ws_complete"])
            assert decode_image(messages[-1]["data"]["image"]).size == (512, 512)
            progress = [m["data"] for m in messages if m["type"] == "progress"]
            assert progress, "at least one progress message"
            for message in messages[:-1]:
                assert message["type"] == "progress"
                assert_shape(message, SEED["ws_progress"])
            # Real denoising steps: increasing, within 1..20, percentages derived from them (steps the
            # orchestrator's progress interval skipped are missing, never invented).
            steps = [p["step"] for p in progress]
            assert steps == sorted(set(steps)) and 1 <= steps[0] and steps[-1] <= 20
            assert all(p["total_steps"] == 20 and p["percentage"] == round(100 * p["step"] / 20) for p in progress)
            # Bad input on the same connection is an error message, not a dropped socket.
            await ws.send(json.dumps({"type": "generate", "data": {"prompt": "x", "steps": 99}}))
            error = json.loads(await ws.recv())
            assert_shape(error, SEED["ws_error"])

        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            mine = (await http.get("/v1/analytics/user", headers={"X-API-Key": "key-ws"})).json()
            theirs = (await http.get("/v1/analytics/user", headers={"X-API-Key": "key-other"})).json()
    assert (mine["total_generations"], mine["successful_generations"]) == (1, 1)
    assert sum(mine["models_used"].values()) == 1
    assert theirs["total_generations"] == 0

    stub = orch_grpc.OrchestratorServiceStub(create_channel(mesh.address("orchestrator")))
    jobs = (await clients.call(stub.ListJobs, orch_pb.ListJobsRequest(owner=owner))).jobs
    assert len(jobs) == 1
    job = jobs[0]
    assert (job.owner, job.kind, job.status) == (owner, "generate", common_pb2.JOB_STATUS_COMPLETED)
    assert job.labels["dialect"] == "flux" and job.spec.generate.steps == 20 and job.spec.generate.seed == 42
    assert job.spec.generate.prompt == "A beautiful sunset"
    assert not (await clients.call(stub.ListJobs, orch_pb.ListJobsRequest(owner=other))).jobs
    with pytest.raises(NotFound):
        await clients.call(stub.GetJob, orch_pb.GetJobRequest(job_id=job.id, owner=other))


async def test_websocket_client_leaving_cancels_its_job(mesh, tmp_path):
    owner = f"leaver-{uuid.uuid4().hex[:6]}"
    async with live(mesh, tmp_path, api_keys=f"key-leaver:{owner}") as url:
        async with websockets.connect(url.replace("http", "ws") + "/ws?api_key=key-leaver") as ws:
            await ws.send(json.dumps({"type": "generate", "data": {"prompt": "A lighthouse", **SMALL}}))
            while json.loads(await ws.recv())["type"] != "progress":
                pass
        # The gateway notices on its next send, and cancels the job.
        stub = orch_grpc.OrchestratorServiceStub(create_channel(mesh.address("orchestrator")))
        jobs = (await clients.call(stub.ListJobs, orch_pb.ListJobsRequest(owner=owner))).jobs
        assert len(jobs) == 1
        async for event in clients.stream(stub.WatchJob, orch_pb.WatchJobRequest(job_id=jobs[0].id, owner=owner)):
            job = event.job
    assert job.status == common_pb2.JOB_STATUS_CANCELLED, job


async def test_websocket_rejects_bad_messages(live_gateway):
    async with websockets.connect(live_gateway.replace("http", "ws") + "/ws") as ws:
        await ws.send(json.dumps({"type": "dance"}))
        assert json.loads(await ws.recv())["type"] == "error"
        await ws.send(json.dumps({"type": "generate", "data": {"steps": 30}}))
        error = json.loads(await ws.recv())
        assert error["type"] == "error" and "prompt" in error["data"]["error"]


async def test_websocket_needs_a_key_when_auth_is_on(live_secured_gateway):
    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with websockets.connect(live_secured_gateway.replace("http", "ws") + "/ws"):
            pass
    async with websockets.connect(live_secured_gateway.replace("http", "ws") + "/ws",
                                  additional_headers={"X-API-Key": "key-alice"}) as ws:
        await ws.send('{"type": "nope"}')
        assert "error" in await ws.recv()
