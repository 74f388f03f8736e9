"""Under load: 500 generate submissions at concurrency 50 through the gateway (`hey`, bounded in count and time),
the mesh as `make run` starts it (every service and the gateway in their own processes, default settings).

Freepik POST /v1/generate (asynchronous: the job is durable once the answer is 200), 64x64, 1 step. The
freepik bucket is set to 450/hour for the run, so the last 50 submissions are past the bound. Checked:
- every answer is 200 or (past the bound) 429/503, and those carry Retry-After;
- nothing is lost: the orchestrator's job store holds exactly the accepted submissions, and every one of them
  ends (completed or failed), within a bounded wait;
- RSS of each process at the end is within 20% of its level after the first 50 requests.
Each check is a row: subject = what was observed, baseline = the bound, ratio = observed / bound.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import httpx

from bench._procs import MeshProcesses, have_hey, hey, rss_bytes
from bench.harness import Comparison

TOTAL = int(os.environ.get("BENCH_LOAD_TOTAL", "500"))
CONCURRENCY = 50
FIRST = 50
LIMIT = TOTAL - 50
DRAIN_TIMEOUT_S = float(os.environ.get("BENCH_LOAD_DRAIN_S", "600"))
BODY = json.dumps({"prompt": "a red apple", "width": 64, "height": 64, "steps": 1}).encode()
TERMINAL = ("completed", "failed", "cancelled", "partial")


def _totals(database: str) -> tuple[int, int]:
    """Jobs in the orchestrator's store, and how many have ended: read from the SQLite file itself, since the
    freepik listing counts in the very bucket this run exhausts."""
    import sqlite3

    with sqlite3.connect(database, timeout=30) as conn:
        everything = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        ended = conn.execute(f"SELECT COUNT(*) FROM jobs WHERE lower(status) IN ({','.join('?' * len(TERMINAL))})",
                             TERMINAL).fetchone()[0]
    return everything, ended


async def run() -> list[Comparison]:
    if not have_hey():
        raise RuntimeError("load_submissions needs hey (make bench-tools installs it)")
    mesh = await asyncio.to_thread(MeshProcesses(env={"IMAGEMESH_RATE_LIMITS": json.dumps(
        {"freepik": f"{LIMIT}/hour"})}).start)
    url = f"{mesh.url}/v1/generate"
    try:
        first = await asyncio.to_thread(hey, url, FIRST, CONCURRENCY, "POST", BODY)
        # The level after the first 50 requests: once their jobs have run (an accepted job has not used its memory
        # yet), bounded.
        database = f"{mesh.tmp.name}/imagemesh.db"
        deadline = time.monotonic() + DRAIN_TIMEOUT_S / 4
        while (await asyncio.to_thread(_totals, database))[1] < first["codes"].get(200, 0) \
                and time.monotonic() < deadline:
            await asyncio.sleep(1)
        rss_first = {name: rss_bytes(proc.pid) for name, proc in mesh.procs.items()}
        started = time.perf_counter()
        rest = await asyncio.to_thread(hey, url, TOTAL - FIRST, CONCURRENCY, "POST", BODY)
        submit_s = time.perf_counter() - started
        codes: dict[int, int] = {}
        for result in (first, rest):
            for code, count in result["codes"].items():
                codes[code] = codes.get(code, 0) + count
        errors = first["errors"] + rest["errors"]
        accepted = codes.get(200, 0)
        async with httpx.AsyncClient(base_url=mesh.url, timeout=60) as http:
            # One more past the bound, read whole: status and Retry-After.
            probe = await http.post("/v1/generate", content=BODY, headers={"Content-Type": "application/json"})
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            listed, ended = await asyncio.to_thread(_totals, database)
            while ended < listed and time.monotonic() < deadline:
                await asyncio.sleep(2)
                listed, ended = await asyncio.to_thread(_totals, database)
            drain_s = time.perf_counter() - started
        rss_end = {name: rss_bytes(proc.pid) for name, proc in mesh.procs.items()}
    finally:
        await asyncio.to_thread(mesh.stop)

    refused = {code: count for code, count in codes.items() if code != 200}
    note = (f"hey, {TOTAL} POST /v1/generate (64x64, 1 step) at {CONCURRENCY} clients, freepik bucket "
            f"{LIMIT}/hour; answers {dict(sorted(codes.items()))}, transport errors {errors}; submitted in "
            f"{submit_s:.1f} s; {ended} of {listed} ended {drain_s:.1f} s after the last {TOTAL - FIRST} began "
            f"(wait bounded by {DRAIN_TIMEOUT_S:.0f} s)")
    rows = [
        Comparison("load: accepted jobs in the job store (nothing lost; goal 1.00x)", "jobs stored",
                   "submissions answered 200", listed, accepted, 1, unit="jobs", notes=note),
        Comparison("load: accepted jobs that ended (goal 1.00x)", "jobs completed/failed", "jobs stored", ended,
                   listed, 1, unit="jobs", notes=note),
        Comparison("load: answers past the bound that are 429/503 (goal 1.00x)", "429/503 answers",
                   "answers past the bound", sum(refused.get(code, 0) for code in (429, 503)),
                   sum(refused.values()) + errors, 1, unit="answers",
                   notes=f"{note}; probe past the bound: {probe.status_code}, Retry-After "
                         f"{probe.headers.get('retry-after')!r}"),
    ]
    for name in rss_end:
        rows.append(Comparison(f"load: RSS of {name} at the end vs after the first {FIRST} (goal <= 1.20x)",
                               "RSS at the end", f"RSS after {FIRST} requests", rss_end[name] / 1e6,
                               rss_first[name] / 1e6, 1, unit="MB", notes=note))
    return rows
