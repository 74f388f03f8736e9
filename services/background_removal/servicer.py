"""Thin gRPC servicer of the BackgroundRemoval service."""

from __future__ import annotations

import grpc

from shared.errors import NotImplementedYet
from shared.gen.imagemesh.v1 import background_removal_service_pb2 as pb
from shared.gen.imagemesh.v1 import background_removal_service_pb2_grpc as pb_grpc


class BackgroundRemovalServicer(pb_grpc.BackgroundRemovalServiceServicer):
    async def RemoveBackground(self, request: pb.RemoveBackgroundRequest, context: grpc.aio.ServicerContext):
        raise NotImplementedYet("background removal is not built yet in this deployment")

    async def ListRemovalModels(self, request: pb.ListRemovalModelsRequest, context: grpc.aio.ServicerContext):
        return pb.ListRemovalModelsResponse(models=[])
