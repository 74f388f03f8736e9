"""Gateway overhead on a light endpoint: GET /api/image-studio/templates?platform=instagram (catalogue data, no
gRPC hop) served by the real gateway under uvicorn, against a bare FastAPI app under uvicorn answering the same
JSON, both on loopback in their own processes. Load: `hey` (or `wrk`) from Debian at 64 concurrent clients;
an httpx asyncio load generator when neither is installed.

The gateway runs as `make run` does: auth off, documented rate limits on (one database upsert per request in the
shared SQLite job store); a second gateway run with rate limits off shows what the shared counter costs.
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

PATH = "/api/image-studio/templates?platform=instagram"
CONCURRENCY = 64
REQUESTS = int(os.environ.get("BENCH_GATEWAY_REQUESTS", "3000"))
REPEATS = int(os.environ.get("BENCH_GATEWAY_REPEATS", "3"))
REPO = Path(__file__).resolve().parent.parent


def bare_app():
    """The baseline: FastAPI answering the same JSON from the same catalogue, nothing else."""
    from fastapi import FastAPI

    from gateway.catalogues import load_catalogues
    from gateway.enrich import find_templates

    catalogues = load_catalogues(REPO / "gateway" / "catalogues")
    app = FastAPI()

    @app.get("/api/image-studio/templates")
    async def templates(platform: str | None = None, category: str | None = None) -> dict:
        found = find_templates(catalogues, platform=platform, category=category)
        return {"templates": found, "total": len(found)}

    return app


def gateway_app():
    from gateway.app import create_app
    from gateway.settings import GatewaySettings

    return create_app(GatewaySettings())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """An app factory served by uvicorn in its own process (1 worker), ready once `path` answers 200."""

    def __init__(self, factory: str, env: dict[str, str], path: str = PATH, module: str = __name__) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", f"{module}:{factory}", "--host",
             "127.0.0.1", "--port", str(self.port), "--log-level", "warning", "--no-access-log"],
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
    results: dict[str, list[dict[str, float]]] = {"bare": [], "gateway": [], "gateway_no_rl": []}
    with tempfile.TemporaryDirectory() as tmp:
        # The rate limit must never trip during the bench: the window is far larger than the requests sent.
        common = {"IMAGEMESH_VAR_DIR": tmp, "IMAGEMESH_LOG_JSON": "false",
                  "IMAGEMESH_RATE_LIMITS": '{"image_studio": "100000000/hour"}'}
        servers = {"bare": Server("bare_app", {}),
                   "gateway": Server("gateway_app", common),
                   "gateway_no_rl": Server("gateway_app", {**common, "IMAGEMESH_RATE_LIMIT_ENABLED": "false"})}
        try:
            for name, server in servers.items():  # warm-up
                await _load_with(server.url, 200)
            for _ in range(REPEATS):  # interleaved so drift on this shared machine hits all three
                for name, server in servers.items():
                    results[name].append(await _load(server.url))
        finally:
            for server in servers.values():
                server.stop()

    notes = f"{tool}, {REQUESTS} GETs x {REPEATS} at {CONCURRENCY} clients, loopback, 1 uvicorn worker each"
    return rows_against_bare(results, "light endpoint", [("gateway", "gateway (auth off, rate limit in SQLite)"),
                                                         ("gateway_no_rl", "gateway (rate limits off)")], notes)


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
        rows.append(Comparison(f"{title}: time per request (1/throughput)", label, "bare FastAPI, same JSON",
                               1 / median(subject, "rps"), 1 / median("bare", "rps"), REPEATS, notes=notes,
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
