"""create_server for the BackgroundRemoval service."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from services.background_removal.catalog import load_catalog
from services.background_removal.core import BackgroundRemovalCore
from services.background_removal.loaded import LoadedModels
from services.background_removal.metrics import BackgroundRemovalMetrics
from services.background_removal.servicer import BackgroundRemovalServicer
from services.background_removal.settings import BackgroundRemovalSettings
from shared import images
from shared.concurrency import BoundedExecutor
from shared.gen.imagemesh.v1 import background_removal_service_pb2 as pb
from shared.gen.imagemesh.v1 import background_removal_service_pb2_grpc as pb_grpc
from shared.server import ServiceRuntime, build_server

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BackgroundRemovalService"].full_name
log = logging.getLogger("imagemesh.background_removal")


@dataclass
class BackgroundRemovalDeps:
    """A BackgroundRemoval server's collaborators. Whatever is None, `build_deps` builds from settings; a caller
    that needs to look inside (tests, benchmarks: the loaded runners) builds the deps, passes them to
    `create_server` and keeps them.

    An injected `model_registry` reports its loads to whatever `on_load` it was built with."""

    metrics_registry: CollectorRegistry | None = None
    metrics: BackgroundRemovalMetrics | None = None
    model_registry: LoadedModels | None = None
    core: BackgroundRemovalCore | None = None


def build_deps(settings: BackgroundRemovalSettings,
               deps: BackgroundRemovalDeps | None = None) -> BackgroundRemovalDeps:
    """`deps` with every missing collaborator built from `settings`. Loads no model (that happens at start)."""
    deps = deps or BackgroundRemovalDeps()
    registry = deps.metrics_registry if deps.metrics_registry is not None else CollectorRegistry()
    metrics = deps.metrics or BackgroundRemovalMetrics(registry)
    model_registry = deps.model_registry or (deps.core.registry if deps.core is not None else LoadedModels(
        load_catalog(settings.resolved_models_config, settings.default_model), settings.resolved_models_dir,
        settings.provider, settings.intra_op_threads, settings.inter_op_threads, on_load=metrics.model_loaded,
        max_concurrency=settings.max_concurrency))
    return dataclasses.replace(
        deps,
        metrics_registry=registry,
        metrics=metrics,
        model_registry=model_registry,
        core=deps.core or BackgroundRemovalCore(model_registry, settings.alpha_matting_max_pixels),
    )


def create_server(settings: BackgroundRemovalSettings | None = None,
                  deps: BackgroundRemovalDeps | None = None) -> tuple[ServiceRuntime, int]:
    settings = settings or BackgroundRemovalSettings()
    deps = build_deps(settings, deps)
    models = deps.model_registry
    executor = BoundedExecutor(settings.max_concurrency, settings.max_queue, "bgremoval")
    limits = images.ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
    background: list[asyncio.Task] = []

    async def readiness() -> bool:
        # SERVING once the default model is loaded. A default model that cannot load keeps the service NOT_SERVING,
        # with the reason in ListRemovalModels and the log.
        return models.is_loaded(models.default_model)

    async def load() -> None:
        # The default model loads before the first probe, so a started server is ready (or says why not); an
        # orchestration startupProbe sized to the load time covers the wait. The others follow in the background.
        await asyncio.to_thread(models.load, False)
        if settings.preload_all:
            background.append(asyncio.create_task(asyncio.to_thread(models.load, True)))

    servicer = BackgroundRemovalServicer(deps.core, executor, limits, deps.metrics.observe)
    runtime = build_server(
        settings,
        lambda server: pb_grpc.add_BackgroundRemovalServiceServicer_to_server(servicer, server),
        [SERVICE_NAME],
        readiness,
        registry=deps.metrics_registry,
    )

    async def shutdown() -> None:
        for task in background:
            if not task.done():
                await asyncio.shield(task)  # a load thread cannot be interrupted; let it end before the pool goes
        executor.shutdown()

    runtime.on_start(load)
    runtime.on_stop(shutdown)
    return runtime, runtime.port
