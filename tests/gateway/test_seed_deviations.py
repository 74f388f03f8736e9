"""Issue 17's deviations from the seed documents, each checked where a client sees it (items 2, 3, 6, 7, 8, 9; the
webhooks of item 1 are in test_dialect_webhooks.py)."""

from __future__ import annotations

import asyncio

import pytest

from tests.gateway.conftest import assert_error_format
from tests.gateway.helpers import decode_image
from tests.images import b64, disc_rgba, png_bytes

IMAGE_URL = "data:image/png;base64," + b64(disc_rgba(32))
STUDIO = "/api/image-studio"


async def _task(http, task_id: str) -> dict:
    for _ in range(1200):
        task = (await http.get(f"/v1/generate/{task_id}")).json()
        if task["status"] in ("completed", "failed", "partial", "cancelled"):
            return task
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish")


# --- item 2: Freepik remove-background answers with a URL, not a data: URL -------------------------------------


async def test_freepik_remove_background_result_url_is_fetchable_from_the_image_store(http):
    reply = await http.post("/v1/post-process/remove-background", json={"image_url": IMAGE_URL})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["result_url"].startswith("http://gateway/v1/images/") and isinstance(body["processing_time"], int)
    image = await http.get(body["result_url"].removeprefix("http://gateway"))
    assert image.status_code == 200 and decode_image(b64(image.content)).mode == "RGBA"


# --- item 3: every model id seed 002 lists is recognised -------------------------------------------------------

UNAVAILABLE = {
    "runware_rmbg2": "remote provider 'runware' is not configured",
    "runware_birefnet_portrait": "remote provider 'runware' is not configured",
    "kie_recraft": "remote provider 'kie' is not configured",
    "local_birefnet": "birefnet-general.onnx is not in",
    "local_isnet": "isnet-general-use.onnx is not in",
}


