"""The gateway's connections into the mesh: the orchestrator for work, every service for health."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc

from gateway.settings import GatewaySettings
from shared.clients import check_health, create_channel
from shared.gen.imagemesh.v1 import (
    background_removal_service_pb2_grpc,
    generate_service_pb2_grpc,
    orchestrator_service_pb2_grpc,
    upscale_service_pb2_grpc,
)

SERVICES = ("orchestrator", "generate", "background_removal", "upscale")


@dataclass
class Mesh:
    orchestrator: orchestrator_service_pb2_grpc.OrchestratorServiceStub
    generate: generate_service_pb2_grpc.GenerateServiceStub
    upscale: upscale_service_pb2_grpc.UpscaleServiceStub
    background_removal: background_removal_service_pb2_grpc.BackgroundRemovalServiceStub
    channels: dict[str, grpc.aio.Channel]
    health_timeout_s: float

    @classmethod
    def connect(cls, settings: GatewaySettings) -> Mesh:
        addresses = {
            "orchestrator": settings.orchestrator_address,
            "generate": settings.generate_address,
            "background_removal": settings.background_removal_address,
            "upscale": settings.upscale_address,
        }
        channels = {name: create_channel(address, settings.max_message_bytes) for name, address in addresses.items()}
        return cls(
            orchestrator=orchestrator_service_pb2_grpc.OrchestratorServiceStub(channels["orchestrator"]),
            generate=generate_service_pb2_grpc.GenerateServiceStub(channels["generate"]),
            upscale=upscale_service_pb2_grpc.UpscaleServiceStub(channels["upscale"]),
            background_removal=background_removal_service_pb2_grpc.BackgroundRemovalServiceStub(
                channels["background_removal"]),
            channels=channels,
            health_timeout_s=settings.health_timeout_s,
        )

    async def health(self) -> dict[str, str]:
        """Each service's gRPC health status (SERVING, NOT_SERVING, UNAVAILABLE, ...), checked in parallel."""
        statuses = await asyncio.gather(
            *(check_health(self.channels[name], timeout=self.health_timeout_s) for name in SERVICES)
        )
        return dict(zip(SERVICES, statuses))

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()
