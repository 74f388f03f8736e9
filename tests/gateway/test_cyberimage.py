"""Contract of the CyberImage dialect (seed 004) at /api, against the real mesh."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.gateway.conftest import SEEDS, alice, assert_error_format, assert_shape, bob
from tests.images import b64, disc_rgba

SEED = SEEDS["004"]
DIALECT = "cyberimage"


async def test_models(http):
    reply = await http.get("/api/models")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert_shape(body, SEED["models"], maps=frozenset({"$.models"}))
    listing = (await http.get("/models")).json()["models"]
    assert len(body["models"]) == len(listing)
    if listing:
        assert body["default"] in body["models"]


async def _model_id(http, headers=None) -> str:
    """The default model's seed-style name."""
    body = (await http.get("/api/models", headers=headers or {})).json()
    assert body["default"], body
    return body["default"]


async def _wait(client, job_id: str, headers=None) -> dict:
    for _ in range(600):
        status = (await client.get(f"/api/status/{job_id}", headers=headers or {})).json()
        if status["status"] in ("completed", "failed"):
            return status
        await asyncio.sleep(0.1)
    raise AssertionError("job did not finish")


async def test_generate_status_image_metadata_gallery_delete(http):
    model_id = await _model_id(http)
    reply = await http.post("/api/generate", json={
        "model_id": model_id, "prompt": "A cyberpunk city at night", "negative_prompt": "blurry",
        "settings": {"num_images": 2, "num_inference_steps": 2, "guidance_scale": 8.0, "height": 64, "width": 64}})
    assert reply.status_code == 200, reply.text
    submitted = reply.json()
    assert_shape(submitted, SEED["generate_response"])
    assert submitted["num_images"] == 2 and submitted["status"] == "pending"
    status = await _wait(http, submitted["job_id"])
    assert_shape(status, SEED["status_completed"])
    assert status["status"] == "completed" and status["progress"]["completed"] is True
    assert len(status["images"]) == 2
    image_id = status["images"][0]["id"]
    image = await http.get(f"/api/get_image/{image_id}")
    assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"
    metadata = await http.get(f"/api/image/{image_id}/metadata")
    assert metadata.status_code == 200
    assert_shape(metadata.json(), SEED["image_metadata"], nullable=frozenset({"image_number", "total_images"}))
    gallery = (await http.get("/api/gallery", params={"search": "cyberpunk", "limit": 1})).json()
    assert_shape(gallery, SEED["gallery"])
    assert gallery["total"] >= 2 and gallery["has_more"] is True and len(gallery["images"]) == 1
    deleted = await http.delete(f"/api/image/{image_id}")
    assert deleted.json() == SEED["delete_image"]
    assert_error_format(DIALECT, await http.get(f"/api/get_image/{image_id}"), 404)


async def test_unknown_model_lists_the_supported_ones(http):
    reply = await http.post("/api/generate", json={"model_id": "flux-99", "prompt": "x"})
    body = assert_error_format(DIALECT, reply, 400)
    assert "flux-99" in body["message"] and "not supported" in body["message"]


@pytest.mark.parametrize("payload", [
    {"model_id": "flux-1", "prompt": "x" * 501},
    {"model_id": "flux-1", "prompt": "x", "negative_prompt": "y" * 501},
    {"model_id": "flux-1", "prompt": "x", "settings": {"num_images": 9}},
    {"model_id": "flux-1", "prompt": "x", "settings": {"num_inference_steps": 0}},
    {"model_id": "flux-1", "prompt": "x", "settings": {"width": 8}},
    {"prompt": "x"},
], ids=["prompt-too-long", "negative-too-long", "num-images", "steps", "width", "missing-model"])
async def test_invalid_parameters_are_400(http, payload):
    assert_error_format(DIALECT, await http.post("/api/generate", json=payload), 400)


@pytest.mark.parametrize("path", ["/api/status/nope", "/api/get_image/nope", "/api/image/nope/metadata"])
async def test_unknown_ids_are_404(http, path):
    reply = await http.get(path)
    assert_error_format(DIALECT, reply, 404)


async def test_delete_unknown_image_is_404(http):
    reply = await http.delete("/api/image/nope")
    assert_error_format(DIALECT, reply, 404)


async def test_queue_basic_and_detailed(http):
    reply = await http.get("/api/queue")
    assert_shape(reply.json(), SEED["queue"])
    assert "recent_24h" not in reply.json()
    detailed = (await http.get("/api/queue", params={"detailed": "true"})).json()
    assert_shape(detailed, SEED["queue_detailed"], maps=frozenset({"$.models"}))


