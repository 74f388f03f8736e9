from __future__ import annotations

from shared.config import ClientSettings, ServiceSettings, default_ports


class OrchestratorSettings(ServiceSettings, ClientSettings):
    service_name: str = "orchestrator"
    grpc_port: int = default_ports("orchestrator")[0]
    metrics_port: int = default_ports("orchestrator")[1]
    # Deadline of one backend call made for a synchronous job step.
    backend_timeout_s: float = 300.0
