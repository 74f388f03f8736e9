"""Tiny, randomly initialised SDXL, SD3 and FLUX pipelines, built offline for tests and the default registry.

Each family keeps the real architecture's *shape* where it matters to the code around it, and shrinks
everything else so that building all of them takes seconds and a 64x64 image well under a second on CPU:

- SDXL: two CLIP text encoders (the second with a projection), a UNet with `text_time` added conditioning,
  4-channel latents, an 8x VAE, EulerDiscreteScheduler (StableDiffusionXLPipeline).
- SD3: an MMDiT (SD3Transformer2DModel, patch 2, qk RMS norm like SD3.5) over 16-channel latents, two CLIP
  encoders with projections plus a T5 encoder, FlowMatchEulerDiscreteScheduler (StableDiffusion3Pipeline).
- FLUX: FluxTransformer2DModel over 16-channel latents packed 2x2 into 64-channel tokens, CLIP plus T5,
  FlowMatchEulerDiscreteScheduler (dynamic shifting for dev, none for schnell), guidance embedding for dev
  only (FluxPipeline).

The CLIP tokenizer is the real BPE one (services/generate/tiny_pipeline.py builds it from open_clip's merges).
The T5 tokenizer is a Unigram model trained here, in code, on a small fixed corpus (words of the CLIP
vocabulary plus a few prompt-like sentences), wrapped as transformers' T5Tokenizer: nothing comes from a hub.
Everything is seeded, so the same arguments and library versions give the same files.

Usage (prepare_models does this for every FAMILY_MODELS entry):
    build_family_pipeline(dest, clip_vocab_path, family="flux", seed=30, guidance_embeds=True)
"""

from __future__ import annotations

import collections
import functools
import gzip
import math
import shutil
import string
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# name -> builder keyword arguments (prepare_models builds each into <models dir>/<name>).
# The two FLUX variants share text encoders and VAE (same seed) and differ like the real ones: dev embeds the
# guidance scale and shifts its schedule with the image size; schnell does neither.
FAMILY_MODELS: dict[str, dict] = {
    "tiny-sdxl": {"family": "sdxl", "seed": 10},
    "tiny-sd3": {"family": "sd3", "seed": 20},
    "tiny-flux-dev": {"family": "flux", "seed": 30, "guidance_embeds": True},
    "tiny-flux-schnell": {"family": "flux", "seed": 30, "variant_seed": 31, "guidance_embeds": False},
}

CLIP_HIDDEN = 32
CLIP_PROJECTION = 32
VAE_BLOCKS = (16, 32, 32, 32)  # four blocks: an 8x VAE like the real ones (see ../shared/MODELS.md)
T5_VOCAB = 600
T5_SPECIALS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 as in real T5
# The published VAE latent statistics of each family (scaling_factor, shift_factor).
VAE_LATENT_STATS = {"sdxl": (0.13025, None), "sd3": (1.5305, 0.0609), "flux": (0.3611, 0.1159)}

_SENTENCES = (
    "a photo of an astronaut riding a horse on the moon",
    "a cyberpunk city street at night with neon lights and rain",
    "a watercolor painting of a lighthouse by the sea at sunset",
    "portrait of a woman with red hair, studio lighting, 85mm",
    "a bowl of fruit on a wooden table, still life, oil painting",
    "an isometric render of a tiny house in a forest, high detail",
    "product shot of a white sneaker on a grey background",
    "a golden retriever puppy playing in the snow",
    "minimalist logo of a fox, flat vector, orange and black",
    "a mountain landscape with a lake and pine trees in the morning fog",
)


# --- tokenizers -------------------------------------------------------------------------------------


def _clip_tokenizer(clip_vocab_path: Path):
    from services.generate.tiny_pipeline import build_clip_tokenizer

    return build_clip_tokenizer(clip_vocab_path)


def _corpus(clip_vocab_path: Path) -> list[str]:
    """A fixed corpus: the prompt-like sentences, then CLIP's whole-word merges in their (frequency) order."""
    lines = gzip.decompress(Path(clip_vocab_path).read_bytes()).decode("utf-8").split("\n")[1:6001]
    words = [a + b[: -len("</w>")] for a, b in (line.split() for line in lines if line) if b.endswith("</w>")]
    words = [w for w in words if w.isascii() and w.isalpha()]
    chunks = [" ".join(words[i : i + 12]) for i in range(0, len(words), 12)]
    return [*_SENTENCES * 20, *chunks]


