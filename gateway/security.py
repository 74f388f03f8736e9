"""Auth and rate limits, as one FastAPI dependency per dialect (and per bucket).

`guard("shotgun")` authenticates the caller (Authorization: Bearer or X-API-Key; HTTP Basic with the key as
password where a dialect asks for it), records the owner on
`request.state.owner`, then counts the request in the bucket's fixed window in the shared database. Failures
raise the mesh's errors (Unauthenticated, RateLimited), so each dialect renders them in its own format.
`RateLimitHeadersMiddleware` puts X-RateLimit-* on every response of a guarded route, errors included.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import math
import re
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer
from sqlalchemy.engine import Engine
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import HTTPConnection

from gateway import access_store
from gateway.settings import GatewaySettings
from shared.errors import RateLimited, ServiceUnavailable, Unauthenticated

log = logging.getLogger(__name__)

_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*(\d+)?\s*(second|minute|hour|day)s?\s*$")


@dataclass(frozen=True)
class Limit:
    count: int
    window_s: int

    @classmethod
    def parse(cls, text: str) -> Limit:
        match = _LIMIT.match(text)
        if not match:
            raise ValueError(f"rate limit {text!r} is not 'N/period' (period: second, minute, hour, day)")
        return cls(int(match.group(1)), int(match.group(2) or 1) * _PERIODS[match.group(3)])


def parse_keys(text: str) -> dict[str, str]:
    """'key1:owner1,key2:owner2' -> {key: owner}; a key without an owner is its own owner id."""
    keys = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, owner = item.partition(":")
        keys[key.strip()] = owner.strip() or f"key_{access_store.key_hash(key.strip())[:12]}"
    return keys


class Security:
    """Per-app auth and rate-limit state: configured keys, the database, parsed limits."""

    def __init__(self, settings: GatewaySettings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.keys = parse_keys(settings.api_keys)
        self.limits = {name: Limit.parse(text) for name, text in settings.resolved_rate_limits.items()}
        self.db_keys = access_store.count_api_keys(engine)
        self.auth_enabled = bool(self.keys) or self.db_keys > 0 or settings.require_auth
        self.counter = GroupCounter(window_store(settings, engine))
        # Database keys are looked up once and remembered briefly; a revoked key stops working within a minute.
        self._cache: dict[str, tuple[str | None, float]] = {}

    async def close(self) -> None:
        await self.counter.store.close()

    async def owner_for(self, key: str | None) -> str:
        if not self.auth_enabled:
            return self.settings.anonymous_owner
        if not key:
            raise Unauthenticated("API key is missing: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        for known, owner in self.keys.items():
            if hmac.compare_digest(known.encode(), key.encode()):
                return owner
        owner = await self._db_owner(key)
        if owner is None:
            raise Unauthenticated("API key is invalid")
        return owner

    async def _db_owner(self, key: str) -> str | None:
        digest = access_store.key_hash(key)
        cached = self._cache.get(digest)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        owner = await anyio.to_thread.run_sync(access_store.owner_for_key, self.engine, key)
        self._cache[digest] = (owner, time.monotonic() + 60.0)
        return owner

    async def count(self, bucket: str, subject: str) -> dict[str, int]:
        """Count a request; returns the header values, raises RateLimited past the limit."""
        limit = self.limits[bucket]
        now = time.time()
        window_start = int(now // limit.window_s) * limit.window_s
        reset = window_start + limit.window_s
        try:
            used = await self.counter.hit(f"{bucket}:{subject}", window_start, limit.window_s)
        except (SQLAlchemyError, sqlite3.Error, RedisError, OSError) as exc:
            log.exception("rate-limit store failed")
            raise ServiceUnavailable(f"rate-limit store unavailable: {type(exc).__name__}") from None
        state = {"limit": limit.count, "remaining": max(0, limit.count - used), "reset": reset}
        if used > limit.count:
            retry_after = max(1, math.ceil(reset - now))
            raise RateLimited(f"rate limit exceeded: {limit.count} requests per {_describe(limit.window_s)}; "
                              f"retry in {retry_after} seconds", limit=limit.count, retry_after=retry_after,
                              reset=reset)
        return state


class GroupCounter:
    """Counts requests with group commit: hits that arrive while a write is in flight wait for the next one, which
    carries them all (one increment per window, `count + n`). Every request is still counted in the shared store
    before it is answered, so replicas stay exact; under load one write serves many requests."""

    def __init__(self, store: WindowStore) -> None:
        self.store = store
        self.pending: dict[tuple[str, int, int], list[asyncio.Future[int]]] = {}
        self.flushing = False

    async def hit(self, key: str, window_start: int, window_s: int) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.pending.setdefault((key, window_start, window_s), []).append(future)
        if not self.flushing:
            self.flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, {}
                items = list(batch.items())
                try:
                    counts = await self.store.hit_many(
                        [(key, window, len(futures), window_s) for (key, window, window_s), futures in items])
                except Exception as exc:  # noqa: BLE001 - every waiter must hear about it
                    for _, futures in items:
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    continue
                for (_, futures), total in zip(items, counts):
                    # The batch's requests took the last len(futures) places of the window, in arrival order.
                    for position, future in enumerate(futures, start=total - len(futures) + 1):
                        if not future.done():
                            future.set_result(position)
        finally:
            self.flushing = False


class WindowStore(Protocol):
    """Where the fixed windows are counted: `hit_many([(key, window_start, n, window_s)])` adds n to each window
    and returns each window's count after the addition, atomically across every gateway sharing the store."""

    async def hit_many(self, hits: list[tuple[str, int, int, int]]) -> list[int]: ...

    async def close(self) -> None: ...


