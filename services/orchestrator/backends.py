"""Channels and stubs to the services the orchestrator drives."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from shared.clients import create_channel
from shared.config import ClientSettings
from shared.gen.imagemesh.v1 import background_removal_service_pb2_grpc as br_grpc
from shared.gen.imagemesh.v1 import generate_service_pb2_grpc as generate_grpc
from shared.gen.imagemesh.v1 import upscale_service_pb2_grpc as upscale_grpc


@dataclass
class Backends:
    generate: generate_grpc.GenerateServiceStub
    background_removal: br_grpc.BackgroundRemovalServiceStub
    upscale: upscale_grpc.UpscaleServiceStub
    channels: dict[str, grpc.aio.Channel]

    @classmethod
    def connect(cls, settings: ClientSettings) -> "Backends":
        token = settings.internal_token.get_secret_value()
        channels = {
            "generate": create_channel(settings.generate_address, settings.max_message_bytes, token),
            "background_removal": create_channel(settings.background_removal_address, settings.max_message_bytes,
                                                 token),
            "upscale": create_channel(settings.upscale_address, settings.max_message_bytes, token),
        }
        return cls(
            generate=generate_grpc.GenerateServiceStub(channels["generate"]),
            background_removal=br_grpc.BackgroundRemovalServiceStub(channels["background_removal"]),
            upscale=upscale_grpc.UpscaleServiceStub(channels["upscale"]),
            channels=channels,
        )

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()
