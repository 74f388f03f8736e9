"""Memory across families: under an LRU budget that holds one model, switching families unloads the previous one
and frees it, and over 20 switches among SDXL, SD3 and FLUX the RSS of the process holding the models (this
one: the Generate server runs in-process) stays within 10% of the first cycle's."""

from __future__ import annotations

import os
import weakref

from services.generate.loaded import MIB, LoadState
from services.generate.settings import DEFAULT_MODELS_FILE
from shared.clients import call
from shared.gen.imagemesh.v1 import generate_service_pb2 as pb
from tests.generate.conftest import params, start_generate

FAMILIES = ["sdxl", "sd-3.5", "flux-1"]  # tiny-sdxl, tiny-sd3, tiny-flux-dev: about 16, 16 and 8 MiB
SWITCHES = 20
BUDGET_MB = 20  # one of them fits, never two
MAX_RSS_GROWTH = 1.10


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def denoiser(pipe):
    return getattr(pipe, "unet", None) or pipe.transformer


async def test_switching_families_frees_the_previous_one_and_rss_stays_flat(tmp_path):
    server = await start_generate(tmp_path, models_file=DEFAULT_MODELS_FILE, memory_budget_mb=BUDGET_MB)
    manager = server.core.manager
    freed: list[weakref.ref] = []
    rss_after_cycle: list[int] = []
    try:
        for switch in range(SWITCHES):
            name = FAMILIES[switch % len(FAMILIES)]
            model_id = server.core.registry.resolve(name).id
            reply = await call(server.stub.Generate,
                               pb.GenerateRequest(parameters=params(model=name, steps=1, seed=switch)))
            assert reply.metadata.model_id == model_id and reply.metadata.timings.load_ms > 0
            # Only the family just used is loaded, and the budget counts it alone.
            ready = [i for i, slot in manager.slots.items() if slot.state == LoadState.READY]
            assert ready == [model_id]
            assert manager.loaded_bytes() == manager.slots[model_id].bytes <= BUDGET_MB * MIB
            # Every pipeline unloaded before is gone from memory, not merely forgotten by the manager.
            assert all(ref() is None for ref in freed)
            freed.append(weakref.ref(denoiser(manager.slots[model_id].pipe)))
            if switch % len(FAMILIES) == len(FAMILIES) - 1 or switch == SWITCHES - 1:
                rss_after_cycle.append(rss_bytes())
        assert len(manager.unloads) == SWITCHES - 1
        first = rss_after_cycle[0]
        growth = [round(rss / first, 3) for rss in rss_after_cycle]
        assert max(growth) <= MAX_RSS_GROWTH, f"RSS after each cycle, relative to the first: {growth}"
    finally:
        await server.close()
