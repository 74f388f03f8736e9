"""The Upscale core: plain Python, no gRPC. Validates a request, picks a method, resamples or runs a model."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from services.upscale import presets as preset_table
from services.upscale.alpha import bleed_colour
from services.upscale.backproject import back_project
from services.upscale.lanczos import lanczos_resize
from services.upscale.metrics import UpscaleMetrics
from services.upscale.settings import UpscaleSettings
from services.upscale.sr import SrEngine, load_engines
from services.upscale.tiling import upscale_tiled
from shared import images
from shared.errors import ImageTooLarge, InvalidArgument, ModelUnavailable, NotImplementedYet

MODES = ("fast", "conservative", "auto", "creative")
# The animevideov3 family: one network at three native scales; "realesrgan" picks the scale per request.
FAMILY = "realesrgan"
FAMILY_MEMBERS = ("realesrgan-x2", "realesrgan-x3", "realesrgan-x4")
CREATIVE_DIFFUSION = "creative-diffusion"


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
    provider: str = "pillow"
    device_class: str = "cpu"
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
    def __init__(self, settings: UpscaleSettings, engines: dict[str, SrEngine] | None = None,
                 metrics: UpscaleMetrics | None = None) -> None:
        """`engines` given are used as they are; otherwise they load in `load` (the server's start) or on first
        use, whichever comes first."""
        self.settings = settings
        self.metrics = metrics
        self._engines = engines
        self._loading = threading.Lock()
        if engines is not None:
            self._publish_providers()

    @property
    def engines(self) -> dict[str, SrEngine]:
        if self._engines is None:
            self.load()
        return self._engines  # type: ignore[return-value] - set by load

    def load(self) -> None:
        """Load the super-resolution models (each ONNX session takes seconds); idempotent and thread-safe."""
        with self._loading:
            if self._engines is None:
                self._engines = load_engines(self.settings.resolved_models_dir, self.settings.sr_provider,
                                             self.settings.sr_threads)
                self._publish_providers()

    def _publish_providers(self) -> None:
        if self.metrics is None:
            return
        for engine in (self._engines or {}).values():
            self.metrics.sr_provider.labels(engine.spec.id, engine.provider or "none").set(
                1 if engine.available else 0)

    # --- discovery ------------------------------------------------------------------------------------

    def methods(self) -> list[MethodInfo]:
        infos = [MethodInfo("lanczos", "Lanczos resampling in premultiplied alpha (any scale, transparent edges "
                            "kept clean)", True, provider="pillow")]
        family = [self.engines[m] for m in FAMILY_MEMBERS if m in self.engines]
        usable = [e for e in family if e.available]
        infos.append(MethodInfo(
            FAMILY, "Real-ESRGAN animevideov3 at the native scale (x2, x3, x4) nearest above the asked scale, then "
            "Lanczos to the exact size", bool(usable),
            "" if usable else "; ".join(e.reason for e in family) or "no Real-ESRGAN model configured",
            tuple(e.spec.native_scale for e in usable), usable[0].provider if usable else ""))
        for engine in self.engines.values():
            infos.append(MethodInfo(engine.spec.id, engine.spec.description, engine.available, engine.reason,
                                    (engine.spec.native_scale,), engine.provider))
        infos.append(MethodInfo(CREATIVE_DIFFUSION, "diffusion-based creative upscaling (adds detail from a prompt)",
                                False, "not built yet: mode 'creative' uses Real-ESRGAN and says so in notes"))
        return infos

    # --- sizes ----------------------------------------------------------------------------------------

    def target_size(self, job: UpscaleJob) -> tuple[int, int]:
        width, height = job.image.size
        if job.target_width < 0 or job.target_height < 0:
            raise InvalidArgument("target size must be positive", field="target_width")
        if job.preset:
            chosen = preset_table.preset(job.preset)
            if job.target_width or job.target_height or job.scale_factor:
                raise InvalidArgument("give either a preset or a scale factor / target size, not both",
                                      field="preset")
            out_w, out_h = preset_table.preset_size(chosen, width, height)
        elif job.target_width or job.target_height:
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
            raise InvalidArgument("give scale_factor, a target width/height or a preset", field="scale_factor")
        out_w, out_h = max(1, out_w), max(1, out_h)
        self._check_pixels(out_w, out_h, "scale_factor")
        return out_w, out_h

    def _check_pixels(self, width: int, height: int, what: str) -> None:
        limit = self.settings.max_output_pixels
        if width * height > limit:
            raise ImageTooLarge(
                f"output would be {width}x{height} ({width * height} pixels); the limit is {limit} pixels",
                field=what, max_output_pixels=limit,
            )

    # --- method choice ----------------------------------------------------------------------------------

    def _choose(self, job: UpscaleJob, factor: float, size: tuple[int, int]) -> tuple[SrEngine | None, list[str]]:
        """The engine to run (None = Lanczos) and the notes that explain the choice."""
        notes: list[str] = []
        method, mode = job.method, job.mode
        if mode and mode not in MODES:
            raise InvalidArgument(f"unknown mode {mode!r}; supported: {', '.join(MODES)}", field="mode",
                                  supported=list(MODES))
        if method:
            if method == "lanczos":
                return None, notes
            if method == CREATIVE_DIFFUSION:
                raise NotImplementedYet(
                    "diffusion-based creative upscaling is not available yet; mode 'creative' runs Real-ESRGAN "
                    "(method 'realesrgan') and says so in notes", field="method")
            if method != FAMILY and method not in self.engines:
                supported = ["lanczos", FAMILY, *self.engines, CREATIVE_DIFFUSION]
                raise InvalidArgument(f"unknown method {method!r}; supported: {', '.join(supported)}",
                                      field="method", supported=supported)
            if method in self.engines:
                engine = self.engines[method]
                if not engine.available:
                    raise ModelUnavailable(f"method {method!r} is unavailable: {engine.reason}", model=method)
                if factor <= 1:
                    notes.append(f"{method} not run: the target is not larger than the input; used lanczos")
                    return None, notes
                self._check_intermediate(engine, size)
                return engine, notes
            engine = self._pick_family(factor, size, notes)
            if engine is None:
                raise ModelUnavailable(f"method {FAMILY!r} is unavailable: {self._family_reason()}", model=FAMILY)
            return engine, notes
        if mode in ("", "fast"):
            return None, notes
        if mode == "creative":
            notes.append("diffusion-based creative upscaling is not available yet; creative mode used Real-ESRGAN")
        engine = self._pick_family(factor, size, notes)
        if engine is None:
            reason = self._family_reason() if factor > 1 else "the target is not larger than the input"
            notes.append(f"fell back to lanczos: {reason}")
            if self.metrics and factor > 1:
                self.metrics.fallbacks.labels("model_unavailable").inc()
        return engine, notes

    def _family_reason(self) -> str:
        return "; ".join(self.engines[m].reason for m in FAMILY_MEMBERS if m in self.engines) or "no model"

    def _pick_family(self, factor: float, size: tuple[int, int], notes: list[str]) -> SrEngine | None:
        if factor <= 1:
            return None
        usable = sorted((self.engines[m] for m in FAMILY_MEMBERS if m in self.engines and self.engines[m].available),
                        key=lambda e: e.spec.native_scale)
        if not usable:
            return None
        width, height = size
        fits = [e for e in usable
                if width * height * e.spec.native_scale ** 2 <= self.settings.max_output_pixels]
        # The smallest native scale that reaches the target (Lanczos then only shrinks a little), else the largest.
        reaching = [e for e in fits if e.spec.native_scale >= factor]
        engine = reaching[0] if reaching else (fits[-1] if fits else None)
        if engine is None:
            notes.append("model output would pass max_output_pixels; used lanczos")
        return engine

    def _check_intermediate(self, engine: SrEngine, size: tuple[int, int]) -> None:
        scale = engine.spec.native_scale
        self._check_pixels(size[0] * scale, size[1] * scale, "method")

    # --- work -------------------------------------------------------------------------------------------

    def upscale(self, job: UpscaleJob) -> UpscaleResult:
        started = time.perf_counter()
        source = images.normalize_mode(job.image)
        if not job.preserve_alpha:
            source = images.flatten(source, job.background)
        out_w, out_h = self.target_size(job)
        factor = max(out_w / source.width, out_h / source.height)
        engine, notes = self._choose(job, factor, source.size)
        if engine is None:
            result = lanczos_resize(source, out_w, out_h)
            method, provider, device_class = "lanczos", "pillow", "cpu"
        else:
            result = self._super_resolve(source, engine, out_w, out_h, notes)
            method, provider, device_class = engine.spec.id, engine.provider, engine.device_class
        if job.mode == "conservative" and factor > 1:
            result = self._conserve(source, result, notes)
        if self.metrics:
            self.metrics.upscales.labels(method).inc()
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
            provider=provider,
            device_class=device_class,
            notes=notes,
        )

    def _conserve(self, source: Image.Image, result: Image.Image, notes: list[str]) -> Image.Image:
        """Conservative mode's promise: the output, downscaled, gives the input back (iterative back-projection).
        Colour only; a transparent image's hidden colour is bled first, as for the model, and its alpha kept."""
        rgb = np.asarray(source.convert("RGB"))
        if source.mode == "RGBA":
            rgb = bleed_colour(rgb, np.asarray(source.getchannel("A")))
        fixed, consistency = back_project(np.asarray(result.convert("RGB")), rgb)
        out = Image.fromarray(fixed, "RGB")
        if result.mode == "RGBA":
            out.putalpha(result.getchannel("A"))
        notes.append(f"conservative: back-projected {consistency.iterations}x; the output downscaled (Lanczos) "
                     f"matches the input at {consistency.after_db:.1f} dB PSNR (before: {consistency.before_db:.1f} dB)")
        return out

    def _super_resolve(self, source: Image.Image, engine: SrEngine, out_w: int, out_h: int,
                       notes: list[str]) -> Image.Image:
        scale = engine.spec.native_scale
        rgb = np.asarray(source.convert("RGB"))
        alpha = np.asarray(source.getchannel("A")) if source.mode == "RGBA" else None
        if alpha is not None and alpha.min() == 255:
            alpha = None  # opaque RGBA: the alpha pass would only cost time
        if alpha is not None:
            rgb = bleed_colour(rgb, alpha)
        tile = self.settings.sr_tile_size
        up = upscale_tiled(rgb, engine.run, scale, tile, self.settings.sr_tile_overlap)
        if self.metrics:
            tiles = 1 if tile <= 0 else -(-rgb.shape[0] // tile) * -(-rgb.shape[1] // tile)
            self.metrics.tiles.labels(engine.spec.id).inc(tiles)
        sr = Image.fromarray(up, "RGB")
        if alpha is not None:
            # Alpha goes through Lanczos, not the model: a matte is piecewise smooth, the model was trained on
            # photos and would ring or invent texture in it, and a second model pass would double the cost.
            sr.putalpha(Image.fromarray(alpha, "L").resize(sr.size, Image.Resampling.LANCZOS))
            notes.append("alpha upscaled with Lanczos, colour with the model")
        if sr.size != (out_w, out_h):
            notes.append(f"{engine.spec.id} gave {sr.width}x{sr.height}; Lanczos to the exact {out_w}x{out_h}")
            sr = lanczos_resize(sr, out_w, out_h)
        return sr