class DatabaseWindows:
    """The job store's database through SQLAlchemy (PostgreSQL: every replica sharing the database)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def hit_many(self, hits: list[tuple[str, int, int, int]]) -> list[int]:
        return await anyio.to_thread.run_sync(
            access_store.hit_many, self.engine, [(key, start, n, start - size) for key, start, n, size in hits])

    async def close(self) -> None:
        pass


class SqliteWindows:
    """The embedded default: the same table in the job store's SQLite file (so the gateway processes sharing the
    file count the same windows), written through one plain sqlite3 connection on one dedicated thread. Per write
    it costs a fraction of the SQLAlchemy path (no statement building or compiling, no thread-pool limiter), which
    is what keeps accounting under 10% of a light request (bench/README.md)."""

    UPSERT = ("INSERT INTO gateway_rate_limits (bucket, window_start, count) VALUES (?, ?, ?) "
              "ON CONFLICT (bucket, window_start) DO UPDATE SET count = count + excluded.count RETURNING count")
    EXPIRE = "DELETE FROM gateway_rate_limits WHERE bucket = ? AND window_start < ?"

    def __init__(self, path: str) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ratelimit")
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._conn = conn
        return self._conn

    def _hit_many(self, hits: list[tuple[str, int, int, int]]) -> list[int]:
        conn = self._connection()
        counts = []
        # Threads of this process that write the file through SQLAlchemy queue on the same lock (access_store).
        with access_store.sqlite_writer:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for key, start, n, size in hits:
                    count = conn.execute(self.UPSERT, (key, start, n)).fetchone()[0]
                    if count == n:  # a new window: drop this bucket's expired ones
                        conn.execute(self.EXPIRE, (key, start - size))
                    counts.append(int(count))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return counts

    async def hit_many(self, hits: list[tuple[str, int, int, int]]) -> list[int]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._hit_many, hits)

    async def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._pool, shut)
        self._pool.shutdown(wait=False)


class RedisWindows:
    """Redis (IMAGEMESH_RATE_LIMIT_REDIS_URL): one pipelined round trip per group commit, INCRBY per window key;
    the key expires two windows after it was made. Exact across every replica using the same Redis."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    async def hit_many(self, hits: list[tuple[str, int, int, int]]) -> list[int]:
        pipe = self.client.pipeline(transaction=False)
        for key, start, n, size in hits:
            name = f"imagemesh:ratelimit:{key}:{start}"
            pipe.set(name, 0, ex=2 * size, nx=True)
            pipe.incrby(name, n)
        replies = await pipe.execute()
        return [int(count) for count in replies[1::2]]

    async def close(self) -> None:
        await self.client.aclose()


def window_store(settings: GatewaySettings, engine: Engine) -> WindowStore:
    """Redis when a URL is set; else the job store's database: plain sqlite3 for SQLite, SQLAlchemy otherwise."""
    if settings.rate_limit_redis_url:
        return RedisWindows(settings.rate_limit_redis_url)
    if engine.dialect.name == "sqlite" and engine.url.database:
        return SqliteWindows(engine.url.database)
    return DatabaseWindows(engine)


def _describe(seconds: int) -> str:
    for name, size in reversed(_PERIODS.items()):
        if seconds % size == 0:
            count = seconds // size
            return name if count == 1 else f"{count} {name}s"
    return f"{seconds} seconds"  # pragma: no cover


