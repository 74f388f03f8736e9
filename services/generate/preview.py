"""Live previews: a small picture of the image being denoised, decoded cheaply from the latents every k steps.

Two decoders:
- a per-family linear latent->RGB projection (the default): one (channels x 3) matrix and a bias, applied to the
  latents the pipeline hands its step callback, then ComfyUI's mapping (x + 1) / 2 into 0..1. The factors are the
  ones ComfyUI fits per latent space (comfy/latent_formats.py, `latent_rgb_factors`); they apply to the latents
  in the pipeline's own scaled space, which is the space diffusers' denoising loop works in too. FLUX's latents
  are packed 2x2 into tokens ((B, H/2 * W/2, 4C)) and are unpacked first.
- TAESD (a diffusers `AutoencoderTiny`) when one is configured for the family: a real, still cheap, decode.

The projection runs on the pipeline's device, is resized there to the preview size and only then copied to the
host, so a preview costs one small matmul, one small resize, one device->host copy of a few KB and one PNG
encode of at most `max_side` pixels a side. Latents at step t are still noisy (x_t, not the x0 estimate ComfyUI
shows), so early previews are noisy too; they sharpen as denoising goes on.

Families are named "sd1", "sdxl", "sd3" and "flux" (services/generate/families.py). A latent whose channel count does not match its family's
table (the tiny random test pipelines have few channels) falls back to the table with that many channels, and
to a neutral grey mapping of the first channels when there is none: a preview is never an error.
"""

from __future__ import annotations

import io
import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from services.generate.families import FAMILIES as FAMILY_TRAITS
from services.generate.families import family_of_class, unpack_latents
from shared.gen.imagemesh.v1 import common_pb2

log = logging.getLogger("imagemesh.generate.preview")

FAMILIES = tuple(FAMILY_TRAITS)

# (channels x RGB) factors and RGB bias per family, from ComfyUI's comfy/latent_formats.py.
LATENT_RGB: dict[str, tuple[tuple[tuple[float, float, float], ...], tuple[float, float, float]]] = {
    "sd1": ((
        (0.3512, 0.2297, 0.3227),
        (0.3250, 0.4974, 0.2350),
        (-0.2829, 0.1762, 0.2721),
        (-0.2120, -0.2616, -0.7177),
    ), (0.0, 0.0, 0.0)),
    "sdxl": ((
        (0.3651, 0.4232, 0.4341),
        (-0.2533, -0.0042, 0.1068),
        (0.1076, 0.1111, -0.0362),
        (-0.3165, -0.2492, -0.2188),
    ), (0.1084, -0.0175, -0.0011)),
    "sd3": ((
        (-0.0922, -0.0175, 0.0749),
        (0.0311, 0.0633, 0.0954),
        (0.1994, 0.0927, 0.0458),
        (0.0856, 0.0339, 0.0902),
        (0.0587, 0.0272, -0.0496),
        (-0.0006, 0.1104, 0.0309),
        (0.0978, 0.0306, 0.0427),
        (-0.0042, 0.1038, 0.1358),
        (-0.0194, 0.0020, 0.0669),
        (-0.0488, 0.0130, -0.0268),
        (0.0922, 0.0988, 0.0951),
        (-0.0278, 0.0524, -0.0542),
        (0.0332, 0.0456, 0.0895),
        (-0.0069, -0.0030, -0.0810),
        (-0.0596, -0.0465, -0.0293),
        (-0.1448, -0.1463, -0.1189),
    ), (0.2394, 0.2135, 0.1925)),
    "flux": ((
        (-0.0346, 0.0244, 0.0681),
        (0.0034, 0.0210, 0.0687),
        (0.0275, -0.0668, -0.0433),
        (-0.0174, 0.0160, 0.0617),
        (0.0859, 0.0721, 0.0329),
        (0.0004, 0.0383, 0.0115),
        (0.0405, 0.0861, 0.0915),
        (-0.0236, -0.0185, -0.0259),
        (-0.0245, 0.0250, 0.1180),
        (0.1008, 0.0755, -0.0421),
        (-0.0515, 0.0201, 0.0011),
        (0.0428, -0.0012, -0.0036),
        (0.0817, 0.0765, 0.0749),
        (-0.1264, -0.0522, -0.1103),
        (-0.0280, -0.0881, -0.0499),
        (-0.1262, -0.0982, -0.0778),
    ), (-0.0329, -0.0718, -0.0851)),
}
# Which table a channel count falls back to when the family's own does not fit.
_BY_CHANNELS = {4: "sd1", 16: "sd3"}


