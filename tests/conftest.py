"""Fixtures shared by the whole suite: real in-process gRPC servers on port 0, and the gateway over them."""

from __future__ import annotations

import os

import pytest
import pytest_asyncio

# Models come from the registry packages into var/models (scripts/prepare_models.py); nothing from a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from tests.mesh import MODELS_DIR, REPO, RunningMesh, service_kwargs, start_mesh  # noqa: E402,F401


@pytest.fixture
def postgres_database():
    """A fresh PostgreSQL database for one test (dropped after it): its SQLAlchemy URL. PostgreSQL is started when
    installed but down; it is skipped when it cannot be had, except in CI, where that fails (tests/pg.py)."""
    from tests.pg import create_database, drop_database, require_server

    require_server()
    name, url = create_database()
    yield url
    drop_database(name)


@pytest_asyncio.fixture(scope="session")
async def mesh(tmp_path_factory: pytest.TempPathFactory):
    """The shared mesh for tests that only read from it."""
    running = await start_mesh(tmp_path_factory.mktemp("mesh"))
    yield running
    await running.close()
