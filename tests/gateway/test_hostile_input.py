"""Hostile input against the real gateway over the real mesh (issue 14, classes 2, 4, 7, 8 and 9): every answer is a
documented 4xx in the dialect's own error format, never a 5xx, a stall or a reset connection.

Class 2: declared ranges (seeds past int64, pages past int32, free-form objects). Class 4: list caps. Class 7: id
length caps, no raw input in gRPC errors, result URLs from the public base URL. Class 8: errors in the dialect's
format on every mount (unknown routes, wrong methods, invalid UTF-8, deep nesting, WebSocket frames, auth before the
body, readable 413, keep-alive). Class 9: the OpenAPI document lists the status codes.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
from urllib.parse import urlparse

import httpx
import pytest
import pytest_asyncio
import websockets

from shared.errors import NotFound
from tests.gateway.conftest import KEYS, alice, assert_error_format, gateway, live
from tests.images import b64, disc_rgba

BIG_SEED = 2**63  # one past int64: the proto field's width
HUGE = 10**30  # past every integer field
A1111 = "a1111"


def assert_a1111_validation(reply: httpx.Response) -> None:
    """A1111 keeps FastAPI's 422 shape for request validation."""
    assert reply.status_code == 422, reply.text
    detail = reply.json()["detail"]
    assert isinstance(detail, list) and detail[0]["loc"] and detail[0]["msg"]


def assert_openai(reply: httpx.Response, status: int) -> None:
    assert reply.status_code == status, reply.text
    body = reply.json()["error"]
    assert set(body) == {"message", "type", "param", "code"} and body["message"]


def assert_format(dialect: str, reply: httpx.Response, status: int, code: str | None = None) -> None:
    if dialect == A1111 and status == 422:
        assert_a1111_validation(reply)
    elif dialect == A1111:
        assert reply.status_code == status, reply.text
        body = reply.json()
        assert {"error", "detail", "body", "errors", "reason"} <= set(body) and body["detail"]
    elif dialect == "openai":
        assert_openai(reply, status)
    else:
        assert_error_format(dialect, reply, status, code)


@pytest_asyncio.fixture(scope="module")
async def hostile(mesh, tmp_path_factory):
    """Auth on (two keys), rate limits off (hundreds of requests from one address), a public base URL."""
    async with gateway(mesh, tmp_path_factory.mktemp("hostile"), api_keys=KEYS, rate_limit_enabled=False,
                       public_base_url="https://images.example.test/base") as client:
        client.headers.update(alice())
        yield client


# ---- class 2: every field has a declared range ----------------------------------------------------------------

SEED_CASES = [
    ("flux", "/generate", lambda seed: {"prompt": "a cat", "seed": seed}, 400),
    ("freepik", "/v1/generate", lambda seed: {"prompt": "a cat", "seed": seed}, 400),
    ("image_studio", "/api/image-studio/create", lambda seed: {"prompt": "a cat", "seed": seed}, 400),
    ("image_studio", "/api/image-studio/control/process",
     lambda seed: {"control_image_base64": "AAAA", "operation": "sketch", "prompt": "x", "seed": seed}, 400),
    ("image_studio", "/api/image-studio/edit/process",
     lambda seed: {"image_base64": "AAAA", "operation": "inpaint", "prompt": "x", "seed": seed}, 400),
    ("cyberimage", "/api/generate", lambda seed: {"model_id": "flux-1", "prompt": "a cat", "settings": {"seed": seed}},
     400),
    (A1111, "/sdapi/v1/txt2img", lambda seed: {"prompt": "a cat", "seed": seed}, 422),
]


@pytest.mark.parametrize("seed", [BIG_SEED, 2**64 + 1, HUGE, -(2**63) - 1], ids=["2^63", "2^64+1", "10^30", "-2^63-1"])
@pytest.mark.parametrize("dialect,path,body,status", SEED_CASES, ids=[f"{c[0]}{c[1]}" for c in SEED_CASES])
async def test_seed_past_int64_is_a_documented_error(hostile, dialect, path, body, status, seed):
    assert_format(dialect, await hostile.post(path, json=body(seed)), status)


@pytest.mark.parametrize("page", [2**31, 2**63, HUGE])
async def test_gallery_page_past_int32_is_400(hostile, page):
    assert_format("cyberimage", await hostile.get("/api/gallery", params={"page": page}), 400)


