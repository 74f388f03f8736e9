from __future__ import annotations

from shared.config import ClientSettings, MIB, default_ports
from pydantic_settings import SettingsConfigDict


class GatewaySettings(ClientSettings):
    model_config = SettingsConfigDict(env_prefix="IMAGEMESH_", extra="ignore")

    service_name: str = "gateway"
    host: str = "127.0.0.1"
    http_port: int = default_ports("gateway")[0]
    metrics_port: int = default_ports("gateway")[1]
    version: str = "1.0.0"
    # Request bodies past this are refused with 413 before they are parsed (the seeds' 50 MB image limit).
    max_body_bytes: int = 50 * MIB
    # Deadline of one synchronous call into the mesh.
    request_timeout_s: float = 300.0
    health_timeout_s: float = 2.0
    log_level: str = "INFO"
    log_json: bool = True
