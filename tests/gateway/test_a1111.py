"""The A1111 web UI API, driven by the unmodified `webuiapi` client against a real gateway (uvicorn on loopback).

webuiapi is synchronous (requests): every call runs in a thread so the test's event loop keeps serving. The tiny
models draw noise, so the assertions are on sizes, counts, modes and determinism by seed.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import numpy as np
import pytest
import webuiapi
from PIL import Image

from tests.images import b64, disc_rgba, gradient_rgb

SMALL = {"width": 64, "height": 64, "steps": 2}


async def api(base_url: str, **auth: str) -> webuiapi.WebUIApi:
    # The constructor already calls the server (GET /scripts): off the loop that serves it.
    return await asyncio.to_thread(webuiapi.WebUIApi, baseurl=f"{base_url}/sdapi/v1", **auth)


@pytest.fixture
async def client(live_gateway) -> webuiapi.WebUIApi:
    return await api(live_gateway)


async def test_sd_models_list_the_registry(client):
    models = await asyncio.to_thread(client.get_sd_models)
    titles = {m["title"] for m in models}
    assert {"tiny-sd", "tiny-sd-b", "tiny-sd-inpaint"} <= titles
    assert set(models[0]) == {"title", "model_name", "hash", "sha256", "filename", "config"}


async def test_samplers_and_upscalers(client):
    samplers = {s["name"]: s for s in await asyncio.to_thread(client.get_samplers)}
    assert {"Euler a", "Euler", "DPM++ 2M", "DDIM", "UniPC"} <= set(samplers)
    assert "k_euler_a" in samplers["Euler a"]["aliases"]
    upscalers = {u["name"]: u for u in await asyncio.to_thread(client.get_upscalers)}
    assert {"None", "Lanczos", "R-ESRGAN 4x+ Anime6B"} <= set(upscalers)
    assert set(upscalers["Lanczos"]) == {"name", "model_name", "model_path", "model_url", "scale"}


async def test_txt2img_batch_size_gives_that_many_images_of_the_asked_size(client):
    result = await asyncio.to_thread(client.txt2img, prompt="a red fox", seed=7, batch_size=2, width=64, height=72,
                                     steps=2, sampler_name="Euler a")
    assert len(result.images) == 2
    assert all(img.size == (64, 72) for img in result.images)
    assert all(img.format == "PNG" for img in result.images)
    info = result.info
    assert isinstance(result.json["info"], str) and isinstance(info, dict)
    assert info["all_seeds"] == [7, 8] and info["seed"] == 7
    assert (info["width"], info["height"], info["steps"]) == (64, 72, 2)
    assert info["sampler_name"] == "Euler a" and info["extra_generation_params"]["Scheduler"] == \
        "EulerAncestralDiscreteScheduler"
    assert info["all_prompts"] == ["a red fox", "a red fox"]
    assert result.parameters["batch_size"] == 2 and result.parameters["prompt"] == "a red fox"


async def test_n_iter_multiplies_the_images(client):
    result = await asyncio.to_thread(client.txt2img, prompt="x", seed=3, batch_size=2, n_iter=2, **SMALL)
    assert len(result.images) == 4
    assert result.info["all_seeds"] == [3, 4, 5, 6]


async def test_same_seed_same_pixels(client):
    first, second = await asyncio.gather(
        asyncio.to_thread(client.txt2img, prompt="a lighthouse", seed=1234, **SMALL),
        asyncio.to_thread(client.txt2img, prompt="a lighthouse", seed=1234, **SMALL))
    assert np.array_equal(np.asarray(first.image), np.asarray(second.image))
    other = await asyncio.to_thread(client.txt2img, prompt="a lighthouse", seed=1235, **SMALL)
    assert not np.array_equal(np.asarray(first.image), np.asarray(other.image))


async def test_samples_format_asks_generate_for_jpeg(client):
    result = await asyncio.to_thread(client.txt2img, prompt="x", seed=2, override_settings={"samples_format": "jpg"},
                                     **SMALL)
    assert result.image.format == "JPEG" and result.image.size == (64, 64)


async def test_random_seed_reports_the_seed_used(client):
    result = await asyncio.to_thread(client.txt2img, prompt="x", seed=-1, **SMALL)
    seed = result.info["seed"]
    assert seed >= 0
    again = await asyncio.to_thread(client.txt2img, prompt="x", seed=seed, **SMALL)
    assert np.array_equal(np.asarray(result.image), np.asarray(again.image))


async def test_img2img(client):
    source = gradient_rgb(96, 64)
    result = await asyncio.to_thread(client.img2img, images=[source], prompt="a painting", denoising_strength=0.5,
                                     seed=11, width=96, height=64, steps=4)
    assert len(result.images) == 1 and result.image.size == (96, 64)
    assert result.info["denoising_strength"] == 0.5
    assert result.parameters["init_images"] is None  # not echoed unless include_init_images


async def test_img2img_with_a_mask_inpaints(client):
    source = gradient_rgb(64, 64)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    result = await asyncio.to_thread(client.img2img, images=[source], mask_image=mask, prompt="a cat",
                                     denoising_strength=0.9, seed=5, width=64, height=64, steps=4)
    assert result.image.size == (64, 64)
    assert result.info["sd_model_name"] == "tiny-sd-inpaint" and result.info["is_using_inpainting_conditioning"]


async def test_extra_single_image_doubles_the_size(client):
    result = await asyncio.to_thread(client.extra_single_image, image=gradient_rgb(40, 30), upscaler_1="Lanczos",
                                     upscaling_resize=2)
    assert result.image.size == (80, 60)
    assert "lanczos" in result.info


async def test_rembg_u2netp_returns_an_rgba_cutout(client):
    source = Image.new("RGB", (64, 64), (255, 255, 255))
    source.paste(disc_rgba(64).convert("RGB"), mask=disc_rgba(64).getchannel("A"))
    rembg = webuiapi.RemBGInterface(client)
    result = await asyncio.to_thread(rembg.rembg, input_image=source, model="u2netp")
    assert result.image.mode == "RGBA" and result.image.size == (64, 64)
    mask = await asyncio.to_thread(rembg.rembg, input_image=source, model="u2netp", return_mask=True)
    assert mask.image.mode == "L" and mask.image.size == (64, 64)


async def test_options_select_the_checkpoint_per_key(live_secured_gateway):
    bob = await api(live_secured_gateway, username="bob", password="key-bob")
    alice = await api(live_secured_gateway, username="alice", password="key-alice")
    try:
        await asyncio.to_thread(bob.set_options, {"sd_model_checkpoint": "tiny-sd-b", "custom_key": [1, 2]})
        options = await asyncio.to_thread(bob.get_options)
        assert options["sd_model_checkpoint"] == "tiny-sd-b" and options["custom_key"] == [1, 2]
        result = await asyncio.to_thread(bob.txt2img, prompt="x", seed=1, **SMALL)
        assert result.info["sd_model_name"] == "tiny-sd-b"
        # Options are the key's own: alice still runs the default.
        assert (await asyncio.to_thread(alice.get_options))["sd_model_checkpoint"] == "tiny-sd"
        override = await asyncio.to_thread(bob.txt2img, prompt="x", seed=1,
                                           override_settings={"sd_model_checkpoint": "tiny-sd"}, **SMALL)
        assert override.info["sd_model_name"] == "tiny-sd"
    finally:
        await asyncio.to_thread(bob.set_options, {"sd_model_checkpoint": "tiny-sd"})


async def test_unknown_checkpoint_option_is_refused(live_gateway):
    async with httpx.AsyncClient(base_url=live_gateway) as http:
        reply = await http.post("/sdapi/v1/options", json={"sd_model_checkpoint": "no-such-model"})
    _assert_http_error(reply, 400, "no-such-model")


async def test_basic_auth_takes_the_api_key_as_password(live_secured_gateway):
    client = await api(live_secured_gateway, username="anyone", password="key-alice")
    models = await asyncio.to_thread(client.get_sd_models)
    assert models and "title" in models[0]
    async with httpx.AsyncClient(base_url=live_secured_gateway) as http:
        reply = await http.get("/sdapi/v1/sd-models", auth=("alice", "wrong"))
    _assert_http_error(reply, 401, "invalid")


def _assert_http_error(reply: httpx.Response, status: int, fragment: str) -> dict:
    """A1111's api_middleware shape for an HTTP error."""
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert {"error", "detail", "body", "errors"} <= set(body), body
    assert fragment.lower() in body["detail"].lower(), body
    return body