async def test_reset_queue(http):
    reply = await http.post("/api/reset_queue")
    assert_shape(reply.json(), SEED["reset_queue"])


async def test_gallery_limits(http):
    assert_error_format(DIALECT, await http.get("/api/gallery", params={"limit": 51}), 400)
    assert_error_format(DIALECT, await http.get("/api/gallery", params={"page": 0}), 400)


@pytest.mark.parametrize("style", ["cyberpunk", "anime", "realistic", "fantasy", "sci-fi", "enhance"])
async def test_enrich(http, style):
    reply = await http.post("/api/enrich", json={"prompt": "a castle on a hill", "style": style})
    assert reply.status_code == 200
    body = reply.json()
    assert_shape(body, SEED["enrich_response"])
    assert body["style"] == style and "castle on a hill" in body["enriched_prompt"]
    assert len(body["enriched_prompt"]) > len(body["original_prompt"])


async def test_enrich_defaults_and_errors(http):
    assert (await http.post("/api/enrich", json={"prompt": "x"})).json()["style"] == "cyberpunk"
    body = assert_error_format(DIALECT, await http.post("/api/enrich", json={"prompt": "x", "style": "baroque"}), 400)
    assert "fantasy" in body["message"]
    assert_error_format(DIALECT, await http.post("/api/enrich", json={}), 400)


async def test_jobs_and_images_are_per_key(secured):
    model_id = await _model_id(secured, alice())
    reply = await secured.post("/api/generate", headers=alice(), json={
        "model_id": model_id, "prompt": "a private picture",
        "settings": {"num_inference_steps": 2, "height": 64, "width": 64}})
    job_id = reply.json()["job_id"]
    status = await _wait(secured, job_id, alice())
    assert_error_format(DIALECT, await secured.get(f"/api/status/{job_id}", headers=bob()), 404)
    image_id = status["images"][0]["id"]
    assert_error_format(DIALECT, await secured.get(f"/api/get_image/{image_id}", headers=bob()), 404)
    assert_error_format(DIALECT, await secured.delete(f"/api/image/{image_id}", headers=bob()), 404)
    bob_gallery = (await secured.get("/api/gallery", headers=bob())).json()
    assert image_id not in {image["id"] for image in bob_gallery["images"]}


async def _gallery(client, **params) -> list[dict]:
    """Every page of the gallery."""
    images, page = [], 1
    while True:
        body = (await client.get("/api/gallery", params={**params, "page": page, "limit": 50})).json()
        images.extend(body["images"])
        if not body["has_more"]:
            return images
        page += 1


async def test_generated_images_carry_their_place_and_the_gallery_shows_only_them(http):
    model_id = await _model_id(http)
    prompt = f"a lantern festival {uuid.uuid4().hex[:8]}"
    reply = await http.post("/api/generate", json={
        "model_id": model_id, "prompt": prompt, "negative_prompt": "fog",
        "settings": {"num_images": 3, "num_inference_steps": 2, "guidance_scale": 6.5, "height": 64, "width": 64}})
    status = await _wait(http, reply.json()["job_id"])
    assert status["status"] == "completed" and len(status["images"]) == 3
    for number, image in enumerate(status["images"], start=1):
        metadata = (await http.get(f"/api/image/{image['id']}/metadata")).json()
        assert (metadata["image_number"], metadata["total_images"]) == (number, 3)
        assert (metadata["model_id"], metadata["prompt"], metadata["negative_prompt"]) == (model_id, prompt, "fog")
        assert metadata["settings"] == {"num_inference_steps": 2, "guidance_scale": 6.5, "height": 64, "width": 64}

    # Derived work of the same owner: an upscale (through the Freepik dialect).
    upscale = await http.post("/v1/post-process/upscale",
                              json={"image_url": "data:image/png;base64," + b64(disc_rgba(16)), "scale_factor": 2})
    for _ in range(600):
        task = (await http.get(f"/v1/generate/{upscale.json()['task_id']}")).json()
        if task["status"] in ("completed", "failed"):
            break
        await asyncio.sleep(0.1)
    assert task["status"] == "completed"
    upscaled_ref = task["image_url"].rsplit("/", 1)[-1]
    gallery = await _gallery(http)
    ids = {image["id"] for image in gallery}
    assert {image["id"] for image in status["images"]} <= ids and upscaled_ref not in ids
    # Everything the gallery shows was generated: each has its prompt and the model the client named.
    assert all(image["prompt"] and image["model_id"] for image in gallery)
    mine = [image for image in gallery if image["prompt"] == prompt]
    assert len(mine) == 3 and {image["model_id"] for image in mine} == {model_id}