_bearer = HTTPBearer(auto_error=False, description="API key as a bearer token")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")
# Only for dialects whose clients speak HTTP Basic (A1111's --api-auth): the password is the API key and the user
# name is ignored, so a key is still the one credential; Bearer and X-API-Key work there too.
_basic = HTTPBasic(auto_error=False, description="API key as the password (any user name)")
_BEARER = Depends(_bearer)
_API_KEY = Depends(_api_key)
_BASIC = Depends(_basic)


def client_ip(connection: HTTPConnection) -> str:
    return connection.client.host if connection.client else "unknown"


def guard(bucket: str, anonymous_bucket: str | None = None, *, basic: bool = False) -> Callable[..., Any]:
    """A dependency: authenticate, then count the request in `bucket` (or `anonymous_bucket` when anonymous).
    `basic` also accepts HTTP Basic credentials whose password is an API key."""

    async def check(request: Request, key: str | None) -> str:
        security: Security = request.app.state.security
        owner = await security.owner_for(key)
        request.state.owner = owner
        try:
            request.state.ratelimit = await admit(security, owner, client_ip(request), bucket, anonymous_bucket)
        except RateLimited as exc:
            request.state.ratelimit = {"limit": int(exc.metadata["limit"]), "remaining": 0,
                                       "reset": int(exc.metadata["reset"])}
            raise
        return owner

    async def dependency(request: Request, bearer: HTTPAuthorizationCredentials | None = _BEARER,
                         api_key: str | None = _API_KEY) -> str:
        return await check(request, api_key or (bearer.credentials if bearer else None))

    async def basic_dependency(request: Request, bearer: HTTPAuthorizationCredentials | None = _BEARER,
                               api_key: str | None = _API_KEY,
                               credentials: HTTPBasicCredentials | None = _BASIC) -> str:
        return await check(request, api_key or (bearer.credentials if bearer else None)
                           or (credentials.password if credentials else None))

    chosen = basic_dependency if basic else dependency
    # The app checks credentials before it reads a guarded route's body (gateway/app.py AuthFirstMiddleware).
    chosen.imagemesh_guard_basic = basic  # type: ignore[attr-defined]
    return chosen


def key_from_request_headers(headers: Mapping[str, str], basic: bool) -> str | None:
    """The API key an HTTP request carries, read the way `guard` reads it (X-API-Key, Bearer, and HTTP Basic's
    password where the dialect takes Basic)."""
    key = headers.get("x-api-key")
    if key:
        return key
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if basic and scheme.lower() == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        return decoded.partition(":")[2] or None
    return None


async def admit(security: Security, owner: str, ip: str, bucket: str,
                anonymous_bucket: str | None = None) -> dict[str, int] | None:
    """Count one request against its rate limit (RateLimited past it): per key when authenticated, per client IP
    when anonymous (the seeds' "per IP address"). HTTP requests and WebSocket messages both come through here."""
    if not security.settings.rate_limit_enabled:
        return None
    anonymous = not security.auth_enabled
    name = anonymous_bucket if anonymous and anonymous_bucket else bucket
    return await security.count(name, f"ip:{ip}" if anonymous else f"owner:{owner}")


def key_from_headers(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The API key of a connection that cannot use the HTTP security schemes (a WebSocket handshake): the
    same X-API-Key or Bearer header, or an api_key query parameter (browsers cannot set WebSocket headers)."""
    key = headers.get("x-api-key") or query.get("api_key")
    auth = headers.get("authorization", "")
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    return key or None


def owner_of(request: Request) -> str:
    return getattr(request.state, "owner", None) or request.app.state.settings.anonymous_owner


def ratelimit_headers(counted: dict[str, int]) -> list[tuple[bytes, bytes]]:
    """X-RateLimit-Limit/Remaining/Reset from the guard's count."""
    return [(b"x-ratelimit-limit", str(counted["limit"]).encode()),
            (b"x-ratelimit-remaining", str(counted["remaining"]).encode()),
            (b"x-ratelimit-reset", str(counted["reset"]).encode())]


class RateLimitHeadersMiddleware:
    """Adds X-RateLimit-Limit/Remaining/Reset from the guard's count to the response (pure ASGI)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = scope.setdefault("state", {})

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                counted = state.get("ratelimit")
                if counted:
                    message = {**message, "headers": [*message.get("headers", []), *ratelimit_headers(counted)]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
