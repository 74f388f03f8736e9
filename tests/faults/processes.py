"""A whole mesh as real processes (`python -m services.<name>`, `python -m gateway`), as `make run` starts it, on
free loopback ports with its own state directory, database and service token; services can be killed (-9) and
started again. For the fault tests; every process is ended when the mesh closes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.clients import check_health, create_channel
from tests.mesh import MODELS_DIR, REPO

GRPC_SERVICES = ("generate", "background_removal", "upscale", "orchestrator")
ALL = (*GRPC_SERVICES, "gateway")
STARTUP_TIMEOUT_S = 240.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ProcessMesh:
    tmp: Path
    database_url: str
    token: str
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ports = {name: free_port() for name in ALL}

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    @property
    def url(self) -> str:
        return f"http://{self.address('gateway')}"

    def env(self, name: str) -> dict[str, str]:
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "U2NET_HOME": str(MODELS_DIR),
            "IMAGEMESH_HOST": "127.0.0.1", "IMAGEMESH_METRICS_PORT": "-1", "IMAGEMESH_VAR_DIR": str(self.tmp),
            "IMAGEMESH_MODELS_DIR": str(MODELS_DIR), "IMAGEMESH_IMAGE_STORE_DIR": str(self.tmp / "images"),
            "IMAGEMESH_LOG_JSON": "false", "IMAGEMESH_LOG_LEVEL": "WARNING", "IMAGEMESH_INTERNAL_TOKEN": self.token,
            "IMAGEMESH_DATABASE_URL": self.database_url, "IMAGEMESH_HEALTH_POLL_INTERVAL_S": "0.2",
            "IMAGEMESH_GRACE_PERIOD_S": "1",
            **{f"IMAGEMESH_{service.upper()}_ADDRESS": self.address(service) for service in GRPC_SERVICES},
        }
        if name == "gateway":
            env.update({"IMAGEMESH_HTTP_PORT": str(self.ports[name]), "IMAGEMESH_RATE_LIMIT_ENABLED": "false",
                        "IMAGEMESH_REQUEST_TIMEOUT_S": "120", "IMAGEMESH_RETRY_AFTER_S": "3"})
        else:
            env["IMAGEMESH_GRPC_PORT"] = str(self.ports[name])
        if name == "orchestrator":
            # A killed orchestrator's running jobs go back to the queue once their lease runs out.
            env.update({"IMAGEMESH_LEASE_S": "2", "IMAGEMESH_HEARTBEAT_S": "0.3", "IMAGEMESH_POLL_INTERVAL_S": "0.1",
                        "IMAGEMESH_WATCH_POLL_S": "0.1", "IMAGEMESH_JOB_WORKERS": "4",
                        "IMAGEMESH_BACKEND_TIMEOUT_S": "60"})
        if name == "upscale":
            env["IMAGEMESH_SR_THREADS"] = "1"
        return env

    def start(self, name: str) -> None:
        module = "gateway" if name == "gateway" else f"services.{name}"
        count = self.starts.get(name, 0) + 1
        self.starts[name] = count
        log = open(self.tmp / f"{name}.{count}.log", "wb")  # noqa: SIM115 - the process owns it
        self.procs[name] = subprocess.Popen([sys.executable, "-m", module], cwd=REPO, env=self.env(name),
                                            stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def kill(self, name: str) -> None:
        """kill -9: no shutdown, no grace."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.tmp / f"{name}.{self.starts.get(name, 1)}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    async def wait_ready(self, name: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        proc = self.procs[name]
        if name == "gateway":
            async with httpx.AsyncClient(base_url=self.url, timeout=3) as http:
                while time.monotonic() < deadline:
                    if proc.poll() is not None:
                        raise AssertionError(f"gateway exited ({proc.returncode}):\n{self.log_tail(name)}")
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get("/health")).status_code == 200:
                            return
                    await asyncio.sleep(0.2)
        else:
            channel = create_channel(self.address(name))
            try:
                while time.monotonic() < deadline:
                    if proc.poll() is not None:
                        raise AssertionError(f"{name} exited ({proc.returncode}):\n{self.log_tail(name)}")
                    if await check_health(channel, timeout=1.0) == "SERVING":
                        return
                    await asyncio.sleep(0.2)
            finally:
                await channel.close()
        raise AssertionError(f"{name} not ready within {STARTUP_TIMEOUT_S:.0f}s:\n{self.log_tail(name)}")

    async def start_all(self) -> None:
        for name in GRPC_SERVICES:
            self.start(name)
        await asyncio.gather(*(self.wait_ready(name) for name in GRPC_SERVICES))
        self.start("gateway")
        await self.wait_ready("gateway")

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
