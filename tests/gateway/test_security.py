"""Auth, rate limits, body limits and error formats across the five dialects, against the real mesh."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from gateway import access_store
from tests.gateway.conftest import KEYS, alice, assert_error_format, bob, gateway
from tests.images import b64, disc_rgba

# One cheap, guarded request per dialect (method, path, json body or None).
PROBES = {
    "freepik": ("GET", "/v1/workflows", None),
    "flux": ("GET", "/models", None),
    "shotgun": ("POST", "/log-selection", {"job_id": "job_x", "selected_model_id": "u2netp"}),
    "image_studio": ("GET", "/api/image-studio/templates", None),
    "cyberimage": ("GET", "/api/gallery", None),
}
AUTH_CODES = {"freepik": "INVALID_API_KEY", "shotgun": "unauthorized"}


async def _probe(client, dialect: str, headers: dict | None = None):
    method, path, body = PROBES[dialect]
    return await client.request(method, path, json=body, headers=headers or {})


@pytest.mark.parametrize("dialect", list(PROBES))
@pytest.mark.parametrize("headers", [None, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}],
                         ids=["missing", "bad-bearer", "bad-x-api-key"])
async def test_wrong_or_missing_key_is_401_in_the_dialect_format(secured, dialect, headers):
    reply = await _probe(secured, dialect, headers)
    body = assert_error_format(dialect, reply, 401, AUTH_CODES.get(dialect))
    assert reply.headers["WWW-Authenticate"] == "Bearer"
    if dialect == "image_studio":
        assert body["detail"].startswith("Authenticated user required for image operations.")


@pytest.mark.parametrize("dialect", list(PROBES))
@pytest.mark.parametrize("headers", [alice(), bob()], ids=["bearer", "x-api-key"])
async def test_a_good_key_in_either_header_passes(secured, dialect, headers):
    reply = await _probe(secured, dialect, headers)
    # Past auth: the answer (the shotgun probe's job id is unknown to the orchestrator: 404).
    assert reply.status_code == (404 if dialect == "shotgun" else 200), reply.text


async def test_health_and_docs_need_no_key(secured):
    assert (await secured.get("/openapi.json")).status_code == 200
    assert (await secured.get("/docs")).status_code == 200
    assert (await secured.get("/health")).status_code == 200  # the session mesh is up
    assert (await secured.get("/api/image-studio/health")).status_code == 200


DOCUMENTED_LIMITS = {"freepik": 1000, "flux": 30, "shotgun": 60, "image_studio": 60, "cyberimage": 720}


@pytest.mark.parametrize("dialect", list(PROBES))
async def test_rate_limit_headers_on_every_guarded_response(secured, dialect):
    before = int(time.time())
    reply = await _probe(secured, dialect, alice())
    assert int(reply.headers["X-RateLimit-Limit"]) == DOCUMENTED_LIMITS[dialect]
    remaining = int(reply.headers["X-RateLimit-Remaining"])
    assert 0 <= remaining < DOCUMENTED_LIMITS[dialect]
    assert int(reply.headers["X-RateLimit-Reset"]) > before
    # Errors carry them too.
    reply = await secured.post("/api/image-studio/estimate-cost", json={"provider": "nope"}, headers=alice())
    assert reply.status_code == 400 and "X-RateLimit-Remaining" in reply.headers


async def test_cyberimage_generation_has_its_documented_10_per_hour(secured):
    reply = await secured.post("/api/generate", json={"model_id": "no-such-model", "prompt": "x"}, headers=bob())
    assert reply.headers["X-RateLimit-Limit"] == "10"
    assert int(reply.headers["X-RateLimit-Reset"]) % 3600 == 0


RATE_CODES = {"freepik": "RATE_LIMIT_EXCEEDED", "shotgun": "rate_limit_exceeded"}


@pytest.mark.parametrize("dialect", list(PROBES))
async def test_past_the_limit_is_429_with_retry_after_in_the_dialect_format(mesh, tmp_path, dialect):
    limits = {name: "3/minute" for name in ("freepik", "flux", "shotgun", "image_studio", "cyberimage_read")}
    async with gateway(mesh, tmp_path, api_keys=KEYS, rate_limits=limits) as client:
        for expected_remaining in (2, 1, 0):
            reply = await _probe(client, dialect, alice())
            assert reply.status_code != 429
            assert reply.headers["X-RateLimit-Remaining"] == str(expected_remaining)
        reply = await _probe(client, dialect, alice())
        body = assert_error_format(dialect, reply, 429, RATE_CODES.get(dialect))
        assert 1 <= int(reply.headers["Retry-After"]) <= 60
        assert reply.headers["X-RateLimit-Remaining"] == "0" and reply.headers["X-RateLimit-Limit"] == "3"
        if dialect == "cyberimage":
            assert body["retry_after"] == int(reply.headers["Retry-After"])
        # Another key has its own window.
        assert (await _probe(client, dialect, bob())).status_code != 429


async def test_replicas_share_the_window_through_the_database(mesh, tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    settings = {"api_keys": KEYS, "database_url": url, "rate_limits": {"image_studio": "4/minute"}}
    async with gateway(mesh, tmp_path / "a", **settings) as first, gateway(mesh, tmp_path / "b", **settings) as second:
        statuses = [(await client.get("/api/image-studio/templates", headers=alice())).status_code
                    for client in (first, second, first, second, first)]
    assert statuses == [200, 200, 200, 200, 429]


async def test_concurrent_requests_never_overshoot_the_limit(mesh, tmp_path):
    async with gateway(mesh, tmp_path, api_keys=KEYS, rate_limits={"image_studio": "10/minute"}) as client:
        replies = await asyncio.gather(*(client.get("/api/image-studio/templates", headers=bob()) for _ in range(25)))
    assert sorted(r.status_code for r in replies) == [200] * 10 + [429] * 15


async def test_anonymous_requests_are_limited_per_ip_with_the_anonymous_limit(mesh, tmp_path):
    async with gateway(mesh, tmp_path) as client:
        reply = await client.get("/models")
        assert reply.status_code == 200 and reply.headers["X-RateLimit-Limit"] == "10"  # FLUX Krea anonymous
        reply = await client.get("/api/image-studio/templates")
        assert reply.status_code == 200 and reply.headers["X-RateLimit-Limit"] == "60"


async def test_keys_from_the_database(mesh, tmp_path):
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    engine = access_store.create_store_engine(url)
    access_store.add_api_key(engine, "db-key-1", "carol")
    engine.dispose()
    async with gateway(mesh, tmp_path, database_url=url) as client:
        assert client.app.state.security.auth_enabled
        assert (await client.get("/api/image-studio/templates")).status_code == 401
        reply = await client.get("/api/image-studio/templates", headers={"Authorization": "Bearer db-key-1"})
        assert reply.status_code == 200


@pytest.mark.postgres
async def test_rate_limits_on_postgresql(mesh, tmp_path, postgres_database):
    owner = f"pg-{uuid.uuid4().hex[:8]}"
    async with gateway(mesh, tmp_path, api_keys=f"pgkey:{owner}", database_url=postgres_database,
                       rate_limits={"image_studio": "2/minute"}) as client:
        statuses = [(await client.get("/api/image-studio/templates", headers={"X-API-Key": "pgkey"})).status_code
                    for _ in range(3)]
    assert statuses == [200, 200, 429]


BIG_BODIES = {
    "freepik": "/v1/post-process/upscale",
    "flux": "/generate",
    "shotgun": "/upscale",
    "image_studio": "/api/image-studio/upscale",
    "cyberimage": "/api/generate",
}


@pytest.fixture(scope="module")
def over_50mb() -> bytes:
    # Valid JSON whose one string pushes the body past 50 MB.
    return b'{"image": "' + b"A" * (50 * 1024 * 1024 + 16) + b'"}'


@pytest.mark.parametrize("dialect", list(BIG_BODIES))
async def test_payload_over_50mb_is_413_in_the_dialect_format(http, over_50mb, dialect):
    reply = await http.post(BIG_BODIES[dialect], content=over_50mb, headers={"Content-Type": "application/json"})
    code = {"shotgun": "image_too_large", "freepik": "IMAGE_TOO_LARGE"}.get(dialect)
    assert_error_format(dialect, reply, 413, code)


async def test_decoded_image_over_the_limit_is_413(mesh, tmp_path):
    async with gateway(mesh, tmp_path, max_image_bytes=1000) as client:
        reply = await client.post("/upscale", json={"image": b64(disc_rgba(256)), "scale_factor": 2})
    assert_error_format("shotgun", reply, 413, "image_too_large")


async def test_unknown_route_is_404(http):
    assert (await http.get("/v1/nothing-here")).status_code == 404


async def test_a_broken_rate_limit_store_is_503_not_a_crash(mesh, tmp_path):
    from gateway import access_store as store_module

    async with gateway(mesh, tmp_path) as client:
        store_module.rate_windows.drop(client.app.state.engine)
        reply = await client.get("/api/image-studio/templates")
        assert_error_format("image_studio", reply, 503)
        reply = await client.post("/upscale", json={})
        assert_error_format("shotgun", reply, 503, "service_unavailable")