@pytest.mark.parametrize("field,value", [("width", 2**31), ("height", HUGE), ("steps", 2**31), ("num_images", 2**40)])
async def test_freepik_numbers_past_int32_are_400(hostile, field, value):
    assert_format("freepik", await hostile.post("/v1/generate", json={"prompt": "a cat", field: value}), 400)


@pytest.mark.parametrize("strength", ["abc", 1e308, -1, [0.5], {"x": 1}, True, 2],
                         ids=["string", "1e308", "negative", "list", "object", "bool", "two"])
async def test_edit_options_strength_out_of_range_is_400(hostile, strength):
    body = {"image_base64": b64(disc_rgba(32)), "operation": "inpaint", "prompt": "a hat",
            "options": {"strength": strength}}
    assert_format("image_studio", await hostile.post("/api/image-studio/edit/process", json=body), 400)


def _nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth):
        value = {"n": value}
    return value


FREE_FORM = {
    "nested_50": _nested(50),
    "nested_400": _nested(400),
    "int_10^30": {"scale": HUGE},
    "float_1e400": "INF",  # json.loads reads 1e400 as infinity
    "keys_5000": {f"k{i}": i for i in range(5000)},
    "list_5000": {"items": list(range(5000))},
    "string_1M": {"text": "x" * 1_000_000},
}


def _raw_custom_params(name: str) -> bytes:
    if name == "float_1e400":
        return b'{"custom_params": {"scale": 1e400}}'
    return json.dumps({"custom_params": FREE_FORM[name]}).encode()


@pytest.mark.parametrize("name", list(FREE_FORM))
async def test_freepik_custom_params_past_their_caps_are_400(hostile, name):
    reply = await hostile.post("/v1/workflows/product_photo/execute", content=_raw_custom_params(name),
                               headers={"Content-Type": "application/json"})
    assert_format("freepik", reply, 400)


@pytest.mark.parametrize("field", ["override_settings", "alwayson_scripts", "unknown_extra"])
async def test_a1111_free_form_objects_past_their_caps_are_422(hostile, field):
    assert_format(A1111, await hostile.post("/sdapi/v1/txt2img", json={"prompt": "x", field: _nested(50)}), 422)


async def test_a1111_options_past_their_caps_are_400(hostile):
    assert_format(A1111, await hostile.post("/sdapi/v1/options", json={"x": _nested(50)}), 400)


# ---- class 4: every list has a cap ----------------------------------------------------------------------------

LIST_CASES = [
    ("image_studio", "/api/image-studio/social/optimize",
     {"image_base64": "AAAA", "platforms": ["instagram"] * 5000}, 400),
    ("image_studio", "/api/image-studio/social/optimize",
     {"image_base64": "AAAA", "platforms": ["instagram"], "format_names": {f"p{i}": "x" for i in range(5000)}}, 400),
    ("shotgun", "/remove-background", {"image": "AAAA", "include_models": ["u2netp"] * 5000}, 400),
    ("shotgun", "/process", {"image": "AAAA", "bg_models": ["u2netp"] * 5000}, 400),
    (A1111, "/sdapi/v1/txt2img", {"prompt": "x", "script_args": list(range(5000))}, 422),
    (A1111, "/sdapi/v1/txt2img", {"prompt": "x", "styles": ["a"] * 5000}, 422),
    (A1111, "/sdapi/v1/img2img", {"prompt": "x", "init_images": ["AAAA"] * 5000}, 422),
]


@pytest.mark.parametrize("dialect,path,body,status", LIST_CASES, ids=[f"{c[0]}{c[1]}-{i}" for i, c in enumerate(LIST_CASES)])
async def test_lists_past_their_cap_are_refused(hostile, dialect, path, body, status):
    assert_format(dialect, await hostile.post(path, json=body), status)


async def test_job_list_status_filter_past_its_cap_is_400(hostile):
    reply = await hostile.get("/v1/jobs", params=[("status", "completed")] * 500)
    assert_format("freepik", reply, 400)


