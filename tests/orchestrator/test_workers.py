"""Workers: claims never double-run a job, leases are fenced and taken over, a killed process's job resumes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from services.orchestrator.job_store import JobStore, LostLease, NewJob, StepRecord, make_engine
from shared import clients
from shared.clients import create_channel
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2_grpc as grpc_pb
from tests.mesh import REPO
from tests.orchestrator.conftest import WORKFLOWS
from tests.orchestrator.helpers import get, submit, upscale_spec, wait_for, workflow_spec


def _store(url: str) -> JobStore:
    store = JobStore(make_engine(url, pool_size=10))
    store.migrate()
    return store


def test_concurrent_claims_from_two_stores_take_each_job_once(database_url):
    stores = [_store(database_url), _store(database_url)]
    ids = [stores[0].create_job(NewJob(owner="o", kind="workflow", spec=workflow_spec("noop")))[0].id
           for _ in range(60)]
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(store: JobStore, name: str) -> None:
        while True:
            got = store.claim(name, 3, 30)
            if not got:
                return
            with lock:
                claimed.extend(c.job.id for c in got)

    threads = [threading.Thread(target=worker, args=(stores[i % 2], f"w{i}")) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = Counter(claimed)
    assert sorted(counts) == sorted(ids) and set(counts.values()) == {1}
    for store in stores:
        store.engine.dispose()


def test_expired_lease_is_taken_over_and_the_old_worker_is_fenced(database_url):
    store = _store(database_url)
    job, _ = store.create_job(NewJob(owner="o", kind="workflow", spec=workflow_spec("noop")))
    [first] = store.claim("dead-worker", 1, lease_s=0.2)
    assert store.reset_stalled(max_attempts=3) == (0, 0)  # lease still valid: not stalled
    assert store.reset_stalled(max_attempts=3, now=time.time() + 1) == (1, 0)
    [second] = store.claim("live-worker", 1, lease_s=30)
    assert second.job.id == job.id and second.token != first.token
    step = StepRecord(name="nothing", index=1, action="noop", status="running")
    with pytest.raises(LostLease):
        store.save_step(job.id, first.token, step)
    with pytest.raises(LostLease):
        store.finish(job.id, first.token, "completed")
    assert store.heartbeat({job.id: first.token}, 30) == {job.id: "lost"}
    assert store.heartbeat({job.id: second.token}, 30) == {job.id: "ok"}
    store.finish(job.id, second.token, "completed")
    assert store.get_job(job.id).status == common_pb2.JOB_STATUS_COMPLETED
    store.engine.dispose()


def test_a_job_whose_workers_keep_dying_fails_with_a_reason(database_url):
    store = _store(database_url)
    job, _ = store.create_job(NewJob(owner="o", kind="workflow", spec=workflow_spec("noop")))
    for attempt in range(2):
        store.claim(f"dying-{attempt}", 1, lease_s=0.01)
        store.reset_stalled(max_attempts=2, now=time.time() + 1)
    failed = store.get_job(job.id)
    assert failed.status == common_pb2.JOB_STATUS_FAILED and failed.error.reason == "WORKER_LOST"
    assert "stopped 2 time(s)" in failed.error.message
    store.engine.dispose()


@pytest.mark.postgres
async def test_two_orchestrators_on_one_postgres_never_run_a_job_twice(start_orchestrator, postgres_url):
    replicas = [await start_orchestrator(postgres_url, job_workers=3) for _ in range(2)]
    jobs = [await submit(replicas[i % 2].stub, workflow_spec("slow", sleep_s=0.05)) for i in range(24)]
    for job in jobs:
        done = await wait_for(replicas[0].stub, job.id)
        assert done.status == common_pb2.JOB_STATUS_COMPLETED
    # Every claim is one run. Each replica counts its claims on its own metrics registry (handed in through its
    # deps): 24 claims for 24 completed jobs means each ran exactly once.
    claims = [replica.deps.metrics_registry.get_sample_value("imagemesh_job_queue_wait_seconds_count",
                                                             {"kind": "workflow"}) or 0.0 for replica in replicas]
    assert sum(claims) == 24
    # Each replica is woken by its own submits, so both took part (the race is real, not one replica alone).
    assert all(count > 0 for count in claims)


async def test_reset_queue_requeues_stalled_jobs(start_orchestrator, database_url):
    orch = await start_orchestrator(database_url)
    await orch.core.runner.stop()
    store = orch.core.store.sync
    job = await submit(orch.stub, workflow_spec("noop"))
    store.claim("crashed-replica", 1, lease_s=0.01)
    await asyncio.sleep(0.05)
    reply = await clients.call(orch.stub.ResetQueue, pb.ResetQueueRequest())
    assert (reply.requeued, reply.failed) == (1, 0)
    assert (await get(orch.stub, job.id)).status == common_pb2.JOB_STATUS_PENDING


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _spawn(env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "services.orchestrator"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _connect(port: int) -> tuple:
    channel = create_channel(f"127.0.0.1:{port}")
    async with asyncio.timeout(60):
        while await clients.check_health(channel) != "SERVING":
            await asyncio.sleep(0.1)
    return channel, grpc_pb.OrchestratorServiceStub(channel)


@pytest.mark.slow
@pytest.mark.parametrize("max_attempts,expected", [(3, "completed"), (1, "failed")])
async def test_kill_9_mid_job_then_restart(tmp_path, upscale_address, shared_images, database_url, max_attempts,
                                           expected):
    port = _free_port()
    env = {**os.environ, "IMAGEMESH_DATABASE_URL": database_url, "IMAGEMESH_GRPC_PORT": str(port),
           "IMAGEMESH_METRICS_PORT": "-1", "IMAGEMESH_VAR_DIR": str(tmp_path), "IMAGEMESH_LOG_JSON": "false",
           "IMAGEMESH_IMAGE_STORE_DIR": str(shared_images), "IMAGEMESH_UPSCALE_ADDRESS": upscale_address,
           "IMAGEMESH_WORKFLOWS_DIR": str(WORKFLOWS), "IMAGEMESH_LEASE_S": "1.5", "IMAGEMESH_HEARTBEAT_S": "0.3",
           "IMAGEMESH_POLL_INTERVAL_S": "0.1", "IMAGEMESH_MAX_JOB_ATTEMPTS": str(max_attempts)}
    process = _spawn(env)
    channel = None
    try:
        channel, stub = await _connect(port)
        job = await submit(stub, workflow_spec("resumable", sleep_s=3))
        async with asyncio.timeout(60):
            while not any(s.name == "wait" and s.status == common_pb2.JOB_STATUS_RUNNING
                          for s in (await get(stub, job.id)).steps):
                await asyncio.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        await channel.close()
        process = _spawn(env)
        channel, stub = await _connect(port)
        done = await wait_for(stub, job.id, timeout=90)
        steps = {s.name: s for s in done.steps}
        if expected == "completed":
            assert done.status == common_pb2.JOB_STATUS_COMPLETED
            # Resumed, not restarted: the step finished before the crash ran once, the interrupted one twice.
            assert steps["first"].attempts == 1 and steps["wait"].attempts == 2 and steps["last"].attempts == 1
            assert done.result.workflow.images[0].width == 64
        else:
            assert done.status == common_pb2.JOB_STATUS_FAILED
            assert done.error.reason == "WORKER_LOST" and "lease expired" in done.error.message
    finally:
        if channel is not None:
            await channel.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_run_job_through_the_queue_keeps_working_for_upscale(orch):
    reply = await clients.call(orch.stub.RunJob, pb.RunJobRequest(spec=upscale_spec(8, 2), owner="alice"))
    assert reply.job.steps[0].status == common_pb2.JOB_STATUS_COMPLETED


async def test_stopping_while_a_claim_is_in_flight_strands_no_job(database_url):
    # A claim already in the database's hands when the runner stops still lands; the runner must then run or
    # hand back what it claimed, never leave it "running" with nobody to run it.
    from services.orchestrator.job_runner import JobRunner
    from services.orchestrator.job_store import AsyncStore

    store = _store(database_url)
    gate, entered, left = threading.Event(), threading.Event(), threading.Event()
    real_claim = store.claim

    def slow_claim(*args, **kwargs):
        entered.set()
        gate.wait(10)
        try:
            return real_claim(*args, **kwargs)
        finally:
            left.set()

    store.claim = slow_claim  # type: ignore[method-assign]
    started = asyncio.Event()

    async def execute(job, sink):  # the job's work: wait until stopped (interrupted), like a long step
        started.set()
        await asyncio.sleep(60)

    runner = JobRunner(AsyncStore(store), execute, workers=1, poll_interval_s=0.05, heartbeat_s=60)
    await runner.start()
    await asyncio.to_thread(entered.wait, 10)
    job, _ = store.create_job(NewJob(owner="o", kind="workflow", spec=workflow_spec("noop")))
    stopping = asyncio.create_task(runner.stop(grace_s=0))
    await asyncio.sleep(0.1)
    gate.set()  # the in-flight claim now reaches the database and takes the job
    await asyncio.wait_for(stopping, 30)
    assert await asyncio.to_thread(left.wait, 10)
    after = store.get_job(job.id)
    assert after.status == common_pb2.JOB_STATUS_PENDING, common_pb2.JobStatus.Name(after.status)
    store.engine.dispose()
