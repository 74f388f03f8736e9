"""GPU generation benchmark: full-size, random-weight SD 1.5, SDXL and FLUX.1 denoisers on CUDA.

    python -m bench.gpu_generate              # on a CUDA machine: one command, under 8 minutes (--budget-s)
    python -m bench.gpu_generate --dry-run    # anywhere (CPU): the checks CI runs

No weights are needed: each architecture is written here from its public model card / config.json (diffusers'
UNet2DConditionModel, FluxTransformer2DModel, AutoencoderKL and transformers' text encoders) and initialised at
random. The picture would be noise; speed does not depend on the weights' values.

What the GPU run measures, per family, with `torch.compile` off and on, at batch 1, 4 and 8:
- one denoising step of the UNet / transformer (classifier-free guidance doubles the UNets' batch; FLUX.1-dev uses
  its guidance embedding instead), fp16 for SD 1.5 and SDXL, bf16 for FLUX, attention through PyTorch SDPA
  (diffusers' AttnProcessor2_0 / FluxAttnProcessor2_0, checked and reported);
- one VAE decode of one image (eager; decoding is per image, as with diffusers' VAE slicing);
- images/s = batch / (steps x step time + batch x decode time), at each family's usual step count (text encoders
  run once per prompt and are left out: about 1% of a run);
- the fraction of the GPU's peak dense fp16/bf16 tensor FLOPs one step reaches: FLOPs per step counted with
  torch.utils.flop_counter on the meta device (no memory, no device time), divided by the step time and the peak
  of the GPU (a table by device name; --peak-tflops for another).
Compiling costs tens of seconds per model and batch size; past --budget-s the remaining runs are reported as
skipped, never silently dropped.

--dry-run builds every full-size config on the meta device (no memory), checks the parameter counts against the
model cards (within --tolerance), counts the FLOPs of one full-size step, and runs one real step (and one VAE
decode) of a scaled-down config of each family through the same code as the GPU run, on CPU in fp32.
`make test` runs it (tests/generate/test_gpu_bench_dry_run.py); `python -m bench` runs the GPU benchmark only
where CUDA is present.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "gpu_generate.json"

# ---- architectures (public configs) -------------------------------------------------------------------------------

# runwayml/stable-diffusion-v1-5 unet/config.json
SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280),
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                   "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                 cross_attention_dim=768, attention_head_dim=8)
# stabilityai/stable-diffusion-xl-base-1.0 unet/config.json
SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816, use_linear_projection=True)
# black-forest-labs/FLUX.1-dev transformer/config.json
FLUX_TRANSFORMER = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                        num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                        guidance_embeds=True, axes_dims_rope=(16, 56, 56))
# The SD 1.x / SDXL VAE (vae/config.json), and FLUX's 16-channel one.
SD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
              block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
              up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32)
FLUX_VAE = dict(SD_VAE, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False)
# Text encoders (counted on meta only): CLIP ViT-L/14, OpenCLIP ViT-bigG/14, T5 v1.1 XXL encoder.
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
CLIP_BIGG = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                 num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu", projection_dim=1280)
T5_XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
              feed_forward_proj="gated-gelu", relative_attention_num_buckets=32)


@dataclass(frozen=True)
class Part:
    """A model part whose parameter count is checked against its model card."""

    name: str
    builder: str  # "unet", "flux", "vae", "clip", "clip_projection", "t5"
    config: dict
    card_params: float
    card: str


@dataclass(frozen=True)
class Family:
    key: str
    title: str
    kind: str  # "unet" or "flux"
    denoiser: dict
    vae: dict
    image_size: int
    text_tokens: int
    cfg: bool  # classifier-free guidance doubles the batch
    steps: int
    dtype: str
    card_params: float
    card: str
    text_encoders: tuple[Part, ...] = ()
    vae_scale: int = 8


FAMILIES = {
    "sd15": Family("sd15", "Stable Diffusion 1.5 (UNet, 512x512)", "unet", SD15_UNET, SD_VAE, 512, 77, True, 30,
                   "float16", 0.86e9, "SD v1-5 model card: 860M UNet",
                   (Part("text encoder (CLIP ViT-L/14)", "clip", CLIP_L, 123e6, "SD v1-5 card: 123M text encoder"),)),
    "sdxl": Family("sdxl", "SDXL 1.0 base (UNet, 1024x1024)", "unet", SDXL_UNET, SD_VAE, 1024, 77, True, 30,
                   "float16", 2.6e9, "SDXL report / card: 2.6B UNet",
                   (Part("text encoder (CLIP ViT-L/14)", "clip", dict(CLIP_L, hidden_act="quick_gelu"), 123e6,
                         "SDXL report: 123M + 694M text encoders"),
                    Part("text encoder 2 (OpenCLIP ViT-bigG/14)", "clip_projection", CLIP_BIGG, 694e6,
                         "SDXL report: 694M"))),
    "flux": Family("flux", "FLUX.1-dev (MMDiT transformer, 1024x1024)", "flux", FLUX_TRANSFORMER, FLUX_VAE, 1024, 512,
                   False, 28, "bfloat16", 12e9, "FLUX.1-dev card: 12 billion parameter transformer",
                   (Part("text encoder 2 (T5 v1.1 XXL encoder)", "t5", T5_XXL, 4.76e9, "T5 v1.1 XXL: 4.76B encoder"),)),
}
VAE_PARTS = (Part("VAE (SD 1.x / SDXL)", "vae", SD_VAE, 83.65e6, "SD VAE: 83.65M"),
             Part("VAE (FLUX, 16 channels)", "vae", FLUX_VAE, 83.8e6, "FLUX ae: 83.8M"))

# Scaled-down configs of the same architectures for --dry-run's one real step on CPU.
SMALL = {
    "sd15": Family("sd15", "SD 1.5 scaled down", "unet",
                   dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
                        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                        attention_head_dim=8),
                   dict(SD_VAE, block_out_channels=(32, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1),
                   32, 8, True, 1, "float32", 0, "", vae_scale=2),
    "sdxl": Family("sdxl", "SDXL scaled down", "unet",
                   dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
                        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), transformer_layers_per_block=(1, 2),
                        attention_head_dim=(2, 4), cross_attention_dim=32, addition_embed_type="text_time",
                        addition_time_embed_dim=8, projection_class_embeddings_input_dim=32 + 6 * 8,
                        use_linear_projection=True),
                   dict(SD_VAE, block_out_channels=(32, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1),
                   32, 8, True, 1, "float32", 0, "", vae_scale=2),
    "flux": Family("flux", "FLUX scaled down", "flux",
                   dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
                        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
                        axes_dims_rope=(4, 6, 6)),
                   dict(FLUX_VAE, latent_channels=4, block_out_channels=(32, 32),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        layers_per_block=1),
                   32, 8, False, 1, "float32", 0, "", vae_scale=2),
}

# Dense (no sparsity) fp16/bf16 tensor-core peak, in FLOP/s, by device name (the first substring that matches).
PEAK_FLOPS = (
    ("B200", 2250e12), ("H200", 989.4e12), ("GH200", 989.4e12), ("H100 PCIe", 756.5e12), ("H100 NVL", 835.5e12),
    ("H100", 989.4e12), ("H800", 989.4e12), ("A100", 312e12), ("A800", 312e12), ("L40S", 362.05e12),
    ("L40", 181.05e12), ("L4", 121e12), ("A10G", 70e12), ("A10", 125e12), ("RTX 4090", 165.2e12),
    ("RTX 6000 Ada", 364.2e12), ("V100", 125e12), ("T4", 65e12),
)


def peak_flops(device_name: str) -> float | None:
    for needle, flops in PEAK_FLOPS:
        if needle.lower() in device_name.lower():
            return flops
    return None


# ---- building ------------------------------------------------------------------------------------------------------

def _module(builder: str, config: dict):
    if builder == "unet":
        from diffusers import UNet2DConditionModel

        return UNet2DConditionModel(**config)
    if builder == "flux":
        from diffusers import FluxTransformer2DModel

        return FluxTransformer2DModel(**config)
    if builder == "vae":
        from diffusers import AutoencoderKL

        return AutoencoderKL(**config)
    if builder in ("clip", "clip_projection"):
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

        cls = CLIPTextModelWithProjection if builder == "clip_projection" else CLIPTextModel
        return cls(CLIPTextConfig(**config))
    if builder == "t5":
        from transformers import T5Config, T5EncoderModel

        return T5EncoderModel(T5Config(**config))
    raise ValueError(builder)


def on_meta(builder: str, config: dict):
    """The module with every parameter on the meta device: shapes only, no memory."""
    import torch

    with torch.device("meta"):
        return _module(builder, config)


def materialise(module, device: str, dtype) -> Any:
    """A meta module allocated on `device` in `dtype` and filled with random weights (fan-in scaled normal
    matrices, unit norm scales, zero biases), without ever holding an fp32 copy of a big model."""
    import torch

    module = module.to(dtype=dtype).to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.ndim >= 2:
                fan_in = math.prod(param.shape[1:])
                param.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=generator)
            elif name.endswith("weight"):
                param.fill_(1.0)
            else:
                param.zero_()
        for _, buffer in module.named_buffers():
            buffer.zero_()
    return module.eval().requires_grad_(False)


def parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def denoiser_builder(family: Family) -> str:
    return "flux" if family.kind == "flux" else "unet"


# ---- one step ------------------------------------------------------------------------------------------------------

def step_inputs(family: Family, batch: int, device: Any, dtype: Any) -> dict:
    """The denoiser's inputs for one step of `batch` images (doubled under classifier-free guidance)."""
    import torch

    rows = batch * (2 if family.cfg else 1)
    latent = family.image_size // family.vae_scale
    c = family.denoiser
    generator = None if str(device) == "meta" else torch.Generator(device=device).manual_seed(0)

    def randn(*shape):
        if generator is None:
            return torch.empty(*shape, device=device, dtype=dtype)
        return torch.randn(*shape, device=device, dtype=dtype, generator=generator)

    if family.kind == "unet":
        args = dict(sample=randn(rows, c["in_channels"], latent, latent),
                    timestep=torch.full((rows,), 500, device=device, dtype=torch.long),
                    encoder_hidden_states=randn(rows, family.text_tokens, c["cross_attention_dim"]))
        if c.get("addition_embed_type") == "text_time":
            text_dim = c["projection_class_embeddings_input_dim"] - 6 * c["addition_time_embed_dim"]
            size = float(family.image_size)
            time_ids = torch.tensor([[size, size, 0.0, 0.0, size, size]], device=device, dtype=dtype).repeat(rows, 1)
            args["added_cond_kwargs"] = {"text_embeds": randn(rows, text_dim), "time_ids": time_ids}
        return args
    side = latent // 2  # FLUX packs 2x2 latent patches into one token
    img_ids = torch.zeros(side, side, 3, device=device, dtype=dtype)
    img_ids[..., 1] = torch.arange(side, device=device, dtype=dtype)[:, None]
    img_ids[..., 2] = torch.arange(side, device=device, dtype=dtype)[None, :]
    args = dict(hidden_states=randn(rows, side * side, c["in_channels"]),
                encoder_hidden_states=randn(rows, family.text_tokens, c["joint_attention_dim"]),
                pooled_projections=randn(rows, c["pooled_projection_dim"]),
                timestep=torch.full((rows,), 0.5, device=device, dtype=dtype),
                img_ids=img_ids.reshape(side * side, 3),
                txt_ids=torch.zeros(family.text_tokens, 3, device=device, dtype=dtype), return_dict=False)
    if c.get("guidance_embeds"):
        args["guidance"] = torch.full((rows,), 3.5, device=device, dtype=dtype)
    return args


