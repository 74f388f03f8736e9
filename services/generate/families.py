"""Model families: what differs between SD 1.x, SDXL, SD3 and FLUX for the code around a pipeline.

A registry entry names its family (`family:` in models.yaml, ModelEntry.family; default "sd1"). The family fixes
how a call is made (negative prompt or not, `max_sequence_length`, which tokenizer reads the long prompt) and how
its latents look, which is what a latent -> RGB preview needs:

| family | latent channels | latents seen by a step callback (`callback_kwargs["latents"]`)              |
|--------|-----------------|------------------------------------------------------------------------------|
| sd1    | 4               | (B, 4, H/8, W/8)                                                             |
| sdxl   | 4               | (B, 4, H/8, W/8)                                                             |
| sd3    | 16              | (B, 16, H/8, W/8) (the transformer patchifies 2x2 inside; latents stay 2-D)  |
| flux   | 16              | (B, (H/16)*(W/16), 64): 2x2 latent patches packed into tokens; unpack_latents |

Latents are in the scheduler's space: `latents / vae.config.scaling_factor + (vae.config.shift_factor or 0)` is
what the VAE decodes (SD3 and FLUX have a shift factor, SD 1.x and SDXL none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

FamilyName = Literal["sd1", "sdxl", "sd3", "flux"]


@dataclass(frozen=True)
class Family:
    name: str
    # Channels of the VAE latent, and pixels per latent pixel.
    latent_channels: int
    vae_scale_factor: int
    # 1: latents are (B, C, h, w); 2: FLUX packs 2x2 latent patches into (B, h/2 * w/2, 4C) tokens.
    packing: int
    # Width and height must be multiples of this (VAE factor times the transformer's patch or packing).
    size_multiple: int
    # Whether the pipeline takes a negative prompt (FLUX does not: CyberImage documents it as ignored).
    negative_prompt: bool
    # The T5 tokenizer's attribute on the pipeline, for families with a T5 encoder; those take
    # `max_sequence_length` (the T5 tokens read), whose default is given here.
    t5_tokenizer: str | None = None
    default_max_sequence_length: int = 0
    # SDXL: an empty negative prompt means zero embeddings, a given one (even "") is encoded, so requests with
    # and without a negative prompt cannot share a pipeline call.
    empty_negative_is_zeros: bool = False
    # Class-name prefix of its diffusers pipelines (FluxImg2ImgPipeline, StableDiffusionXLInpaintPipeline, ...).
    pipeline_prefix: str = ""
    # What `dtype: auto` loads as on CUDA (FLUX's activations overflow float16; its checkpoints ship bfloat16).
    cuda_dtype: str = "float16"


FAMILIES: dict[str, Family] = {
    "sd1": Family("sd1", 4, 8, 1, 8, True, pipeline_prefix="StableDiffusion"),
    "sdxl": Family("sdxl", 4, 8, 1, 8, True, empty_negative_is_zeros=True, pipeline_prefix="StableDiffusionXL"),
    "sd3": Family("sd3", 16, 8, 1, 16, True, t5_tokenizer="tokenizer_3", default_max_sequence_length=256,
                  pipeline_prefix="StableDiffusion3"),
    "flux": Family("flux", 16, 8, 2, 16, False, t5_tokenizer="tokenizer_2", default_max_sequence_length=512,
                   pipeline_prefix="Flux", cuda_dtype="bfloat16"),
}


def family(name: str) -> Family:
    return FAMILIES[name]


def family_of_class(name: str) -> str:
    """The family of a diffusers pipeline class name (FluxImg2ImgPipeline -> flux); SD 1.x for any other."""
    for key in ("flux", "sd3", "sdxl"):
        if name.startswith(FAMILIES[key].pipeline_prefix):
            return key
    return "sd1"


def family_of_pipeline(pipe: Any) -> str:
    """The family a loaded diffusers pipeline belongs to, from its class name."""
    return family_of_class(type(pipe).__name__)


def unpack_latents(family_name: str, latents: Any, height: int, width: int) -> Any:
    """Latents as (B, C, H/8, W/8) whatever the family: FLUX's packed tokens are unfolded (the inverse of
    FluxPipeline._pack_latents); other families' latents come back unchanged."""
    fam = FAMILIES[family_name]
    if fam.packing == 1:
        return latents
    batch, _, channels = latents.shape
    h = 2 * (int(height) // (fam.vae_scale_factor * 2))
    w = 2 * (int(width) // (fam.vae_scale_factor * 2))
    latents = latents.view(batch, h // 2, w // 2, channels // 4, 2, 2)
    latents = latents.permute(0, 3, 1, 4, 2, 5)
    return latents.reshape(batch, channels // 4, h, w)
