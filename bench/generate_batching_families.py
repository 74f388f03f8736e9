"""Dynamic batching per model family: for each family present in the registry at run time (sd1, sdxl, sd3, flux:
the catalog entry's `family`, else its pipeline class), 4 concurrent compatible requests (own prompt and seed each)
against a Generate server that batches them (20 ms window, up to 8 images per call) and one with batching off.
ratio = batched wall time / sequential wall time; throughput gain = 1 / ratio. One entry per family (the default
model first), at a small size within its limits."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from bench._generate import burst, generate_servers
from bench.harness import Comparison, compare

CONCURRENT = 4
SIZE = 128
STEPS = 8
REPEATS = 3


def entry_family(catalog, entry) -> str | None:
    """The family of a registry entry without loading it: its `family`, its pipeline class, or the class named in
    its local model_index.json; None when its files are not there (it is left out)."""
    from services.generate.families import FAMILIES, family_of_class

    declared = str(getattr(entry, "family", "") or "").lower()
    if declared in FAMILIES:
        return declared
    if entry.pipeline != "auto":
        return family_of_class(entry.pipeline)
    source = catalog.source_of(entry)
    index = Path(source.location) / "model_index.json"
    if not source.is_local or not index.is_file():
        return None
    return family_of_class(json.loads(index.read_text()).get("_class_name", ""))


def families(catalog) -> dict[str, object]:
    """family -> the entry that represents it (text-to-image entries only; the default model first)."""
    chosen: dict[str, object] = {}
    ordered = sorted(catalog.entries.values(), key=lambda e: e.id != catalog.default_id)
    for entry in ordered:
        if "text_to_image" not in entry.operations:
            continue
        family = entry_family(catalog, entry)
        if family is not None and family not in chosen:
            chosen[family] = entry
    return chosen


def size_for(entry) -> int:
    side = max(entry.min_size, min(SIZE, entry.default_width, entry.default_height))
    return -(-side // entry.size_multiple) * entry.size_multiple


async def run() -> list[Comparison]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from services.generate.catalog import Catalog
    from services.generate.settings import GenerateSettings
    from tests.mesh import service_kwargs

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        variants = {"batched": {"batch_window_ms": 20, "max_batch_images": 8, "preload": False},
                    "sequential": {"batch_window_ms": 20, "max_batch_images": 1, "preload": False}}
        async with generate_servers(Path(tmp), variants) as servers:
            settings = GenerateSettings(**service_kwargs(Path(tmp)))
            catalog = Catalog.from_file(settings.models_file, settings.resolved_models_dir)
            device = servers["batched"].core.device
            present = families(catalog)
            print(f"families in the registry: {', '.join(f'{k} ({e.id})' for k, e in present.items())}", flush=True)
            for family, entry in present.items():
                size = size_for(entry)
                steps = max(entry.min_steps, min(STEPS, entry.max_steps))
                batched = burst(servers["batched"].stub, CONCURRENT, size, steps, model=entry.id)
                comparison = await compare(
                    f"{family}: {CONCURRENT} concurrent {size}x{size} {steps} steps, {entry.id} ({device})",
                    ("batched (20 ms window, max 8)", batched),
                    ("sequential (batching off)",
                     burst(servers["sequential"].stub, CONCURRENT, size, steps, model=entry.id)), repeats=REPEATS,
                )
                sizes = await batched()
                comparison.notes = (f"throughput x{1 / comparison.ratio:.2f}; batch sizes seen {sorted(set(sizes))}; "
                                    "torch threads 1")
                results.append(comparison)
    return results