def run_step(model, inputs: dict):
    out = model(**inputs)
    return out[0] if isinstance(out, tuple) else out.sample


def decode_inputs(family: Family, device: Any, dtype: Any):
    import torch

    latent = family.image_size // family.vae_scale
    return torch.randn(1, family.vae["latent_channels"], latent, latent, device=device, dtype=dtype,
                       generator=torch.Generator(device=device).manual_seed(1))


def step_flops(family: Family, batch: int) -> int:
    """FLOPs of one denoising step of `batch` images, counted on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = on_meta(denoiser_builder(family), family.denoiser)
    dtype = getattr(torch, family.dtype)
    model = model.to(dtype=dtype)
    inputs = step_inputs(family, batch, "meta", dtype)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        run_step(model, inputs)
    return counter.get_total_flops()


def attention_processors(model) -> list[str]:
    processors = getattr(model, "attn_processors", {}) or {}
    return sorted({type(p).__name__ for p in processors.values()})


# ---- dry run -------------------------------------------------------------------------------------------------------

@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    value: float | None = None


@dataclass
class Report:
    mode: str
    checks: list[Check] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def as_dict(self) -> dict:
        return {"mode": self.mode, "ok": self.ok, "checks": [vars(c) for c in self.checks], "rows": self.rows}


def _count_check(report: Report, part: Part, tolerance: float) -> None:
    count = parameters(on_meta(part.builder, part.config))
    error = abs(count - part.card_params) / part.card_params
    report.checks.append(Check(f"params: {part.name}", error <= tolerance,
                               f"{count / 1e9:.3f} B vs {part.card} ({error:.1%} off, tolerance {tolerance:.0%})",
                               count))


def dry_run(tolerance: float = 0.03, flops: bool = True) -> Report:
    import torch

    report = Report("dry-run")
    for family in FAMILIES.values():
        _count_check(report, Part(f"{family.key} denoiser", denoiser_builder(family), family.denoiser,
                                  family.card_params, family.card), tolerance)
        for part in family.text_encoders:
            _count_check(report, part, tolerance)
    for part in VAE_PARTS:
        _count_check(report, part, tolerance)
    if flops:
        for family in FAMILIES.values():
            counted = step_flops(family, 1)
            report.checks.append(Check(f"flops: {family.key} step, batch 1", counted > 0,
                                       f"{counted / 1e12:.2f} TFLOP per step of one image "
                                       f"({'with' if family.cfg else 'no'} CFG doubling)", counted))
    torch.manual_seed(0)
    for key, small in SMALL.items():
        model = materialise(on_meta(denoiser_builder(small), small.denoiser), "cpu", torch.float32)
        inputs = step_inputs(small, 2, "cpu", torch.float32)
        with torch.no_grad():
            out = run_step(model, inputs)
        expected = tuple((inputs["sample"] if small.kind == "unet" else inputs["hidden_states"]).shape)
        ok = tuple(out.shape) == expected and bool(torch.isfinite(out).all())
        report.checks.append(Check(f"step: {key} scaled down", ok,
                                   f"{parameters(model) / 1e6:.2f} M params, output {tuple(out.shape)} (expected "
                                   f"{expected}), finite {bool(torch.isfinite(out).all())}; SDPA processors "
                                   f"{attention_processors(model)}"))
        vae = materialise(on_meta("vae", small.vae), "cpu", torch.float32)
        with torch.no_grad():
            image = vae.decode(decode_inputs(small, "cpu", torch.float32)).sample
        ok = tuple(image.shape) == (1, 3, small.image_size, small.image_size) and bool(torch.isfinite(image).all())
        report.checks.append(Check(f"decode: {key} scaled down", ok, f"image {tuple(image.shape)}"))
    return report


# ---- GPU run -------------------------------------------------------------------------------------------------------

def _time_cuda(fn, iters: int) -> float:
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000 / iters


def gpu_run(families: list[str], batches: list[int], compile_modes: list[bool], budget_s: float,
            peak_override: float | None, iters: int) -> Report:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --dry-run on CPU")
    started = time.monotonic()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(0)
    peak = peak_override or peak_flops(name)
    report = Report("gpu")
    report.checks.append(Check("device", True, f"{name}, peak {peak / 1e12:.0f} TFLOP/s dense fp16/bf16"
                               if peak else f"{name}, peak unknown (pass --peak-tflops)"))
    print(report.checks[-1].detail, flush=True)
    for key in families:
        family = FAMILIES[key]
        dtype = getattr(torch, family.dtype)
        t0 = time.monotonic()
        model = materialise(on_meta(denoiser_builder(family), family.denoiser), "cuda", dtype)
        vae = materialise(on_meta("vae", family.vae), "cuda", dtype)
        build_s = time.monotonic() - t0
        processors = attention_processors(model)
        with torch.no_grad():
            latents = decode_inputs(family, "cuda", dtype)
            vae.decode(latents)
            decode_s = _time_cuda(lambda: vae.decode(latents), max(2, iters // 4))
        print(f"{family.title}: {parameters(model) / 1e9:.2f} B params, built in {build_s:.1f} s, attention "
              f"{processors}, VAE decode {decode_s * 1000:.1f} ms/image", flush=True)
        flops = {batch: step_flops(family, batch) for batch in batches}
        for compiled in compile_modes:
            runner = torch.compile(model, dynamic=False) if compiled else model
            for batch in batches:
                row = {"family": key, "title": family.title, "dtype": family.dtype, "compile": compiled,
                       "batch": batch, "steps": family.steps, "attention": processors,
                       "flops_per_step": flops[batch], "vae_decode_s": decode_s}
                if time.monotonic() - started > budget_s:
                    row["skipped"] = f"over the {budget_s:.0f} s budget"
                    report.rows.append(row)
                    print(f"  {'compiled' if compiled else 'eager':8} batch {batch}: skipped ({row['skipped']})")
                    continue
                try:
                    inputs = step_inputs(family, batch, "cuda", dtype)
                    with torch.no_grad():
                        t0 = time.monotonic()
                        run_step(runner, inputs)  # compiles here when compiled
                        torch.cuda.synchronize()
                        row["first_call_s"] = time.monotonic() - t0
                        run_step(runner, inputs)
                        step_s = _time_cuda(lambda: run_step(runner, inputs), iters)
                except torch.cuda.OutOfMemoryError as exc:
                    row["skipped"] = f"out of memory: {str(exc).splitlines()[0]}"
                    report.rows.append(row)
                    torch.cuda.empty_cache()
                    continue
                row["step_s"] = step_s
                row["images_per_s"] = batch / (family.steps * step_s + batch * decode_s)
                row["tflops_per_s"] = flops[batch] / step_s / 1e12
                row["peak_fraction"] = flops[batch] / step_s / peak if peak else None
                row["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
                report.rows.append(row)
                fraction = f"{row['peak_fraction']:.1%}" if peak else "n/a"
                print(f"  {'compiled' if compiled else 'eager':8} batch {batch}: {step_s * 1000:8.1f} ms/step, "
                      f"{row['images_per_s']:6.2f} images/s ({family.steps} steps + decode), "
                      f"{row['tflops_per_s']:6.0f} TFLOP/s = {fraction} of peak (first call {row['first_call_s']:.1f} s)",
                      flush=True)
        del model, vae, runner
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    measured = [row for row in report.rows if "step_s" in row]
    report.checks.append(Check("measured", bool(measured), f"{len(measured)} of {len(report.rows)} runs measured in "
                               f"{time.monotonic() - started:.0f} s"))
    return report


# ---- entry points --------------------------------------------------------------------------------------------------

async def run():
    """`python -m bench`: the GPU benchmark as comparisons (torch.compile vs eager per family and batch) where CUDA
    is present; nothing elsewhere (the dry run is a test)."""
    import torch

    from bench.harness import Comparison

    if not torch.cuda.is_available():
        print("gpu_generate: no CUDA device, skipped (python -m bench.gpu_generate --dry-run checks it on CPU)")
        return []
    report = gpu_run(list(FAMILIES), [1, 4, 8], [False, True], 450, None, 10)
    _write(report, RESULTS)
    rows = []
    for eager in (r for r in report.rows if not r["compile"] and "step_s" in r):
        compiled = next((r for r in report.rows if r["compile"] and r["family"] == eager["family"]
                         and r["batch"] == eager["batch"] and "step_s" in r), None)
        if compiled is None:
            continue
        rows.append(Comparison(
            f"gpu {eager['family']} step, batch {eager['batch']} ({eager['dtype']}, SDPA)", "torch.compile", "eager",
            compiled["step_s"], eager["step_s"], 10,
            notes=(f"images/s {compiled['images_per_s']:.2f} vs {eager['images_per_s']:.2f}; peak fraction "
                   f"{_pct(compiled['peak_fraction'])} vs {_pct(eager['peak_fraction'])}")))
    return rows


def _pct(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "n/a"


def _write(report: Report, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.as_dict(), indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU checks: meta builds, parameter counts, one "
                        "scaled-down step")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated: sd15,sdxl,flux")
    parser.add_argument("--batches", default="1,4,8")
    parser.add_argument("--compile", default="off,on", help="off, on or off,on")
    parser.add_argument("--budget-s", type=float, default=450.0, help="stop starting runs after this many seconds")
    parser.add_argument("--iters", type=int, default=10, help="timed steps per run")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense fp16/bf16 peak")
    parser.add_argument("--tolerance", type=float, default=0.03, help="parameter counts vs the model cards")
    parser.add_argument("--no-flops", action="store_true", help="dry run: skip counting full-size FLOPs")
    parser.add_argument("--json", type=Path, default=None, help=f"write the report here (default {RESULTS})")
    args = parser.parse_args(argv)
    from diffusers.utils import logging as diffusers_logging

    # Casting random modules with .to() makes diffusers warn once per module; nothing here loads a checkpoint.
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        return _main(args)
    finally:
        diffusers_logging.set_verbosity(verbosity)


def _main(args: argparse.Namespace) -> int:
    if args.dry_run:
        report = dry_run(args.tolerance, flops=not args.no_flops)
    else:
        report = gpu_run([f for f in args.families.split(",") if f], [int(b) for b in args.batches.split(",")],
                         [mode == "on" for mode in args.compile.split(",")], args.budget_s,
                         args.peak_tflops * 1e12 if args.peak_tflops else None, args.iters)
    for check in report.checks:
        print(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    _write(report, args.json or (RESULTS.with_name("gpu_generate_dry_run.json") if args.dry_run else RESULTS))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
