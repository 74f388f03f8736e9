"""Background removal threads: adapting to load (the service's default, IMAGEMESH_INTRA_OP_THREADS=0) against each
fixed intra-op thread setting, in-process, the service's own registry and core, u2netp on the 1024x1024 astronaut.

- 4 concurrent requests through a 2-worker pool (the service's default max_concurrency): time for all 4, so the
  ratio is the inverse of throughput. Goal (issue 15): throughput >= 0.95x the best fixed setting, i.e. this
  ratio <= 1.05x.
- a lone request: adapting against 1 thread (the old default) and against every core.
Every setting runs in each round, interleaved, so load on the machine hits them all.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from bench._procs import MODELS_DIR
from bench.harness import Comparison

MODEL = "u2netp"
ROUNDS = int(os.environ.get("BENCH_THREADS_ROUNDS", "3"))
CONCURRENT = 4


async def run() -> list[Comparison]:
    from bench.bgremoval_defaults import astronaut_png
    from services.background_removal.catalog import load_catalog
    from services.background_removal.core import BackgroundRemovalCore, RemovalJob
    from services.background_removal.loaded import LoadedModels
    from services.background_removal.settings import DEFAULT_CATALOG, BackgroundRemovalSettings
    from services.background_removal.threads import available_cpus
    from shared import images

    cores = available_cpus()
    workers = BackgroundRemovalSettings().max_concurrency
    image = images.decode_bytes(astronaut_png())
    settings = {"adaptive": 0, "1 thread": 1, f"{cores} threads": cores}
    cores_by = {}
    for name, intra in settings.items():
        registry = LoadedModels(load_catalog(DEFAULT_CATALOG), MODELS_DIR, "cpu", intra, 1, max_concurrency=workers)
        registry.runner(MODEL)
        cores_by[name] = BackgroundRemovalCore(registry, 2_000_000)

    def one(core):
        core.remove(RemovalJob(image=image, model=MODEL))

    def burst(core) -> float:
        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda _: one(core), range(CONCURRENT)))
        return time.perf_counter() - started

    def lone(core) -> float:
        started = time.perf_counter()
        one(core)
        return time.perf_counter() - started

    bursts: dict[str, list[float]] = {name: [] for name in settings}
    lones: dict[str, list[float]] = {name: [] for name in settings}
    for name, core in cores_by.items():  # warm-up
        await asyncio.to_thread(lone, core)
    for _ in range(ROUNDS):
        for name, core in cores_by.items():
            bursts[name].append(await asyncio.to_thread(burst, core))
            lones[name].append(await asyncio.to_thread(lone, core))
    med = {name: statistics.median(times) for name, times in bursts.items()}
    lone_med = {name: statistics.median(times) for name, times in lones.items()}
    fixed = {name: value for name, value in med.items() if name != "adaptive"}
    best = min(fixed, key=fixed.get)
    note = (f"u2netp, 1024x1024 astronaut, mask + cut-out, {cores} CPUs, {workers} workers; 4-request time: "
            + ", ".join(f"{name} {value * 1000:.0f} ms" for name, value in med.items()))
    rows = [Comparison(f"bg removal {CONCURRENT} concurrent requests: adaptive threads vs best fixed (goal <= 1.05x)",
                       "adaptive (default)", f"best fixed: {best}", med["adaptive"], med[best], ROUNDS, notes=note,
                       extra={"throughput_ratio": round(med[best] / med["adaptive"], 3)})]
    for name in fixed:
        rows.append(Comparison("bg removal lone request: adaptive threads vs fixed", "adaptive (default)", name,
                               lone_med["adaptive"], lone_med[name], ROUNDS,
                               notes="u2netp, 1024x1024 astronaut, mask + cut-out"))
    return rows
