"""Real-ESRGAN super-resolution through the real service: fidelity, sharpness, tiling, alpha, modes, providers."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from services.upscale.core import UpscaleCore, UpscaleJob
from services.upscale.sr import CPU, resolve_providers
from services.upscale.tiling import upscale_tiled
from shared.gen.imagemesh.v1 import upscale_service_pb2 as pb
from tests.images import disc_rgba
from tests.upscale.conftest import MODELS_DIR, decode, photo_crop, png_message, psnr, settings_for


def sharpness(img: Image.Image) -> float:
    """Variance of the Laplacian of the grey image: higher = more fine detail / crisper edges."""
    grey = np.asarray(img.convert("L"), np.float64)
    lap = grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4 * grey[1:-1, 1:-1]
    return float(lap.var())


async def test_realesrgan_x4_on_a_real_photo_is_faithful_and_sharper_than_bicubic(upscale):
    source = photo_crop()
    reply = await upscale.call("Upscale", pb.UpscaleRequest(image=png_message(source), scale_factor=4,
                                                            method="realesrgan-x4"))
    assert reply.method_used == "realesrgan-x4" and reply.provider == CPU
    out = decode(reply.image)
    assert out.size == (512, 512)
    back = out.resize((128, 128), Image.Resampling.LANCZOS)
    assert psnr(back, source) > 30.0
    bicubic = source.resize((512, 512), Image.Resampling.BICUBIC)
    assert sharpness(out) > 2 * sharpness(bicubic)  # measured 36 vs 7.4


def test_tiled_and_untiled_agree(tmp_path):
    """Feathered tiles (64 px, 3x3 grid with 16 px overlap) against one pass over the whole 160x160 image."""
    core = UpscaleCore(settings_for(tmp_path))
    engine = core.engines["realesrgan-x4"]
    rgb = np.asarray(Image.open(MODELS_DIR / "testdata" / "coffee.png")
                     .convert("RGB").crop((200, 100, 360, 260)))
    whole = upscale_tiled(rgb, engine.run, 4, 0, 0)
    tiled = upscale_tiled(rgb, engine.run, 4, 64, 16)
    assert whole.shape == tiled.shape == (640, 640, 3)
    diff = np.abs(whole.astype(int) - tiled.astype(int))
    assert diff.mean() < 0.1 and diff.max() <= 3


def test_tiles_without_overlap_show_seams_that_feathering_removes(tmp_path):
    """The overlap is what makes tiling seamless: hard-cut tiles differ from the untiled result at the seams."""
    core = UpscaleCore(settings_for(tmp_path))
    engine = core.engines["realesrgan-x4"]
    rgb = np.asarray(photo_crop().crop((0, 0, 96, 96)))
    whole = upscale_tiled(rgb, engine.run, 4, 0, 0).astype(int)
    hard = np.abs(upscale_tiled(rgb, engine.run, 4, 48, 0).astype(int) - whole)
    soft = np.abs(upscale_tiled(rgb, engine.run, 4, 48, 16).astype(int) - whole)
    seam = slice(48 * 4 - 4, 48 * 4 + 4)
    assert hard[:, seam].mean() > 4 * max(soft[:, seam].mean(), 0.05)


async def test_sr_keeps_alpha_without_a_dark_fringe(upscale):
    source = disc_rgba(48)
    reply = await upscale.call("Upscale", pb.UpscaleRequest(image=png_message(source), scale_factor=4,
                                                            mode="conservative"))
    out = np.asarray(decode(reply.image), np.float64)
    assert out.shape == (192, 192, 4) and reply.alpha_preserved
    assert any("alpha upscaled with Lanczos" in n for n in reply.notes)
    edge = (out[..., 3] > 10) & (out[..., 3] < 245)
    assert out[..., 0][edge].mean() > 235  # red stays red at the edge: colour was bled under alpha 0
    assert out[0, 0, 3] == 0 and out[96, 96, 3] == 255


@pytest.mark.parametrize("scale,method", [(2, "realesrgan-x2"), (3, "realesrgan-x3"), (4, "realesrgan-x4")])
async def test_auto_mode_picks_the_native_scale(upscale, scale, method):
    source = photo_crop().resize((32, 32))
    reply = await upscale.call("Upscale", pb.UpscaleRequest(image=png_message(source), scale_factor=scale,
                                                            mode="auto"))
    assert reply.method_used == method
    assert decode(reply.image).size == (32 * scale, 32 * scale)
    assert not any("fell back" in n for n in reply.notes)


async def test_target_not_a_multiple_of_the_native_scale_is_sr_then_lanczos(upscale):
    source = photo_crop().resize((40, 30))
    reply = await upscale.call("Upscale", pb.UpscaleRequest(image=png_message(source), target_width=150,
                                                            mode="conservative"))
    assert reply.method_used == "realesrgan-x4"  # 3.75x: the smallest native scale that reaches it
    assert decode(reply.image).size == (150, 112)
    assert any("Lanczos to the exact 150x112" in n for n in reply.notes)


async def test_creative_mode_runs_sr_and_says_diffusion_is_not_there(upscale):
    reply = await upscale.call("Upscale", pb.UpscaleRequest(image=png_message(photo_crop().resize((24, 24))),
                                                            scale_factor=2, mode="creative"))
    assert reply.method_used == "realesrgan-x2"
    assert any("diffusion-based creative upscaling is not available" in n for n in reply.notes)


async def test_presets_are_named_targets(upscale):
    source = photo_crop().resize((64, 48))
    reply = await upscale.call("Upscale", pb.UpscaleRequest(image=png_message(source), preset="social"))
    assert (reply.output_dimensions.width, reply.output_dimensions.height) == (1080, 810)
    assert decode(reply.image).size == (1080, 810)


def test_mode_falls_back_to_lanczos_when_no_model_and_says_so(tmp_path):
    core = UpscaleCore(settings_for(tmp_path, models_dir=tmp_path / "no-models"))
    result = core.upscale(UpscaleJob(image=photo_crop().resize((16, 16)), scale_factor=2, mode="auto"))
    assert result.method_used == "lanczos"
    assert any(n.startswith("fell back to lanczos") and "missing" in n for n in result.notes)
    listed = {m.id: m for m in core.methods()}
    assert not listed["realesrgan-x4"].available and "missing" in listed["realesrgan-x4"].unavailable_reason


async def test_list_methods_reports_providers_presets_and_styles(upscale):
    reply = await upscale.call("ListMethods", pb.ListMethodsRequest())
    methods = {m.id: m for m in reply.methods}
    assert methods["lanczos"].available and methods["lanczos"].provider == "pillow"
    for name, scale in (("realesrgan-x2", 2), ("realesrgan-x3", 3), ("realesrgan-x4", 4)):
        assert methods[name].available and methods[name].provider == CPU
        assert list(methods[name].native_scales) == [scale]
    assert list(methods["realesrgan"].native_scales) == [2, 3, 4]
    assert methods["realesrgan-x4plus"].available and methods["realesrgan-x4plus"].provider == "ncnn-cpu"
    assert not methods["creative-diffusion"].available
    assert set(reply.presets) == {"web", "print", "social"}
    assert {"professional", "dramatic", "natural", "studio", "warm", "cool"} <= set(reply.lighting_styles)
    registry = upscale.runtime.metrics.registry
    assert registry.get_sample_value("imagemesh_upscale_sr_provider_info",
                                     {"method": "realesrgan-x4", "provider": CPU}) == 1


def test_an_explicit_cuda_provider_that_is_missing_is_refused_not_silently_cpu(tmp_path):
    providers, error = resolve_providers("cuda", [CPU])
    assert providers == [] and "onnxruntime-gpu" in error
    core = UpscaleCore(settings_for(tmp_path, sr_provider="cuda"))
    info = {m.id: m for m in core.methods()}["realesrgan-x4"]
    assert not info.available and "sr_provider=cuda" in info.unavailable_reason


@pytest.mark.slow
async def test_x4plus_on_ncnn(upscale):
    """The large photo model, on a small crop: ncnn on CPU takes seconds (plus loading 33 MB on first use)."""
    source = photo_crop().crop((40, 40, 72, 72))
    reply = await upscale.call("Upscale", pb.UpscaleRequest(image=png_message(source), scale_factor=4,
                                                            method="realesrgan-x4plus"))
    assert reply.method_used == "realesrgan-x4plus" and reply.provider == "ncnn-cpu"
    out = decode(reply.image)
    assert out.size == (128, 128)
    assert psnr(out.resize((32, 32), Image.Resampling.LANCZOS), source) > 28.0


def test_sharpness_measure_sees_blur():
    img = photo_crop()
    assert sharpness(img) > 2 * sharpness(img.filter(ImageFilter.GaussianBlur(2)))
