"""Tiny random control, edit and segmentation models, built offline for tests and the default config.

Like services/generate/tiny_pipeline.py (the tiny SD 1.x pipeline these attach to), nothing comes from a hub:
every model is randomly initialised in code, saved with `save_pretrained` and loaded back by the service through
the same `from_pretrained` (or `load_ip_adapter`) path real checkpoints use. The pictures are noise; the code
paths, shapes and file layouts are the real ones.

- tiny-sd-controlnet: StableDiffusionControlNetPipeline = tiny-sd's VAE, text encoder and UNet + a ControlNetModel
  that matches that UNet. A freshly initialised ControlNet has zero convolutions (so it changes nothing); here
  they get small random weights, so the control image visibly steers the output, as a trained one does.
- tiny-sdxl-controlnet: StableDiffusionXLControlNetPipeline = the tiny SDXL pipeline (scripts/tiny_families.py,
  built first) + a ControlNetModel made from its UNet the same way.
- tiny-sd-instruct: StableDiffusionInstructPix2PixPipeline (UNet with 8 input channels: latents + image latents).
- tiny-ip-adapter: an IP-Adapter for tiny-sd in the layout of the published ones (`ip-adapter.safetensors` with
  `image_proj.*` and `ip_adapter.*` keys, and `image_encoder/`, a CLIPVisionModelWithProjection).
- tiny-clipseg: CLIPSegForImageSegmentation + CLIPSegProcessor (the real CLIP BPE tokenizer, rebuilt offline).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from services.generate import tiny_pipeline as tiny

# ControlNet's conditioning embedding downsamples 8x (three stride-2 convolutions), like the 8x VAE.
CONTROL_EMBEDDING = (16, 32, 32, 32)
IMAGE_ENCODER_SIZE = 32  # the tiny CLIP vision encoder's input side
CLIPSEG_SIZE = 64  # the tiny CLIPSeg's input side (real CLIPSeg: 352)
# Std of the random weights given to ControlNet's zero convolutions: large enough that the control image visibly
# steers a 2-step tiny generation.
CONTROL_WEIGHT_STD = 0.5


def _saved(dest: Path, save: Callable[[Path], None]) -> Path:
    """Build into a sibling folder and swap, so a crash never leaves a half-saved model at dest."""
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save(tmp)
    # safetensors writes its files 0600; the service reads them as another user in containers (UID 1000).
    for path in tmp.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def _controlnet(unet, seed: int):
    import torch
    from diffusers import ControlNetModel

    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=CONTROL_EMBEDDING)
    generator = torch.Generator().manual_seed(seed)
    embedding = controlnet.controlnet_cond_embedding
    zero_convs = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block, embedding.conv_out]
    with torch.no_grad():
        # He-initialised, bias-free convolutions in the conditioning embedding: with the default init the bias
        # dominates and every control image embeds to nearly the same tensor.
        for conv in [embedding.conv_in, *embedding.blocks]:
            fan_in = conv.weight[0].numel()
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
            conv.bias.zero_()
        for conv in zero_convs:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * CONTROL_WEIGHT_STD)
            conv.bias.zero_()
    return controlnet


def build_controlnet_pipeline(dest: str | Path, clip_vocab_path: str | Path, seed: int = 0,
                              control_seed: int = 10) -> Path:
    """tiny-sd (same seeds, same weights) with a ControlNet that matches its UNet."""
    from diffusers import StableDiffusionControlNetPipeline

    unet = tiny._unet(seed + 2, 4)
    pipe = StableDiffusionControlNetPipeline(
        vae=tiny._vae(seed), text_encoder=tiny._text_encoder(seed + 1),
        tokenizer=tiny.build_clip_tokenizer(clip_vocab_path), unet=unet, controlnet=_controlnet(unet, control_seed),
        scheduler=tiny._scheduler(), safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return _saved(dest, lambda tmp: pipe.save_pretrained(tmp, safe_serialization=True))


def build_sdxl_controlnet_pipeline(dest: str | Path, base: str | Path | None = None, control_seed: int = 14) -> Path:
    """The tiny SDXL pipeline (`base`, default: the tiny-sdxl folder next to dest, built by prepare_models first)
    with a ControlNet that matches its UNet (text_time added conditioning included)."""
    from diffusers import StableDiffusionXLControlNetPipeline, StableDiffusionXLPipeline

    dest = Path(dest)
    sdxl = StableDiffusionXLPipeline.from_pretrained(Path(base) if base else dest.parent / "tiny-sdxl")
    components = {k: v for k, v in sdxl.components.items() if k not in ("image_encoder", "feature_extractor")}
    pipe = StableDiffusionXLControlNetPipeline(**components, controlnet=_controlnet(sdxl.unet, control_seed))
    return _saved(dest, lambda tmp: pipe.save_pretrained(tmp, safe_serialization=True))


def build_instruct_pipeline(dest: str | Path, clip_vocab_path: str | Path, seed: int = 0,
                            unet_seed: int = 11) -> Path:
    """InstructPix2Pix: the UNet reads the noisy latents and the source image's latents (4 + 4 channels)."""
    from diffusers import StableDiffusionInstructPix2PixPipeline

    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=tiny._vae(seed), text_encoder=tiny._text_encoder(seed + 1),
        tokenizer=tiny.build_clip_tokenizer(clip_vocab_path), unet=tiny._unet(unet_seed, 8),
        scheduler=tiny._scheduler(), safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return _saved(dest, lambda tmp: pipe.save_pretrained(tmp, safe_serialization=True))


