"""Alpha-correct Lanczos: no dark fringe, exact sizes, flattening, output formats."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from services.upscale.lanczos import lanczos_resize
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import upscale_service_pb2 as pb
from tests.images import disc_rgba
from tests.upscale.conftest import decode, png_message


def naive_rgba_resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Each channel resampled on its own: what a resize that ignores alpha does. (Pillow's own RGBA resize
    premultiplies internally, so it is not the naive baseline.)"""
    channels = [c.resize(size, Image.Resampling.LANCZOS) for c in img.split()]
    return Image.merge("RGBA", channels)


def edge_brightness(img: Image.Image) -> float:
    """Mean red value of the semi-transparent edge pixels of a red disc (255 = no fringe)."""
    arr = np.asarray(img, np.float64)
    edge = (arr[..., 3] > 10) & (arr[..., 3] < 245)
    assert edge.sum() > 50
    return float(arr[..., 0][edge].mean())


def test_premultiplied_lanczos_has_no_dark_fringe_where_naive_resize_does():
    source = disc_rgba(64)  # opaque red on transparent BLACK
    ours = lanczos_resize(source, 256, 256)
    naive = naive_rgba_resize(source, (256, 256))
    assert edge_brightness(ours) > 250  # the edge stays red
    assert edge_brightness(naive) < 200  # the black under alpha 0 bled in: a dark fringe
    # Same coverage: the alpha itself is the same resampling either way.
    assert np.abs(np.asarray(ours)[..., 3].astype(int) - np.asarray(naive)[..., 3]).max() <= 1


@pytest.mark.parametrize("scale", [2, 4])
async def test_service_lanczos_scale_factors(upscale, scale):
    source = disc_rgba(40)
    reply = await upscale.call("Upscale", pb.UpscaleRequest(image=png_message(source), scale_factor=scale,
                                                            mode="fast"))
    out = decode(reply.image)
    assert out.size == (40 * scale, 40 * scale) and out.mode == "RGBA"
    assert (reply.input_dimensions.width, reply.output_dimensions.width) == (40, 40 * scale)
    assert reply.method_used == "lanczos" and reply.provider == "pillow" and reply.alpha_preserved
    assert edge_brightness(out) > 250
    assert np.array_equal(np.asarray(out), np.asarray(lanczos_resize(source, 40 * scale, 40 * scale)))


@pytest.mark.parametrize("target,expected", [((100, 0), (100, 75)), ((0, 90), (120, 90)), ((77, 91), (77, 91))])
async def test_any_target_size(upscale, target, expected):
    source = Image.new("RGB", (40, 30), (10, 200, 30))
    reply = await upscale.call("Upscale", pb.UpscaleRequest(image=png_message(source), target_width=target[0],
                                                            target_height=target[1]))
    assert decode(reply.image).size == expected
    assert (reply.output_dimensions.width, reply.output_dimensions.height) == expected


@pytest.mark.parametrize("fmt,pil_format", [(common_pb2.IMAGE_FORMAT_PNG, "PNG"),
                                            (common_pb2.IMAGE_FORMAT_WEBP, "WEBP"),
                                            (common_pb2.IMAGE_FORMAT_JPEG, "JPEG")])
async def test_output_formats(upscale, fmt, pil_format):
    reply = await upscale.call("Upscale", pb.UpscaleRequest(image=png_message(disc_rgba(32)), scale_factor=2,
                                                            output_format=fmt))
    out = decode(reply.image)
    assert out.format == pil_format and out.size == (64, 64)
    assert out.mode == ("RGB" if pil_format == "JPEG" else "RGBA")


async def test_preserve_alpha_false_flattens_onto_the_background(upscale):
    reply = await upscale.call("Upscale", pb.UpscaleRequest(image=png_message(disc_rgba(32)), scale_factor=2,
                                                            preserve_alpha=False, background_color="#00ff00"))
    out = decode(reply.image)
    assert out.mode == "RGB" and not reply.alpha_preserved
    assert out.getpixel((0, 0)) == (0, 255, 0)  # transparent corner became the background
    assert out.getpixel((32, 32)) == (255, 0, 0)
