"""create_server for the Orchestrator."""

from __future__ import annotations

from services.orchestrator.backends import Backends
from services.orchestrator.core import OrchestratorCore
from services.orchestrator.servicer import OrchestratorServicer
from services.orchestrator.settings import OrchestratorSettings
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb, orchestrator_service_pb2_grpc as pb_grpc
from shared.server import ServiceRuntime, build_server

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["OrchestratorService"].full_name


def create_server(settings: OrchestratorSettings | None = None) -> tuple[ServiceRuntime, int]:
    settings = settings or OrchestratorSettings()
    backends = Backends.connect(settings)
    core = OrchestratorCore(settings, backends)
    servicer = OrchestratorServicer(core)
    runtime = build_server(
        settings,
        lambda server: pb_grpc.add_OrchestratorServiceServicer_to_server(servicer, server),
        [SERVICE_NAME],
    )
    runtime.on_stop(backends.close)
    return runtime, runtime.port
