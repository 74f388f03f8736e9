"""create_server for the Generate service."""

from __future__ import annotations

from services.generate.servicer import GenerateServicer
from services.generate.settings import GenerateSettings
from shared.gen.imagemesh.v1 import generate_service_pb2, generate_service_pb2_grpc
from shared.server import ServiceRuntime, build_server

SERVICE_NAME = generate_service_pb2.DESCRIPTOR.services_by_name["GenerateService"].full_name


def create_server(settings: GenerateSettings | None = None) -> tuple[ServiceRuntime, int]:
    settings = settings or GenerateSettings()
    servicer = GenerateServicer()
    runtime = build_server(
        settings,
        lambda server: generate_service_pb2_grpc.add_GenerateServiceServicer_to_server(servicer, server),
        [SERVICE_NAME],
    )
    return runtime, runtime.port
