"""The gateway's connections into the mesh: the one mesh client (to the orchestrator) for all work, and a health
channel per service for /health. No backend stub lives here: every request goes through the orchestrator."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc

from gateway.settings import GatewaySettings
from shared.clients import check_health, create_channel
from shared.mesh_client import Deadlines, MeshClient

SERVICES = ("orchestrator", "generate", "background_removal", "upscale")


@dataclass
class Mesh:
    client: MeshClient
    health_channels: dict[str, grpc.aio.Channel]
    health_timeout_s: float

    @classmethod
    def connect(cls, settings: GatewaySettings) -> Mesh:
        orchestrator = create_channel(settings.orchestrator_address, settings.max_message_bytes)
        client = MeshClient(orchestrator, deadlines=Deadlines(run=settings.request_timeout_s,
                                                               watch=settings.request_timeout_s))
        addresses = {
            "generate": settings.generate_address,
            "background_removal": settings.background_removal_address,
            "upscale": settings.upscale_address,
        }
        # Health only: small messages, so the default limits are enough.
        channels = {"orchestrator": orchestrator,
                    **{name: create_channel(address) for name, address in addresses.items()}}
        return cls(client=client, health_channels=channels, health_timeout_s=settings.health_timeout_s)

    async def health(self) -> dict[str, str]:
        """Each service's gRPC health status (SERVING, NOT_SERVING, UNAVAILABLE, ...), checked in parallel."""
        statuses = await asyncio.gather(
            *(check_health(self.health_channels[name], timeout=self.health_timeout_s) for name in SERVICES)
        )
        return dict(zip(SERVICES, statuses))

    async def close(self) -> None:
        for channel in self.health_channels.values():
            await channel.close()
