"""Contract of the Freepik AI Orchestrator dialect (seed 000) at /v1, against the real mesh."""

from __future__ import annotations

import asyncio
import io
import json
import uuid

import pytest
from PIL import Image

from tests.gateway.conftest import SEEDS, alice, assert_error_format, assert_shape, bob
from tests.gateway.helpers import decode_image
from tests.images import b64, disc_rgba

SEED = SEEDS["000"]
DIALECT = "freepik"


async def _wait(client, task_id: str, headers=None, tries: int = 600) -> dict:
    for _ in range(tries):
        body = (await client.get(f"/v1/generate/{task_id}", headers=headers or {})).json()
        if body["status"] in ("completed", "failed", "cancelled", "partial"):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"task {task_id} did not finish")


async def _a_model(http) -> str | None:
    models = (await http.get("/models")).json()["models"]
    return models[0] if models else None


async def test_generate_then_poll_the_task(http):
    reply = await http.post("/v1/generate", json={"prompt": "Professional headshot of a businesswoman",
                                                  "model": "auto", "aspect_ratio": "1:1", "quality_level": 1})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert_shape(body, SEED["generate_response"])
    assert body["status"] in ("pending", "running") and body["webhook_callback"] is False
    task = await _wait(http, body["task_id"])
    assert_shape(task, SEED["task_status"])
    assert task["status"] == "completed"
    image = await http.get(task["image_url"].replace("http://gateway", ""))
    assert image.status_code == 200 and image.headers["content-type"].startswith("image/")
    # thumbnail_url is a real thumbnail (WebP, longest side at most 256), not the image again.
    assert task["thumbnail_url"] != task["image_url"]
    thumb = await http.get(task["thumbnail_url"].replace("http://gateway", ""))
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= 256


async def test_unknown_model_is_invalid_model_with_the_supported_list(http):
    reply = await http.post("/v1/generate", json={"prompt": "x", "model": "invalid-model"})
    body = assert_error_format(DIALECT, reply, 400, "INVALID_MODEL")
    assert body["error"]["message"].startswith("The specified model 'invalid-model' is not supported")
    assert isinstance(body["error"]["details"]["supported_models"], list)


async def test_prompt_too_long(http):
    reply = await http.post("/v1/generate", json={"prompt": "x" * 1001})
    assert_error_format(DIALECT, reply, 400, "PROMPT_TOO_LONG")


@pytest.mark.parametrize("payload", [{"prompt": "x", "quality_level": 11}, {"prompt": "x", "aspect_ratio": "wide"},
                                     {"prompt": ""}], ids=["quality", "aspect", "empty-prompt"])
async def test_out_of_range_is_400(http, payload):
    assert_error_format(DIALECT, await http.post("/v1/generate", json=payload), 400, "VALIDATION_ERROR")


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "ftp://example.com/hook", "http://169.254.169.254/",
                                 "http://a..b/hook", "http://[64:ff9b::a9fe:a9fe]/hook"])
async def test_unreachable_webhook_is_webhook_url_invalid(http, url):
    reply = await http.post("/v1/generate", json={"prompt": "x", "webhook_url": url})
    assert_error_format(DIALECT, reply, 400, "WEBHOOK_URL_INVALID")


async def test_unknown_task_is_task_not_found(http):
    reply = await http.get("/v1/generate/task_does_not_exist")
    assert_error_format(DIALECT, reply, 404, "TASK_NOT_FOUND")


async def test_workflows_list_and_execute(http):
    reply = await http.get("/v1/workflows")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert_shape(body, SEED["workflows"])
    assert body["workflows"], "at least one workflow is defined"
    workflow = body["workflows"][0]
    reply = await http.post(f"/v1/workflows/{workflow['id']}/execute", json={
        "prompt": "Professional headshot of a businesswoman",
        "image_url": "data:image/png;base64," + b64(disc_rgba(32)),
        "custom_params": {"upscale_factor": 2, "lighting_style": "professional"}})
    assert reply.status_code == 200, reply.text
    execution = reply.json()
    assert_shape(execution, SEED["workflow_execution"], nullable=frozenset({"result_url"}))
    assert execution["workflow_name"] == workflow["id"]
    assert len(execution["steps"]) == workflow["steps_count"]
    task = await _wait(http, execution["workflow_execution_id"])
    assert task["status"] == "completed", task


async def test_unknown_workflow_is_workflow_not_found(http):
    reply = await http.post("/v1/workflows/no_such_workflow/execute", json={"prompt": "x"})
    assert_error_format(DIALECT, reply, 404, "WORKFLOW_NOT_FOUND")


@pytest.mark.parametrize("path,payload", [
    ("/v1/post-process/upscale", {"scale_factor": 2}),
    ("/v1/post-process/relight", {"lighting_style": "professional"}),
])
async def test_async_post_processing(http, path, payload):
    reply = await http.post(path, json={"image_url": "data:image/png;base64," + b64(disc_rgba(32)), **payload})
    assert reply.status_code == 200, reply.text
    task = await _wait(http, reply.json()["task_id"])
    assert task["status"] == "completed" and task["image_url"]