async def test_validation_errors_are_fastapi_422(live_gateway):
    async with httpx.AsyncClient(base_url=live_gateway) as http:
        reply = await http.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 0})
        assert reply.status_code == 422, reply.text
        detail = reply.json()["detail"]
        assert isinstance(detail, list) and detail[0]["loc"] == ["body", "steps"] and detail[0]["msg"]
        reply = await http.post("/sdapi/v1/txt2img", json={"prompt": "x", "width": "wide"})
        assert reply.status_code == 422 and reply.json()["detail"][0]["loc"] == ["body", "width"]
        reply = await http.post("/sdapi/v1/img2img", json={"prompt": "x", "init_images": []})
        assert reply.status_code == 422 and reply.json()["detail"][0]["loc"] == ["body", "init_images"]


async def test_bad_values_are_http_errors_in_a1111_shape(live_gateway):
    async with httpx.AsyncClient(base_url=live_gateway) as http:
        reply = await http.post("/sdapi/v1/txt2img", json={"prompt": "x", "sampler_name": "Nope", **SMALL})
        body = _assert_http_error(reply, 400, "sampler not found")
        assert body["error"] == "InvalidArgument" and body["errors"].startswith("400")
        reply = await http.post("/sdapi/v1/img2img", json={"prompt": "x", "init_images": ["not base64!"]})
        _assert_http_error(reply, 400, "base64")
        reply = await http.post("/sdapi/v1/extra-single-image", json={"image": b64(gradient_rgb(8, 8)),
                                                                      "upscaler_1": "SwinIR 4x"})
        _assert_http_error(reply, 400, "upscaler")
        reply = await http.post("/rembg", json={"input_image": b64(gradient_rgb(8, 8)), "model": "nonexistent"})
        assert reply.status_code == 400 and "nonexistent" in reply.json()["detail"], reply.text