MULTIPART_CASES = {
    "files_1500": lambda: {"files": [("image", (f"{i}.png", b"x", "image/png")) for i in range(1500)],
                           "data": {"prompt": "x"}},
    "fields_1500": lambda: {"files": [("image", ("a.png", b"x", "image/png"))],
                            "data": {"prompt": "x", **{f"f{i}": "v" for i in range(1500)}}},
    "images_2": lambda: {"files": [("image", ("a.png", b"x", "image/png")), ("image", ("b.png", b"y", "image/png"))],
                         "data": {"prompt": "x"}},
}


@pytest.mark.parametrize("name", list(MULTIPART_CASES))
async def test_openai_multipart_past_its_caps_is_400(hostile, name):
    assert_format("openai", await hostile.post("/v1/images/edits", **MULTIPART_CASES[name]()), 400)


async def test_openai_broken_multipart_is_400(hostile):
    reply = await hostile.post("/v1/images/edits", content=b"--nope\r\ngarbage",
                               headers={"Content-Type": "multipart/form-data; boundary=other"})
    assert_format("openai", reply, 400)


async def test_repeated_platforms_are_optimized_once(hostile):
    body = {"image_base64": b64(disc_rgba(64)), "platforms": ["instagram"] * 5, "crop_mode": "center"}
    reply = await hostile.post("/api/image-studio/social/optimize", json=body)
    assert reply.status_code == 200, reply.text
    assert [r["platform"] for r in reply.json()["results"]] == ["instagram"]


# ---- class 7: ids are capped, never echoed into gRPC metadata; URLs from the public base URL ------------------

LONG_ID = "j" * 10_000
ID_CASES = [
    ("freepik", "GET", f"/v1/generate/{LONG_ID}"),
    ("freepik", "GET", f"/v1/jobs/{LONG_ID}"),
    ("freepik", "POST", f"/v1/jobs/{LONG_ID}/cancel"),
    ("freepik", "GET", f"/v1/jobs/{LONG_ID}/events"),
    ("freepik", "GET", f"/v1/images/{LONG_ID}"),
    ("freepik", "POST", f"/v1/workflows/{LONG_ID}/execute"),
    ("cyberimage", "GET", f"/api/status/{LONG_ID}"),
    ("cyberimage", "GET", f"/api/get_image/{LONG_ID}"),
    ("cyberimage", "GET", f"/api/image/{LONG_ID}/metadata"),
    ("cyberimage", "DELETE", f"/api/image/{LONG_ID}"),
    ("image_studio", "GET", f"/api/image-studio/social/platforms/{LONG_ID}/formats"),
    ("image_studio", "GET", f"/api/image-studio/platform-specs/{LONG_ID}"),
    ("openai", "GET", f"/v1/models/{LONG_ID}"),
    ("freepik", "GET", f"/images/{LONG_ID}"),
]


@pytest.mark.parametrize("dialect,method,path", ID_CASES, ids=[f"{c[1]} {c[2][:28]}" for c in ID_CASES])
async def test_ids_past_their_cap_are_400(hostile, dialect, method, path):
    reply = await hostile.request(method, path, json={} if method == "POST" else None)
    assert_format(dialect, reply, 400)
    assert LONG_ID not in reply.text


ENCODED_CASES = [
    ("freepik", "/v1/generate/%FF%FE%00", 404),
    ("cyberimage", "/api/status/%ED%A0%80", 404),
    ("cyberimage", "/api/gallery?page=%FF", 400),
    ("cyberimage", "/api/gallery?search=%FF%FE%00", 200),
    ("cyberimage", "/api/gallery?model=%00", 400),
    ("image_studio", "/api/image-studio/templates/search?query=%FF", 200),
    ("freepik", "/v1/jobs?status=%FF", 400),
]


@pytest.mark.parametrize("dialect,path,status", ENCODED_CASES, ids=[c[1] for c in ENCODED_CASES])
async def test_percent_encoded_invalid_utf8_in_paths_and_queries(hostile, dialect, path, status):
    reply = await hostile.get(path)
    if status == 200:
        assert reply.status_code == 200, reply.text
    else:
        assert_format(dialect, reply, status)


async def test_log_selection_job_id_past_its_cap_is_400(hostile):
    reply = await hostile.post("/log-selection", json={"job_id": LONG_ID, "selected_model_id": "u2netp"})
    assert_format("shotgun", reply, 400)


