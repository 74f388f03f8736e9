"""The small REST routes the studio needed, each in the dialect that owns the concept: the caller's job list and
cancel (Freepik, beside /v1/jobs/{id}), the selection ranking (shotgun, beside /log-selection), and a seed for
CyberImage's queued generation."""

from __future__ import annotations

import uuid

from tests.gateway.conftest import alice, assert_error_format, bob
from tests.polling import eventually


async def _finished(http, job_id: str, headers: dict | None = None) -> dict:
    async def status():
        return (await http.get(f"/api/status/{job_id}", headers=headers or {})).json()

    return await eventually(status, lambda s: s["status"] in ("completed", "failed"), timeout=120)


async def test_job_list_is_the_callers_and_cancel_stops_a_job(secured):
    token = uuid.uuid4().hex[:8]
    submitted = (await secured.post("/api/generate", headers=alice(), json={
        "model_id": "flux-1", "prompt": f"list me {token}",
        "settings": {"num_images": 8, "width": 512, "height": 512, "num_inference_steps": 50}})).json()
    job_id = submitted["job_id"]
    mine = (await secured.get("/v1/jobs", headers=alice())).json()
    assert mine["jobs"][0]["task_id"] == job_id and mine["jobs"][0]["kind"] == "generate"
    assert mine["total"] >= 1 and 0 <= mine["jobs"][0]["progress"] <= 100
    theirs = (await secured.get("/v1/jobs", headers=bob())).json()
    assert job_id not in [job["task_id"] for job in theirs["jobs"]]
    assert_error_format("freepik", await secured.post(f"/v1/jobs/{job_id}/cancel", headers=bob()), 404, "TASK_NOT_FOUND")

    cancelled = await secured.post(f"/v1/jobs/{job_id}/cancel", headers=alice())
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    listed = (await secured.get("/v1/jobs", params={"status": "cancelled"}, headers=alice())).json()
    assert job_id in [job["task_id"] for job in listed["jobs"]]
    assert all(job["status"] == "cancelled" for job in listed["jobs"])
    assert_error_format("freepik", await secured.get("/v1/jobs", params={"status": "lost"}, headers=alice()), 400)


async def test_cancel_of_an_unknown_job_is_task_not_found(http):
    assert_error_format("freepik", await http.post("/v1/jobs/job_nope/cancel"), 404, "TASK_NOT_FOUND")


async def test_ranking_of_an_unseen_category_is_empty(http):
    reply = await http.get("/selection-ranking", params={"image_category": f"never-{uuid.uuid4().hex}"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["ranking"] == [] and reply.json()["auto_model"] == ""


async def test_cyberimage_seed_repeats_the_image(http):
    images = []
    for _ in range(2):
        job = (await http.post("/api/generate", json={"model_id": "flux-1", "prompt": "same seed, same picture",
                                                      "settings": {"width": 64, "height": 64,
                                                                   "num_inference_steps": 2, "seed": 1234}})).json()
        status = await _finished(http, job["job_id"])
        assert status["status"] == "completed", status
        images.append((await http.get(f"/api/get_image/{status['images'][0]['id']}")).content)
    assert images[0] == images[1]