def _viterbi(text: str, scores: dict[str, float], longest: int) -> list[str]:
    """The highest-scoring split of text into known pieces (what a Unigram tokenizer does at run time)."""
    best = [0.0] + [-math.inf] * len(text)
    back = [0] * (len(text) + 1)
    for end in range(1, len(text) + 1):
        for start in range(max(0, end - longest), end):
            score = scores.get(text[start:end])
            if score is not None and best[start] + score > best[end]:
                best[end], back[end] = best[start] + score, start
    pieces, end = [], len(text)
    while end > 0:
        pieces.append(text[back[end] : end])
        end = back[end]
    return pieces[::-1]


@functools.lru_cache(maxsize=4)
def _t5_vocab(clip_vocab_path: str) -> tuple[tuple[str, float], ...]:
    """Train a Unigram (SentencePiece-style) vocabulary on the corpus: pieces and log-probabilities, specials first.

    Plain Python, so that it is deterministic (tokenizers' UnigramTrainer is not, run to run): seed pieces are
    the most frequent substrings of the words ("▁" marks a word start, as SentencePiece does), then a few EM
    rounds segment every word with the current scores (Viterbi) and re-estimate the scores from the counts,
    keeping the pieces that are used most. Every printable ASCII character stays a piece, so nothing is <unk>.
    """
    words = collections.Counter(w for line in _corpus(Path(clip_vocab_path)) for w in line.split())
    longest = 10
    counts: collections.Counter[str] = collections.Counter()
    for word, n in words.items():
        text = "▁" + word
        for i in range(len(text)):
            for j in range(i + 2, min(len(text), i + longest) + 1):
                counts[text[i:j]] += n
    chars = ["▁", *sorted(set(string.printable) - set(string.whitespace))]
    budget = T5_VOCAB - len(T5_SPECIALS) - len(chars)
    pieces = sorted(counts, key=lambda p: (-counts[p] * len(p), p))[: 3 * budget]
    for _ in range(4):
        freq = {p: counts.get(p, 0) + 1 for p in (*chars, *pieces)}
        total = sum(freq.values())
        scores = {p: math.log(f / total) for p, f in freq.items()}
        used: collections.Counter[str] = collections.Counter()
        for word, n in words.items():
            for piece in _viterbi("▁" + word, scores, longest):
                used[piece] += n
        multi = sorted((p for p in pieces if used[p]), key=lambda p: (-used[p], p))
        pieces = multi[: max(budget, len(multi) * 3 // 4)]
        counts = used
    pieces = pieces[:budget]
    freq = {p: counts.get(p, 0) + 1 for p in (*chars, *pieces)}
    total = sum(freq.values())
    scored = sorted(((p, round(math.log(f / total), 6)) for p, f in freq.items()), key=lambda x: (-x[1], x[0]))
    return tuple((s, 0.0) for s in T5_SPECIALS) + tuple(scored)


def build_t5_tokenizer(clip_vocab_path: str | Path, max_length: int = 512):
    """transformers' T5Tokenizer over a Unigram vocabulary trained in code (pad 0, eos 1, unk 2, no sentinels)."""
    from transformers import T5Tokenizer

    vocab = list(_t5_vocab(str(clip_vocab_path)))
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=max_length)
    if (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) != (0, 1, 2):
        raise RuntimeError("T5 tokenizer came out with the wrong special token ids")
    return tokenizer


# --- modules --------------------------------------------------------------------------------------


def _seeded(seed: int):
    import torch

    torch.manual_seed(seed)


def _clip_config(**extra):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=CLIP_HIDDEN,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
        hidden_act="quick_gelu",
        projection_dim=CLIP_PROJECTION,
        **extra,
    )


def _clip(seed: int, projection: bool):
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    _seeded(seed)
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return cls(_clip_config())


def _t5(seed: int, d_model: int, vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    _seeded(seed)
    config = T5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        feed_forward_proj="gated-gelu",  # T5 v1.1, as FLUX and SD3 use
        dropout_rate=0.0,
        is_encoder_decoder=False,
        use_cache=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config)


def _vae(seed: int, family: str):
    from diffusers import AutoencoderKL

    scaling, shift = VAE_LATENT_STATS[family]
    latent_channels = 4 if family == "sdxl" else 16
    _seeded(seed)
    extra = {} if family == "sdxl" else {"use_quant_conv": False, "use_post_quant_conv": False}
    return AutoencoderKL(
        block_out_channels=VAE_BLOCKS,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(VAE_BLOCKS),
        up_block_types=("UpDecoderBlock2D",) * len(VAE_BLOCKS),
        latent_channels=latent_channels,
        layers_per_block=1,
        norm_num_groups=16,
        sample_size=256,
        scaling_factor=scaling,
        shift_factor=shift,
        force_upcast=False,
        **extra,
    )


