"""create_server for the Generate service."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from services.generate.catalog import Catalog
from services.generate.core import GenerateCore
from services.generate.device import choose_device, default_budget
from services.generate.loaded import MIB, ModelManager
from services.generate.metrics import GenerateMetrics
from services.generate.preview import PreviewConfig, Previewer
from services.generate.servicer import GenerateServicer
from services.generate.settings import GenerateSettings
from services.generate.sizing import load_templates
from services.generate.worker import DeviceWorker
from shared import images
from shared.gen.imagemesh.v1 import generate_service_pb2, generate_service_pb2_grpc
from shared.server import ServiceRuntime, build_server

SERVICE_NAME = generate_service_pb2.DESCRIPTOR.services_by_name["GenerateService"].full_name
log = logging.getLogger("imagemesh.generate")


@dataclass
class GenerateDeps:
    """A Generate server's collaborators. Whatever is None, `build_deps` builds from settings; a caller that needs
    to look inside (tests, benchmarks: the model manager, the worker's stats) builds the deps, passes them to
    `create_server` and keeps them.

    An injected `core` brings its own metrics: build them on `metrics_registry` to see them on the metrics port."""

    metrics_registry: CollectorRegistry | None = None
    core: GenerateCore | None = None


def build_core(settings: GenerateSettings, metrics: GenerateMetrics | None = None) -> GenerateCore:
    """Everything but gRPC: registry, device, model manager, worker. Loads nothing (preload starts with the
    worker, at `core.start`)."""
    if settings.torch_threads > 0:
        import torch

        torch.set_num_threads(settings.torch_threads)
    registry = Catalog.from_file(settings.models_file, settings.resolved_models_dir)
    device = choose_device(settings.device)
    budget = int(settings.memory_budget_mb * MIB) if settings.memory_budget_mb > 0 else default_budget(device)
    manager = ModelManager(registry, device, budget)
    preload = [e for e in registry.entries.values() if e.preload] if settings.preload else []
    worker = DeviceWorker(manager, max_queue=settings.max_queue, window_s=settings.batch_window_ms / 1000,
                          max_batch_images=settings.max_batch_images, preload=preload, metrics=metrics,
                          previewer=Previewer(PreviewConfig(
                              every_steps=settings.preview_every_steps, max_side=settings.preview_max_side,
                              taesd=settings.preview_taesd, models_dir=settings.resolved_models_dir)))
    log.info("generate: device %s (asked %r)%s, memory budget %.0f MiB, %d models, default %s, batching %s",
             device.name, settings.device, f" UNAVAILABLE: {device.error}" if device.error else "", budget / MIB,
             len(registry.entries), registry.default_id,
             f"up to {settings.max_batch_images} images within {settings.batch_window_ms:g} ms"
             if worker.batching else "off")
    return GenerateCore(settings, registry, manager, worker, load_templates(settings.templates_file))


def build_deps(settings: GenerateSettings, deps: GenerateDeps | None = None) -> GenerateDeps:
    """`deps` with every missing collaborator built from `settings`. Loads nothing."""
    deps = deps or GenerateDeps()
    registry = deps.metrics_registry if deps.metrics_registry is not None else CollectorRegistry()
    core = deps.core or build_core(settings, GenerateMetrics.create(registry))
    return dataclasses.replace(deps, metrics_registry=registry, core=core)


def create_server(settings: GenerateSettings | None = None,
                  deps: GenerateDeps | None = None) -> tuple[ServiceRuntime, int]:
    settings = settings or GenerateSettings()
    deps = build_deps(settings, deps)
    core = deps.core
    limits = images.ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
    servicer = GenerateServicer(core, limits)
    runtime = build_server(
        settings,
        lambda server: generate_service_pb2_grpc.add_GenerateServiceServicer_to_server(servicer, server),
        [SERVICE_NAME],
        readiness=core.ready,
        registry=deps.metrics_registry,
    )

    async def shutdown() -> None:
        await core.worker.stop()

    runtime.on_start(core.start)
    runtime.on_stop(shutdown)
    return runtime, runtime.port
