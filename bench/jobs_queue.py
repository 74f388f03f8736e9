"""Durable jobs: submission throughput and submit->terminal latency of a no-op workflow, SQLite vs PostgreSQL.

Baselines measured in the same run: a bare gRPC round trip to the same server (health check), so the ratios
say what the job store and the worker loop add on top of the transport; and SQLite vs PostgreSQL side by side.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from pathlib import Path

from bench.harness import Comparison, compare
from shared import clients
from shared.clients import create_channel
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb, orchestrator_service_pb2_grpc as pb_grpc

BATCH = 64
IN_FLIGHT = 8
WORKFLOWS = Path(__file__).resolve().parent.parent / "tests" / "orchestrator" / "workflows"
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"


async def _start(tmp: Path, database_url: str):
    from services.orchestrator.server import create_server
    from services.orchestrator.settings import OrchestratorSettings
    from tests.mesh import service_kwargs

    settings = OrchestratorSettings(**service_kwargs(tmp), database_url=database_url, workflows_dir=WORKFLOWS,
                                    poll_interval_s=0.1, watch_poll_s=0.05, log_level="WARNING")
    runtime, port = create_server(settings)
    await runtime.start()
    channel = create_channel(f"127.0.0.1:{port}")
    return runtime, channel, pb_grpc.OrchestratorServiceStub(channel)


def _noop() -> pb.JobSpec:
    return pb.JobSpec(workflow=pb.WorkflowSpec(workflow_id="noop"))


def _pg_database() -> tuple[str, str] | None:
    try:
        import psycopg

        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=3) as admin:
            name = f"imagemesh_bench_{uuid.uuid4().hex[:8]}"
            admin.execute(f'CREATE DATABASE "{name}"')
        return name, f"{PG_SERVER.replace('postgresql://', 'postgresql+psycopg://')}/{name}"
    except Exception:  # noqa: BLE001
        return None


def _drop(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _submitter(stub):
    async def submit_batch():
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def one():
            async with gate:
                await clients.call(stub.SubmitJob, pb.SubmitJobRequest(spec=_noop(), owner="bench"))

        await asyncio.gather(*(one() for _ in range(BATCH)))
    return submit_batch


def _round_trips(channel):
    async def health_batch():
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def one():
            async with gate:
                await clients.check_health(channel)

        await asyncio.gather(*(one() for _ in range(BATCH)))
    return health_batch


def _latency(stub):
    async def run_noop():
        await clients.call(stub.RunJob, pb.RunJobRequest(spec=_noop(), owner="bench"))
    return run_noop


async def run() -> list[Comparison]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        servers = {"sqlite": await _start(Path(tmp) / "sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}")}
        pg = _pg_database()
        if pg is not None:
            servers["postgresql"] = await _start(Path(tmp) / "pg", pg[1])
        try:
            for name, (_runtime, channel, stub) in servers.items():
                rows.append(await compare(
                    f"submit {BATCH} jobs, {IN_FLIGHT} in flight ({name})",
                    (f"SubmitJob x{BATCH}", _submitter(stub)), (f"gRPC health x{BATCH}", _round_trips(channel)),
                    repeats=5, notes="ratio = cost of a durable submit over a bare round trip"))
                rows[-1].extra["jobs_per_s"] = round(BATCH / rows[-1].subject_s, 1)
                rows.append(await compare(
                    f"no-op workflow submit->terminal ({name})", ("RunJob(noop)", _latency(stub)),
                    ("gRPC health", lambda channel=channel: clients.check_health(channel)), repeats=20,
                    notes="claim, one step record, finish, wake the waiter"))
            if "postgresql" in servers:
                sqlite_stub, pg_stub = servers["sqlite"][2], servers["postgresql"][2]
                rows.append(await compare(
                    f"submit {BATCH} jobs: PostgreSQL vs SQLite", ("PostgreSQL", _submitter(pg_stub)),
                    ("SQLite", _submitter(sqlite_stub)), repeats=5))
                rows.append(await compare(
                    "no-op submit->terminal: PostgreSQL vs SQLite", ("PostgreSQL", _latency(pg_stub)),
                    ("SQLite", _latency(sqlite_stub)), repeats=20))
        finally:
            for runtime, channel, _stub in servers.values():
                await channel.close()
                await runtime.stop(0)
            if pg is not None:
                _drop(pg[0])
    return rows
