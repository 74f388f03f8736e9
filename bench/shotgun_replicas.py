"""Shotgun wall time against the slowest single model and against the models one after another, with 1 and 2
BackgroundRemoval replicas (in-process servers on this machine, so replicas share its cores).

Besides the ratios, each row carries the in-run overlap: summed per-model processing time over the shotgun's wall
time, read from the shotgun's own summary (2.0 = the two models fully overlapped, 1.0 = one after the other). It is
measured inside one run, so it does not suffer from the drift between runs on a busy machine.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.harness import Comparison, compare
from shared import clients
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb

MODELS = ["u2netp", "modnet"]


async def _measure(replicas: int, image: common_pb2.Image) -> list[Comparison]:
    from tests.shotgun.conftest import shotgun_mesh

    overlaps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with shotgun_mesh(Path(tmp), replicas=replicas) as mesh:
            async def shotgun(models=MODELS):
                reply = await clients.call(mesh.stub.RunShotgun, pb.RunShotgunRequest(
                    spec=pb.ShotgunSpec(image=image, models=models)), timeout=300)
                summary = reply.summary
                assert summary.status == common_pb2.JOB_STATUS_COMPLETED, summary
                if len(models) > 1:
                    overlaps.append(sum(r.processing_time_ms for r in summary.results)
                                    / max(1, summary.processing_time_ms))

            async def one_after_another():
                for model in MODELS:
                    await shotgun([model])

            # The slowest single model, measured here: each model alone through the same path.
            singles = {}
            for model in MODELS:
                async def alone(model=model):
                    await shotgun([model])
                singles[model] = await compare(f"single {model}", (model, alone), (model, alone), repeats=3)
            slowest = max(singles, key=lambda m: singles[m].subject_s)

            async def slowest_alone():
                await shotgun([slowest])

            note = f"{replicas} replica(s), 512x512 photo, models {'+'.join(MODELS)}, 2 shared CPU cores"
            rows = [
                await compare(f"shotgun vs slowest single model, {replicas} replica(s)",
                              (f"shotgun {'+'.join(MODELS)}", shotgun), (f"slowest single ({slowest})", slowest_alone),
                              repeats=5, notes=note),
                await compare(f"shotgun vs sequential, {replicas} replica(s)", (f"shotgun {'+'.join(MODELS)}", shotgun),
                              ("same models one after another", one_after_another), repeats=5, notes=note),
            ]
    overlap = sorted(overlaps)[len(overlaps) // 2]
    for row in rows:
        row.extra["median_overlap"] = round(overlap, 2)
        row.notes += f"; in-run overlap {overlap:.2f} of {len(MODELS)}"
    return rows


async def run() -> list[Comparison]:
    from tests.background_removal.conftest import ASTRONAUT

    image = common_pb2.Image(data=ASTRONAUT.read_bytes())  # the 512x512 photo
    return [row for replicas in (1, 2) for row in await _measure(replicas, image)]
