"""Thin gRPC servicer: protobuf <-> UpscaleCore."""

from __future__ import annotations

import grpc

from services.upscale.core import UpscaleCore, UpscaleJob
from shared import images
from shared.concurrency import BoundedExecutor
from shared.errors import NotImplementedYet
from shared.gen.imagemesh.v1 import common_pb2, upscale_service_pb2 as pb, upscale_service_pb2_grpc as pb_grpc
from shared.image_store import LocalImageStore


class UpscaleServicer(pb_grpc.UpscaleServiceServicer):
    def __init__(self, core: UpscaleCore, executor: BoundedExecutor, store: LocalImageStore,
                 limits: images.ImageLimits) -> None:
        self.core = core
        self.executor = executor
        self.store = store
        self.limits = limits

    async def Upscale(self, request: pb.UpscaleRequest, context: grpc.aio.ServicerContext) -> pb.UpscaleResponse:
        background = images.parse_color(request.background_color)
        job = UpscaleJob(
            image=images.decode_message(request.image, self.limits, self.store),
            scale_factor=request.scale_factor,
            target_width=request.target_width,
            target_height=request.target_height,
            mode=request.mode.lower(),
            method=request.method.lower(),
            preset=request.preset.lower(),
            preserve_alpha=request.preserve_alpha if request.HasField("preserve_alpha") else True,
            background=background[:3],
        )

        def work():
            result = self.core.upscale(job)
            return result, images.to_message(result.image, request.output_format, request.quality, job.background)

        result, message = await self.executor.run(work)
        return pb.UpscaleResponse(
            image=message,
            input_dimensions=common_pb2.Dimensions(width=result.input_size[0], height=result.input_size[1]),
            output_dimensions=common_pb2.Dimensions(width=result.output_size[0], height=result.output_size[1]),
            scale_factor=result.scale_factor,
            alpha_preserved=result.alpha_preserved,
            method_used=result.method_used,
            processing_time_ms=result.processing_time_ms,
            cost=common_pb2.Cost(
                usd=result.device_seconds * self.core.settings.cost_per_cpu_second_usd,
                device_seconds=result.device_seconds, device_class="cpu",
            ),
            notes=result.notes,
        )

    async def ListMethods(self, request: pb.ListMethodsRequest, context: grpc.aio.ServicerContext) -> pb.ListMethodsResponse:
        return pb.ListMethodsResponse(methods=[
            pb.UpscaleMethodInfo(id=m.id, description=m.description, available=m.available,
                                 unavailable_reason=m.unavailable_reason, native_scales=m.native_scales,
                                 provider=m.provider)
            for m in self.core.methods()
        ])

    async def Relight(self, request: pb.RelightRequest, context: grpc.aio.ServicerContext) -> pb.RelightResponse:
        raise NotImplementedYet("relight is not available yet in this deployment")

    async def OptimizeSocial(self, request, context):  # type: ignore[override]
        raise NotImplementedYet("social crops are not available yet in this deployment")

    async def ListPlatformFormats(self, request, context):  # type: ignore[override]
        raise NotImplementedYet("platform formats are not available yet in this deployment")
