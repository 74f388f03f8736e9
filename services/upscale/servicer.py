"""Thin gRPC servicer: protobuf <-> UpscaleCore / relight / social."""

from __future__ import annotations

import time

import grpc

from services.upscale import relight, social
from services.upscale.core import UpscaleCore, UpscaleJob
from services.upscale.presets import PRESETS
from shared import images
from shared.concurrency import BoundedExecutor
from shared.errors import InvalidArgument
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import upscale_service_pb2 as pb
from shared.gen.imagemesh.v1 import upscale_service_pb2_grpc as pb_grpc

CROP_MODES = {pb.CROP_MODE_UNSPECIFIED: "smart", pb.CROP_MODE_SMART: "smart", pb.CROP_MODE_CENTER: "center",
              pb.CROP_MODE_FIT: "fit"}
FORMAT_NAMES = {common_pb2.IMAGE_FORMAT_UNSPECIFIED: "", common_pb2.IMAGE_FORMAT_PNG: "png",
                common_pb2.IMAGE_FORMAT_WEBP: "webp", common_pb2.IMAGE_FORMAT_JPEG: "jpeg"}


class UpscaleServicer(pb_grpc.UpscaleServiceServicer):
    def __init__(self, core: UpscaleCore, executor: BoundedExecutor, limits: images.ImageLimits,
                 catalogue: social.Catalogue) -> None:
        self.core = core
        self.executor = executor
        self.limits = limits
        self.catalogue = catalogue

    @staticmethod
    def _cost(seconds: float, device_class: str = "cpu") -> common_pb2.Cost:
        # Seconds and class only: the Orchestrator's price table is the one place dollars are made.
        return common_pb2.Cost(device_seconds=seconds, device_class=device_class)

    async def Upscale(self, request: pb.UpscaleRequest, context: grpc.aio.ServicerContext) -> pb.UpscaleResponse:
        background = images.parse_color(request.background_color)
        job = UpscaleJob(
            image=images.decode_message(request.image, self.limits),
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
            cost=self._cost(result.device_seconds, result.device_class),
            notes=result.notes,
            provider=result.provider,
        )

    async def ListMethods(self, request: pb.ListMethodsRequest,
                          context: grpc.aio.ServicerContext) -> pb.ListMethodsResponse:
        return pb.ListMethodsResponse(
            methods=[
                pb.UpscaleMethodInfo(id=m.id, description=m.description, available=m.available,
                                     unavailable_reason=m.unavailable_reason, native_scales=m.native_scales,
                                     provider=m.provider)
                for m in self.core.methods()
            ],
            presets={p.name: p.description for p in PRESETS.values()},
            lighting_styles={s.name: s.description for s in relight.STYLES.values()},
        )

    async def Relight(self, request: pb.RelightRequest, context: grpc.aio.ServicerContext) -> pb.RelightResponse:
        relight.style(request.lighting_style)  # unknown styles fail before any decoding work
        image = images.decode_message(request.image, self.limits)
        mask = images.decode_message(request.mask, self.limits) if request.HasField("mask") else None
        intensity = request.intensity if request.HasField("intensity") else 1.0

        def work():
            started = time.perf_counter()
            out, notes = relight.relight(images.normalize_mode(image), request.lighting_style, mask, intensity)
            message = images.to_message(out, request.output_format)
            return message, notes, time.perf_counter() - started

        message, notes, seconds = await self.executor.run(work)
        if self.core.metrics:
            self.core.metrics.relights.labels(request.lighting_style.lower()).inc()
        return pb.RelightResponse(image=message, lighting_style=request.lighting_style.lower(),
                                  processing_time_ms=int(seconds * 1000), cost=self._cost(seconds), notes=notes)

    async def OptimizeSocial(self, request: pb.OptimizeSocialRequest,
                             context: grpc.aio.ServicerContext) -> pb.OptimizeSocialResponse:
        focal = None
        if request.HasField("focal_x") or request.HasField("focal_y"):
            focal = (request.focal_x if request.HasField("focal_x") else 0.5,
                     request.focal_y if request.HasField("focal_y") else 0.5)
        output_format = FORMAT_NAMES.get(request.output_format)
        if output_format is None:
            raise InvalidArgument("social output must be png, webp or jpeg", field="output_format")
        social_request = social.SocialRequest(
            image=images.decode_message(request.image, self.limits),
            platforms=list(request.platforms), formats=list(request.formats),
            crop_mode=CROP_MODES.get(request.crop_mode, "smart"), focal=focal, overlay=request.safe_zone_overlay,
            output_format=output_format,
            background=images.parse_color(request.background_color) if request.background_color else None,
        )

        def work():
            started = time.perf_counter()
            return social.optimize(social_request, self.catalogue), time.perf_counter() - started

        outputs, seconds = await self.executor.run(work)
        if self.core.metrics:
            for out in outputs:
                self.core.metrics.social_images.labels(out.format.platform).inc()
        return pb.OptimizeSocialResponse(
            images=[
                pb.SocialImage(
                    format=format_message(out.format),
                    image=common_pb2.Image(data=out.data, media_type=out.media_type, width=out.image.width,
                                           height=out.image.height),
                    size_bytes=len(out.data), quality=out.quality, notes=out.notes,
                )
                for out in outputs
            ],
            processing_time_ms=int(seconds * 1000),
        )

    async def ListPlatformFormats(self, request: pb.ListPlatformFormatsRequest,
                                  context: grpc.aio.ServicerContext) -> pb.ListPlatformFormatsResponse:
        return pb.ListPlatformFormatsResponse(
            formats=[format_message(f) for f in self.catalogue.platform_formats(request.platform)])


def format_message(fmt: social.PlatformFormat) -> pb.PlatformFormat:
    zone = fmt.safe_zone
    return pb.PlatformFormat(
        platform=fmt.platform, name=fmt.id, width=fmt.width, height=fmt.height, ratio=fmt.ratio,
        safe_zone=pb.SafeZone(top=zone.top, bottom=zone.bottom, left=zone.left, right=zone.right),
        file_type=fmt.file_type, max_size_bytes=fmt.max_size_bytes, description=fmt.description,
        display_name=fmt.display_name,
    )
