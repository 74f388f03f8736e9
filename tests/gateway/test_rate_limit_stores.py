"""Rate-limit stores: Redis (IMAGEMESH_RATE_LIMIT_REDIS_URL) exact across gateway instances, and the embedded
SQLite default exact across instances sharing the file. Redis runs on 127.0.0.1:6379 here and in CI."""

from __future__ import annotations

import asyncio
import uuid

from gateway.security import GroupCounter, RedisWindows, SqliteWindows
from tests.gateway.conftest import gateway

REDIS_URL = "redis://127.0.0.1:6379/0"
PATH = "/sdapi/v1/samplers"  # A1111's sampler list: guarded (a1111_read), no call into the mesh


async def test_two_gateways_sharing_redis_count_one_window_exactly(mesh, tmp_path):
    owner = f"redis-{uuid.uuid4().hex[:10]}"  # Redis outlives the test: a fresh owner is a fresh window
    settings = {"api_keys": f"rk:{owner}", "rate_limit_redis_url": REDIS_URL,
                "rate_limits": {"a1111_read": "10/minute"}}
    async with gateway(mesh, tmp_path / "a", **settings) as first, gateway(mesh, tmp_path / "b", **settings) as second:
        assert isinstance(first.app.state.security.counter.store, RedisWindows)
        headers = {"X-API-Key": "rk"}
        replies = await asyncio.gather(*(client.get(PATH, headers=headers)
                                         for client in [first, second] * 12))
        statuses = sorted(r.status_code for r in replies)
        remaining = sorted(int(r.headers["X-RateLimit-Remaining"]) for r in replies if r.status_code == 200)
        limited = next(r for r in replies if r.status_code == 429)
    assert statuses == [200] * 10 + [429] * 14
    assert remaining == list(range(10))  # every place of the window given out once, across both instances
    assert int(limited.headers["Retry-After"]) >= 1


async def test_redis_store_counts_batches_in_one_round_trip():
    store = RedisWindows(REDIS_URL)
    key = f"test:{uuid.uuid4().hex}"
    try:
        assert await store.hit_many([(key, 0, 3, 60), (key + "b", 0, 1, 60)]) == [3, 1]
        assert await store.hit_many([(key, 0, 2, 60)]) == [5]
        ttl = await store.client.ttl(f"imagemesh:ratelimit:{key}:0")
        assert 0 < ttl <= 120
    finally:
        await store.client.delete(f"imagemesh:ratelimit:{key}:0", f"imagemesh:ratelimit:{key}b:0")
        await store.close()


async def test_embedded_sqlite_store_is_exact_across_instances_sharing_the_file(mesh, tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    settings = {"api_keys": "sk:sam", "database_url": url, "rate_limits": {"a1111_read": "7/minute"}}
    async with gateway(mesh, tmp_path / "a", **settings) as first, gateway(mesh, tmp_path / "b", **settings) as second:
        assert isinstance(first.app.state.security.counter.store, SqliteWindows)
        replies = await asyncio.gather(*(client.get(PATH, headers={"X-API-Key": "sk"})
                                         for client in [first, second] * 10))
    assert sorted(r.status_code for r in replies) == [200] * 7 + [429] * 13


async def test_group_commit_gives_each_waiter_its_own_place():
    class Recording:
        def __init__(self):
            self.counts: dict[tuple[str, int], int] = {}
            self.calls = 0

        async def hit_many(self, hits):
            self.calls += 1
            await asyncio.sleep(0.01)
            out = []
            for key, start, n, _ in hits:
                self.counts[(key, start)] = self.counts.get((key, start), 0) + n
                out.append(self.counts[(key, start)])
            return out

        async def close(self):
            pass

    store = Recording()
    counter = GroupCounter(store)
    places = await asyncio.gather(*(counter.hit("k", 0, 60) for _ in range(20)))
    assert sorted(places) == list(range(1, 21))
    assert store.calls < 20  # batched