async def test_shotgun_documented_ids_are_error_entries_saying_why_and_the_job_is_partial(http):
    reply = await http.post("/remove-background", json={"image": b64(disc_rgba(32)),
                                                        "include_models": ["u2netp", *UNAVAILABLE]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["status"] == "partial"
    results = {r["model_id"]: r for r in body["results"]}
    assert list(results) == ["u2netp", *UNAVAILABLE] and results["u2netp"]["status"] == "success"
    for model_id, why in UNAVAILABLE.items():
        assert results[model_id]["status"] == "error" and why in results[model_id]["error"], results[model_id]
    assert results["local_birefnet"]["model_name"] == "BiRefNet general"


async def test_shotgun_only_unavailable_models_is_processing_error(http):
    reply = await http.post("/remove-background", json={"image": b64(disc_rgba(32)),
                                                        "include_models": ["kie_recraft", "local_isnet"]})
    assert_error_format("shotgun", reply, 422, "processing_error")


async def test_shotgun_all_runs_the_available_models_and_lists_the_unavailable_ones(http):
    reply = await http.post("/remove-background", json={"image": b64(disc_rgba(32)), "include_models": ["all"]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["status"] == "completed" and {r["model_id"] for r in body["results"]} == {"u2netp", "modnet"}
    left_out = {u["model_id"]: u["reason"] for u in body["unavailable_models"]}
    assert {"runware_rmbg2", "runware_birefnet_portrait", "kie_recraft", "birefnet-general",
            "isnet-general-use"} <= set(left_out)
    assert "not configured" in left_out["kie_recraft"] and "birefnet-general.onnx" in left_out["birefnet-general"]


# --- item 6: CyberImage defaults, refusal at submit, model names ------------------------------------------------


async def test_cyberimage_documented_defaults_apply_and_status_settings_say_so(http):
    # Steps and guidance omitted: seed 004's 30 and 7.5 run.
    reply = await http.post("/api/generate", json={"model_id": "flux-1", "prompt": "a castle on a hill",
                                                   "settings": {"width": 64, "height": 64}})
    assert reply.status_code == 200, reply.text
    submitted = reply.json()
    for _ in range(1200):
        status = (await http.get(f"/api/status/{submitted['job_id']}")).json()
        if status["status"] in ("completed", "failed"):
            break
        await asyncio.sleep(0.05)
    documented = {"num_inference_steps": 30, "guidance_scale": 7.5, "height": 64, "width": 64}
    assert submitted["settings"] == documented and status["settings"] == documented
    assert status["status"] == "completed" and status["images"][0]["metadata"]["settings"] == documented
    assert (submitted["model_id"], status["model_id"], submitted["checkpoint"], status["checkpoint"]) == (
        "flux-1", "flux-1", "tiny-flux-dev", "tiny-flux-dev")


async def test_cyberimage_default_size_is_fitted_to_the_model_and_the_settings_say_so(http):
    # Nothing but the prompt: 1024x1024 is past tiny-flux-dev's trained 128x128, so Generate fits it and says so.
    reply = await http.post("/api/generate", json={"model_id": "flux-1", "prompt": "a castle on a hill"})
    assert reply.status_code == 200, reply.text
    job_id = reply.json()["job_id"]
    try:
        status = (await http.get(f"/api/status/{job_id}")).json()
    finally:
        await http.post(f"/v1/jobs/{job_id}/cancel")  # nothing here needs the picture
    settings = status["settings"]
    assert (settings["num_inference_steps"], settings["guidance_scale"], settings["width"], settings["height"]) == (
        30, 7.5, 128, 128)
    assert any("default size 1024x1024" in note for note in settings["notes"])


@pytest.mark.parametrize("settings", [{"width": 4096, "height": 4096}, {"width": 4096, "height": 64}],
                         ids=["4096x4096", "4096-wide"])
async def test_cyberimage_size_the_model_cannot_take_is_400_at_submit(http, settings):
    before = (await http.get("/api/queue")).json()["total"]
    reply = await http.post("/api/generate", json={"model_id": "flux-1", "prompt": "x", "settings": settings})
    body = assert_error_format("cyberimage", reply, 400)
    assert "width" in body["message"] and (await http.get("/api/queue")).json()["total"] == before


async def test_freepik_model_used_is_the_name_asked_at_submit_and_status(http):
    reply = await http.post("/v1/generate", json={"prompt": "a lighthouse", "model": "imagen3", "steps": 1,
                                                  "width": 64, "height": 64})
    assert reply.status_code == 200, reply.text
    task = await _task(http, reply.json()["task_id"])
    assert (reply.json()["model_used"], task["model_used"], task["checkpoint"]) == ("imagen3", "imagen3", "tiny-sd")


# --- item 7: Image Studio providers and format labels -----------------------------------------------------------


async def test_image_studio_reports_the_provider_asked_for(http):
    reply = await http.post(f"{STUDIO}/create", json={"prompt": "a lighthouse", "provider": "wavespeed",
                                                      "steps": 1, "width": 64, "height": 64})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["request"]["provider"], body["results"][0]["provider"]) == ("wavespeed", "wavespeed")


async def test_image_studio_auto_uses_the_templates_recommended_provider(http):
    # facebook_feed recommends stability (a registered model serves it).
    reply = await http.post(f"{STUDIO}/create", json={"prompt": "a lighthouse", "template_id": "facebook_feed",
                                                      "provider": "auto", "steps": 1, "width": 64, "height": 64})
    assert reply.status_code == 200, reply.text
    assert reply.json()["request"]["provider"] == "stability"


async def test_social_formats_carry_the_documents_labels_and_take_short_ids(http):
    reply = await http.post(f"{STUDIO}/social/optimize", json={
        "image_base64": "data:image/png;base64," + b64(png_bytes(disc_rgba(64))),
        "platforms": ["instagram", "facebook"],
        "format_names": {"instagram": "Feed Post (Square)", "facebook": "feed_post"}, "crop_mode": "center"})
    assert reply.status_code == 200, reply.text
    assert [(r["platform"], r["format"]) for r in reply.json()["results"]] == [
        ("instagram", "Feed Post (Square)"), ("facebook", "Feed Post")]
    formats = (await http.get(f"{STUDIO}/social/platforms/instagram/formats")).json()["formats"]
    assert formats[0]["name"] == "Feed Post (Square)" and formats[0]["id"] == "feed_square"


# --- item 8: Freepik details ------------------------------------------------------------------------------------


async def test_freepik_processing_time_is_whole_seconds(http):
    reply = await http.post("/v1/post-process/upscale", json={"image_url": IMAGE_URL, "scale_factor": 2})
    task = await _task(http, reply.json()["task_id"])
    assert task["status"] == "completed" and type(task["processing_time"]) is int


async def test_unknown_lighting_style_is_400_at_submit(http):
    reply = await http.post("/v1/post-process/relight", json={"image_url": IMAGE_URL, "lighting_style": "disco"})
    body = assert_error_format("freepik", reply, 400, "INVALID_ARGUMENT")
    assert "disco" in body["error"]["message"] and "professional" in body["error"]["message"]


async def test_workflow_execution_reads_back_in_the_same_shape_with_each_steps_result(http):
    reply = await http.post("/v1/workflows/professional_headshot/execute", json={
        "prompt": "Professional headshot of a businesswoman",
        "custom_params": {"upscale_factor": 2, "lighting_style": "professional", "width": 64, "height": 64,
                          "steps": 1}})
    assert reply.status_code == 200, reply.text
    execution = reply.json()
    await _task(http, execution["workflow_execution_id"])
    later = await http.get(f"/v1/workflows/executions/{execution['workflow_execution_id']}")
    assert later.status_code == 200, later.text
    done = later.json()
    assert set(done) == set(execution) and done["status"] == "completed"
    assert [(s["step"], s["action"], s["status"]) for s in done["steps"]] == [
        (1, "generate", "completed"), (2, "relight", "completed"), (3, "remove_background", "completed"),
        (4, "upscale", "completed")]
    assert all(s["result_url"].startswith("http://gateway/v1/images/") for s in done["steps"])


# --- item 9: log-selection names a model of the job -------------------------------------------------------------


async def test_log_selection_of_a_model_not_in_the_job_is_validation_error(http):
    shot = await http.post("/remove-background", json={"image": b64(disc_rgba(32)), "include_models": ["u2netp"]})
    assert shot.status_code == 200, shot.text
    job_id = shot.json()["job_id"]
    refused = await http.post("/log-selection", json={"job_id": job_id, "selected_model_id": "modnet"})
    body = assert_error_format("shotgun", refused, 400, "validation_error")
    assert "modnet" in body["error"]["message"] and "u2netp" in body["error"]["message"]
    logged = await http.post("/log-selection", json={"job_id": job_id, "selected_model_id": "u2netp"})
    assert logged.status_code == 200 and logged.json()["status"] == "logged"
