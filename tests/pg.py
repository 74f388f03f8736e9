"""PostgreSQL for the tests: the server on 127.0.0.1:5432 (IMAGEMESH_TEST_PG), started when it is installed but
down, and fresh databases the tests create and drop.

Outside CI an unreachable server skips the PostgreSQL tests with the reason. In CI (CI=true) it never skips:
`ensure_server` starts Debian's cluster (pg_ctlcluster, else `service postgresql start`) and the tests fail when
that does not bring it up. `make postgres` runs the same check from the command line (mk/db.mk).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from functools import lru_cache

PG_SERVER = os.environ.get("IMAGEMESH_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def admin():
    import psycopg

    return psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=3)


def _reachable() -> str | None:
    """None when the server answers, else why not."""
    try:
        admin().close()
        return None
    except Exception as exc:  # noqa: BLE001
        return str(exc).strip() or type(exc).__name__


def _start_commands() -> list[list[str]]:
    commands = []
    if shutil.which("pg_lsclusters") and shutil.which("pg_ctlcluster"):
        listing = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False)
        for line in listing.stdout.splitlines():
            fields = line.split()
            if len(fields) >= 4 and fields[3] != "online":
                commands.append(["pg_ctlcluster", fields[0], fields[1], "start"])
    if shutil.which("service"):
        commands.append(["service", "postgresql", "start"])
    return commands


@lru_cache(maxsize=1)
def ensure_server() -> str | None:
    """None when PostgreSQL answers (started here if it had to be), else the reason it does not."""
    why = _reachable()
    if why is None:
        return None
    tried = []
    for command in _start_commands():
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        tried.append(f"{' '.join(command)} -> {done.returncode} {(done.stderr or done.stdout).strip()[-200:]}")
        for _ in range(30):
            if _reachable() is None:
                return None
            time.sleep(0.5)
    return f"PostgreSQL not reachable at {PG_SERVER}: {why}" + (f"; tried: {'; '.join(tried)}" if tried else
                                                                "; no PostgreSQL installation found to start")


def require_server() -> None:
    """Skip (outside CI) or fail (CI=true) the calling test when PostgreSQL cannot be had."""
    import pytest

    why = ensure_server()
    if why is None:
        return
    if in_ci():
        pytest.fail(f"CI=true and {why}", pytrace=False)
    pytest.skip(why)


def create_database(prefix: str = "imagemesh_test") -> tuple[str, str]:
    """A fresh database: (name, SQLAlchemy URL). Drop it with drop_database."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, f"{PG_SERVER.replace('postgresql://', 'postgresql+psycopg://')}/{name}"


def drop_database(name: str) -> None:
    with admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    problem = ensure_server()
    if problem is None:
        print(f"PostgreSQL: {PG_SERVER} answers")
        sys.exit(0)
    print(problem, file=sys.stderr)
    sys.exit(1 if in_ci() else 0)
