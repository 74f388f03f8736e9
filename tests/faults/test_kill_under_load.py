"""Kill -9 under load (issue 14, "Faults and load"): a real mesh of processes (service token on), a bounded load of
mixed jobs through the gateway, and each service in turn (orchestrator, generate, background_removal, upscale,
gateway) killed with SIGKILL and started again. On SQLite and on PostgreSQL (a database made for the test).

- every accepted job ends: completed, or failed with a reason; none is lost (unknown to the orchestrator) or stuck
  (still pending or running once the mesh is back and the queue has drained);
- while a service is down, a request that needs it gets 503 with Retry-After (the gateway down: the connection is
  refused, there is no one to answer).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import uuid
from dataclasses import dataclass, field

import httpx
import pytest
from PIL import Image

from shared.errors import NotFound
from shared.mesh_client import MeshClient, is_terminal, status_name
from tests.faults.processes import ProcessMesh
from tests.pg import create_database, drop_database, require_server

VICTIMS = ("orchestrator", "generate", "background_removal", "upscale", "gateway")
JOBS_PER_WAVE = 4
DRAIN_TIMEOUT_S = 180.0  # a bound for a failure (a stuck job), not a measured figure


def _png_b64(side: int = 32) -> str:
    img = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    for x in range(side // 4, 3 * side // 4):
        for y in range(side // 4, 3 * side // 4):
            img.putpixel((x, y), (200, 60, 30, 255))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


IMAGE = _png_b64()
DATA_URI = "data:image/png;base64," + IMAGE

# The mixed load: (kind, route, body, the field of the reply that holds the job id). All asynchronous.
LOAD = [
    ("generate", "/api/generate", {"model_id": "flux-1", "prompt": "a red square",
                                   "settings": {"width": 64, "height": 64, "num_inference_steps": 2}}, "job_id"),
    ("upscale", "/v1/post-process/upscale", {"image_url": DATA_URI, "scale_factor": 2}, "task_id"),
    ("workflow", "/v1/workflows/process/execute", {"image_url": DATA_URI,
                                                    "custom_params": {"models": ["u2netp"], "upscale_factor": 2}},
     "workflow_execution_id"),
    ("relight", "/v1/post-process/relight", {"image_url": DATA_URI, "lighting_style": "professional"}, "task_id"),
]

# While a service is down, a synchronous request that needs it: it must get 503 with Retry-After.
PROBES = {
    "orchestrator": ("/v1/post-process/upscale", {"image_url": DATA_URI, "scale_factor": 2}),
    "generate": ("/v1/images/generations", {"prompt": "a red square", "size": "64x64"}),
    "background_removal": ("/rembg", {"input_image": IMAGE, "model": "u2netp"}),
    "upscale": ("/upscale", {"image": IMAGE, "scale_factor": 2}),
}


@dataclass
class Tally:
    accepted: dict[str, str] = field(default_factory=dict)  # job id -> kind
    refused: list[tuple[str, int, str | None]] = field(default_factory=list)  # (kind, status, Retry-After)
    probes: dict[str, tuple[int, str | None]] = field(default_factory=dict)


async def _submit(http: httpx.AsyncClient, tally: Tally, index: int) -> None:
    kind, route, body, id_field = LOAD[index % len(LOAD)]
    try:
        reply = await http.post(route, json=body)
    except httpx.TransportError:
        tally.refused.append((kind, 0, None))  # nobody listening (the gateway is down)
        return
    if reply.status_code == 200:
        tally.accepted[reply.json()[id_field]] = kind
    else:
        tally.refused.append((kind, reply.status_code, reply.headers.get("Retry-After")))
        assert reply.status_code == 503 and reply.headers.get("Retry-After"), (kind, reply.status_code, reply.text)


async def _wave(mesh: ProcessMesh, tally: Tally, start: int, count: int) -> None:
    async with httpx.AsyncClient(base_url=mesh.url, timeout=60) as http:
        await asyncio.gather(*(_submit(http, tally, start + i) for i in range(count)))


async def _probe(mesh: ProcessMesh, victim: str) -> tuple[int, str | None, str]:
    route, body = PROBES[victim]
    async with httpx.AsyncClient(base_url=mesh.url, timeout=120) as http:
        reply = await http.post(route, json=body)
    return reply.status_code, reply.headers.get("Retry-After"), reply.text


async def _drain(client: MeshClient, job_ids: list[str]) -> tuple[dict, list[str]]:
    """Each job's final state once every job is terminal (or the bound is reached); and the lost ones."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    final: dict = {}
    lost: list[str] = []
    while True:
        final, lost = {}, []
        for job_id in job_ids:
            try:
                final[job_id] = await client.get_job(job_id)
            except NotFound:
                lost.append(job_id)
        if all(is_terminal(job.status) for job in final.values()) or time.monotonic() > deadline:
            return final, lost
        await asyncio.sleep(0.5)


