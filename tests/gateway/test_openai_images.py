"""The OpenAI Images API (/v1/images/*, /v1/models), driven by the unmodified `openai` Python client against a real
gateway on a loopback port; the tiny models paint noise, so sizes, counts and shapes are what is checked.

Also: Freepik's routes under the same /v1 prefix keep working beside it.
"""

from __future__ import annotations

import asyncio
import base64
import io

import httpx
import openai
import pytest
from PIL import Image

from tests.gateway.conftest import alice, gateway
from tests.images import png_bytes


def _client(url: str, key: str = "unused") -> openai.OpenAI:
    # No retries: a refused request must surface as the client's own exception at once.
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=300)


async def call(fn, *args, **kwargs):
    """The sync client in a thread, so the test's event loop keeps serving the gateway."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def _decoded(b64_json: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64_json)))
    image.load()
    return image


def _source(size: int = 64) -> bytes:
    return png_bytes(Image.new("RGB", (size, size), (30, 120, 200)))


def _alpha_mask(size: int = 64) -> bytes:
    """Opaque except a transparent square in the middle: the area to edit."""
    mask = Image.new("RGBA", (size, size), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (size // 4, size // 4, size * 3 // 4, size * 3 // 4))
    return png_bytes(mask)


@pytest.fixture
def client(live_gateway) -> openai.OpenAI:
    return _client(live_gateway)


async def test_generate_two_b64_json_pngs_of_the_asked_size(client):
    reply = await call(client.images.generate, prompt="a red fox in the snow", n=2, size="256x256",
                       response_format="b64_json")
    assert isinstance(reply.created, int) and reply.created > 0
    assert len(reply.data) == 2
    for item in reply.data:
        assert item.url is None
        image = _decoded(item.b64_json)
        assert image.format == "PNG" and image.size == (256, 256)


async def test_generate_url_links_are_fetchable(client, live_gateway):
    reply = await call(client.images.generate, prompt="a lighthouse", size="128x192", response_format="url",
                       quality="low", style="natural", user="user-42")
    assert len(reply.data) == 1 and reply.data[0].b64_json is None
    url = reply.data[0].url
    assert url.startswith(live_gateway + "/images/")
    async with httpx.AsyncClient() as http:
        fetched = await http.get(url)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(fetched.content)).size == (128, 192)


async def test_output_format_and_openai_model_names(client):
    # dall-e-3 is an alias of the default model (services/generate/models.yaml); vivid applies a style preset,
    # which comes back as the revised prompt.
    reply = await call(client.images.generate, model="dall-e-3", prompt="a bowl of fruit", size="64x64",
                       response_format="b64_json", output_format="webp", style="vivid")
    image = _decoded(reply.data[0].b64_json)
    assert image.format == "WEBP" and image.size == (64, 64)
    assert reply.data[0].revised_prompt.startswith("a bowl of fruit, ")


async def test_edit_with_an_alpha_mask_gives_the_asked_size(client):
    reply = await call(client.images.edit, image=("source.png", _source(), "image/png"),
                       mask=("mask.png", _alpha_mask(), "image/png"), prompt="a cat on a sofa", size="128x128",
                       response_format="b64_json")
    assert len(reply.data) == 1 and _decoded(reply.data[0].b64_json).size == (128, 128)


async def test_edit_takes_the_image_list_form_and_its_own_transparency(client):
    # image=[...] is sent as `image[]`; without a mask the image's transparent pixels are the area to edit.
    holed = Image.new("RGBA", (64, 64), (200, 30, 30, 255))
    holed.paste((0, 0, 0, 0), (16, 16, 48, 48))
    reply = await call(client.images.edit, image=[("holed.png", png_bytes(holed), "image/png")],
                       prompt="a window", n=2, response_format="b64_json")
    # No size: the source's.
    assert [_decoded(item.b64_json).size for item in reply.data] == [(64, 64), (64, 64)]


async def test_create_variation(client):
    reply = await call(client.images.create_variation, image=("source.png", _source(), "image/png"), n=2,
                       size="64x64", response_format="b64_json")
    assert [_decoded(item.b64_json).size for item in reply.data] == [(64, 64), (64, 64)]


def _error(exc: openai.APIStatusError) -> dict:
    body = exc.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["message"]
    return body["error"]


async def test_an_unknown_model_is_bad_request(client):
    # OpenAI's Images API answers an unknown model with 400 invalid_request_error (param "model"), not 404.
    with pytest.raises(openai.BadRequestError) as caught:
        await call(client.images.generate, model="no-such-model", prompt="x", size="64x64")
    error = _error(caught.value)
    assert error["type"] == "invalid_request_error" and error["param"] == "model"
    assert error["code"] == "invalid_model" and "tiny-sd" in error["message"]


@pytest.mark.parametrize("size", ["banana", "256", "0x256", "32x32", "4096x4096"])
async def test_a_bad_size_is_bad_request_on_size(client, size):
    # The first three fail the gateway's WxH pattern; the last two are outside what Generate's model can make.
    with pytest.raises(openai.BadRequestError) as caught:
        await call(client.images.generate, prompt="x", size=size)
    error = _error(caught.value)
    assert error == {**error, "type": "invalid_request_error", "param": "size", "code": "invalid_size"}


@pytest.mark.parametrize(("kwargs", "param", "code"), [
    ({"n": 11}, "n", "invalid_value"),
    ({"n": 0}, "n", "invalid_value"),
    ({"prompt": "x" * 1001}, "prompt", "prompt_too_long"),
    ({"response_format": "jpeg"}, "response_format", "invalid_value"),
    ({"quality": "ultra"}, "quality", "invalid_value"),
    ({"background": "transparent"}, "background", "invalid_argument"),
    ({"stream": True}, "stream", "invalid_argument"),
    ({"extra_body": {"seed": 3}}, "seed", "unknown_parameter"),
])
async def test_out_of_range_fields_are_bad_request(client, kwargs, param, code):
    kwargs = {"prompt": "a fox", "size": "64x64", **kwargs}
    with pytest.raises(openai.BadRequestError) as caught:
        await call(client.images.generate, **kwargs)
    error = _error(caught.value)
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)


async def test_edit_refusals(client):
    with pytest.raises(openai.BadRequestError) as caught:  # a mask without transparency (Generate's check)
        await call(client.images.edit, image=("a.png", _source(), "image/png"),
                   mask=("m.png", _source(), "image/png"), prompt="x")
    assert _error(caught.value)["param"] == "mask"
    with pytest.raises(openai.BadRequestError) as caught:  # a mask of another size
        await call(client.images.edit, image=("a.png", _source(), "image/png"),
                   mask=("m.png", _alpha_mask(32), "image/png"), prompt="x")
    assert _error(caught.value)["param"] == "mask"
    with pytest.raises(openai.BadRequestError) as caught:  # several images: inpainting repaints one
        await call(client.images.edit, image=[("a.png", _source(), "image/png"), ("b.png", _source(), "image/png")],
                   prompt="x")
    assert _error(caught.value)["param"] == "image"
    with pytest.raises(openai.BadRequestError) as caught:  # a model that cannot inpaint
        await call(client.images.edit, image=("a.png", _source(), "image/png"), prompt="x", model="tiny-sd")
    assert _error(caught.value)["param"] == "model"
    with pytest.raises(openai.BadRequestError) as caught:  # not an image
        await call(client.images.create_variation, image=("a.png", b"not an image", "image/png"))
    assert _error(caught.value)["type"] == "invalid_request_error"


async def test_models_list_and_retrieve(client):
    listing = await call(client.models.list)
    ids = [model.id for model in listing.data]
    assert {"tiny-sd", "tiny-sd-inpaint"} <= set(ids)
    assert all(model.object == "model" and model.owned_by == "imagemesh" for model in listing.data)
    assert (await call(client.models.retrieve, "dall-e-3")).id == "tiny-sd"
    with pytest.raises(openai.NotFoundError) as caught:
        await call(client.models.retrieve, "no-such-model")
    assert _error(caught.value)["code"] == "model_not_found"


async def test_a_bad_key_is_an_authentication_error(live_secured_gateway):
    with pytest.raises(openai.AuthenticationError) as caught:
        await call(_client(live_secured_gateway, "wrong-key").images.generate, prompt="x", size="64x64")
    error = _error(caught.value)
    # OpenAI's own 401 body: type invalid_request_error, code invalid_api_key.
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
    listing = await call(_client(live_secured_gateway, "key-alice").models.list)
    assert listing.data


async def test_openai_and_freepik_share_v1(http):
    """POST /v1/images/generations is OpenAI's, GET /v1/images/{ref} stays Freepik's, /v1/models is OpenAI's and
    Freepik's own /v1 routes answer as before."""
    reply = await http.post("/v1/images/generations", json={"prompt": "a fox", "size": "64x64"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) == {"created", "data", "output_format", "size"} and set(body["data"][0]) == {"url"}
    assert (body["size"], body["output_format"]) == ("64x64", "png")
    url = body["data"][0]["url"]
    ref = url.rsplit("/", 1)[-1]
    freepik_image = await http.get(f"/v1/images/{ref}")
    assert freepik_image.status_code == 200 and freepik_image.headers["content-type"] == "image/png"
    missing = await http.get("/v1/images/generations")  # a GET is Freepik's image route: its error format
    assert missing.status_code == 404 and set(missing.json()["error"]) == {"code", "message", "details"}
    task = await http.post("/v1/generate", json={"prompt": "a fox"})
    assert task.status_code == 200 and task.json()["task_id"]
    models = await http.get("/v1/models")
    assert models.status_code == 200 and models.json()["object"] == "list"
    workflows = await http.get("/v1/workflows")
    assert workflows.status_code == 200 and "workflows" in workflows.json()


async def test_the_openai_bucket_limits_requests(secured):
    reply = await secured.get("/v1/models", headers=alice())
    assert reply.status_code == 200
    assert reply.headers["x-ratelimit-limit"] == "60"


async def test_past_the_limit_is_429_in_openai_shape(mesh, tmp_path):
    async with gateway(mesh, tmp_path, rate_limits={"openai": "1/minute"}) as client:
        assert (await client.get("/v1/models")).status_code == 200
        refused = await client.get("/v1/models")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    error = refused.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("requests", "rate_limit_exceeded", None)
