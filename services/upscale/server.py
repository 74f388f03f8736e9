"""create_server for the Upscale service."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from services.upscale.core import UpscaleCore
from services.upscale.metrics import UpscaleMetrics
from services.upscale.servicer import UpscaleServicer
from services.upscale.settings import UpscaleSettings
from services.upscale.social import BUILTIN_CATALOGUE, Catalogue
from shared import images
from shared.concurrency import BoundedExecutor
from shared.gen.imagemesh.v1 import upscale_service_pb2, upscale_service_pb2_grpc
from shared.server import ServiceRuntime, build_server

SERVICE_NAME = upscale_service_pb2.DESCRIPTOR.services_by_name["UpscaleService"].full_name


@dataclass
class UpscaleDeps:
    """An Upscale server's collaborators. Whatever is None, `build_deps` builds from settings; a caller that needs
    to look inside (tests, benchmarks) builds the deps, passes them to `create_server` and keeps them.

    An injected `core` brings its own metrics: build them on `metrics_registry` to see them on the metrics port."""

    metrics_registry: CollectorRegistry | None = None
    core: UpscaleCore | None = None
    catalogue: Catalogue | None = None


def build_deps(settings: UpscaleSettings, deps: UpscaleDeps | None = None) -> UpscaleDeps:
    """`deps` with every missing collaborator built from `settings`. Loads no model (that is `core.load`)."""
    deps = deps or UpscaleDeps()
    registry = deps.metrics_registry if deps.metrics_registry is not None else CollectorRegistry()
    return dataclasses.replace(
        deps,
        metrics_registry=registry,
        core=deps.core or UpscaleCore(settings, metrics=UpscaleMetrics(registry)),
        catalogue=deps.catalogue or Catalogue.load(settings.platforms_file or BUILTIN_CATALOGUE),
    )


def create_server(settings: UpscaleSettings | None = None,
                  deps: UpscaleDeps | None = None) -> tuple[ServiceRuntime, int]:
    settings = settings or UpscaleSettings()
    deps = build_deps(settings, deps)
    core = deps.core
    executor = BoundedExecutor(settings.max_concurrency, settings.max_queue, "upscale")
    limits = images.ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
    servicer = UpscaleServicer(core, executor, limits, deps.catalogue)
    # Ready whenever the server runs: Lanczos, relight and social need no model; SR availability is per method
    # and reported by ListMethods and the imagemesh_upscale_sr_provider_info metric.
    runtime = build_server(
        settings,
        lambda server: upscale_service_pb2_grpc.add_UpscaleServiceServicer_to_server(servicer, server),
        [SERVICE_NAME],
        registry=deps.metrics_registry,
    )

    async def load() -> None:
        # The SR sessions load at start (seconds for x4plus), not on the first request that needs one.
        await asyncio.to_thread(core.load)

    async def shutdown() -> None:
        executor.shutdown()

    runtime.on_start(load)
    runtime.on_stop(shutdown)
    return runtime, runtime.port