@pytest.mark.parametrize("length", [6_000, 10_000, 100_000])
async def test_orchestrator_does_not_echo_a_long_job_id(mesh, length):
    """Straight at the orchestrator (no gateway cap): NOT_FOUND, not a RESOURCE_EXHAUSTED metadata overflow."""
    client = mesh.app.state.mesh.client.as_owner("alice")
    with pytest.raises(NotFound) as caught:
        await client.get_job("x" * length)
    assert caught.value.reason == "JOB_NOT_FOUND" and "xxxxxxxxxx" not in caught.value.message


async def test_orchestrator_does_not_echo_a_long_image_ref(mesh):
    client = mesh.app.state.mesh.client.as_owner("alice")
    with pytest.raises(NotFound) as caught:
        await client.get_image("r" * 20_000)
    assert caught.value.reason == "IMAGE_NOT_FOUND" and "rrrrrrrrrr" not in caught.value.message


def test_error_messages_and_metadata_are_bounded_on_the_wire():
    """Whatever a service puts in an error, its gRPC status (message + ErrorInfo) stays far below gRPC's 8 KiB."""
    from shared.errors import InvalidArgument, to_rpc_status

    error = InvalidArgument("é" * 100_000, field="x" * 100_000, **{f"k{i}": "v" * 1000 for i in range(50)})
    status = to_rpc_status(error)
    assert len(status.message.encode()) * 3 + status.ByteSize() < 4096


async def test_result_urls_come_from_the_public_base_url_not_the_host_header(hostile):
    body = {"prompt": "a lighthouse", "size": "64x64", "response_format": "url"}
    reply = await hostile.post("/v1/images/generations", json=body, headers={"Host": "evil.example"})
    assert reply.status_code == 200, reply.text
    urls = [item["url"] for item in reply.json()["data"]]
    assert urls and all(url.startswith("https://images.example.test/base/images/") for url in urls), urls


# ---- class 8: errors in the dialect's format on every mount ---------------------------------------------------

UNKNOWN_ROUTES = [
    ("freepik", "GET", "/v1/no-such-thing"),
    ("freepik", "POST", "/v1/post-process/no-such-thing"),
    ("openai", "POST", "/v1/images/generations/extra"),
    ("image_studio", "GET", "/api/image-studio/no-such-thing"),
    ("cyberimage", "GET", "/api/no-such-thing"),
    (A1111, "GET", "/sdapi/v1/no-such-thing"),
    ("flux", "POST", "/generate/no-such-thing"),
    ("shotgun", "POST", "/remove-background/no-such-thing"),
    ("freepik", "GET", "/no-such-thing"),  # a path no dialect owns: the mesh's default format (Freepik's shape)
]


@pytest.mark.parametrize("dialect,method,path", UNKNOWN_ROUTES, ids=[f"{c[1]} {c[2]}" for c in UNKNOWN_ROUTES])
async def test_unknown_routes_are_404_in_the_dialect_format(hostile, dialect, method, path):
    assert_format(dialect, await hostile.request(method, path), 404)


WRONG_METHODS = [
    ("freepik", "DELETE", "/v1/generate"),
    ("openai", "PUT", "/v1/images/generations"),
    ("image_studio", "GET", "/api/image-studio/create"),
    ("cyberimage", "GET", "/api/generate"),
    (A1111, "GET", "/sdapi/v1/txt2img"),
    ("flux", "GET", "/generate"),
    ("shotgun", "GET", "/remove-background"),
]


@pytest.mark.parametrize("dialect,method,path", WRONG_METHODS, ids=[f"{c[1]} {c[2]}" for c in WRONG_METHODS])
async def test_wrong_methods_are_405_in_the_dialect_format(hostile, dialect, method, path):
    reply = await hostile.request(method, path)
    assert_format(dialect, reply, 405)
    assert reply.headers["allow"]