def family_of(pipe: Any, entry: Any = None) -> str:
    """The latent family of a pipeline: the catalog entry's `family` when it names one, else the pipeline class."""
    declared = str(getattr(entry, "family", "") or "").lower()
    if declared in FAMILIES:
        return declared
    return family_of_class(type(pipe).__name__)


def preview_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The preview's size for an image of `width` x `height`: the same aspect, longest side at most `max_side`
    (never larger than the image itself), each side at least 1."""
    longest = max(width, height)
    scale = min(1.0, max_side / longest) if longest > 0 else 1.0
    return max(1, round(width * scale)), max(1, round(height * scale))


def unpack_flux(latents: Any, width: int, height: int, vae_scale_factor: int = 8) -> Any:
    """FLUX's packed latents (B, (h/2)*(w/2), 4C) back to (B, C, h, w) (families.unpack_latents).

    h and w come from the image size and the VAE's scale factor; when they do not match the token count (a
    pipeline with another scale factor), the grid is derived from the token count and the image's aspect."""
    tokens = latents.shape[1]
    h2, w2 = height // (vae_scale_factor * 2), width // (vae_scale_factor * 2)
    if h2 * w2 != tokens:
        h2 = max(1, round(math.sqrt(tokens * height / max(width, 1))))
        w2 = tokens // h2
        if h2 * w2 != tokens:
            raise ValueError(f"cannot unpack {tokens} FLUX tokens for a {width}x{height} image")
    flux = FAMILY_TRAITS["flux"]
    side = flux.vae_scale_factor * 2
    return unpack_latents("flux", latents, h2 * side, w2 * side)


def to_spatial(latents: Any, family: str, width: int, height: int, vae_scale_factor: int = 8) -> Any:
    """Latents as (B, C, h, w): FLUX's packed tokens unpacked, the rest as they are."""
    if latents.ndim == 3:
        return unpack_flux(latents, width, height, vae_scale_factor)
    if latents.ndim != 4:
        raise ValueError(f"latents of shape {tuple(latents.shape)} are not (B, C, h, w) nor packed tokens")
    return latents