def _ip_adapter_state(seed: int) -> dict:
    """IP-Adapter weights for tiny-sd's UNet, keyed as the published ip-adapter.safetensors files are: the image
    projection (CLIP image embedding -> 4 extra context tokens) and to_k_ip/to_v_ip per cross-attention layer,
    numbered 1, 3, 5, ... over the UNet's attention processors in order."""
    import torch

    unet = tiny._unet(seed, 4)  # the shapes of tiny-sd's UNet (its weights do not matter here)
    cross = unet.config.cross_attention_dim
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator) * 0.05

    state = {"image_proj.proj.weight": rand(4 * cross, IMAGE_ENCODER_SIZE), "image_proj.proj.bias": rand(4 * cross),
             "image_proj.norm.weight": torch.ones(cross), "image_proj.norm.bias": torch.zeros(cross)}
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = unet.config.block_out_channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(unet.config.block_out_channels))[int(name[len("up_blocks.")])]
        else:
            hidden = unet.config.block_out_channels[int(name[len("down_blocks.")])]
        state[f"ip_adapter.{key_id}.to_k_ip.weight"] = rand(hidden, cross)
        state[f"ip_adapter.{key_id}.to_v_ip.weight"] = rand(hidden, cross)
        key_id += 2
    return state


def build_ip_adapter(dest: str | Path, seed: int = 12) -> Path:
    """`ip-adapter.safetensors` + `image_encoder/` (a tiny CLIPVisionModelWithProjection, projection 32)."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=IMAGE_ENCODER_SIZE,
        patch_size=8, projection_dim=IMAGE_ENCODER_SIZE))
    state = {k: v.contiguous() for k, v in _ip_adapter_state(seed).items()}

    def save(tmp: Path) -> None:
        save_file(state, str(tmp / "ip-adapter.safetensors"))
        encoder.save_pretrained(tmp / "image_encoder", safe_serialization=True)

    return _saved(dest, save)


def build_clipseg(dest: str | Path, clip_vocab_path: str | Path, seed: int = 13) -> Path:
    """CLIPSeg (text-prompted segmentation) with CLIP's real tokenizer and a ViT image processor at 64x64."""
    import torch
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, ViTImageProcessor

    text = {"vocab_size": tiny.VOCAB_SIZE, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
            "num_attention_heads": 4, "max_position_embeddings": tiny.MAX_TOKENS, "bos_token_id": tiny.BOS_ID,
            "eos_token_id": tiny.EOS_ID, "pad_token_id": tiny.EOS_ID}
    vision = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4,
              "image_size": CLIPSEG_SIZE, "patch_size": 8}
    config = CLIPSegConfig(text_config=text, vision_config=vision, projection_dim=32, extract_layers=[0, 1],
                           reduce_dim=16, decoder_num_attention_heads=4, decoder_intermediate_size=32)
    torch.manual_seed(seed)
    model = CLIPSegForImageSegmentation(config)
    processor = CLIPSegProcessor(
        image_processor=ViTImageProcessor(size={"height": CLIPSEG_SIZE, "width": CLIPSEG_SIZE},
                                          image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]),
        tokenizer=tiny.build_clip_tokenizer(clip_vocab_path))

    def save(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)

    return _saved(dest, save)


# name -> (builder, whether it takes the CLIP vocabulary). prepare_models builds each, stamps it, reloads it.
# Models built from another prepared model: its folder (prepare_models puts that model's stamp in the recipe).
BASE_MODELS = {"tiny-sdxl-controlnet": "tiny-sdxl", "tiny-ip-adapter": "tiny-sd"}
BUILDERS: dict[str, tuple[Callable[..., Path], bool]] = {
    "tiny-sd-controlnet": (build_controlnet_pipeline, True),
    "tiny-sdxl-controlnet": (build_sdxl_controlnet_pipeline, False),
    "tiny-sd-instruct": (build_instruct_pipeline, True),
    "tiny-ip-adapter": (build_ip_adapter, False),
    "tiny-clipseg": (build_clipseg, True),
}


def build(name: str, dest: str | Path, clip_vocab_path: str | Path) -> Path:
    builder, takes_vocab = BUILDERS[name]
    return builder(dest, clip_vocab_path) if takes_vocab else builder(dest)


def check_reload(name: str, folder: str | Path) -> None:
    """Load what was saved through the service's own path; raises when it does not load."""
    import diffusers

    folder = Path(folder)
    if name == "tiny-sd-controlnet":
        pipe = diffusers.StableDiffusionControlNetPipeline.from_pretrained(folder)
        assert pipe.controlnet.config.block_out_channels == list(tiny.UNET_BLOCKS)
    elif name == "tiny-sdxl-controlnet":
        pipe = diffusers.StableDiffusionXLControlNetPipeline.from_pretrained(folder)
        assert pipe.controlnet.config.addition_embed_type == "text_time"
    elif name == "tiny-sd-instruct":
        pipe = diffusers.StableDiffusionInstructPix2PixPipeline.from_pretrained(folder)
        assert pipe.unet.config.in_channels == 8
    elif name == "tiny-ip-adapter":
        pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder.parent / "tiny-sd")
        pipe.load_ip_adapter(str(folder), subfolder="", weight_name="ip-adapter.safetensors")
        assert pipe.image_encoder is not None
    elif name == "tiny-clipseg":
        from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

        CLIPSegForImageSegmentation.from_pretrained(folder)
        processor = CLIPSegProcessor.from_pretrained(folder)
        assert processor.tokenizer.eos_token_id == tiny.EOS_ID
