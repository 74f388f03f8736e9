"""Conservative upscaling conserves: the output, downscaled, gives the input back (>= 35 dB PSNR) on a real photo
and on textures, through the real service (Real-ESRGAN, then iterative back-projection)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from services.upscale.backproject import back_project
from shared.gen.imagemesh.v1 import upscale_service_pb2 as pb
from tests.images import disc_rgba
from tests.upscale.conftest import MODELS_DIR, decode, photo_crop, png_message, psnr


def skimage_texture(name: str) -> Image.Image:
    """A 96x96 crop of one of scikit-image's texture photos (brick, grass), shipped inside its wheel."""
    import importlib.metadata

    path = importlib.metadata.distribution("scikit-image").locate_file(f"skimage/data/{name}")
    return Image.open(path).convert("RGB").crop((100, 100, 196, 196))


def synthetic_texture() -> Image.Image:
    """Fine colour grain: Gaussian noise softened just below the pixel scale (seeded)."""
    rng = np.random.default_rng(7)
    grain = np.clip(rng.normal(128, 40, (96, 96, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(grain).filter(ImageFilter.GaussianBlur(0.7))


SOURCES = {
    "astronaut_face": lambda: photo_crop(),
    "coffee": lambda: Image.open(MODELS_DIR / "testdata" / "coffee.png").convert("RGB").crop((200, 100, 296, 196)),
    "brick": lambda: skimage_texture("brick.png"),
    "grass": lambda: skimage_texture("grass.png"),
    "grain": synthetic_texture,
}


def sharpness(img: Image.Image) -> float:
    grey = np.asarray(img.convert("L"), np.float64)
    lap = grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4 * grey[1:-1, 1:-1]
    return float(lap.var())


@pytest.mark.parametrize("name", SOURCES)
async def test_conservative_output_downscaled_reproduces_the_input(upscale, name):
    source = SOURCES[name]()
    reply = await upscale.call("Upscale", pb.UpscaleRequest(image=png_message(source), scale_factor=4,
                                                            mode="conservative"))
    assert reply.method_used == "realesrgan-x4"
    out = decode(reply.image)
    assert out.size == (source.width * 4, source.height * 4)
    assert psnr(out.resize(source.size, Image.Resampling.LANCZOS), source) >= 35.0
    # Not an artefact of one resampler: a bicubic downscale agrees too.
    assert psnr(out.resize(source.size, Image.Resampling.BICUBIC), source) >= 35.0
    assert any(n.startswith("conservative: back-projected") for n in reply.notes), reply.notes
    # Still super-resolution, not a blur: crisper than a bicubic upscale.
    assert sharpness(out) > 1.5 * sharpness(source.resize(out.size, Image.Resampling.BICUBIC))


async def test_conservative_at_a_scale_between_the_native_ones_and_with_alpha(upscale):
    source = disc_rgba(40)
    source.alpha_composite(photo_crop().resize((20, 20)).convert("RGBA"), (10, 10))
    reply = await upscale.call("Upscale", pb.UpscaleRequest(image=png_message(source), target_width=100,
                                                            mode="conservative"))
    out = decode(reply.image)
    assert out.size == (100, 100) and out.mode == "RGBA"
    visible = np.asarray(source.getchannel("A")) == 255
    back = np.asarray(out.resize(source.size, Image.Resampling.LANCZOS).convert("RGB"), np.float64)
    diff = back[visible] - np.asarray(source.convert("RGB"), np.float64)[visible]
    assert 10 * np.log10(255.0**2 / np.mean(diff**2)) >= 35.0


def test_back_projection_alone_restores_a_shifted_upscale():
    """A blurred, colour-shifted 3x upscale is pulled back to the input; detail above its Nyquist is kept."""
    source = np.asarray(photo_crop().crop((0, 0, 64, 64)))
    bad = Image.fromarray(source).resize((192, 192), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(2))
    shifted = np.clip(np.asarray(bad, np.int16) + 12, 0, 255).astype(np.uint8)
    fixed, consistency = back_project(shifted, source)
    assert consistency.before_db < 30 and consistency.after_db >= 40
    assert psnr(Image.fromarray(fixed).resize((64, 64), Image.Resampling.LANCZOS), source) >= 40