def _sdxl(seed: int, variant_seed: int, clip_vocab_path: Path):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    _seeded(variant_seed + 3)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        transformer_layers_per_block=(1, 1),
        # Both encoders' hidden states side by side, as SDXL does (768 + 1280 in the real one).
        cross_attention_dim=2 * CLIP_HIDDEN,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        # six size/crop ids of 8 features each, plus the second encoder's pooled projection.
        projection_class_embeddings_input_dim=6 * 8 + CLIP_PROJECTION,
        norm_num_groups=32,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
        prediction_type="epsilon",
    )
    tokenizer = _clip_tokenizer(clip_vocab_path)
    return StableDiffusionXLPipeline(
        vae=_vae(seed, "sdxl"),
        text_encoder=_clip(seed + 1, projection=False),
        text_encoder_2=_clip(seed + 2, projection=True),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )


def _sd3(seed: int, variant_seed: int, clip_vocab_path: Path):
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    t5_tokenizer = build_t5_tokenizer(clip_vocab_path, max_length=256)
    # SD3 pads the two CLIP hidden states side by side up to T5's width: joint_attention_dim = T5 d_model.
    joint = 2 * CLIP_HIDDEN
    _seeded(variant_seed + 4)
    transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=joint,
        caption_projection_dim=32,  # = heads * head dim, as in the real models
        pooled_projection_dim=2 * CLIP_PROJECTION,
        pos_embed_max_size=128,  # 128 patches of 2 latents of 8 pixels: up to 2048 pixels a side
        qk_norm="rms_norm",  # SD3.5
    )
    tokenizer = _clip_tokenizer(clip_vocab_path)
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
        vae=_vae(seed, "sd3"),
        text_encoder=_clip(seed + 1, projection=True),
        tokenizer=tokenizer,
        text_encoder_2=_clip(seed + 2, projection=True),
        tokenizer_2=tokenizer,
        text_encoder_3=_t5(seed + 3, joint, len(t5_tokenizer)),
        tokenizer_3=t5_tokenizer,
    )


def _flux(seed: int, variant_seed: int, clip_vocab_path: Path, guidance_embeds: bool):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    t5_tokenizer = build_t5_tokenizer(clip_vocab_path, max_length=512)
    t5_width = 32
    _seeded(variant_seed + 4)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,  # 16 latent channels packed 2x2
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=t5_width,
        pooled_projection_dim=CLIP_HIDDEN,  # CLIP's pooled output
        guidance_embeds=guidance_embeds,
        axes_dims_rope=(4, 6, 6),  # sums to the head dim
    )
    if guidance_embeds:  # FLUX.1-dev's schedule: shifted by the image's token count
        scheduler = FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
            base_image_seq_len=256, max_image_seq_len=4096,
        )
    else:  # FLUX.1-schnell's
        scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)
    return FluxPipeline(
        scheduler=scheduler,
        vae=_vae(seed, "flux"),
        text_encoder=_clip(seed + 1, projection=False),
        tokenizer=_clip_tokenizer(clip_vocab_path),
        text_encoder_2=_t5(seed + 3, t5_width, len(t5_tokenizer)),
        tokenizer_2=t5_tokenizer,
        transformer=transformer,
    )


def build_family_pipeline(
    dest: str | Path,
    clip_vocab_path: str | Path,
    family: str,
    seed: int = 0,
    variant_seed: int | None = None,
    guidance_embeds: bool = False,
) -> Path:
    """Save a tiny pipeline of `family` ("sdxl", "sd3" or "flux") to dest; deterministic for the same arguments.

    seed initialises the text encoders and VAE; variant_seed (default: seed) the denoiser alone.
    """
    dest, clip_vocab_path = Path(dest), Path(clip_vocab_path)
    variant = seed if variant_seed is None else variant_seed
    if family == "sdxl":
        pipe = _sdxl(seed, variant, clip_vocab_path)
    elif family == "sd3":
        pipe = _sd3(seed, variant, clip_vocab_path)
    elif family == "flux":
        pipe = _flux(seed, variant, clip_vocab_path, guidance_embeds)
    else:
        raise ValueError(f"unknown family {family!r}")
    # Build into a sibling folder and swap, so a crash never leaves a half-saved model at dest.
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    for path in tmp.rglob("*"):  # safetensors writes 0600; containers read as another user
        path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


# The pipeline class each family reloads as (prepare_models checks the saved folder loads through it).
PIPELINE_CLASS = {"sdxl": "StableDiffusionXLPipeline", "sd3": "StableDiffusion3Pipeline", "flux": "FluxPipeline"}
