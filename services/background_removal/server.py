"""create_server for the BackgroundRemoval service."""

from __future__ import annotations

from services.background_removal.servicer import BackgroundRemovalServicer
from services.background_removal.settings import BackgroundRemovalSettings
from shared.gen.imagemesh.v1 import background_removal_service_pb2 as pb
from shared.gen.imagemesh.v1 import background_removal_service_pb2_grpc as pb_grpc
from shared.server import ServiceRuntime, build_server

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BackgroundRemovalService"].full_name


def create_server(settings: BackgroundRemovalSettings | None = None) -> tuple[ServiceRuntime, int]:
    settings = settings or BackgroundRemovalSettings()
    servicer = BackgroundRemovalServicer()
    runtime = build_server(
        settings,
        lambda server: pb_grpc.add_BackgroundRemovalServiceServicer_to_server(servicer, server),
        [SERVICE_NAME],
    )
    return runtime, runtime.port