async def _kill_under_load(tmp_path, database_url: str) -> Tally:
    token = uuid.uuid4().hex
    mesh = ProcessMesh(tmp_path, database_url, token)
    tally = Tally()
    client = None
    phases: dict[str, float] = {}
    try:
        began = time.monotonic()
        await mesh.start_all()
        phases["start"] = round(time.monotonic() - began, 1)
        client = MeshClient.connect(mesh.address("orchestrator"), owner="anonymous", token=token)
        submitted = 0
        for victim in VICTIMS:
            began = time.monotonic()
            await _wave(mesh, tally, submitted, JOBS_PER_WAVE)  # running when the victim dies
            submitted += JOBS_PER_WAVE
            mesh.kill(victim)
            if victim in PROBES:
                status, retry_after, text = await _probe(mesh, victim)
                tally.probes[victim] = (status, retry_after)
                assert status == 503 and retry_after, (victim, status, text)
            await _wave(mesh, tally, submitted, 2)  # while it is down
            submitted += 2
            mesh.start(victim)
            await mesh.wait_ready(victim)
            if victim != "gateway":
                await mesh.wait_ready("gateway")  # /health: every service is back
            phases[victim] = round(time.monotonic() - began, 1)
        began = time.monotonic()
        final, lost = await _drain(client, list(tally.accepted))
        phases["drain"] = round(time.monotonic() - began, 1)
        stuck = {job_id: status_name(job.status) for job_id, job in final.items() if not is_terminal(job.status)}
        outcomes = {job_id: (status_name(job.status), job.error.reason) for job_id, job in final.items()}
        summary = {
            "database": database_url.split(":", 1)[0], "submitted": submitted, "accepted": len(tally.accepted),
            "refused": len(tally.refused), "lost": len(lost), "stuck": len(stuck),
            "completed": sum(1 for s, _ in outcomes.values() if s == "completed"),
            "failed": sorted({(s, r) for s, r in outcomes.values() if s != "completed"}),
            "probes": tally.probes, "seconds": phases,
        }
        print("kill-under-load:", json.dumps(summary, default=list))
        assert not lost, f"lost jobs: {lost}"
        assert not stuck, f"stuck jobs: {stuck}"
        for job_id, (status, reason) in outcomes.items():
            assert status == "completed" or (status == "failed" and reason), (job_id, tally.accepted[job_id],
                                                                              status, reason)
        assert tally.accepted, "no job was accepted"
        assert all(status == 503 and retry_after for status, retry_after in tally.probes.values())
        return tally
    finally:
        if client is not None:
            await client.close()
        mesh.close()


@pytest.mark.slow
async def test_kill_under_load_on_sqlite(tmp_path):
    await _kill_under_load(tmp_path, f"sqlite:///{tmp_path / 'imagemesh.db'}")


@pytest.mark.slow
@pytest.mark.postgres
async def test_kill_under_load_on_postgresql(tmp_path):
    require_server()
    name, url = create_database("imagemesh_faults")
    try:
        await _kill_under_load(tmp_path, url)
    finally:
        drop_database(name)
