"""Thin gRPC servicer of the Generate service."""

from __future__ import annotations

import grpc

from shared.errors import NotImplementedYet
from shared.gen.imagemesh.v1 import generate_service_pb2 as pb, generate_service_pb2_grpc as pb_grpc


class GenerateServicer(pb_grpc.GenerateServiceServicer):
    async def Generate(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext) -> pb.GenerateResponse:
        raise NotImplementedYet("text-to-image generation is not built yet in this deployment")

    async def GenerateStream(self, request: pb.GenerateStreamRequest, context: grpc.aio.ServicerContext):
        raise NotImplementedYet("text-to-image generation is not built yet in this deployment")
        yield  # pragma: no cover - makes this an async generator

    async def ListModels(self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[], device="cpu")
