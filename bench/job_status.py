"""Job-status endpoints of the dialects under load against a bare FastAPI app reading the same row from the same
database (what a user would write instead: SQLAlchemy Core, one SELECT by id, the status fields as JSON).

The mesh runs as `make run` starts it (Upscale, the orchestrator and the gateway in their own processes, default
settings, the orchestrator's embedded SQLite); one finished job (a 2x upscale submitted through the gateway) is
read over and over: Freepik GET /v1/jobs/{id} and CyberImage GET /api/status/{id} (gateway -> orchestrator
GetJob -> SQLite). Load: `hey` at 64 clients. Goal (issue 15): throughput >= 0.6x the bare app, p99 <= 100 ms.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import tempfile

import httpx

from bench._procs import MeshProcesses
from bench.gateway_throughput import CONCURRENCY, REPEATS, REQUESTS, Server, _load, _load_with, rows_against_bare
from bench.harness import Comparison

ENDPOINTS = {"freepik": "/v1/jobs/{id}", "cyberimage": "/api/status/{id}"}
# Every bucket far past what the bench sends: limits are counted (make run's default) but never trip.
HIGH_LIMITS = json.dumps({bucket: "100000000/hour" for bucket in (
    "freepik", "flux", "flux_anonymous", "shotgun", "image_studio", "cyberimage", "cyberimage_read", "openai",
    "a1111", "a1111_read", "images")})


def bare_app():
    """The baseline: the job's row read by id from the orchestrator's database, its status fields as JSON."""
    from fastapi import FastAPI, HTTPException
    from sqlalchemy import create_engine, select

    from services.orchestrator.job_store import jobs

    engine = create_engine(os.environ["BENCH_DATABASE_URL"])
    app = FastAPI()

    @app.get("/jobs/{job_id}")
    def job(job_id: str) -> dict:
        with engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
        if row is None:
            raise HTTPException(404)
        return {"task_id": row["id"], "status": row["status"], "created_at": row["created_at"],
                "finished_at": row["finished_at"], "owner": row["owner"]}

    return app


def _small_png() -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGBA", (64, 64), (200, 30, 30, 255)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


async def run() -> list[Comparison]:
    tool = "hey" if shutil.which("hey") else "httpx asyncio"
    mesh = await asyncio.to_thread(MeshProcesses(services=("upscale", "orchestrator"), env={
        "IMAGEMESH_RATE_LIMITS": HIGH_LIMITS}).start)
    bare = None
    rows: list[Comparison] = []
    try:
        async with httpx.AsyncClient(base_url=mesh.url, timeout=120) as http:
            reply = await http.post("/upscale", json={"image": _small_png(), "scale_factor": 2})
            assert reply.status_code == 200, reply.text[:300]
            job_id = reply.json()["job_id"]
        database = f"sqlite:///{mesh.tmp.name}/imagemesh.db"
        bare = await asyncio.to_thread(Server, "bare_app", {"BENCH_DATABASE_URL": database}, f"/jobs/{job_id}",
                                       __name__)
        servers = {"bare": bare.url}
        for dialect, path in ENDPOINTS.items():
            url = mesh.url + path.format(id=job_id)
            async with httpx.AsyncClient(timeout=30) as http:
                if (await http.get(url)).status_code == 200:
                    servers[dialect] = url
        for url in servers.values():
            await _load_with(url, 100)
        results: dict[str, list[dict]] = {name: [] for name in servers}
        for _ in range(REPEATS):
            for name, url in servers.items():
                results[name].append(await _load(url))
        notes = (f"{tool}, {REQUESTS} GETs x {REPEATS} at {CONCURRENCY} clients, one finished job, SQLite job store; "
                 "gateway and orchestrator as `make run` (1 process each)")
        skipped = sorted(set(ENDPOINTS) - set(servers))
        if skipped:
            notes += f"; not 200 here, left out: {', '.join(skipped)}"
        for dialect in servers:
            if dialect == "bare":
                continue
            rows += rows_against_bare(results, f"job status GET {ENDPOINTS[dialect]} (goal >= 0.6x, p99 <= 100 ms)",
                                      [(dialect, f"gateway {dialect} -> orchestrator GetJob")], notes,
                                      rps_ratio=True)
        for row in rows:
            row.baseline = "bare FastAPI, same row from the same SQLite"
    finally:
        if bare is not None:
            bare.stop()
        await asyncio.to_thread(mesh.stop)
    return rows
