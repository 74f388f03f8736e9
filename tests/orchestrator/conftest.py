"""Orchestrator fixtures: a real Upscale server, and orchestrators over SQLite and PostgreSQL.

PostgreSQL: one fresh database per test session (dropped at the end), one fresh schema per test, so replicas
started by a test only ever see that test's jobs. tests/pg.py: started when installed but down; skipped with the
reason when it cannot be had, except in CI (CI=true), where that fails.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from services.orchestrator.core import OrchestratorCore
from services.orchestrator.server import OrchestratorDeps, build_deps
from services.orchestrator.server import create_server as create_orchestrator
from services.orchestrator.settings import OrchestratorSettings
from services.upscale.server import create_server as create_upscale
from services.upscale.settings import UpscaleSettings
from shared.clients import create_channel
from shared.gen.imagemesh.v1 import orchestrator_service_pb2_grpc as orch_grpc
from tests.mesh import service_kwargs
from tests.pg import PG_SERVER, create_database, drop_database, require_server

WORKFLOWS = Path(__file__).parent / "workflows"


@pytest.fixture(scope="session")
def pg_database():
    """A fresh PostgreSQL database for this session: its SQLAlchemy URL base."""
    require_server()
    name, url = create_database()
    yield name, url
    drop_database(name)


def pg_schema_url(pg_database) -> str:
    """A fresh schema in the session database, selected through the connection's search_path."""
    import psycopg

    name, url = pg_database
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{PG_SERVER}/{name}", autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{url}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    return pg_schema_url(request.getfixturevalue("pg_database"))


@pytest.fixture
def postgres_url(pg_database):
    return pg_schema_url(pg_database)


@pytest.fixture(scope="session")
def shared_images(tmp_path_factory) -> Path:
    """One image store directory shared by the Upscale server and every orchestrator (as a PVC would be)."""
    return tmp_path_factory.mktemp("images")


@pytest_asyncio.fixture(scope="session")
async def upscale_address(tmp_path_factory, shared_images):
    base = {**service_kwargs(tmp_path_factory.mktemp("upscale")), "image_store_dir": shared_images}
    runtime, port = create_upscale(UpscaleSettings(**base))
    await runtime.start()
    yield f"127.0.0.1:{port}"
    await runtime.stop(0)


@dataclass
class Orchestrator:
    runtime: object
    port: int
    channel: object
    stub: orch_grpc.OrchestratorServiceStub
    settings: OrchestratorSettings
    deps: OrchestratorDeps

    @property
    def core(self) -> OrchestratorCore:
        return self.deps.core

    async def stop(self) -> None:
        await self.channel.close()
        await self.runtime.stop(0)


def orchestrator_settings(tmp: Path, database_url: str, upscale_address: str, images: Path,
                          **overrides) -> OrchestratorSettings:
    base = {**service_kwargs(tmp), "image_store_dir": images}
    values = dict(database_url=database_url, upscale_address=upscale_address, workflows_dir=WORKFLOWS,
                  poll_interval_s=0.1, heartbeat_s=0.3, lease_s=3.0, watch_poll_s=0.05,
                  webhook_retry_delays_s=[0.05, 0.05, 0.05, 0.05, 0.05], webhook_poll_interval_s=0.05,
                  webhook_default_secret="test-secret")
    return OrchestratorSettings(**{**base, **values, **overrides})


@pytest_asyncio.fixture
async def start_orchestrator(tmp_path, upscale_address, shared_images):
    """Factory: start an in-process orchestrator on a database; all are stopped at the end of the test."""
    started: list[Orchestrator] = []

    async def start(database_url: str, **overrides) -> Orchestrator:
        address = overrides.pop("upscale_address", upscale_address)
        settings = orchestrator_settings(tmp_path / f"o{len(started)}", database_url, address, shared_images,
                                         **overrides)
        deps = build_deps(settings)  # kept, so tests can look at the core they started
        runtime, port = create_orchestrator(settings, deps)
        await runtime.start()
        channel = create_channel(f"127.0.0.1:{port}")
        orchestrator = Orchestrator(runtime, port, channel, orch_grpc.OrchestratorServiceStub(channel), settings,
                                    deps)
        started.append(orchestrator)
        return orchestrator

    yield start
    for orchestrator in started:
        await orchestrator.stop()


@pytest_asyncio.fixture
async def orch(start_orchestrator, database_url):
    return await start_orchestrator(database_url)