async def test_remove_background_is_synchronous(http):
    reply = await http.post("/v1/post-process/remove-background",
                            json={"image_url": "data:image/png;base64," + b64(disc_rgba(48))})
    assert reply.status_code == 200, reply.text
    assert_shape(reply.json(), SEED["remove_background_response"])
    result_url = reply.json()["result_url"]
    if result_url.startswith("data:"):  # an inline result comes back as a data URI
        assert decode_image(result_url).mode == "RGBA"


async def test_post_process_needs_an_image(http):
    reply = await http.post("/v1/post-process/upscale", json={"scale_factor": 2})
    assert_error_format(DIALECT, reply, 400, "MISSING_IMAGE")


async def test_analytics_are_per_key(secured):
    reply = await secured.get("/v1/analytics/user?days=30", headers=alice())
    assert reply.status_code == 200, reply.text
    assert_shape(reply.json(), SEED["analytics"], maps=frozenset({"$.models_used"}))
    assert reply.json()["period_days"] == 30
    assert (await secured.get("/v1/analytics/user?days=0", headers=alice())).status_code == 400


async def test_another_key_gets_404_for_a_task(secured):
    reply = await secured.post("/v1/post-process/upscale", headers=alice(),
                               json={"image_url": "data:image/png;base64," + b64(disc_rgba(16)), "scale_factor": 2})
    task_id = reply.json()["task_id"]
    assert (await secured.get(f"/v1/generate/{task_id}", headers=alice())).status_code == 200
    assert_error_format(DIALECT, await secured.get(f"/v1/generate/{task_id}", headers=bob()), 404, "TASK_NOT_FOUND")
    assert_error_format(DIALECT, await secured.get(f"/v1/jobs/{task_id}/events", headers=bob()), 404, "TASK_NOT_FOUND")


async def test_sse_stream_of_a_job(http):
    reply = await http.post("/v1/post-process/upscale",
                            json={"image_url": "data:image/png;base64," + b64(disc_rgba(16)), "scale_factor": 2})
    task_id = reply.json()["task_id"]
    events = []
    async with http.stream("GET", f"/v1/jobs/{task_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        name = None
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    assert events[0][0] == "status"
    assert events[-1][1]["status"] == "completed"
    assert all(body["task_id"] == task_id for _, body in events)


async def test_webhook_payload_is_signed_for_verify_webhook(http, webhook_sink):
    """The seed's verify_webhook accepts what the mesh sends (delivery needs a loopback-allowed deployment, so here
    the request is refused up front unless the gateway allows it)."""
    reply = await http.post("/v1/post-process/upscale", json={
        "image_url": "data:image/png;base64," + b64(disc_rgba(16)), "webhook_url": webhook_sink.url})
    assert_error_format(DIALECT, reply, 400, "WEBHOOK_URL_INVALID")


async def test_idempotency_key_returns_the_same_task(http):
    payload = {"image_url": "data:image/png;base64," + b64(disc_rgba(16)), "scale_factor": 2}
    headers = {"Idempotency-Key": "retry-7f3a"}
    first = await http.post("/v1/post-process/upscale", json=payload, headers=headers)
    second = await http.post("/v1/post-process/upscale", json=payload, headers=headers)
    other = await http.post("/v1/post-process/upscale", json=payload)
    assert first.json()["task_id"] == second.json()["task_id"] != other.json()["task_id"]


async def test_idempotency_key_reused_for_another_request_is_409(http):
    image = "data:image/png;base64," + b64(disc_rgba(16))
    headers = {"Idempotency-Key": f"retry-{uuid.uuid4().hex[:8]}"}
    first = await http.post("/v1/post-process/upscale", json={"image_url": image, "scale_factor": 2}, headers=headers)
    assert first.status_code == 200, first.text
    reused = await http.post("/v1/post-process/upscale", json={"image_url": image, "scale_factor": 4}, headers=headers)
    body = assert_error_format(DIALECT, reused, 409, "IDEMPOTENCY_KEY_REUSED")
    assert body["error"]["details"] == {"idempotency_key": headers["Idempotency-Key"],
                                        "job_id": first.json()["task_id"]}
    # The original request with its key is still answered with its task.
    again = await http.post("/v1/post-process/upscale", json={"image_url": image, "scale_factor": 2}, headers=headers)
    assert again.json()["task_id"] == first.json()["task_id"]


async def test_analytics_count_generations_not_derived_work(http):
    """Cut-outs and upscales are derived work: they cost, but they are not generations."""
    async def generations() -> int:
        body = (await http.get("/v1/analytics/user?days=1")).json()
        assert body["total_generations"] == sum(day["generations"] for day in body["daily_stats"])
        return body["total_generations"]

    before = await generations()
    cut = await http.post("/v1/post-process/remove-background",
                          json={"image_url": "data:image/png;base64," + b64(disc_rgba(32))})
    assert cut.status_code == 200, cut.text
    upscale = await http.post("/v1/post-process/upscale",
                              json={"image_url": "data:image/png;base64," + b64(disc_rgba(16)), "scale_factor": 2})
    assert (await _wait(http, upscale.json()["task_id"]))["status"] == "completed"
    assert await generations() == before
    generated = await http.post("/v1/generate", json={"prompt": "a paper boat", "model": "auto", "quality_level": 1})
    assert generated.status_code == 200, generated.text
    assert (await _wait(http, generated.json()["task_id"]))["status"] == "completed"
    assert await generations() == before + 1
