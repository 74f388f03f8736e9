"""End-to-end overhead of background removal through the mesh against the same model in-process, for a
1024x1024 photo.

Rows: gateway (POST /remove-background, seed 002, one model) -> orchestrator -> BackgroundRemoval; the
orchestrator's RunShotgun -> BackgroundRemoval; and the service alone, each against the in-process model.
"""

from __future__ import annotations

import asyncio
import base64
import io
import tempfile
from pathlib import Path

from PIL import Image

from bench.harness import Comparison, compare
from services.background_removal.catalog import load_catalog
from services.background_removal.core import BackgroundRemovalCore, RemovalJob
from services.background_removal.loaded import LoadedModels
from services.background_removal.settings import DEFAULT_CATALOG
from shared import clients, images
from shared.gen.imagemesh.v1 import background_removal_service_pb2 as br_pb
from shared.gen.imagemesh.v1 import background_removal_service_pb2_grpc as br_grpc
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb

MODEL = "u2netp"


def photo_png() -> bytes:
    from tests.background_removal.conftest import ASTRONAUT

    img = Image.open(ASTRONAUT).convert("RGB").resize((1024, 1024), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


async def run() -> list[Comparison]:
    from tests.mesh import MODELS_DIR, start_mesh
    from tests.shotgun.conftest import shotgun_mesh

    data = photo_png()
    registry = LoadedModels(load_catalog(DEFAULT_CATALOG), MODELS_DIR, "cpu", 1, 1)
    registry.runner(MODEL)
    core = BackgroundRemovalCore(registry, 2_000_000)

    async def in_process():
        # The same work the service does, minus the hops: decode, mask, cut out, encode.
        def work():
            result = core.remove(RemovalJob(image=images.decode_bytes(data), model=MODEL))
            images.encode(result.image, "PNG")
        await asyncio.to_thread(work)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        async with shotgun_mesh(Path(tmp), replicas=1) as mesh:
            async def through_orchestrator():
                reply = await clients.call(mesh.stub.RunShotgun, pb.RunShotgunRequest(spec=pb.ShotgunSpec(
                    image=common_pb2.Image(data=data), models=[MODEL])), timeout=300)
                assert reply.summary.status == common_pb2.JOB_STATUS_COMPLETED

            channel = clients.create_channel(f"127.0.0.1:{mesh.replicas[0].port}")
            stub = br_grpc.BackgroundRemovalServiceStub(channel)

            async def service_only():
                await clients.call(stub.RemoveBackground, br_pb.RemoveBackgroundRequest(
                    image=common_pb2.Image(data=data), model=MODEL), timeout=300)

            note = "1024x1024 PNG photo, u2netp, PNG out"
            rows.append(await compare("bg removal e2e 1024x1024: orchestrator->service vs in-process",
                                      ("orchestrator gRPC -> BackgroundRemoval gRPC", through_orchestrator),
                                      ("in-process decode+u2netp+cut-out+encode", in_process), repeats=5, notes=note))
            rows.append(await compare("bg removal 1024x1024: service gRPC vs in-process",
                                      ("BackgroundRemoval gRPC", service_only),
                                      ("in-process decode+u2netp+cut-out+encode", in_process), repeats=5, notes=note))
            await channel.close()
    with tempfile.TemporaryDirectory() as tmp:
        full = await start_mesh(Path(tmp))
        payload = {"image": base64.b64encode(data).decode(), "include_models": [MODEL]}
        try:
            async def through_gateway():
                reply = await full.http.post("/remove-background", json=payload, timeout=300)
                assert reply.status_code == 200 and reply.json()["status"] == "completed", reply.text
                base64.b64decode(reply.json()["results"][0]["image_base64"])

            rows.insert(0, await compare(
                "bg removal e2e 1024x1024: gateway->orchestrator->service vs in-process",
                ("gateway /remove-background -> orchestrator -> BackgroundRemoval", through_gateway),
                ("in-process decode+u2netp+cut-out+encode", in_process), repeats=5,
                notes="1024x1024 PNG photo, u2netp, base64 JSON in and out, in-process gateway (ASGI)"))
        finally:
            await full.close()
    return rows
