"""Settings shared by every service, read from IMAGEMESH_* environment variables when a server is built.

Each service subclasses `ServiceSettings` with its own defaults (ports, addresses); nothing here is read at
import time: call `SomeSettings()` inside `create_server` / `main`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024

# Default ports of the mesh; one table so the launcher, the services and the docs agree.
DEFAULT_PORTS = {
    "orchestrator": (50051, 9101),
    "generate": (50052, 9102),
    "background_removal": (50053, 9103),
    "upscale": (50054, 9104),
    "gateway": (8080, 9100),
}


class ServiceSettings(BaseSettings):
    """What every gRPC service needs: where to listen, limits, telemetry, state directories."""

    model_config = SettingsConfigDict(env_prefix="IMAGEMESH_", extra="ignore")

    service_name: str = "imagemesh"
    host: str = "127.0.0.1"
    grpc_port: int = 0
    # 0 picks a free port (tests); -1 switches the metrics endpoint off.
    metrics_port: int = -1
    max_message_bytes: int = 64 * MIB
    grace_period_s: float = 10.0
    health_poll_interval_s: float = 2.0
    var_dir: Path = Path("var")
    models_dir: Path | None = None
    image_store_dir: Path | None = None
    # Image store (shared.image_store.open_image_store): empty = the folder image_store_dir; file:///path = another
    # folder; s3://bucket/prefix = an S3-compatible bucket (AWS S3, MinIO, GCS interoperability), set up by s3_*.
    image_store_url: str = ""
    # Empty: AWS for s3_region. MinIO: its service URL; GCS: https://storage.googleapis.com.
    s3_endpoint_url: str = ""
    # The endpoint presigned URLs name, when clients reach the store by another address than the services do.
    s3_public_endpoint_url: str = ""
    s3_region: str = ""
    # "path" for MinIO and most self-hosted stores; "auto" lets botocore choose (virtual-hosted on AWS).
    s3_addressing_style: str = "auto"
    # Empty: boto3's own chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, IRSA, an instance role).
    s3_access_key_id: str = ""
    s3_secret_access_key: SecretStr = SecretStr("")
    log_level: str = "INFO"
    log_json: bool = True
    otel_exporter_otlp_endpoint: str = ""
    otel_console: bool = False
    # Image codec limits: bytes of an encoded upload and decoded pixels (decompression bombs).
    max_image_bytes: int = 50 * MIB
    max_image_pixels: int = 40_000_000
    # Bound on concurrent CPU-heavy requests per process; past it callers queue up to max_queue.
    max_concurrency: int = 2
    max_queue: int = 64
    # Service-to-service authentication (shared/interceptors.py, TokenAuthInterceptor): when set, every RPC except
    # grpc.health.v1 must carry "authorization: Bearer <token>" or it is UNAUTHENTICATED. Empty = open (make run on
    # loopback, in-process tests). The chart sets it from a Secret, on by default.
    internal_token: SecretStr = SecretStr("")

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir or self.var_dir / "models"

    @property
    def resolved_image_store_dir(self) -> Path:
        return self.image_store_dir or self.var_dir / "images"


def default_ports(name: str) -> tuple[int, int]:
    return DEFAULT_PORTS[name]


class ClientSettings(BaseSettings):
    """Addresses of the mesh's services, for anything that calls them (orchestrator, gateway, tests)."""

    model_config = SettingsConfigDict(env_prefix="IMAGEMESH_", extra="ignore")

    orchestrator_address: str = Field(default=f"127.0.0.1:{DEFAULT_PORTS['orchestrator'][0]}")
    generate_address: str = Field(default=f"127.0.0.1:{DEFAULT_PORTS['generate'][0]}")
    background_removal_address: str = Field(default=f"127.0.0.1:{DEFAULT_PORTS['background_removal'][0]}")
    upscale_address: str = Field(default=f"127.0.0.1:{DEFAULT_PORTS['upscale'][0]}")
    max_message_bytes: int = 64 * MIB
    # The token sent on every call into the mesh (same variable as ServiceSettings.internal_token).
    internal_token: SecretStr = SecretStr("")
