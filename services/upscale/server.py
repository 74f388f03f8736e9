"""create_server for the Upscale service."""

from __future__ import annotations

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


def create_server(settings: UpscaleSettings | None = None) -> tuple[ServiceRuntime, int]:
    settings = settings or UpscaleSettings()
    # Models load here, when the server is built (x4plus on first use: its weights take seconds to load).
    core = UpscaleCore(settings)
    catalogue = Catalogue.load(settings.platforms_file or BUILTIN_CATALOGUE)
    executor = BoundedExecutor(settings.max_concurrency, settings.max_queue, "upscale")
    limits = images.ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
    servicer = UpscaleServicer(core, executor, limits, catalogue)
    # Ready whenever the server runs: Lanczos, relight and social need no model; SR availability is per method
    # and reported by ListMethods and the imagemesh_upscale_sr_provider_info metric.
    runtime = build_server(
        settings,
        lambda server: upscale_service_pb2_grpc.add_UpscaleServiceServicer_to_server(servicer, server),
        [SERVICE_NAME],
    )
    core.attach_metrics(UpscaleMetrics(runtime.metrics.registry))

    async def shutdown() -> None:
        executor.shutdown()

    runtime.on_stop(shutdown)
    return runtime, runtime.port
