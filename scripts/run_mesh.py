"""`make run`: start the four services and the gateway on loopback, wait until they are healthy, print the
URLs, and stop them all cleanly on Ctrl-C (SIGTERM each, wait for the grace period)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from shared.clients import check_health, create_channel  # noqa: E402
from shared.config import DEFAULT_PORTS  # noqa: E402

SERVICES = ["generate", "background_removal", "upscale", "orchestrator"]
STARTUP_TIMEOUT_S = 180


def start(name: str, module: str) -> subprocess.Popen:
    env = {**os.environ, "IMAGEMESH_LOG_JSON": os.environ.get("IMAGEMESH_LOG_JSON", "false")}
    env.setdefault("U2NET_HOME", os.path.join(ROOT, "var", "models"))
    env.setdefault("HF_HUB_OFFLINE", "1")
    return subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env)


def start_gateway() -> subprocess.Popen:
    """`python -m gateway` (one process, its metrics port), or with IMAGEMESH_GATEWAY_WORKERS=N > 1 uvicorn with
    N worker processes. Measured (bench/gateway_health.py, bench/README.md): with 2 cores, a second worker took
    /health from 0.80x to 1.19x a bare app's throughput on a quiet machine, and did nothing (0.76x -> 0.78x) under
    heavy outside load; `make run` puts four services on the same cores, and the workers' metrics are not served
    (the gateway does not run Prometheus' multiprocess mode), so the default stays 1. Rate limits stay exact
    across workers: they count in the shared store."""
    workers = int(os.environ.get("IMAGEMESH_GATEWAY_WORKERS", "1"))
    if workers <= 1:
        return start("gateway", "gateway")
    env = {**os.environ, "IMAGEMESH_LOG_JSON": os.environ.get("IMAGEMESH_LOG_JSON", "false")}
    port = os.environ.get("IMAGEMESH_HTTP_PORT", str(DEFAULT_PORTS["gateway"][0]))
    host = os.environ.get("IMAGEMESH_HOST", "127.0.0.1")
    return subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "gateway.app:create_app", "--host", host,
                             "--port", port, "--workers", str(workers), "--timeout-graceful-shutdown", "10"],
                            cwd=ROOT, env=env)


async def wait_serving(name: str, proc: subprocess.Popen) -> None:
    address = f"127.0.0.1:{DEFAULT_PORTS[name][0]}"
    channel = create_channel(address, token=os.environ.get("IMAGEMESH_INTERNAL_TOKEN", ""))
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited with code {proc.returncode} during start-up")
            if await check_health(channel, timeout=1.0) == "SERVING":
                return
            await asyncio.sleep(0.5)
        raise SystemExit(f"{name} did not become SERVING within {STARTUP_TIMEOUT_S}s")
    finally:
        await channel.close()


def wait_gateway(proc: subprocess.Popen) -> None:
    url = f"http://127.0.0.1:{DEFAULT_PORTS['gateway'][0]}/health"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gateway exited with code {proc.returncode} during start-up")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("gateway did not answer /health within 60s")


def stop_all(procs: dict[str, subprocess.Popen]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for name, proc in procs.items():
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop in time; killing it", file=sys.stderr)
            proc.kill()


def main() -> int:
    procs: dict[str, subprocess.Popen] = {}
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        for name in SERVICES:
            procs[name] = start(name, f"services.{name}")
        for name in SERVICES:
            asyncio.run(wait_serving(name, procs[name]))
        procs["gateway"] = start_gateway()
        wait_gateway(procs["gateway"])
        port = DEFAULT_PORTS["gateway"][0]
        print("\nimagemesh is up:")
        print(f"  gateway        http://127.0.0.1:{port}   (health: /health, API docs: /docs)")
        print(f"  studio         http://127.0.0.1:{port}/studio/")
        for name in SERVICES:
            grpc_port, metrics_port = DEFAULT_PORTS[name]
            print(f"  {name:<18} grpc 127.0.0.1:{grpc_port}   metrics http://127.0.0.1:{metrics_port}/metrics")
        print("Ctrl-C stops everything.\n", flush=True)
        while all(proc.poll() is None for proc in procs.values()):
            time.sleep(0.5)
        dead = [name for name, proc in procs.items() if proc.poll() is not None]
        print(f"stopping: {', '.join(dead)} exited", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping imagemesh...", flush=True)
        return 0
    finally:
        stop_all(procs)


if __name__ == "__main__":
    sys.exit(main())
