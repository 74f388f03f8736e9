"""create_server for the Orchestrator."""

from __future__ import annotations

from services.orchestrator.backends import Backends
from services.orchestrator.core import OrchestratorCore
from services.orchestrator.servicer import OrchestratorServicer
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.shotgun import InMemoryRanking, RankingSource, Shotgun, ShotgunLimits
from shared import images
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb, orchestrator_service_pb2_grpc as pb_grpc
from shared.image_store import LocalImageStore
from shared.server import ServiceRuntime, build_server

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["OrchestratorService"].full_name


def create_server(settings: OrchestratorSettings | None = None,
                  ranking: RankingSource | None = None) -> tuple[ServiceRuntime, int]:
    """`ranking` ranks models per image category for the shotgun's top_k and "auto" (the selection store's ranking;
    an empty in-memory one when not given)."""
    settings = settings or OrchestratorSettings()
    backends = Backends.connect(settings)
    core = OrchestratorCore(settings, backends)
    servicer = OrchestratorServicer(core)
    shotgun = Shotgun(
        backends.background_removal, backends.upscale, ranking or InMemoryRanking(),
        ShotgunLimits(settings.shotgun_per_model_timeout_s, settings.shotgun_max_models),
        images.ImageLimits(settings.max_image_bytes, settings.max_image_pixels),
        LocalImageStore(settings.resolved_image_store_dir),
    )
    core.shotgun_runner = shotgun.run
    servicer.shotgun = shotgun
    runtime = build_server(
        settings,
        lambda server: pb_grpc.add_OrchestratorServiceServicer_to_server(servicer, server),
        [SERVICE_NAME],
    )
    runtime.on_stop(backends.close)
    return runtime, runtime.port