BODY_ROUTES = [
    ("freepik", "/v1/generate", 400),
    ("openai", "/v1/images/generations", 400),
    ("image_studio", "/api/image-studio/create", 400),
    ("cyberimage", "/api/generate", 400),
    (A1111, "/sdapi/v1/txt2img", 422),
    ("flux", "/generate", 400),
    ("shotgun", "/remove-background", 400),
]
BAD_BODIES = {
    "invalid_utf8": b'{"prompt": "\xff\xfe\xfa"}',
    "deep_nesting": b"[" * 100_000 + b"]" * 100_000,
    "deep_objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "lone_surrogate_bytes": b'{"prompt": "\xed\xa0\x80"}',
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
@pytest.mark.parametrize("dialect,path,status", BODY_ROUTES, ids=[c[1] for c in BODY_ROUTES])
async def test_unreadable_bodies_are_refused_in_the_dialect_format(hostile, dialect, path, status, name):
    reply = await hostile.post(path, content=BAD_BODIES[name], headers={"Content-Type": "application/json"})
    assert_format(dialect, reply, status)


async def test_shotgun_conflict_is_typed_conflict(hostile):
    """An Idempotency-Key reused for a different request is the mesh's 409 (IDEMPOTENCY_KEY_REUSED)."""
    headers = {"Idempotency-Key": "hostile-conflict"}
    body = {"image": b64(disc_rgba(32)), "scale_factor": 2}
    first = await hostile.post("/upscale", json=body, headers=headers)
    assert first.status_code == 200, first.text
    reused = await hostile.post("/upscale", json={**body, "scale_factor": 4}, headers=headers)
    assert_format("shotgun", reused, 409, "conflict")


# Auth is checked before the body is parsed: no 422 before the 401.
AUTH_ROUTES = [
    ("freepik", "/v1/generate"), ("openai", "/v1/images/generations"), ("image_studio", "/api/image-studio/create"),
    ("cyberimage", "/api/generate"), (A1111, "/sdapi/v1/txt2img"), ("flux", "/generate"),
    ("shotgun", "/remove-background"),
]


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b'{"prompt": 5}'], ids=["malformed", "utf8", "wrong-type"])
@pytest.mark.parametrize("dialect,path", AUTH_ROUTES, ids=[c[1] for c in AUTH_ROUTES])
async def test_auth_is_checked_before_the_body(hostile, dialect, path, body):
    reply = await hostile.post(path, content=body, headers={"Content-Type": "application/json",
                                                            "Authorization": "", "X-API-Key": ""})
    assert_format(dialect, reply, 401)


async def test_a_45mb_body_is_not_read_before_the_401(hostile):
    chunks_read = 0

    async def body():
        nonlocal chunks_read
        for _ in range(45):
            chunks_read += 1
            yield b"x" * 1_048_576

    reply = await hostile.post("/v1/generate", content=body(), headers={"X-API-Key": "wrong-key"})
    assert (reply.status_code, chunks_read) == (401, 0)


# ---- the same over a real HTTP server: readable 413, keep-alive after every error, WebSocket frames ------------


@pytest_asyncio.fixture(scope="module")
async def live_hostile(mesh, tmp_path_factory):
    async with live(mesh, tmp_path_factory.mktemp("live_hostile"), api_keys=KEYS, rate_limit_enabled=False) as url:
        yield url


def _exchange(url: str, requests: list[tuple[str, str, bytes, dict[str, str]]]) -> list[tuple[int, bytes, bool]]:
    """Send each request on ONE keep-alive connection; (status, body, whether the socket stayed the same)."""
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=120)
    out = []
    try:
        conn.connect()
        sock = conn.sock
        for method, path, body, headers in requests:
            conn.request(method, path, body=body, headers=headers)
            reply = conn.getresponse()
            data = reply.read()
            out.append((reply.status, data, conn.sock is sock and not reply.will_close))
    finally:
        conn.close()
    return out


KEY = {"X-API-Key": "key-alice", "Content-Type": "application/json"}
ERRORS_ON_ONE_CONNECTION = {
    "404": ("GET", "/v1/no-such-thing", b"", KEY, 404),
    "405": ("DELETE", "/v1/generate", b"", KEY, 405),
    "invalid_utf8": ("POST", "/v1/generate", b'{"prompt": "\xff"}', KEY, 400),
    "deep_nesting": ("POST", "/generate", b"[" * 50_000 + b"]" * 50_000, KEY, 400),
    "401_unread_body": ("POST", "/v1/generate", b"x" * 5_000_000, {"Content-Type": "application/json"}, 401),
    "range": ("POST", "/generate", json.dumps({"prompt": "x", "seed": 2**70}).encode(), KEY, 400),
    "id_cap": ("GET", "/v1/generate/" + "j" * 5000, b"", KEY, 400),
}


