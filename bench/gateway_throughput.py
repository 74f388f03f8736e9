"""Gateway overhead on a light guarded request, and what rate-limit accounting adds to it.

GET /sdapi/v1/samplers (A1111's sampler list: guarded by the a1111_read bucket, answered from a table in the
gateway, no call into the mesh) served by the real gateway under uvicorn, against a bare FastAPI app under uvicorn
answering the same JSON (what a user would run instead), each in its own process on loopback. Load: `hey` at 64
clients (`make bench` installs Debian's hey), else an httpx asyncio load generator, named in the notes.

Gateways: `make run`'s defaults (auth off, limits counted per client IP in the embedded SQLite store), the same
with limits counted in Redis (127.0.0.1:6379, when one answers), and with rate limits off. Goal (issue 15):
accounting adds at most 10% to the light request, with either store: the "rate-limit accounting" rows are the
gateway with limits on against the same gateway with limits off, measured in the same run.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness import Comparison

PATH = "/sdapi/v1/samplers"
CONCURRENCY = 64
REQUESTS = int(os.environ.get("BENCH_GATEWAY_REQUESTS", "3000"))
REPEATS = int(os.environ.get("BENCH_GATEWAY_REPEATS", "3"))
REPO = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def bare_app():
    """The baseline: FastAPI answering the same JSON from the same table, nothing else."""
    from fastapi import FastAPI

    from gateway.dialects.a1111 import SAMPLERS

    app = FastAPI()

    @app.get(PATH)
    async def samplers() -> list[dict]:
        return [{"name": name, "aliases": aliases, "options": {"scheduler": scheduler}}
                for name, (scheduler, aliases) in SAMPLERS.items()]

    return app


def gateway_app():
    from gateway.app import create_app
    from gateway.settings import GatewaySettings

    return create_app(GatewaySettings())


def redis_answers(url: str = REDIS_URL) -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:  # noqa: BLE001 - no Redis here: the Redis rows are left out and the notes say so
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """An app factory served by uvicorn in its own process (`workers` worker processes), ready once `path` answers
    200."""

    def __init__(self, factory: str, env: dict[str, str], path: str = PATH, module: str = __name__,
                 workers: int = 1) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", f"{module}:{factory}", "--host",
             "127.0.0.1", "--port", str(self.port), "--log-level", "warning", "--no-access-log",
             "--workers", str(workers)],
            cwd=REPO, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{factory} did not start: {self.proc.stderr.read().decode()[-2000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _seconds(value: str, unit: str) -> float:
    return float(value) / 1000 if unit == "ms" else float(value)


def _load_hey(url: str) -> dict[str, float]:
    out = subprocess.run(["hey", "-n", str(REQUESTS), "-c", str(CONCURRENCY), url], capture_output=True, text=True,
                         timeout=600, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = float(re.search(r"50%+ in ([\d.]+) secs", out).group(1))
    p99 = float(re.search(r"99%+ in ([\d.]+) secs", out).group(1))
    codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    if set(codes) != {"200"}:
        raise RuntimeError(f"non-200 answers under load: {codes}")
    return {"rps": rps, "p50": p50, "p99": p99}


async def _load_httpx(url: str) -> dict[str, float]:
    latencies: list[float] = []
    counter = iter(range(REQUESTS))

    async def worker(client: httpx.AsyncClient) -> None:
        for _ in counter:
            started = time.perf_counter()
            reply = await client.get(url)
            latencies.append(time.perf_counter() - started)
            reply.raise_for_status()

    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"rps": len(latencies) / elapsed, "p50": latencies[len(latencies) // 2],
            "p99": latencies[int(len(latencies) * 0.99) - 1]}


async def _load(url: str) -> dict[str, float]:
    if shutil.which("hey"):
        return await asyncio.to_thread(_load_hey, url)
    return await _load_httpx(url)


async def run() -> list[Comparison]:
    tool = "hey" if shutil.which("hey") else "httpx asyncio"
    redis = redis_answers()
    with tempfile.TemporaryDirectory() as tmp:
        # The rate limit must never trip during the bench: the window is far larger than the requests sent.
        common = {"IMAGEMESH_VAR_DIR": tmp, "IMAGEMESH_LOG_JSON": "false",
                  "IMAGEMESH_RATE_LIMITS": '{"a1111_read": "100000000/hour"}'}
        configs = {"bare": ("bare_app", {}),
                   "gateway": ("gateway_app", common),
                   "gateway_redis": ("gateway_app", {**common, "IMAGEMESH_RATE_LIMIT_REDIS_URL": REDIS_URL}),
                   "gateway_no_rl": ("gateway_app", {**common, "IMAGEMESH_RATE_LIMIT_ENABLED": "false"})}
        if not redis:
            configs.pop("gateway_redis")
        servers = {name: Server(factory, env) for name, (factory, env) in configs.items()}
        try:
            results = await measure(servers)
        finally:
            for server in servers.values():
                server.stop()

    notes = f"{tool}, {REQUESTS} GETs x {REPEATS} at {CONCURRENCY} clients, loopback, 1 uvicorn worker each"
    subjects = [("gateway", "gateway, limits on (embedded SQLite store)"), ("gateway_no_rl", "gateway, limits off")]
    if redis:
        subjects.insert(1, ("gateway_redis", "gateway, limits on (Redis store)"))
    rows = rows_against_bare(results, f"GET {PATH}", subjects, notes + ("" if redis else "; no Redis answered"),
                             rps_ratio=True)
    for name, label in subjects[:-1]:
        rows.append(Comparison(f"rate-limit accounting on GET {PATH} (goal <= 1.10x)", label,
                               "the same gateway, limits off", 1 / median_of(results, name, "rps"),
                               1 / median_of(results, "gateway_no_rl", "rps"), REPEATS,
                               notes=notes + "; time per request (1/throughput)"))
    return rows


async def measure(servers: dict[str, Server]) -> dict[str, list[dict[str, float]]]:
    """Warm each server up, then load them in turn, REPEATS rounds, interleaved so drift hits all of them."""
    results: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    for server in servers.values():
        await _load_with(server.url, 200)
    for _ in range(REPEATS):
        for name, server in servers.items():
            results[name].append(await _load(server.url))
    return results


def median_of(results: dict[str, list[dict]], name: str, key: str) -> float:
    return statistics.median(r[key] for r in results[name])


def rows_against_bare(results: dict[str, list[dict]], title: str, subjects: list[tuple[str, str]], notes: str,
                      rps_ratio: bool = False) -> list[Comparison]:
    """Time per request (1/throughput), p50 and p99 of each subject against the bare app ("bare" in `results`),
    medians over the repeats."""

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    rows = []
    for subject, label in subjects:
        extra = {"subject_rps": round(median(subject, "rps"), 1), "baseline_rps": round(median("bare", "rps"), 1)}
        if rps_ratio:
            extra["rps_ratio"] = round(median(subject, "rps") / median("bare", "rps"), 3)
        rows.append(Comparison(f"{title}: time per request (1/throughput)",
                               label, "bare FastAPI, same JSON",
                               1 / median(subject, "rps"), 1 / median("bare", "rps"), REPEATS,
                               notes=notes + (f"; throughput {extra['rps_ratio']:.2f}x bare" if rps_ratio else ""),
                               extra=extra))
        for key in ("p50", "p99"):
            rows.append(Comparison(f"{title}: {key} latency at {CONCURRENCY} clients", label,
                                   "bare FastAPI, same JSON", median(subject, key), median("bare", key), REPEATS,
                                   notes=notes))
    return rows


async def _load_with(url: str, n: int) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        for _ in range(n):
            (await client.get(url)).raise_for_status()
