"""A BackgroundRemoval process SIGKILLed in the middle of a shotgun: per-model errors, never a hung request."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
import urllib.request

import pytest

from shared import clients
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
from tests.background_removal.conftest import ASTRONAUT
from tests.mesh import MODELS_DIR, REPO
from tests.shotgun.conftest import REMOVE, shotgun_mesh


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _in_flight(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).read().decode()
    for line in text.splitlines():
        if line.startswith("imagemesh_grpc_in_flight{") and f'method="{REMOVE}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.slow
async def test_sigkilled_backend_process_gives_per_model_errors(tmp_path):
    grpc_port, metrics_port = _free_port(), _free_port()
    env = {**os.environ, "IMAGEMESH_GRPC_PORT": str(grpc_port), "IMAGEMESH_METRICS_PORT": str(metrics_port),
           "IMAGEMESH_HOST": "127.0.0.1", "IMAGEMESH_VAR_DIR": str(tmp_path), "IMAGEMESH_MODELS_DIR": str(MODELS_DIR),
           "IMAGEMESH_MAX_CONCURRENCY": "1", "IMAGEMESH_LOG_JSON": "false", "OMP_NUM_THREADS": "1"}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.background_removal", cwd=REPO,
                                                   env=env, stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.DEVNULL)
    try:
        channel = clients.create_channel(f"127.0.0.1:{grpc_port}")
        deadline = time.monotonic() + 90
        while await clients.check_health(channel) != "SERVING":
            assert process.returncode is None and time.monotonic() < deadline, "backend did not start"
            await asyncio.sleep(0.2)
        await channel.close()
        async with shotgun_mesh(tmp_path, replicas=0, br_addresses=f"127.0.0.1:{grpc_port}") as running:
            task = asyncio.create_task(running.run(
                image=common_pb2.Image(data=ASTRONAUT.read_bytes()), models=["u2netp", "modnet"],
                options={"alpha_matting": True}, per_model_timeout_ms=120_000))
            while await asyncio.to_thread(_in_flight, metrics_port) < 2:
                assert not task.done(), task.result()
                await asyncio.sleep(0.02)
            process.send_signal(signal.SIGKILL)
            # The per-model deadline is two minutes: an answer within 30 s means the drop was seen, not waited out.
            summary = await asyncio.wait_for(task, 30)
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.wait(), 10)
    assert summary.status == common_pb2.JOB_STATUS_FAILED
    for result in summary.results:
        assert result.status == pb.SHOTGUN_RESULT_STATUS_ERROR
        assert result.error_detail.reason == "SERVICE_UNAVAILABLE", result
        assert "unavailable" in result.error
