"""The gateway's tables in the job store's database: API keys, rate-limit windows and A1111 options.

They live next to the orchestrator's tables (same IMAGEMESH_DATABASE_URL) so every gateway replica sees the same
keys and counts the same windows. SQLAlchemy Core, synchronous; callers run it in a worker thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    select,
)
from sqlalchemy.engine import Engine

metadata = MetaData()

api_keys = Table(
    "gateway_api_keys", metadata,
    # Only a hash is stored: a database dump does not leak usable keys.
    Column("key_sha256", String(64), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

rate_windows = Table(
    "gateway_rate_limits", metadata,
    Column("bucket", String(300), primary_key=True),
    Column("window_start", BigInteger, primary_key=True),
    Column("count", Integer, nullable=False),
)

# The A1111 dialect's POST /sdapi/v1/options, per owner (A1111 keeps one global set; here each key has its own).
# In the shared database so every gateway replica answers the same options.
a1111_options = Table(
    "gateway_a1111_options", metadata,
    Column("owner", String(200), primary_key=True),
    Column("key", String(200), primary_key=True),
    # JSON of the value.
    Column("value", Text, nullable=False),
)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_store_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record) -> None:
            # WAL lets readers run beside the one writer; several processes share the file.
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL syncs at checkpoints, not on every commit: a counter lost to a power cut costs a
            # few requests of a window, and each request stops paying an fsync.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    # Not in the orchestrator's alembic history although the database is shared: the gateway's image ships without
    # the orchestrator package and must not wait for an orchestrator to have migrated. create_all only creates what
    # is missing; when these tables change shape they get their own history (own version_table) in this package.
    metadata.create_all(engine)
    return engine


def add_api_key(engine: Engine, key: str, owner: str) -> None:
    """Store a key (hashed) for an owner; used by operators and tests."""
    with engine.begin() as conn:
        conn.execute(delete(api_keys).where(api_keys.c.key_sha256 == key_hash(key)))
        conn.execute(api_keys.insert().values(key_sha256=key_hash(key), owner=owner, created_at=int(time.time())))


def owner_for_key(engine: Engine, key: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(api_keys.c.owner).where(api_keys.c.key_sha256 == key_hash(key))).scalar()


def count_api_keys(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(api_keys)).scalar() or 0)


# SQLite has one writer at a time; threads of one process queue on this lock instead of on SQLite's busy handler,
# which sleeps in growing steps and turns contention into long tail latency. Other processes still use the handler.
sqlite_writer = threading.Lock()
_sqlite_writer = sqlite_writer


def hit(engine: Engine, bucket: str, window_start: int, expire_before: int) -> int:
    """Count one request in (bucket, window) and return the window's count, atomically across replicas."""
    return hit_many(engine, [(bucket, window_start, 1, expire_before)])[0]


def hit_many(engine: Engine, hits: list[tuple[str, int, int, int]]) -> list[int]:
    """Count n requests in each (bucket, window, n, expire_before) in one transaction; returns each window's count
    after its n were added. One commit for many requests is what keeps the counter off the hot path."""
    dialect = engine.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - the job store runs on SQLite or PostgreSQL
        raise RuntimeError(f"rate limits need SQLite or PostgreSQL, not {dialect}")
    counts = []
    lock = _sqlite_writer if dialect == "sqlite" else contextlib.nullcontext()
    with lock, engine.begin() as conn:
        for bucket, window_start, n, expire_before in hits:
            statement = insert(rate_windows).values(bucket=bucket, window_start=window_start, count=n)
            statement = statement.on_conflict_do_update(
                index_elements=[rate_windows.c.bucket, rate_windows.c.window_start],
                set_={"count": rate_windows.c.count + n},
            ).returning(rate_windows.c.count)
            count = int(conn.execute(statement).scalar_one())
            if count == n:
                # A new window: drop this bucket's expired ones, so the table stays as small as the live windows.
                conn.execute(delete(rate_windows).where(rate_windows.c.bucket == bucket,
                                                        rate_windows.c.window_start < expire_before))
            counts.append(count)
    return counts


def a1111_options_of(engine: Engine, owner: str) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(select(a1111_options.c.key, a1111_options.c.value).where(a1111_options.c.owner == owner))
        return {key: json.loads(value) for key, value in rows}


def set_a1111_options(engine: Engine, owner: str, values: dict[str, Any]) -> None:
    """Replace the given keys of an owner's options in one transaction."""
    if not values:
        return
    lock = _sqlite_writer if engine.dialect.name == "sqlite" else contextlib.nullcontext()
    with lock, engine.begin() as conn:
        conn.execute(delete(a1111_options).where(a1111_options.c.owner == owner,
                                                 a1111_options.c.key.in_(list(values))))
        conn.execute(a1111_options.insert(), [{"owner": owner, "key": key, "value": json.dumps(value)}
                                              for key, value in values.items()])
