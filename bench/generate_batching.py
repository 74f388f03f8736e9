"""Dynamic batching throughput: N concurrent compatible requests (own prompt and seed each) against a server
that batches them (window 20 ms, up to 8 images per call) and one with batching off, same pipeline, same work.
ratio = batched wall time / unbatched wall time; throughput gain = 1 / ratio."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench._generate import burst, generate_servers
from bench.harness import Comparison, compare

CASES = [(4, 64, 8), (8, 64, 8), (4, 128, 8), (8, 128, 8)]  # (concurrent requests, size, steps)
REPEATS = 3


async def run() -> list[Comparison]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        async with generate_servers(Path(tmp), {"batched": {"batch_window_ms": 20, "max_batch_images": 8},
                                                "unbatched": {"batch_window_ms": 20, "max_batch_images": 1}}) as servers:
            device = servers["batched"].core.device
            for n, size, steps in CASES:
                comparison = await compare(
                    f"{n} concurrent {size}x{size} {steps} steps ({device})",
                    ("batched (20 ms window, max 8)", burst(servers["batched"].stub, n, size, steps)),
                    ("batching off", burst(servers["unbatched"].stub, n, size, steps)), repeats=REPEATS,
                )
                sizes = await burst(servers["batched"].stub, n, size, steps)()
                comparison.notes = (f"throughput x{1 / comparison.ratio:.2f}; batch sizes seen {sorted(set(sizes))}; "
                                    "torch threads 1")
                results.append(comparison)
    return results
