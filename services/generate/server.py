"""create_server for the Generate service."""

from __future__ import annotations

import logging

from services.generate.core import GenerateCore
from services.generate.device import choose_device, default_budget
from services.generate.metrics import GenerateMetrics
from services.generate.models import MIB, ModelManager
from services.generate.registry import Registry
from services.generate.servicer import GenerateServicer
from services.generate.settings import GenerateSettings
from services.generate.worker import DeviceWorker
from shared import images
from shared.gen.imagemesh.v1 import generate_service_pb2, generate_service_pb2_grpc
from shared.server import ServiceRuntime, build_server

SERVICE_NAME = generate_service_pb2.DESCRIPTOR.services_by_name["GenerateService"].full_name
log = logging.getLogger("imagemesh.generate")


def build_core(settings: GenerateSettings) -> GenerateCore:
    """Everything but gRPC: registry, device, model manager, worker. Loads nothing (preload starts later)."""
    if settings.torch_threads > 0:
        import torch

        torch.set_num_threads(settings.torch_threads)
    registry = Registry.from_file(settings.models_file, settings.resolved_models_dir)
    device = choose_device(settings.device)
    budget = int(settings.memory_budget_mb * MIB) if settings.memory_budget_mb > 0 else default_budget(device)
    manager = ModelManager(registry, device, budget)
    preload = [e for e in registry.entries.values() if e.preload] if settings.preload else []
    worker = DeviceWorker(manager, max_queue=settings.max_queue, window_s=settings.batch_window_ms / 1000,
                          max_batch_images=settings.max_batch_images, preload=preload)
    log.info("generate: device %s (asked %r)%s, memory budget %.0f MiB, %d models, default %s, batching %s",
             device.name, settings.device, f" UNAVAILABLE: {device.error}" if device.error else "", budget / MIB,
             len(registry.entries), registry.default_id,
             f"up to {settings.max_batch_images} images within {settings.batch_window_ms:g} ms"
             if worker.batching else "off")
    return GenerateCore(settings, registry, manager, worker)


def create_server(settings: GenerateSettings | None = None) -> tuple[ServiceRuntime, int]:
    settings = settings or GenerateSettings()
    core = build_core(settings)
    limits = images.ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
    servicer = GenerateServicer(core, limits)
    runtime = build_server(
        settings,
        lambda server: generate_service_pb2_grpc.add_GenerateServiceServicer_to_server(servicer, server),
        [SERVICE_NAME],
        readiness=core.ready,
    )
    core.worker.metrics = GenerateMetrics.create(runtime.metrics.registry)
    runtime.core = core  # type: ignore[attr-defined] - tests and benchmarks look inside

    async def shutdown() -> None:
        await core.worker.stop()

    runtime.on_stop(shutdown)
    return runtime, runtime.port
