"""Errors a caller can cause, each with its documented reason and gRPC code."""

from __future__ import annotations

import pytest
from PIL import Image

from shared.errors import ImageTooLarge, InvalidArgument, ModelUnavailable, NotImplementedYet
from shared.gen.imagemesh.v1 import upscale_service_pb2 as pb
from tests.upscale.conftest import png_message, settings_for

SMALL = png_message(Image.new("RGB", (16, 16), (1, 2, 3)))


@pytest.mark.parametrize("request_kwargs,field", [
    ({"scale_factor": 2, "method": "bogus"}, "method"),
    ({"scale_factor": 2, "mode": "turbo"}, "mode"),
    ({"preset": "billboard"}, "preset"),
    ({"preset": "web", "scale_factor": 2}, "preset"),
    ({"scale_factor": 99}, "scale_factor"),
    ({}, "scale_factor"),
])
async def test_upscale_invalid_arguments(upscale, request_kwargs, field):
    with pytest.raises(InvalidArgument) as caught:
        await upscale.call("Upscale", pb.UpscaleRequest(image=SMALL, **request_kwargs))
    assert caught.value.reason == "INVALID_ARGUMENT" and caught.value.metadata["field"] == field


async def test_output_past_max_pixels_is_image_too_large(upscale):
    big = png_message(Image.new("RGB", (2100, 2100)))
    with pytest.raises(ImageTooLarge) as caught:
        await upscale.call("Upscale", pb.UpscaleRequest(image=big, scale_factor=4))
    assert caught.value.reason == "IMAGE_TOO_LARGE"
    assert caught.value.metadata["max_output_pixels"] == str(8192 * 8192)


def test_a_preset_past_max_pixels_is_image_too_large(tmp_path):
    from services.upscale.core import UpscaleCore, UpscaleJob

    core = UpscaleCore(settings_for(tmp_path, max_output_pixels=1_000_000), engines={})
    with pytest.raises(ImageTooLarge):
        core.upscale(UpscaleJob(image=Image.new("RGB", (30, 20)), preset="print"))


async def test_creative_diffusion_is_not_implemented_yet(upscale):
    with pytest.raises(NotImplementedYet, match="diffusion-based creative upscaling is not available"):
        await upscale.call("Upscale", pb.UpscaleRequest(image=SMALL, scale_factor=2, method="creative-diffusion"))


def test_an_explicit_unavailable_model_is_model_unavailable(tmp_path):
    from services.upscale.core import UpscaleCore, UpscaleJob

    core = UpscaleCore(settings_for(tmp_path, models_dir=tmp_path))
    with pytest.raises(ModelUnavailable, match="missing"):
        core.upscale(UpscaleJob(image=Image.new("RGB", (8, 8)), scale_factor=4, method="realesrgan-x4plus"))


@pytest.mark.parametrize("rpc,request_message", [
    ("Relight", pb.RelightRequest(image=SMALL, lighting_style="disco")),
    ("Relight", pb.RelightRequest(image=SMALL, lighting_style="warm", intensity=1.5)),
    ("OptimizeSocial", pb.OptimizeSocialRequest(image=SMALL, platforms=["myspace"])),
    ("OptimizeSocial", pb.OptimizeSocialRequest(image=SMALL, platforms=["instagram"], formats=["billboard"])),
    ("OptimizeSocial", pb.OptimizeSocialRequest(image=SMALL, platforms=["instagram"], focal_x=1.5)),
    ("ListPlatformFormats", pb.ListPlatformFormatsRequest(platform="myspace")),
])
async def test_unknown_style_platform_and_bad_values_are_invalid_argument(upscale, rpc, request_message):
    with pytest.raises(InvalidArgument):
        await upscale.call(rpc, request_message)
