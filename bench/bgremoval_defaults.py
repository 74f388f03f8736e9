"""Background removal with `make run`'s defaults against what a user would run instead, with that tool's defaults.

Subject: `POST /remove-background` (one model, u2netp) through the mesh started as `make run` starts it (each
service and the gateway in its own process, default settings). Baselines, each measured in the same run,
interleaved with the subject:
- rembg in-process: `rembg.remove(png_bytes, session=new_session("u2netp"))`, onnxruntime's default threads.
- `rembg s --no-ui` (rembg's own HTTP server, its defaults; the UI is off, it does not touch the API): POST
  /api/remove with the same PNG, model u2netp.
- the 2-model shotgun (u2netp + modnet in one request) against the slowest single model, both through the gateway.

Input: scikit-image's astronaut at 1024x1024 (the same PNG bytes for every side). Goals (issue 15): lone request
<= 1.05x rembg in-process and <= 1.0x `rembg s`; shotgun <= 1.15x the slowest single model.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import sys
from pathlib import Path

import httpx

from bench._procs import MODELS_DIR, MeshProcesses, Proc, free_port
from bench.harness import Comparison, compare

MODEL = "u2netp"
SECOND = "modnet"
REPEATS = int(os.environ.get("BENCH_BG_REPEATS", "5"))


def astronaut_png(size: int = 1024) -> bytes:
    from PIL import Image

    try:
        from skimage import data

        img = Image.fromarray(data.astronaut())
    except ImportError:  # pragma: no cover - scikit-image comes with rembg
        img = Image.open(MODELS_DIR / "testdata" / "astronaut.png").convert("RGB")
    buf = io.BytesIO()
    img.resize((size, size), Image.Resampling.LANCZOS).save(buf, "PNG")
    return buf.getvalue()


def rembg_server() -> tuple[Proc, str]:
    """`rembg s` with its defaults (UI off), models from var/models; BROWSER=true keeps its start-up from opening
    a browser on this headless machine."""
    port = free_port()
    rembg = Path(sys.executable).with_name("rembg")
    proc = Proc([str(rembg), "s", "--no-ui", "--host", "127.0.0.1", "--port", str(port), "--log_level", "warning"],
                {"U2NET_HOME": str(MODELS_DIR), "BROWSER": "true"}, ready_url=f"http://127.0.0.1:{port}/api",
                name="rembg-s")
    return proc, f"http://127.0.0.1:{port}/api/remove"


async def run() -> list[Comparison]:
    os.environ["U2NET_HOME"] = str(MODELS_DIR)
    from rembg import new_session, remove

    data = astronaut_png()
    session = new_session(MODEL)  # rembg's defaults: onnxruntime picks the threads (every core)

    sizes: dict[str, int] = {}

    async def rembg_in_process():
        out = await asyncio.to_thread(remove, data, session=session)
        assert out[:8] == b"\x89PNG\r\n\x1a\n"
        sizes["rembg"] = len(out)

    rows: list[Comparison] = []
    rembg_s, rembg_url = await asyncio.to_thread(rembg_server)
    mesh = await asyncio.to_thread(MeshProcesses().start)
    try:
        async with httpx.AsyncClient(base_url=mesh.url, timeout=600) as http, httpx.AsyncClient(timeout=600) as plain:
            async def gateway(models: list[str]):
                payload = {"image": base64.b64encode(data).decode(), "include_models": models}
                reply = await http.post("/remove-background", json=payload)
                assert reply.status_code == 200 and reply.json()["status"] == "completed", reply.text[:500]
                for result in reply.json()["results"]:
                    sizes[f"ours {result['model_id']}"] = len(base64.b64decode(result["image_base64"]))

            async def lone():
                await gateway([MODEL])

            async def via_rembg_s():
                reply = await plain.post(rembg_url, files={"file": ("astronaut.png", data, "image/png")},
                                         data={"model": MODEL})
                assert reply.status_code == 200 and reply.content[:4] == b"\x89PNG", reply.text[:300]

            note = "1024x1024 astronaut PNG, u2netp, mesh processes as `make run` (default settings)"
            rows.append(await compare("bg removal lone request vs rembg in-process (goal <= 1.05x)",
                                      ("POST /remove-background (make run defaults)", lone),
                                      ("rembg.remove in-process (library defaults)", rembg_in_process),
                                      repeats=REPEATS, notes=note))
            rows.append(await compare("bg removal lone request vs `rembg s` (goal <= 1.0x)",
                                      ("POST /remove-background (make run defaults)", lone),
                                      ("`rembg s --no-ui` POST /api/remove (its defaults)", via_rembg_s),
                                      repeats=REPEATS, notes=note))

            async def single_second():
                await gateway([SECOND])

            # Which single model is slower is measured here, not assumed.
            first = await compare("single", (SECOND, single_second), (MODEL, lone), repeats=2)
            slowest = (SECOND, single_second) if first.subject_s > first.baseline_s else (MODEL, lone)

            async def shotgun():
                await gateway([MODEL, SECOND])

            rows.append(await compare("2-model shotgun vs slowest single model (goal <= 1.15x)",
                                      (f"shotgun {MODEL}+{SECOND}", shotgun),
                                      (f"slowest single ({slowest[0]})", slowest[1]), repeats=REPEATS,
                                      notes=f"{note}; single {SECOND} {first.subject_s * 1000:.0f} ms, {MODEL} "
                                            f"{first.baseline_s * 1000:.0f} ms"))
    finally:
        await asyncio.to_thread(mesh.stop)
        await asyncio.to_thread(rembg_s.stop)
    # The outputs differ in PNG compression (ours: zlib level 1 from 1 MP, rembg: Pillow's default 6): say how much.
    for row in rows[:2]:
        row.notes += f"; PNG bytes out: ours {sizes.get('ours ' + MODEL, 0):,}, rembg {sizes.get('rembg', 0):,}"
    return rows
