"""Cost of live previews: the same GenerateStream request against a Generate server with previews on (the default,
one every 4 steps, 128 px) and one with them off, same pipeline, same seed, runs interleaved.
ratio = previews-on wall time / previews-off wall time; the goal (issue 13) is at most 1.05. On a loaded machine the
A/B medians wander by more than that, so the notes also give the measured share: the seconds the device thread
spent decoding previews (Previewer.stats) over the wall time of the same runs.

The tiny CPU pipeline makes a step unrealistically cheap next to a preview (one small matmul, resize and PNG
encode), so the 64 px case is the worst one; a real UNet step is hundreds of times dearer."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench._generate import generate_servers
from bench.harness import Comparison, compare

# (size, steps, preview every k steps, repeats)
CASES = [(128, 16, 4, 7), (512, 12, 4, 3), (128, 16, 1, 5)]


async def run() -> list[Comparison]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from services.generate.settings import GenerateSettings
    from shared.clients import stream
    from shared.gen.imagemesh.v1 import generate_service_pb2 as pb

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        variants = {label: {"preview_every_steps": every, "max_batch_images": 1, "preload": False}
                    for label, every in (("every1", 1), ("every4", 4), ("off", 0))}
        async with generate_servers(Path(tmp), variants) as servers:
            device = servers["off"].core.device
            max_side = GenerateSettings().preview_max_side
            for size, steps, every, repeats in CASES:
                def generation(stub, size=size, steps=steps):
                    async def go():
                        request = pb.GenerateStreamRequest(parameters=pb.GenerateParameters(
                            prompt="a lighthouse at dusk", seed=7, width=size, height=size, steps=steps))
                        shown = 0
                        async for event in stream(stub.GenerateStream, request):
                            shown += event.progress.HasField("preview")
                        return shown
                    return go

                label = "every1" if every == 1 else "every4"
                on = servers[label].stub
                stats = servers[label].core.worker.previewer.stats
                spent = {"wall": 0.0}

                def timed(fn):
                    async def go():
                        started = time.perf_counter()
                        try:
                            return await fn()
                        finally:
                            spent["wall"] += time.perf_counter() - started
                    return go

                before = stats.seconds
                comparison = await compare(
                    f"GenerateStream {size}x{size} {steps} steps ({device})",
                    (f"previews every {every} step(s), {max_side} px", timed(generation(on))),
                    ("previews off", generation(servers["off"].stub)), repeats=repeats,
                )
                # The same runs' own share: seconds spent decoding previews / wall time of the runs that made them.
                # Load on a shared machine inflates both alike, unlike the A/B ratio of two medians.
                share = (stats.seconds - before) / spent["wall"] if spent["wall"] else 0.0
                shown = await generation(on)()
                comparison.extra = {"preview_share": round(share, 5), "previews_per_run": shown}
                comparison.notes = (f"decoding previews took {share:.2%} of these runs' time (goal <= 5%); A/B "
                                    f"{comparison.ratio - 1:+.1%}; {shown} previews per run; torch threads 1")
                results.append(comparison)
    return results