def project(latents: Any, family: str) -> Any:
    """(B, C, h, w) latents -> (B, 3, h, w) RGB in 0..1 with the family's linear factors."""
    import torch

    channels = latents.shape[1]
    table = family if len(LATENT_RGB[family][0]) == channels else _BY_CHANNELS.get(channels)
    x = latents.float()
    if table is None:
        # No fitted factors for this many channels: a neutral mapping of the first channels (grey when fewer
        # than three), scaled into -1..1 like a latent.
        picked = x[:, :3] if channels >= 3 else x[:, :1].expand(-1, 3, -1, -1)
        rgb = picked / picked.abs().amax(dim=(2, 3), keepdim=True).clamp(min=1e-6)
    else:
        factors, bias = LATENT_RGB[table]
        weight = torch.tensor(factors, dtype=x.dtype, device=x.device)  # (C, 3)
        rgb = torch.einsum("bchw,cr->brhw", x, weight)
        rgb = rgb + torch.tensor(bias, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return ((rgb + 1.0) / 2.0).clamp(0.0, 1.0)


def encode_png(rgb: Any) -> bytes:
    """(3, h, w) 0..1 on the host -> PNG bytes (fast compression: previews are short-lived)."""
    import torch

    array = (rgb.permute(1, 2, 0) * 255.0).round().to(dtype=torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array, "RGB").save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


@dataclass(frozen=True)
class PreviewConfig:
    """How Generate makes previews (GenerateSettings.preview_*)."""

    # A preview every this many denoising steps (steps k, 2k, ...); 0 switches previews off.
    every_steps: int = 4
    # Longest side of a preview in pixels (never more than the image's own).
    max_side: int = 128
    # TAESD (AutoencoderTiny folders) per family, e.g. {"sd1": "taesd"}; relative paths resolve against models_dir.
    taesd: Mapping[str, str] | None = None
    models_dir: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.every_steps > 0

    def due(self, step: int) -> bool:
        return self.enabled and step > 0 and step % self.every_steps == 0


@dataclass
class PreviewStats:
    """What previews cost so far: how many were decoded and the device-thread seconds spent on them."""

    previews: int = 0
    seconds: float = 0.0


class Previewer:
    """Decodes previews for one device; TAESD decoders are loaded once per family, on first use."""

    def __init__(self, config: PreviewConfig) -> None:
        self.config = config
        self.stats = PreviewStats()
        self._taesd: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def due(self, step: int) -> bool:
        return self.config.due(step)

    def decode(self, latents: Any, indexes: list[int], *, family: str, width: int, height: int,
               vae_scale_factor: int = 8) -> list[common_pb2.Image]:
        """Previews of the images at `indexes` in a batch of step-callback `latents`, as PNG `Image` messages."""
        started = time.perf_counter()
        try:
            return self._decode(latents, indexes, family, width, height, vae_scale_factor)
        finally:
            self.stats.previews += len(indexes)
            self.stats.seconds += time.perf_counter() - started

    def _decode(self, latents: Any, indexes: list[int], family: str, width: int, height: int,
                vae_scale_factor: int) -> list[common_pb2.Image]:
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            spatial = to_spatial(latents.detach(), family, width, height, vae_scale_factor)[indexes]
            rgb = self._taesd_rgb(spatial, family)
            if rgb is None:
                rgb = project(spatial, family)
            out_w, out_h = preview_size(width, height, self.config.max_side)
            if rgb.shape[-2:] != (out_h, out_w):
                rgb = F.interpolate(rgb, size=(out_h, out_w), mode="bilinear", align_corners=False)
            rgb = rgb.clamp(0.0, 1.0).cpu()
        return [common_pb2.Image(data=encode_png(image), media_type="image/png", width=out_w, height=out_h)
                for image in rgb]

    def _taesd_rgb(self, latents: Any, family: str) -> Any | None:
        source = (self.config.taesd or {}).get(family)
        if not source:
            return None
        decoder = self._load_taesd(source, latents.device)
        if decoder is None or decoder.config.latent_channels != latents.shape[1]:
            return None
        dtype = next(decoder.parameters()).dtype
        image = decoder.decode(latents.to(dtype)).sample.float()  # -1..1
        return ((image + 1.0) / 2.0).clamp(0.0, 1.0)

    def _load_taesd(self, source: str, device: Any) -> Any | None:
        key = (source, str(device))
        with self._lock:
            if key not in self._taesd:
                from diffusers import AutoencoderTiny

                path = Path(source).expanduser()
                if not path.is_absolute() and self.config.models_dir is not None:
                    path = Path(self.config.models_dir) / path
                try:
                    self._taesd[key] = AutoencoderTiny.from_pretrained(str(path)).to(device).eval()
                except (OSError, ValueError) as exc:
                    # A missing TAESD falls back to the linear projection; said once, in the log.
                    log.error("TAESD %s cannot be loaded (%s): previews use the linear projection", path, exc)
                    self._taesd[key] = None
            return self._taesd[key]