@pytest.mark.parametrize("module,path", [("canny", "controlnet:canny"), ("lineart_realistic", "controlnet:lineart")])
async def test_controlnet_units_run_generates_controlnet(client, module, path):
    unit = webuiapi.ControlNetUnit(image=disc_rgba(64).convert("RGB"), module=module, model="control_canny",
                                   weight=0.7)
    # A fresh alwayson_scripts: webuiapi adds ControlNet to the dict it is given, its default included.
    result = await asyncio.to_thread(client.txt2img, prompt="x", controlnet_units=[unit], alwayson_scripts={},
                                     width=72, height=64, steps=2)
    assert result.images[0].size == (72, 64)
    assert result.info["sd_model_name"] == "tiny-sd-controlnet"
    assert result.info["extra_generation_params"]["ControlNet"] == path


async def test_controlnet_refusals_say_why(client):
    unit = webuiapi.ControlNetUnit(image=gradient_rgb(64, 64), module="depth_midas", model="control_depth")
    with pytest.raises(RuntimeError) as caught:
        await asyncio.to_thread(client.txt2img, prompt="x", controlnet_units=[unit], alwayson_scripts={}, **SMALL)
    status, text = caught.value.args
    assert status == 400 and "depth_midas" in json.loads(text)["detail"] and "canny" in json.loads(text)["detail"]
    unit = webuiapi.ControlNetUnit(image=gradient_rgb(64, 64), module="canny", model="control_canny")
    with pytest.raises(RuntimeError) as caught:
        await asyncio.to_thread(client.img2img, images=[gradient_rgb(64, 64)], mask_image=disc_rgba(64), prompt="x",
                                controlnet_units=[unit], alwayson_scripts={}, **SMALL)
    status, text = caught.value.args
    body = json.loads(text)
    assert status == 501 and body["reason"] == "NOT_IMPLEMENTED" and "inpainting mask" in body["detail"]


async def test_controlnet_with_img2img_repaints_the_init_image_under_control(client):
    unit = webuiapi.ControlNetUnit(image=disc_rgba(64).convert("RGB"), module="scribble", model="control_scribble")
    result = await asyncio.to_thread(client.img2img, images=[gradient_rgb(72, 64)], prompt="x", controlnet_units=[unit],
                                     alwayson_scripts={}, denoising_strength=0.6, steps=4, width=72, height=64)
    assert result.images[0].size == (72, 64)
    assert result.info["sd_model_name"] == "tiny-sd-controlnet" and result.info["denoising_strength"] == 0.6
    assert result.info["extra_generation_params"]["ControlNet"] == "controlnet:scribble:img2img"


async def test_progress_of_a_running_job_and_interrupt_cancels_it(client):
    idle = await asyncio.to_thread(client.get_progress)
    assert idle["state"]["job_count"] == 0 and idle["progress"] == 0 and idle["current_image"] is None
    outcome: dict = {}

    def long_job() -> None:
        try:
            outcome["result"] = client.txt2img(prompt="a long one", seed=9, batch_size=2, n_iter=8, width=512,
                                               height=512, steps=50)
        except RuntimeError as exc:
            outcome["error"] = exc.args

    worker = threading.Thread(target=long_job, daemon=True)
    worker.start()
    seen = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and worker.is_alive():
        progress = await asyncio.to_thread(client.get_progress)
        if progress["state"]["job_count"] >= 1 and progress["state"]["sampling_step"] > 0:
            seen = progress
            break
        await asyncio.sleep(0.2)
    assert seen is not None, f"the running job never showed in /progress: {outcome}"
    assert 0 < seen["progress"] <= 1 and 0 < seen["state"]["sampling_step"] <= 50
    assert seen["state"]["sampling_steps"] == 50 and seen["state"]["job"] == "txt2img"
    assert seen["eta_relative"] >= 0  # current_image: tests/gateway/test_preview_channels.py

    assert await asyncio.to_thread(client.interrupt) == {}
    await asyncio.to_thread(worker.join, 120)
    assert not worker.is_alive()
    status, text = outcome["error"]
    assert status == 499 and json.loads(text)["reason"] == "CANCELLED", text
    after = await asyncio.to_thread(client.get_progress)
    assert after["state"]["job_count"] == 0