@pytest.mark.parametrize("name", list(ERRORS_ON_ONE_CONNECTION))
async def test_keep_alive_connection_is_usable_after_an_error(live_hostile, name):
    method, path, body, headers, status = ERRORS_ON_ONE_CONNECTION[name]
    replies = await asyncio.to_thread(_exchange, live_hostile, [(method, path, body, headers),
                                                                ("GET", "/v1/workflows", b"", KEY)])
    assert [(code, same) for code, _, same in replies] == [(status, True), (200, True)]


async def test_an_upload_past_50mb_gets_a_readable_413(live_hostile):
    body = json.dumps({"image": "A" * (51 * 1_048_576)}).encode()
    replies = await asyncio.to_thread(_exchange, live_hostile, [("POST", "/remove-background", body, KEY),
                                                                ("GET", "/v1/workflows", b"", KEY)])
    (status, data, same), (after, _, still_same) = replies
    assert (status, json.loads(data)["error"]["type"], same, after, still_same) == (
        413, "image_too_large", True, 200, True)


async def test_a_chunked_upload_past_50mb_gets_a_readable_413(live_hostile):
    async def chunks():
        for _ in range(52):
            yield b"A" * 1_048_576

    async with httpx.AsyncClient(base_url=live_hostile, headers=KEY, timeout=120) as client:
        reply = await client.post("/upscale", content=chunks())
    assert_error_format("shotgun", reply, 413, "image_too_large")


WS_FRAMES = {
    "binary": b"\x00\x01\x02",
    "not_json": "this is not json",
    "truncated_json": '{"type": "generate", "data": {',
    "deep_json": "[" * 100_000 + "]" * 100_000,
    "json_list": "[1, 2, 3]",
    "wrong_type": json.dumps({"type": "generate", "data": {"prompt": "x", "seed": 2**70}}),
}


@pytest.mark.parametrize("name", list(WS_FRAMES))
async def test_websocket_answers_bad_frames_with_an_error_and_stays_open(live_hostile, name):
    url = live_hostile.replace("http", "ws") + "/ws?api_key=key-alice"
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(WS_FRAMES[name])
        first = json.loads(await asyncio.wait_for(ws.recv(), 60))
        await ws.send(json.dumps({"type": "dance"}))
        second = json.loads(await asyncio.wait_for(ws.recv(), 60))
    assert (first["type"], bool(first["data"]["error"]), second["type"]) == ("error", True, "error")


# ---- class 9: the OpenAPI document lists every status code ----------------------------------------------------


async def test_openapi_lists_the_error_statuses_of_every_operation(hostile):
    schema = (await hostile.get("/openapi.json")).json()
    missing = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            listed = set(operation["responses"])
            wanted = {"400", "404", "500", "503"} | ({"401"} if operation.get("security") else set())
            if not path.startswith("/v1/images/") and not path.startswith("/v1/models") and method != "get":
                wanted |= {"413"}
            if not wanted <= listed:
                missing.append((method, path, sorted(wanted - listed)))
    assert missing == []


async def test_openapi_error_bodies_are_the_dialect_formats(hostile):
    schema = (await hostile.get("/openapi.json")).json()

    def ref(path: str, method: str, status: str) -> str:
        return schema["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]["$ref"]

    assert [ref("/v1/generate", "post", "400"), ref("/generate", "post", "422"), ref("/upscale", "post", "409"),
            ref("/api/image-studio/create", "post", "400"), ref("/api/generate", "post", "400"),
            ref("/v1/images/generations", "post", "400"), ref("/sdapi/v1/txt2img", "post", "422")] == [
        f"#/components/schemas/{name}" for name in ("MeshError", "FluxError", "ShotgunError", "ImageStudioError",
                                                     "CyberImageError", "OpenAIError", "A1111ValidationError")]


def test_basic_credentials_are_read_the_way_the_guard_reads_them():
    from gateway.security import key_from_request_headers

    token = base64.b64encode(b"anyone:key-alice").decode()
    assert [key_from_request_headers({"authorization": f"Basic {token}"}, basic)
            for basic in (True, False)] == ["key-alice", None]
