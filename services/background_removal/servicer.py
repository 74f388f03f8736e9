"""Thin gRPC servicer: protobuf <-> BackgroundRemovalCore."""

from __future__ import annotations

import grpc

from services.background_removal.core import BackgroundRemovalCore, RemovalJob
from services.background_removal.providers import device_class
from shared import images
from shared.concurrency import BoundedExecutor
from shared.errors import InvalidArgument
from shared.gen.imagemesh.v1 import background_removal_service_pb2 as pb
from shared.gen.imagemesh.v1 import background_removal_service_pb2_grpc as pb_grpc
from shared.gen.imagemesh.v1 import common_pb2

# JPEG has no alpha: it only makes sense once the cut-out is composited onto a background colour.
_ALPHA_FORMATS = (common_pb2.IMAGE_FORMAT_UNSPECIFIED, common_pb2.IMAGE_FORMAT_PNG, common_pb2.IMAGE_FORMAT_WEBP,
                  common_pb2.IMAGE_FORMAT_RAW_RGBA)


def _background(value: str) -> tuple[int, int, int, int] | None:
    if not value:
        return None
    color = images.parse_color(value)
    return (*color[:3], color[3] if len(color) == 4 else 255)


class BackgroundRemovalServicer(pb_grpc.BackgroundRemovalServiceServicer):
    def __init__(self, core: BackgroundRemovalCore, executor: BoundedExecutor, limits: images.ImageLimits,
                 observe=None) -> None:
        self.core = core
        self.executor = executor
        self.limits = limits
        self._observe = observe or (lambda model, seconds: None)

    async def RemoveBackground(self, request: pb.RemoveBackgroundRequest,
                               context: grpc.aio.ServicerContext) -> pb.RemoveBackgroundResponse:
        options = request.options
        background = _background(options.background_color)
        if request.output_format not in _ALPHA_FORMATS and not (
                request.output_format == common_pb2.IMAGE_FORMAT_JPEG and background is not None):
            raise InvalidArgument("output_format must be png or webp (alpha kept); jpeg only with background_color",
                                  field="output_format", received=common_pb2.ImageFormat.Name(request.output_format))
        job = RemovalJob(
            image=images.decode_message(request.image, self.limits),
            model=request.model,
            only_mask=options.only_mask,
            alpha_matting=options.alpha_matting,
            foreground_threshold=options.alpha_matting_foreground_threshold,
            background_threshold=options.alpha_matting_background_threshold,
            erode_size=options.alpha_matting_erode_size,
            post_process_mask=options.post_process_mask,
            background=background,
        )
        self.core.validate(job)  # a bad model or option is answered now, not after waiting for a worker

        def work():
            result = self.core.remove(job)
            flat = background[:3] if background else (255, 255, 255)
            return result, images.to_message(result.image, request.output_format, 0, flat)

        result, message = await self.executor.run(work)
        self._observe(result.model.id, result.device_seconds)
        return pb.RemoveBackgroundResponse(
            image=message,
            model_id=result.model.id,
            model_name=result.model.display_name,
            processing_time_ms=result.processing_time_ms,
            # Seconds and class only: the Orchestrator's price table is the one place dollars are made.
            cost=common_pb2.Cost(device_seconds=result.device_seconds, device_class=device_class(result.provider)),
            provider=result.provider,
        )

    async def ListRemovalModels(self, request: pb.ListRemovalModelsRequest,
                                context: grpc.aio.ServicerContext) -> pb.ListRemovalModelsResponse:
        registry = self.core.registry
        return pb.ListRemovalModelsResponse(
            models=[pb.RemovalModelInfo(
                id=s.spec.id, display_name=s.spec.display_name, kind=s.spec.kind, available=s.available,
                unavailable_reason=s.reason, provider=s.provider,
                description=s.spec.description, aliases=list(s.spec.aliases),
            ) for s in registry.states()],
            default_model=registry.default_model,
        )
