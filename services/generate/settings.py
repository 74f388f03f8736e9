from __future__ import annotations

from shared.config import ServiceSettings, default_ports


class GenerateSettings(ServiceSettings):
    service_name: str = "generate"
    grpc_port: int = default_ports("generate")[0]
    metrics_port: int = default_ports("generate")[1]
