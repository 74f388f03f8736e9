"""Classical relighting: every style moves the image in its documented direction and keeps alpha."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from services.upscale.relight import CLASSICAL_NOTE, STYLES
from shared.gen.imagemesh.v1 import upscale_service_pb2 as pb
from tests.upscale.conftest import decode, photo_crop, png_message

LUMA = np.array([0.2126, 0.7152, 0.0722])


def luminance(img: Image.Image) -> float:
    return float((np.asarray(img.convert("RGB"), np.float64) @ LUMA).mean())


def red_blue(img: Image.Image) -> float:
    """Colour temperature proxy: mean red over mean blue (higher = warmer)."""
    arr = np.asarray(img.convert("RGB"), np.float64)
    return float(arr[..., 0].mean() / arr[..., 2].mean())


def cutout() -> Image.Image:
    """The photo crop as an elliptical cut-out on transparency: a subject with an alpha mask."""
    img = photo_crop().convert("RGBA")
    mask = Image.new("L", img.size, 0)
    ImageDraw.Draw(mask).ellipse((24, 8, 104, 120), fill=255)
    img.putalpha(mask)
    return img


@pytest.mark.parametrize("name", list(STYLES))
async def test_style_moves_the_image_in_its_documented_direction(upscale, name):
    spec = STYLES[name]
    source = photo_crop()
    reply = await upscale.call("Relight", pb.RelightRequest(image=png_message(source), lighting_style=name))
    out = decode(reply.image)
    assert out.size == source.size and reply.lighting_style == name
    assert CLASSICAL_NOTE in reply.notes
    assert spec.luminance_direction or spec.temperature_direction  # each style claims something
    if spec.luminance_direction:
        assert np.sign(luminance(out) - luminance(source)) == spec.luminance_direction
        assert abs(luminance(out) - luminance(source)) > 2.0  # visibly, not by rounding
    if spec.temperature_direction:
        assert np.sign(red_blue(out) - red_blue(source)) == spec.temperature_direction
        assert abs(red_blue(out) - red_blue(source)) > 0.05


@pytest.mark.parametrize("name", ["professional", "dramatic", "golden_hour"])
async def test_key_light_follows_the_subject_mask_and_alpha_is_kept(upscale, name):
    spec = STYLES[name]
    source = cutout()
    reply = await upscale.call("Relight", pb.RelightRequest(image=png_message(source), lighting_style=name))
    out = decode(reply.image)
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out)[..., 3], np.asarray(source)[..., 3])
    assert "subject mask from the image's alpha" in reply.notes
    # The side the key comes from gains relative to the far side (left vs right thirds of the subject).
    before = np.asarray(source.convert("RGB"), np.float64) @ LUMA
    after = np.asarray(out.convert("RGB"), np.float64) @ LUMA
    alpha = np.asarray(source)[..., 3] == 255
    cols = np.arange(source.width)[None, :]
    left, right = alpha & (cols < 50), alpha & (cols > 78)
    gain_left = after[left].mean() / before[left].mean()
    gain_right = after[right].mean() / before[right].mean()
    from_left = np.cos(np.radians(spec.key_from_deg)) < 0
    assert (gain_left > gain_right) == from_left


async def test_a_supplied_mask_shapes_the_light(upscale):
    source = photo_crop()
    mask = Image.new("L", source.size, 0)
    ImageDraw.Draw(mask).rectangle((32, 0, 96, 128), fill=255)
    reply = await upscale.call("Relight", pb.RelightRequest(image=png_message(source), lighting_style="dramatic",
                                                            mask=png_message(mask)))
    assert "subject mask from the supplied mask" in reply.notes
    out = np.asarray(decode(reply.image).convert("RGB"), np.float64) @ LUMA
    before = np.asarray(source, np.float64) @ LUMA
    # Dramatic darkens the background (outside the mask) more than the subject.
    assert out[:, :20].mean() / before[:, :20].mean() < out[:, 40:88].mean() / before[:, 40:88].mean()


async def test_intensity_zero_is_the_identity(upscale):
    source = photo_crop()
    reply = await upscale.call("Relight", pb.RelightRequest(image=png_message(source), lighting_style="dramatic",
                                                            intensity=0.0))
    assert np.abs(np.asarray(decode(reply.image), int) - np.asarray(source, int)).max() <= 1
