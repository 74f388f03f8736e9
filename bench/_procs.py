"""Helpers for the benchmarks (not a benchmark: `python -m bench` skips modules whose name starts with "_").

- `MeshProcesses`: the mesh as `make run` starts it (each service and the gateway in its own process, with their
  default settings), on free ports and a temporary state directory, so a benchmark measures what a user runs.
- `Proc`: any command in its own process, ready once an HTTP URL answers (uvicorn apps, `rembg s`).
- `hey`: the load tool (Debian's `hey`, installed by `make bench-tools`), parsed: requests/s, p50, p99, codes.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
MODELS_DIR = Path(os.environ.get("IMAGEMESH_TEST_MODELS_DIR", REPO / "var" / "models"))
SERVICES = ("generate", "background_removal", "upscale", "orchestrator")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Proc:
    """A command in its own process group; `ready_url` (HTTP 200) or `ready` (a callable) says when it serves."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, ready_url: str = "",
                 ready=None, timeout_s: float = 240, name: str = "") -> None:
        self.name = name or argv[-1]
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{self.name.replace('/', '_')}-", suffix=".log",
                                               delete=False)
        self.proc = subprocess.Popen(argv, cwd=REPO, env={**os.environ, **(env or {})}, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if ready is not None:
                    if ready():
                        return
                elif httpx.get(ready_url, timeout=2).status_code == 200:
                    return
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(0.3)
        tail = self.tail()
        self.stop()
        raise RuntimeError(f"{self.name} did not start: {tail}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def _grpc_serving(address: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING


@dataclass
class MeshProcesses:
    """The four services and the gateway, each `python -m <module>` as scripts/run_mesh.py starts them, with their
    defaults; only ports, the state directory and whatever `env` / `service_env` set differ."""

    env: dict[str, str] = field(default_factory=dict)
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    services: tuple[str, ...] = SERVICES
    gateway: bool = True
    procs: dict[str, Proc] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)
    url: str = ""

    def start(self) -> MeshProcesses:
        self.tmp = tempfile.TemporaryDirectory(prefix="bench-mesh-")
        base = {"IMAGEMESH_LOG_JSON": "false", "IMAGEMESH_LOG_LEVEL": "WARNING", "IMAGEMESH_VAR_DIR": self.tmp.name,
                "IMAGEMESH_MODELS_DIR": str(MODELS_DIR), "U2NET_HOME": str(MODELS_DIR), "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1", **self.env}
        ports = {name: free_port() for name in self.services}
        # A service left out gets an address nothing listens on (never the default port another mesh may use).
        self.addresses = {f"IMAGEMESH_{name.upper()}_ADDRESS": f"127.0.0.1:{ports.get(name) or free_port()}"
                          for name in SERVICES}
        try:
            for name in self.services:
                env = {**base, **self.addresses, "IMAGEMESH_GRPC_PORT": str(ports[name]),
                       "IMAGEMESH_METRICS_PORT": str(free_port()), **self.service_env.get(name, {})}
                address = f"127.0.0.1:{ports[name]}"
                self.procs[name] = Proc([sys.executable, "-m", f"services.{name}"], env,
                                        ready=lambda address=address: _grpc_serving(address), name=name)
            if not self.gateway:
                return self
            http_port = free_port()
            self.url = f"http://127.0.0.1:{http_port}"
            env = {**base, **self.addresses, "IMAGEMESH_HTTP_PORT": str(http_port),
                   "IMAGEMESH_METRICS_PORT": str(free_port()), **self.service_env.get("gateway", {})}
            # /health is 503 while a service is missing (a partial mesh): any answer means the gateway serves.
            health = f"{self.url}/health"
            self.procs["gateway"] = Proc([sys.executable, "-m", "gateway"], env, name="gateway",
                                         ready=lambda: httpx.get(health, timeout=2).status_code in (200, 503))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()
        self.procs.clear()
        self.tmp.cleanup()

    def __enter__(self) -> MeshProcesses:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children (uvicorn workers, multiprocessing helpers)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return proc.memory_info().rss + sum(child.memory_info().rss for child in proc.children(recursive=True))
    except psutil.Error:
        return 0


def have_hey() -> bool:
    return shutil.which("hey") is not None


def hey(url: str, n: int, c: int, method: str = "GET", body: bytes | None = None,
        content_type: str = "application/json", timeout_s: int = 600, request_timeout_s: int = 120) -> dict:
    """Run hey; returns rps, p50, p99 (seconds), codes {status: count} and the total; errors (connection refused,
    timeouts) are counted under "error"."""
    argv = ["hey", "-n", str(n), "-c", str(c), "-m", method, "-t", str(request_timeout_s)]
    body_file = None
    if body is not None:
        body_file = tempfile.NamedTemporaryFile(prefix="bench-body-", delete=False)
        body_file.write(body)
        body_file.close()
        argv += ["-D", body_file.name, "-T", content_type]
    try:
        out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=timeout_s, check=True).stdout
    finally:
        if body_file:
            Path(body_file.name).unlink(missing_ok=True)
    codes = {int(code): int(count) for code, count in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
    errors = 0
    if "Error distribution" in out:
        errors = sum(int(m) for m in re.findall(r"^\s+\[(\d+)\]\s", out.split("Error distribution:")[1], re.M))
    p50 = re.search(r"50%+ in ([\d.]+) secs", out)
    p99 = re.search(r"99%+ in ([\d.]+) secs", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": float(p50.group(1)) if p50 else float("nan"), "p99": float(p99.group(1)) if p99 else float("nan"),
            "codes": codes, "errors": errors, "total": n}
