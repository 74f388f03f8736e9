"""Build a tiny, randomly initialised Stable Diffusion pipeline for offline tests and the default config.

No small trained text-to-image model ships in a package registry, so tests exercise the real diffusers
code path (save_pretrained -> from_pretrained) with random weights. The picture is noise; the shapes,
tokenizer, scheduler and loading are the real ones.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

# Sizes follow ../shared/MODELS.md. The VAE needs four blocks so it downsamples 8x like real SD;
# with two blocks the UNet attends over 4x larger latents and 512x512 becomes minutes, not seconds.
UNET_BLOCKS = (32, 64)
VAE_BLOCKS = (16, 32, 32, 32)
TEXT_HIDDEN = 32
VOCAB_SIZE = 49408
BOS_ID, EOS_ID = 49406, 49407
MAX_TOKENS = 77
# The open_clip BPE file carries more merges than CLIP uses; CLIP keeps exactly this many.
_N_MERGES = 49152 - 256 - 2


def build_clip_tokenizer(clip_vocab_path: str | Path):
    """The real CLIP BPE tokenizer, rebuilt from open_clip's merges file (no hub download)."""
    from transformers import CLIPTokenizer

    merges = _read_merges(clip_vocab_path)
    vocab = _clip_vocab(merges)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_TOKENS)
    if len(tokenizer) != VOCAB_SIZE or tokenizer.bos_token_id != BOS_ID or tokenizer.eos_token_id != EOS_ID:
        raise RuntimeError(
            f"CLIP tokenizer came out wrong: size {len(tokenizer)}, bos {tokenizer.bos_token_id}, eos {tokenizer.eos_token_id}"
        )
    return tokenizer


def _read_merges(path: str | Path) -> list[tuple[str, str]]:
    lines = gzip.decompress(Path(path).read_bytes()).decode("utf-8").split("\n")
    # Line 0 is a "#version" header.
    return [tuple(line.split()) for line in lines[1 : _N_MERGES + 1]]


def _bytes_to_unicode() -> list[str]:
    """CLIP/GPT-2 byte alphabet: printable stand-ins for all 256 bytes, in CLIP's order."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def _clip_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    # Same order as open_clip's SimpleTokenizer, so ids match real CLIP checkpoints.
    alphabet = _bytes_to_unicode()
    tokens = alphabet + [t + "</w>" for t in alphabet] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}


def _text_encoder(seed: int):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=TEXT_HIDDEN,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=EOS_ID,
    )
    torch.manual_seed(seed)
    return CLIPTextModel(config)


def _unet(seed: int, in_channels: int):
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=32,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=UNET_BLOCKS,
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_HIDDEN,
        attention_head_dim=8,
        norm_num_groups=32,
    )


def _vae(seed: int):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=VAE_BLOCKS,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(VAE_BLOCKS),
        up_block_types=("UpDecoderBlock2D",) * len(VAE_BLOCKS),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=16,
        sample_size=256,
    )


def _scheduler():
    from diffusers import DDIMScheduler

    # SD 1.x schedule; steps_offset=1 avoids diffusers' deprecation path on load.
    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def build_tiny_pipeline(
    dest: str | Path,
    clip_vocab_path: str | Path,
    seed: int = 0,
    variant_seed: int | None = None,
    unet_in_channels: int = 4,
) -> Path:
    """Save a tiny SD pipeline to dest with save_pretrained; deterministic for the same arguments.

    seed initialises the text encoder and VAE; variant_seed (default: seed) initialises the UNet alone,
    so several models can share a "base" and differ like fine-tunes do. unet_in_channels=9 gives the
    layout of a real inpainting UNet (latents + mask + masked-image latents).
    """
    from diffusers import StableDiffusionPipeline

    dest = Path(dest)
    unet_seed = seed if variant_seed is None else variant_seed
    pipe = StableDiffusionPipeline(
        vae=_vae(seed),
        text_encoder=_text_encoder(seed + 1),
        tokenizer=build_clip_tokenizer(clip_vocab_path),
        unet=_unet(unet_seed + 2, unet_in_channels),
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    # Build into a sibling folder and swap, so a crash never leaves a half-saved model at dest.
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    # safetensors writes its files 0600; the service reads them as another user in containers (UID 1000).
    for path in tmp.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest
