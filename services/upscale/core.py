"""The Upscale core: plain Python, no gRPC. Validates a request, picks a method, resamples."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from PIL import Image

from services.upscale.lanczos import lanczos_resize
from services.upscale.settings import UpscaleSettings
from shared import images
from shared.errors import ImageTooLarge, InvalidArgument, NotImplementedYet

FAST_MODES = {"", "fast"}


@dataclass
class UpscaleJob:
    image: Image.Image
    scale_factor: int = 0
    target_width: int = 0
    target_height: int = 0
    mode: str = ""
    method: str = ""
    preset: str = ""
    preserve_alpha: bool = True
    background: tuple[int, int, int] = (255, 255, 255)


@dataclass
class UpscaleResult:
    image: Image.Image
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    scale_factor: float
    alpha_preserved: bool
    method_used: str
    processing_time_ms: int
    device_seconds: float
    notes: list[str] = field(default_factory=list)


@dataclass
class MethodInfo:
    id: str
    description: str
    available: bool
    unavailable_reason: str = ""
    native_scales: tuple[int, ...] = ()
    provider: str = ""


class UpscaleCore:
    def __init__(self, settings: UpscaleSettings) -> None:
        self.settings = settings

    def methods(self) -> list[MethodInfo]:
        return [
            MethodInfo("lanczos", "Lanczos resampling in premultiplied alpha (any scale, transparent edges kept clean)",
                       True, provider="pillow"),
        ]

    def target_size(self, job: UpscaleJob) -> tuple[int, int]:
        width, height = job.image.size
        if job.target_width < 0 or job.target_height < 0:
            raise InvalidArgument("target size must be positive", field="target_width")
        if job.target_width or job.target_height:
            # One side given keeps the aspect ratio.
            out_w = job.target_width or round(width * job.target_height / height)
            out_h = job.target_height or round(height * job.target_width / width)
        elif job.scale_factor:
            if not 1 <= job.scale_factor <= self.settings.max_scale_factor:
                raise InvalidArgument(
                    f"scale_factor must be between 1 and {self.settings.max_scale_factor}",
                    field="scale_factor", received=job.scale_factor,
                )
            out_w, out_h = width * job.scale_factor, height * job.scale_factor
        else:
            raise InvalidArgument("give scale_factor or a target width/height", field="scale_factor")
        if out_w * out_h > self.settings.max_output_pixels:
            raise ImageTooLarge(
                f"output would be {out_w}x{out_h} ({out_w * out_h} pixels); the limit is "
                f"{self.settings.max_output_pixels} pixels",
                field="scale_factor", max_output_pixels=self.settings.max_output_pixels,
            )
        return max(1, out_w), max(1, out_h)

    def upscale(self, job: UpscaleJob) -> UpscaleResult:
        started = time.perf_counter()
        if job.preset:
            raise NotImplementedYet(f"upscale preset {job.preset!r} is not available yet", field="preset")
        method = job.method or ("lanczos" if job.mode in FAST_MODES else "")
        if method != "lanczos":
            raise NotImplementedYet(
                f"upscale {'method ' + repr(job.method) if job.method else 'mode ' + repr(job.mode)} is not available "
                "yet; use mode 'fast' (Lanczos)", field="method" if job.method else "mode",
            )
        source = images.normalize_mode(job.image)
        if not job.preserve_alpha:
            source = images.flatten(source, job.background)
        out_w, out_h = self.target_size(job)
        result = lanczos_resize(source, out_w, out_h)
        elapsed = time.perf_counter() - started
        return UpscaleResult(
            image=result,
            input_size=job.image.size,
            output_size=(out_w, out_h),
            scale_factor=out_w / job.image.width,
            alpha_preserved=result.mode == "RGBA",
            method_used=method,
            processing_time_ms=int(elapsed * 1000),
            device_seconds=elapsed,
        )
