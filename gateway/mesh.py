"""The gateway's connections into the mesh: the one mesh client (to the orchestrator) for all work, and a health
watch on every service for /health. No backend stub lives here: every request goes through the orchestrator."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import grpc

from gateway.settings import GatewaySettings
from shared.clients import create_channel
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as orch_pb
from shared.health_watch import SERVING, HealthWatcher
from shared.mesh_client import Deadlines, MeshClient

log = logging.getLogger(__name__)

SERVICES = ("orchestrator", "generate", "background_removal", "upscale")


@dataclass(frozen=True)
class GenerateInfo:
    """Generate's default model and device as its last ListModels said; `known` is False before the first
    answer and after a failed listing."""

    model: str = ""
    device: str = ""
    known: bool = False


@dataclass
class Mesh:
    client: MeshClient
    channels: dict[str, grpc.aio.Channel]
    health_timeout_s: float
    # How often Generate's model listing is re-read besides each time Generate turns SERVING.
    models_refresh_s: float = 60.0
    watcher: HealthWatcher = field(init=False)
    generate_info: GenerateInfo = field(init=False, default_factory=GenerateInfo)
    _listing_due: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _listed_once: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _refresher: asyncio.Task | None = field(init=False, default=None)
    _warm: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.watcher = HealthWatcher({name: self.channels[name] for name in SERVICES})
        self.watcher.add_listener(self._on_health_change)

    @classmethod
    def connect(cls, settings: GatewaySettings) -> Mesh:
        addresses = {
            "orchestrator": settings.orchestrator_address,
            "generate": settings.generate_address,
            "background_removal": settings.background_removal_address,
            "upscale": settings.upscale_address,
        }
        # Only the orchestrator's channel carries work (and images); the others carry health watches.
        token = settings.internal_token.get_secret_value()
        channels = {name: create_channel(address, settings.max_message_bytes if name == "orchestrator" else
                                         4 * 1024 * 1024, token) for name, address in addresses.items()}
        client = MeshClient(channels["orchestrator"], deadlines=Deadlines(run=settings.request_timeout_s,
                                                                            watch=settings.request_timeout_s))
        return cls(
            client=client,
            channels=channels,
            health_timeout_s=settings.health_timeout_s,
            models_refresh_s=settings.health_models_refresh_s,
        )

    def start(self) -> None:
        """Open the health watches and the model-listing refresher (idempotent; needs the running loop)."""
        if self.watcher.started:
            return
        self.watcher.start()
        self._refresher = asyncio.create_task(self._refresh_generate_info(), name="generate-info")

    async def health(self) -> dict[str, str]:
        """Each service's gRPC health status (SERVING, NOT_SERVING, UNAVAILABLE, ...) from the watch cache.

        Costs no RPC; only the first call after start waits (at most health_timeout_s) for the first answers,
        so an app whose lifespan did not run (an ASGI test transport) still starts the watches."""
        if not self._warm:
            self.start()
            await self.watcher.wait_first_round(self.health_timeout_s)
            if self.watcher.status("generate") == SERVING:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._listed_once.wait(), self.health_timeout_s)
            self._warm = True
        return self.watcher.statuses()

    def _on_health_change(self, name: str, status: str) -> None:
        if name == "generate":
            if status != SERVING:
                self.generate_info = GenerateInfo()
            self._listing_due.set()

    async def _refresh_generate_info(self) -> None:
        while True:
            # A failed listing is retried sooner than the regular refresh: /health says unhealthy meanwhile.
            wait_s = self.models_refresh_s if self.generate_info.known else min(self.models_refresh_s, 5.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._listing_due.wait(), wait_s)
            self._listing_due.clear()
            if self.watcher.status("generate") == SERVING:
                try:
                    reply = await self.client.with_deadlines(read=self.health_timeout_s).catalog(
                        orch_pb.CATALOG_SECTION_GENERATION_MODELS)
                    listing = reply.generation_models
                    if self.watcher.status("generate") == SERVING:  # it may have gone down meanwhile
                        self.generate_info = GenerateInfo(listing.default_model, listing.device, known=True)
                except Exception as exc:  # noqa: BLE001 - a failed listing is reported as unhealthy, never fatal
                    log.warning("Generate's model listing failed: %s", exc)
                    self.generate_info = GenerateInfo()
                self._listed_once.set()

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await self.watcher.stop()
        for channel in self.channels.values():
            await channel.close()
