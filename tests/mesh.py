"""An in-process mesh for tests and benchmarks: the four services on port 0 and the gateway over them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
MODELS_DIR = Path(os.environ.get("IMAGEMESH_TEST_MODELS_DIR", REPO / "var" / "models"))


def service_kwargs(tmp: Path) -> dict:
    """Settings every in-process test server shares: loopback, port 0, its own state directory."""
    return dict(host="127.0.0.1", grpc_port=0, metrics_port=-1, var_dir=tmp, models_dir=MODELS_DIR,
                image_store_dir=tmp / "images", health_poll_interval_s=0.2, grace_period_s=1.0, log_json=False)


@dataclass
class RunningMesh:
    """A whole mesh in this process: the four services and a gateway client."""

    runtimes: dict = field(default_factory=dict)
    ports: dict = field(default_factory=dict)
    http: httpx.AsyncClient | None = None
    app: object | None = None

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    async def stop(self, name: str) -> None:
        await self.runtimes.pop(name).stop(0)

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()
            await self.app.state.mesh.close()
        for runtime in self.runtimes.values():
            await runtime.stop(0)


async def start_mesh(tmp: Path, overrides: dict | None = None) -> RunningMesh:
    """Start the four services and the gateway; `overrides` maps a service name to extra settings."""
    from gateway.app import create_app
    from gateway.mesh import Mesh
    from gateway.settings import GatewaySettings
    from services.background_removal.server import create_server as create_br
    from services.background_removal.settings import BackgroundRemovalSettings
    from services.generate.server import create_server as create_generate
    from services.generate.settings import GenerateSettings
    from services.orchestrator.server import create_server as create_orchestrator
    from services.orchestrator.settings import OrchestratorSettings
    from services.upscale.server import create_server as create_upscale
    from services.upscale.settings import UpscaleSettings

    overrides = overrides or {}
    mesh = RunningMesh()
    base = service_kwargs(tmp)
    for name, create, settings_cls in (
        ("generate", create_generate, GenerateSettings),
        ("background_removal", create_br, BackgroundRemovalSettings),
        ("upscale", create_upscale, UpscaleSettings),
    ):
        runtime, port = create(settings_cls(**base, **overrides.get(name, {})))
        await runtime.start()
        mesh.runtimes[name], mesh.ports[name] = runtime, port
    addresses = dict(generate_address=mesh.address("generate"),
                     background_removal_address=mesh.address("background_removal"),
                     upscale_address=mesh.address("upscale"))
    runtime, port = create_orchestrator(OrchestratorSettings(**base, **addresses, **overrides.get("orchestrator", {})))
    await runtime.start()
    mesh.runtimes["orchestrator"], mesh.ports["orchestrator"] = runtime, port
    # The gateway keeps its keys and rate-limit windows in this mesh's own database. Rate limits are off here:
    # the shared session mesh serves every suite from one client address; tests/gateway switches them on.
    # Result URLs are built from the public base URL: here, the base of the in-process client below.
    gateway_overrides = {"var_dir": tmp, "rate_limit_enabled": False, "public_base_url": "http://gateway",
                         **overrides.get("gateway", {})}
    gateway_settings = GatewaySettings(orchestrator_address=mesh.address("orchestrator"), **addresses,
                                       **gateway_overrides)
    mesh.app = create_app(gateway_settings, mesh=Mesh.connect(gateway_settings))
    mesh.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=mesh.app), base_url="http://gateway")
    return mesh
