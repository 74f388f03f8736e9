from __future__ import annotations

from shared.config import ServiceSettings, default_ports


class BackgroundRemovalSettings(ServiceSettings):
    service_name: str = "background_removal"
    grpc_port: int = default_ports("background_removal")[0]
    metrics_port: int = default_ports("background_removal")[1]
