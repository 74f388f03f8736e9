"""Contract of the FLUX Krea dialect (seed 001) at /: /generate, /models, the WebSocket, against the real mesh."""

from __future__ import annotations

import pytest

from tests.gateway.conftest import SEEDS, assert_error_format, assert_shape
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


async def test_websocket_progress_then_complete(live_gateway):
    import json

    import websockets

    async with websockets.connect(live_gateway.replace("http", "ws") + "/ws") as ws:
        await ws.send(json.dumps({"type": "generate", "data": {"prompt": "A beautiful sunset", **SMALL}}))
        messages = []
        while True:
            message = json.loads(await ws.recv())
            messages.append(message)
            if message["type"] in ("complete", "error"):
                break
        assert messages[-1]["type"] == "complete", messages[-1]
        assert_shape(messages[-1], SEED["ws_complete"])
        progress = [m for m in messages if m["type"] == "progress"]
        assert progress, "at least one progress message"
        for message in progress:
            assert_shape(message, SEED["ws_progress"])
        assert progress[-1]["data"]["total_steps"] == 20
        # Bad input on the same connection is an error message, not a dropped socket.
        await ws.send(json.dumps({"type": "generate", "data": {"prompt": "x", "steps": 99}}))
        error = json.loads(await ws.recv())
        assert_shape(error, SEED["ws_error"])


async def test_websocket_rejects_bad_messages(live_gateway):
    import json

    import websockets

    async with websockets.connect(live_gateway.replace("http", "ws") + "/ws") as ws:
        await ws.send(json.dumps({"type": "dance"}))
        assert json.loads(await ws.recv())["type"] == "error"
        await ws.send(json.dumps({"type": "generate", "data": {"steps": 30}}))
        error = json.loads(await ws.recv())
        assert error["type"] == "error" and "prompt" in error["data"]["error"]


async def test_websocket_needs_a_key_when_auth_is_on(live_secured_gateway):
    import websockets

    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with websockets.connect(live_secured_gateway.replace("http", "ws") + "/ws"):
            pass
    async with websockets.connect(live_secured_gateway.replace("http", "ws") + "/ws",
                                  additional_headers={"X-API-Key": "key-alice"}) as ws:
        await ws.send('{"type": "nope"}')
        assert "error" in await ws.recv()
