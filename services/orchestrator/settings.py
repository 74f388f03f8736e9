from __future__ import annotations

from shared.config import ClientSettings, ServiceSettings, default_ports


class OrchestratorSettings(ServiceSettings, ClientSettings):
    service_name: str = "orchestrator"
    grpc_port: int = default_ports("orchestrator")[0]
    metrics_port: int = default_ports("orchestrator")[1]
    # Deadline of one backend call made for a synchronous job step.
    backend_timeout_s: float = 300.0
    # Shotgun: deadline of each model's call when the request gives none, and the most models one shotgun runs.
    # Replicas of BackgroundRemoval: background_removal_address takes a comma list or dns:///name:port (round robin).
    shotgun_per_model_timeout_s: float = 60.0
    shotgun_max_models: int = 16
