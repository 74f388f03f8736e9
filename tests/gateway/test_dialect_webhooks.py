"""Webhooks per dialect, received for real: a gateway and an orchestrator whose allow-lists let loopback through
(tests only; production refuses private targets) POST to a local receiver, and the deliveries are checked with
seed 000's own `verify_webhook` (copied verbatim) and the Standard Webhooks reference library.

Freepik (000) gets its documented payload (`generation.completed`, task_id, data); the shotgun (002) gets its own
(`job_completed`, job_id, the full results, a `signature` field in the body)."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest_asyncio
from standardwebhooks.webhooks import Webhook

from tests.gateway.conftest import gateway
from tests.images import b64, disc_rgba
from tests.mesh import service_kwargs
from tests.seed_webhook import verify_webhook

SECRET = "whsec_" + base64.b64encode(b"a webhook secret of 32 bytes....").decode()


@pytest_asyncio.fixture(scope="module")
async def hooked(mesh, tmp_path_factory):
    """A gateway over its own orchestrator (the mesh's backends) that may deliver webhooks to 127.0.0.1."""
    from services.orchestrator.server import create_server
    from services.orchestrator.settings import OrchestratorSettings

    tmp = tmp_path_factory.mktemp("hooks")
    settings = OrchestratorSettings(
        **service_kwargs(tmp), generate_address=mesh.address("generate"),
        background_removal_address=mesh.address("background_removal"), upscale_address=mesh.address("upscale"),
        url_allow_list="127.0.0.1/32", webhook_default_secret=SECRET, webhook_poll_interval_s=0.05,
        webhook_retry_delays_s=[0.2, 0.5], public_image_base_url="http://gateway/images/")
    runtime, port = create_server(settings)
    await runtime.start()
    try:
        async with gateway(mesh, tmp_path_factory.mktemp("hooks_gateway"), orchestrator_address=f"127.0.0.1:{port}",
                           url_allow_list="127.0.0.1/32") as client:
            yield client
    finally:
        await runtime.stop(0)


async def _delivery(sink) -> tuple[dict[str, str], bytes]:
    for _ in range(600):
        if sink.received:
            headers, body = sink.received[-1]
            return {k.lower(): v for k, v in headers.items()}, body
        await asyncio.sleep(0.05)
    raise AssertionError("no webhook was delivered")


async def test_freepik_generation_webhook_is_the_documented_payload(hooked, webhook_sink):
    reply = await hooked.post("/v1/generate", json={"prompt": "a lighthouse", "model": "mystic", "steps": 1,
                                                    "width": 64, "height": 64, "webhook_url": webhook_sink.url})
    assert reply.status_code == 200, reply.text
    headers, body = await _delivery(webhook_sink)
    assert verify_webhook(body, headers["x-freepik-signature"], SECRET)
    payload = Webhook(SECRET).verify(body, headers)
    data = payload["data"]
    assert (payload["event"], payload["task_id"], data["status"], data["model_used"]) == (
        "generation.completed", reply.json()["task_id"], "completed", "mystic")
    assert isinstance(data["processing_time"], int)
    assert data["image_url"].startswith("http://gateway/images/")
    thumbnail = await hooked.get(data["thumbnail_url"].removeprefix("http://gateway"))
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/webp"
    assert {"event", "task_id", "timestamp", "data"} <= set(payload)
    assert {"status", "image_url", "thumbnail_url", "model_used", "processing_time"} <= set(data)


async def test_shotgun_webhook_is_seed_002s_payload_with_its_body_signature(hooked, webhook_sink):
    reply = await hooked.post("/remove-background", json={
        "image": b64(disc_rgba(32)), "include_models": ["u2netp", "local_isnet"],
        "webhook_url": webhook_sink.url, "webhook_secret": "your-secret-for-signature"})
    assert reply.status_code == 200, reply.text
    headers, body = await _delivery(webhook_sink)
    assert verify_webhook(body, headers["x-freepik-signature"], "your-secret-for-signature")
    payload = json.loads(body)
    # The body's own signature: over the body without it, compact JSON with sorted keys (README, "Webhooks").
    unsigned = json.dumps({k: v for k, v in payload.items() if k != "signature"}, separators=(",", ":"),
                          sort_keys=True).encode()
    assert verify_webhook(unsigned, payload["signature"], "your-secret-for-signature")
    assert (payload["event"], payload["job_id"], payload["status"]) == ("job_completed", reply.json()["job_id"],
                                                                        "partial")
    done, missing = payload["results"]
    assert (done["model_id"], done["status"], missing["model_id"], missing["status"]) == (
        "u2netp", "success", "local_isnet", "error")
    assert "isnet-general-use.onnx" in missing["error"]
    assert {"model_id", "model_name", "status", "image_url", "processing_time_ms", "cost_usd"} <= set(done)
    image = await hooked.get(done["image_url"].removeprefix("http://gateway"))
    assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"


async def test_standard_webhooks_verifier_accepts_a_shotgun_delivery(hooked, webhook_sink):
    """The shotgun's per-request secret given as whsec_<base64> is what the Standard Webhooks library takes."""
    reply = await hooked.post("/upscale", json={"image": b64(disc_rgba(16)), "scale_factor": 2,
                                                "webhook_url": webhook_sink.url, "webhook_secret": SECRET})
    assert reply.status_code == 200, reply.text
    headers, body = await _delivery(webhook_sink)
    payload = Webhook(SECRET).verify(body, headers)
    assert (payload["event"], payload["job_id"], payload["results"][0]["status"]) == (
        "job_completed", reply.json()["job_id"], "success")
