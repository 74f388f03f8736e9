"""create_server for the BackgroundRemoval service."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Gauge, Histogram

from services.background_removal.catalog import load_catalog
from services.background_removal.core import BackgroundRemovalCore
from services.background_removal.registry import ModelRegistry
from services.background_removal.servicer import BackgroundRemovalServicer
from services.background_removal.settings import BackgroundRemovalSettings
from shared import images
from shared.concurrency import BoundedExecutor
from shared.gen.imagemesh.v1 import background_removal_service_pb2 as pb
from shared.gen.imagemesh.v1 import background_removal_service_pb2_grpc as pb_grpc
from shared.server import ServiceRuntime, build_server

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BackgroundRemovalService"].full_name
log = logging.getLogger("imagemesh.background_removal")


def create_server(settings: BackgroundRemovalSettings | None = None) -> tuple[ServiceRuntime, int]:
    settings = settings or BackgroundRemovalSettings()
    catalog = load_catalog(settings.resolved_models_config, settings.default_model)
    holder: dict = {}

    def on_load(spec, provider: str) -> None:
        holder["loaded"].labels(spec.id, provider).set(1)

    registry = ModelRegistry(catalog, settings.resolved_models_dir, settings.provider, settings.intra_op_threads,
                             settings.inter_op_threads, on_load=on_load)
    core = BackgroundRemovalCore(registry, settings.alpha_matting_max_pixels)
    executor = BoundedExecutor(settings.max_concurrency, settings.max_queue, "bgremoval")
    limits = images.ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
    loading: dict[str, asyncio.Task] = {}

    async def readiness() -> bool:
        # SERVING once the default model is loaded. A default model that cannot load keeps the service NOT_SERVING,
        # with the reason in ListRemovalModels and the log. The other models load in the background after start.
        if settings.preload_all and "task" not in loading:
            loading["task"] = asyncio.create_task(asyncio.to_thread(registry.load, True))
        return registry.is_loaded(registry.default_model)

    def observe(model_id: str, seconds: float) -> None:
        holder["inference"].labels(model_id).observe(seconds)

    servicer = BackgroundRemovalServicer(core, executor, limits, observe)
    runtime = build_server(
        settings,
        lambda server: pb_grpc.add_BackgroundRemovalServiceServicer_to_server(servicer, server),
        [SERVICE_NAME],
        readiness,
    )
    holder["loaded"] = Gauge("imagemesh_background_removal_model_loaded",
                             "1 when a model is loaded, labelled with the ONNX provider it really runs on",
                             ["model", "provider"], registry=runtime.metrics.registry)
    holder["inference"] = Histogram("imagemesh_background_removal_seconds", "Removal time per model (inference and "
                                    "cut-out, without queueing)", ["model"], registry=runtime.metrics.registry,
                                    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))
    # The default model loads now, before the port serves: a started server is ready (or says why not), and an
    # orchestration startupProbe sized to the load time covers the wait.
    registry.load(preload_all=False)
    runtime.core = core  # type: ignore[attr-defined] - tests and benchmarks reach the loaded models through it

    async def shutdown() -> None:
        task = loading.get("task")
        if task is not None and not task.done():
            await asyncio.shield(task)  # a load thread cannot be interrupted; let it end before the pool goes
        executor.shutdown()

    runtime.on_stop(shutdown)
    return runtime, runtime.port
