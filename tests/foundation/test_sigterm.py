"""`python -m services.<name>` handles SIGTERM: stops taking work, finishes in-flight calls, exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys

import pytest
from PIL import Image

from shared.clients import check_health, create_channel
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import upscale_service_pb2 as up_pb
from shared.gen.imagemesh.v1 import upscale_service_pb2_grpc as up_grpc
from tests.mesh import REPO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def start_service(module: str, tmp_path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "IMAGEMESH_GRPC_PORT": str(port), "IMAGEMESH_METRICS_PORT": "-1",
           "IMAGEMESH_VAR_DIR": str(tmp_path), "IMAGEMESH_GRACE_PERIOD_S": "20"}
    proc = subprocess.Popen([sys.executable, "-m", module], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    address = f"127.0.0.1:{port}"
    channel = create_channel(address)
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise AssertionError(f"{module} exited early: {proc.stderr.read().decode()[-2000:]}")
            if await check_health(channel, timeout=0.5) == "SERVING":
                return proc, address
            await asyncio.sleep(0.1)
    finally:
        await channel.close()
    proc.kill()
    raise AssertionError(f"{module} never became SERVING")


@pytest.mark.parametrize("module", ["services.upscale", "services.orchestrator"])
async def test_sigterm_exits_zero(module, tmp_path):
    proc, _address = await start_service(module, tmp_path)
    proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(proc.wait, 30)
    assert code == 0, proc.stderr.read().decode()[-2000:]


async def test_sigterm_lets_the_in_flight_call_finish(tmp_path):
    proc, address = await start_service("services.upscale", tmp_path)
    img = Image.new("RGBA", (1500, 1500), (200, 100, 50, 255))
    channel = create_channel(address)
    try:
        stub = up_grpc.UpscaleServiceStub(channel)
        call = asyncio.ensure_future(stub.Upscale(up_pb.UpscaleRequest(
            image=common_pb2.Image(data=img.tobytes(), media_type="image/x-raw-rgba", width=1500, height=1500),
            scale_factor=4, output_format=common_pb2.IMAGE_FORMAT_PNG), timeout=120))
        await asyncio.sleep(0.3)  # the call is in flight (a 6000x6000 resample and PNG encode take seconds)
        proc.send_signal(signal.SIGTERM)
        reply = await call
        assert reply.output_dimensions.width == 6000
    finally:
        await channel.close()
    assert await asyncio.to_thread(proc.wait, 30) == 0
