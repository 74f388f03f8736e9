"""The thin slice end to end: POST /upscale on the gateway -> Orchestrator -> Upscale -> back."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from services.upscale.lanczos import lanczos_resize
from tests.images import b64, decompression_bomb_png, disc_rgba, gradient_rgb, png_bytes


def decode(reply_b64: str) -> Image.Image:
    img = Image.open(io.BytesIO(base64.b64decode(reply_b64)))
    img.load()
    return img


@pytest.mark.parametrize("scale", [2, 4])
async def test_upscale_preserves_alpha_and_matches_in_process_lanczos(mesh, scale):
    source = disc_rgba(48)
    reply = await mesh.http.post("/upscale", json={"image": b64(source), "scale_factor": scale})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["status"] == "completed"
    assert body["input_dimensions"] == {"width": 48, "height": 48}
    assert body["output_dimensions"] == {"width": 48 * scale, "height": 48 * scale}
    assert body["scale_factor"] == scale and body["alpha_preserved"] is True
    assert body["job_id"] and body["cost_usd"] >= 0
    out = decode(body["image_base64"])
    assert out.mode == "RGBA" and out.size == (48 * scale, 48 * scale)
    expected = lanczos_resize(source, 48 * scale, 48 * scale)
    assert np.array_equal(np.asarray(out), np.asarray(expected))
    alpha = np.asarray(out)[..., 3]
    assert alpha[0, 0] == 0 and alpha[alpha.shape[0] // 2, alpha.shape[1] // 2] == 255


async def test_preserve_alpha_false_flattens(mesh):
    reply = await mesh.http.post("/upscale", json={"image": b64(disc_rgba(32)), "scale_factor": 2,
                                                   "preserve_alpha": False, "output_format": "webp"})
    assert reply.status_code == 200, reply.text
    out = decode(reply.json()["image_base64"])
    assert out.format == "WEBP" and out.mode == "RGB"
    assert reply.json()["alpha_preserved"] is False


async def test_rgb_input_and_data_uri(mesh):
    data_uri = "data:image/png;base64," + b64(gradient_rgb(40, 30))
    reply = await mesh.http.post("/upscale", json={"image": data_uri, "scale_factor": 2})
    assert reply.status_code == 200, reply.text
    assert reply.json()["output_dimensions"] == {"width": 80, "height": 60}


def truncated_png() -> str:
    data = png_bytes(gradient_rgb(200, 200))
    return base64.b64encode(data[: len(data) // 2]).decode()


BAD_INPUTS = [
    pytest.param({}, 400, "missing_image", id="no-image"),
    pytest.param({"image": base64.b64encode(b"definitely not an image").decode()}, 400, "invalid_format",
                 id="not-an-image"),
    pytest.param({"image": "%%%not-base64%%%"}, 400, "validation_error", id="bad-base64"),
    pytest.param({"image": truncated_png()}, 400, "invalid_format", id="truncated-png"),
    pytest.param({"image": base64.b64encode(decompression_bomb_png()).decode()}, 413, "image_too_large",
                 id="decompression-bomb"),
    pytest.param({"image": b64(disc_rgba(16)), "scale_factor": 3}, 400, "validation_error", id="scale-3"),
    pytest.param({"image": b64(disc_rgba(16)), "output_format": "gif"}, 400, "validation_error", id="format-gif"),
]


@pytest.mark.parametrize("payload,status,error_type", BAD_INPUTS)
async def test_bad_input_gives_documented_error_and_services_stay_up(mesh, payload, status, error_type):
    reply = await mesh.http.post("/upscale", json=payload)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["type"] == error_type
    assert error["message"]
    assert isinstance(error["details"], dict)
    health = await mesh.http.get("/health")
    assert health.json()["services"]["upscale"] == "SERVING"


async def test_gif_is_refused_as_invalid_format(mesh):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "GIF")
    reply = await mesh.http.post("/upscale", json={"image": base64.b64encode(buf.getvalue()).decode()})
    assert reply.status_code == 400
    assert reply.json()["error"] == {"type": "invalid_format", "message": reply.json()["error"]["message"],
                                     "details": {"field": "image", "received": "image/gif"}}


async def test_body_over_50_mb_is_413(mesh):
    huge = "A" * (51 * 1024 * 1024)
    reply = await mesh.http.post("/upscale", content=b'{"image": "' + huge.encode() + b'"}',
                                 headers={"content-type": "application/json"})
    assert reply.status_code == 413
    assert reply.json()["error"]["type"] == "image_too_large"


async def test_output_past_pixel_limit_is_image_too_large(mesh):
    # 1x5000 upscaled 4x stays small in bytes but 4 x 20000 px is fine; a 3000x3000 at 4x is 144 MP > limit.
    big = Image.new("RGB", (3000, 3000), (10, 20, 30))
    reply = await mesh.http.post("/upscale", json={"image": b64(big), "scale_factor": 4})
    assert reply.status_code == 413
    assert reply.json()["error"]["type"] == "image_too_large"
