"""Contract of the shotgun background-removal dialect (seed 002) at /, against the real mesh."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.gateway.conftest import SEEDS, assert_error_format, assert_shape
from tests.gateway.helpers import decode_image
from tests.images import b64, disc_rgba, gradient_rgb, png_bytes

SEED = SEEDS["002"]
ENDPOINTS = ["/remove-background", "/upscale", "/process"]


def disc_on_grey(size: int = 96):
    """An opaque red disc on an opaque grey background: something for a background remover to find."""
    from PIL import Image

    img = Image.new("RGB", (size, size), (128, 128, 128))
    img.paste(disc_rgba(size).convert("RGB"), mask=disc_rgba(size).getchannel("A"))
    return img


async def test_health_is_the_union_of_both_documented_field_sets(http):
    reply = await http.get("/health")
    assert reply.status_code == 200, reply.text  # the session mesh is up
    body = reply.json()
    assert_shape(body, SEED["health"], maps=frozenset({"$.services"}))
    assert_shape(body, SEEDS["001"]["health"])
    assert body["status"] in ("healthy", "unhealthy")
    assert set(body["services"]) == {"orchestrator", "generate", "background_removal", "upscale"}


async def test_remove_background_runs_every_model(http):
    reply = await http.post("/remove-background", json={"image": b64(disc_on_grey()), "include_models": ["all"]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert_shape(body, SEED["remove_background_response"], nullable=frozenset({"image_url"}))
    assert body["status"] in ("completed", "partial") and body["results"]
    for result in body["results"]:
        if result["status"] == "success":
            cut = decode_image(result["image_base64"])
            assert cut.mode == "RGBA" and cut.size == (96, 96)
            alpha = np.asarray(cut)[..., 3]
            assert alpha[48, 48] > 200 and alpha[2, 2] < 50  # the disc kept, the corner removed
    assert body["total_cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in body["results"]))


async def test_remove_background_with_one_named_model_and_webp(http):
    reply = await http.post("/remove-background", json={"image": b64(disc_on_grey()), "include_models": ["u2netp"],
                                                         "output_format": "webp"})
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert [r["model_id"] for r in results] == ["u2netp"]
    assert decode_image(results[0]["image_base64"]).format == "WEBP"


async def test_unknown_bg_model_is_a_validation_error_listing_the_models(http):
    reply = await http.post("/remove-background", json={"image": b64(disc_on_grey()),
                                                         "include_models": ["runware_nope"]})
    body = assert_error_format("shotgun", reply, 400, "validation_error")
    assert "runware_nope" in body["error"]["message"]


async def test_upscale_matches_the_seed(http):
    reply = await http.post("/upscale", json={"image": b64(disc_rgba(32)), "scale_factor": 2})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert_shape(body, SEED["upscale_response"])
    assert body["output_dimensions"] == {"width": 64, "height": 64} and body["alpha_preserved"] is True


async def test_process_removes_then_upscales(http):
    reply = await http.post("/process", json={"image": b64(disc_on_grey(48)), "bg_models": ["u2netp"],
                                              "upscale_factor": 2})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert_shape(body, SEED["process_response"])
    result = body["results"][0]
    assert result["bg_removal_status"] == "success" and result["upscale_status"] == "success"
    assert result["input_dimensions"] == {"width": 48, "height": 48}
    assert result["output_dimensions"] == {"width": 96, "height": 96}
    assert decode_image(result["image_base64"]).size == (96, 96)


async def test_log_selection_after_a_shotgun(http):
    shot = await http.post("/remove-background", json={"image": b64(disc_on_grey(48)), "include_models": ["u2netp"]})
    assert shot.status_code == 200, shot.text
    job_id = shot.json()["job_id"]
    reply = await http.post("/log-selection", json={"job_id": job_id, "selected_model_id": "u2netp",
                                                     "image_category": "illustration", "notes": "cleanest edges"})
    assert reply.status_code == 200, reply.text
    assert_shape(reply.json(), SEED["log_selection_response"])
    assert reply.json()["status"] == "logged"


async def test_log_selection_for_an_unknown_job_is_404(http):
    reply = await http.post("/log-selection", json={"job_id": "job_does_not_exist", "selected_model_id": "u2netp"})
    assert_error_format("shotgun", reply, 404, "not_found")


async def test_log_selection_needs_its_fields(http):
    reply = await http.post("/log-selection", json={"job_id": "x"})
    assert_error_format("shotgun", reply, 400, "validation_error")


def _bad_inputs():
    return [
        pytest.param({}, 400, "missing_image", id="missing-image"),
        pytest.param({"image": "%%%not-base64%%%"}, 400, "validation_error", id="bad-base64"),
        pytest.param({"image": base64.b64encode(b"GIF89a not really").decode()}, 400, "invalid_format",
                     id="unsupported-format"),
        pytest.param({"image": b64(png_bytes(gradient_rgb(8, 8))), "output_format": "gif"}, 400, "validation_error",
                     id="bad-output-format"),
        pytest.param({"image_url": "http://127.0.0.1:1/x.png"}, 400, "validation_error", id="image-url-loopback"),
        pytest.param({"image_url": "http://169.254.169.254/latest/meta-data"}, 400, "validation_error",
                     id="image-url-metadata"),
        pytest.param({"image_url": "file:///etc/passwd"}, 400, "validation_error", id="image-url-file-scheme"),
        pytest.param({"image_url": "http://" + "a" * 64 + ".example/x.png"}, 400, "validation_error",
                     id="image-url-label-too-long"),
        pytest.param({"image_url": "http://0x7f.1:1/x.png"}, 400, "validation_error", id="image-url-hex-loopback"),
    ]


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("payload,status,error_type", _bad_inputs())
async def test_bad_input_gives_the_documented_error(http, path, payload, status, error_type):
    reply = await http.post(path, json=payload)
    assert_error_format("shotgun", reply, status, error_type)


@pytest.mark.parametrize("path,field,value", [("/upscale", "scale_factor", 3), ("/process", "upscale_factor", 8)])
async def test_out_of_range_factor_is_a_validation_error(http, path, field, value):
    reply = await http.post(path, json={"image": b64(disc_rgba(16)), field: value})
    body = assert_error_format("shotgun", reply, 400, "validation_error")
    assert body["error"]["details"]["field"] == field


async def test_image_url_is_fetched_from_an_allowed_host(mesh, tmp_path, image_server):
    from tests.gateway.conftest import gateway

    async with gateway(mesh, tmp_path, url_allow_list="127.0.0.1/32") as client:
        reply = await client.post("/upscale", json={"image_url": image_server.url("disc.png"), "scale_factor": 2})
        assert reply.status_code == 200, reply.text
        assert reply.json()["output_dimensions"] == {"width": 64, "height": 64}
        reply = await client.post("/upscale", json={"image_url": image_server.url("missing.png")})
        assert_error_format("shotgun", reply, 400, "validation_error")


async def test_image_url_past_the_size_limit_is_413(mesh, tmp_path, image_server):
    from tests.gateway.conftest import gateway

    async with gateway(mesh, tmp_path, url_allow_list="127.0.0.1/32", max_image_bytes=100) as client:
        reply = await client.post("/upscale", json={"image_url": image_server.url("disc.png")})
    assert_error_format("shotgun", reply, 413, "image_too_large")


async def test_webhook_runs_asynchronously(http, webhook_sink):
    reply = await http.post("/upscale", json={"image": b64(disc_rgba(16)), "scale_factor": 2,
                                              "webhook_url": webhook_sink.url, "webhook_secret": "s3cret"})
    if reply.status_code == 400 and "webhook" in reply.text:
        # The default SSRF policy refuses a loopback webhook: correct for production.
        assert_error_format("shotgun", reply, 400)
        return
    assert reply.status_code == 200 and reply.json()["status"] in ("pending", "running", "completed")
