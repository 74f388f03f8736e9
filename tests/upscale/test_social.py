"""The social optimizer: exact sizes for every format, the subject kept in frame, size limits, overlay."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from services.upscale.social import JPEG_QUALITIES, Catalogue, PlatformFormat, encode_within
from shared import images
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import upscale_service_pb2 as pb
from tests.images import disc_rgba
from tests.upscale.conftest import MODELS_DIR, decode, png_message

CATALOGUE = Catalogue.load()
SEED_003 = {("instagram", "feed_square"): (1080, 1080), ("facebook", "feed_post"): (1200, 630),
            ("linkedin", "post"): (1200, 628)}


def off_centre_scene() -> Image.Image:
    """A plain backdrop with a photo subject near the right edge (x 0.81..0.94)."""
    scene = Image.new("RGB", (1600, 600), (128, 128, 128))
    cat = Image.open(MODELS_DIR / "testdata" / "chelsea.png").convert("RGB").resize((200, 200))
    scene.paste(cat, (1300, 250))
    return scene


def test_catalogue_covers_the_platforms_and_the_seed_formats():
    assert {"instagram", "facebook", "twitter", "linkedin", "youtube", "pinterest", "tiktok"} <= set(
        CATALOGUE.platforms)
    sizes = {(f.platform, f.id): (f.width, f.height) for f in CATALOGUE.formats}
    for key, size in SEED_003.items():
        assert sizes[key] == size
    square = CATALOGUE.select(["instagram"], ["Feed Post (Square)"])[0]
    assert square.safe_zone.top == 0.15 and square.safe_zone.left == 0.1 and square.max_size_bytes == 5 * 1024**2


async def test_every_platform_format_comes_out_at_its_exact_size(upscale):
    reply = await upscale.call("OptimizeSocial", pb.OptimizeSocialRequest(image=png_message(off_centre_scene())))
    assert len(reply.images) == len(CATALOGUE.formats)
    for item in reply.images:
        out = decode(item.image)
        assert out.size == (item.format.width, item.format.height), item.format.name
        assert item.size_bytes == len(item.image.data) <= item.format.max_size_bytes
        assert out.format == {"jpeg": "JPEG", "png": "PNG"}[item.format.file_type]


def subject_share_kept(out: Image.Image, colour_test) -> float:
    return float(colour_test(np.asarray(out.convert("RGBA"), np.int32)).sum())


@pytest.mark.parametrize("mode,keeps", [(pb.CROP_MODE_SMART, True), (pb.CROP_MODE_CENTER, False)])
async def test_smart_crop_keeps_an_off_centre_cutout_subject(upscale, mode, keeps):
    scene = Image.new("RGBA", (1600, 600), (0, 0, 0, 0))
    disc = disc_rgba(200, 0.45)
    scene.alpha_composite(disc, (1330, 200))  # red disc around x = 0.89
    reply = await upscale.call("OptimizeSocial", pb.OptimizeSocialRequest(
        image=png_message(scene), platforms=["instagram"], formats=["feed_square"], crop_mode=mode))
    out = np.asarray(decode(reply.images[0].image).convert("RGBA"), np.int32)
    opaque = out[..., 3] > 128
    if not keeps:
        assert opaque.sum() == 0  # a centre crop loses it entirely
        return
    assert "subject from the image's alpha" in reply.images[0].notes
    # The whole disc is inside, off the borders, with its full area (scaled by 1080/600).
    rows, cols = np.nonzero(opaque)
    assert rows.min() > 0 and cols.min() > 0 and rows.max() < 1079 and cols.max() < 1079
    expected_area = np.pi * (90 * 1.8) ** 2
    assert abs(opaque.sum() / expected_area - 1) < 0.03
    # And inside the 10% side / 15% top-bottom safe zone.
    assert cols.min() >= 108 and cols.max() <= 972


async def test_smart_crop_finds_a_subject_by_saliency_on_an_opaque_photo(upscale):
    reply = await upscale.call("OptimizeSocial", pb.OptimizeSocialRequest(
        image=png_message(off_centre_scene()), platforms=["instagram"], formats=["feed_square"]))
    item = reply.images[0]
    assert any("saliency" in n for n in item.notes)
    out = np.asarray(decode(item.image).convert("RGB"), np.int32)
    # The whole cat is in frame: its area (200 px scaled by 1080/600) is not backdrop grey. A centre crop
    # (x 500..1100 of 1600) would hold none of it.
    not_backdrop = np.abs(out - 128).max(-1) > 6
    assert not_backdrop.sum() / (200 * 1.8) ** 2 > 0.9


async def test_given_focal_point_is_used(upscale):
    reply = await upscale.call("OptimizeSocial", pb.OptimizeSocialRequest(
        image=png_message(off_centre_scene()), platforms=["instagram"], formats=["feed_square"],
        focal_x=0.0, focal_y=0.5))
    out = np.asarray(decode(reply.images[0].image).convert("RGB"), np.int32)
    assert "focal point given by the caller" in reply.images[0].notes
    assert np.abs(out - 128).max() <= 2  # the left edge of the scene is pure backdrop


async def test_fit_letterboxes_the_whole_image(upscale):
    reply = await upscale.call("OptimizeSocial", pb.OptimizeSocialRequest(
        image=png_message(off_centre_scene()), platforms=["tiktok"], crop_mode=pb.CROP_MODE_FIT,
        output_format=common_pb2.IMAGE_FORMAT_PNG, background_color="#ff00ff"))
    out = decode(reply.images[0].image).convert("RGB")
    assert out.size == (1080, 1920)
    assert out.getpixel((540, 10)) == (255, 0, 255)  # bars above and below
    assert out.getpixel((540, 960))[1] in range(120, 137)  # the backdrop in the middle
    assert out.getpixel((5, 960)) != (255, 0, 255)  # full width used


def small_limit_format(file_type: str, max_bytes: int) -> PlatformFormat:
    base = CATALOGUE.select(["youtube"], ["thumbnail"])[0]
    return replace(base, file_type=file_type, max_size_bytes=max_bytes)


def test_size_limit_lowers_jpeg_quality_stepwise():
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8))
    notes: list[str] = []
    data, media, quality = encode_within(noise, small_limit_format("jpeg", 400_000), "", notes)
    assert media == "image/jpeg" and len(data) <= 400_000
    assert quality < 90 and any(f"quality lowered to {quality}" in n for n in notes)
    # One step up would not have fitted: the quality is the highest that fits.
    higher = JPEG_QUALITIES[JPEG_QUALITIES.index(quality) - 1]
    assert len(images.encode(noise, "JPEG", higher)[0]) > 400_000


def test_png_over_the_limit_is_palette_reduced_then_jpeg():
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 300, 3), dtype=np.uint8))
    assert len(images.encode(noise, "PNG")[0]) > 200_000
    notes: list[str] = []
    data, media, _ = encode_within(noise, small_limit_format("png", 100_000), "", notes)
    assert len(data) <= 100_000 and media == "image/png" and any("256-colour palette" in n for n in notes)
    notes = []
    data, media, _ = encode_within(noise, small_limit_format("png", 50_000), "", notes)
    assert len(data) <= 50_000 and media == "image/jpeg" and any("encoded as JPEG instead" in n for n in notes)


async def test_safe_zone_overlay_marks_the_margins(upscale):
    plain = Image.new("RGB", (1200, 1200), (0, 0, 255))
    reply = await upscale.call("OptimizeSocial", pb.OptimizeSocialRequest(
        image=png_message(plain), platforms=["instagram"], formats=["feed_square"], safe_zone_overlay=True))
    out = decode(reply.images[0].image).convert("RGB")
    margin, inside = out.getpixel((540, 50)), out.getpixel((540, 540))
    assert inside == (0, 0, 255)
    assert margin[0] > 50  # red tint over the 15% top margin


async def test_list_platform_formats(upscale):
    reply = await upscale.call("ListPlatformFormats", pb.ListPlatformFormatsRequest(platform="instagram"))
    names = {f.name: f for f in reply.formats}
    assert names["feed_square"].display_name == "Feed Post (Square)" and names["feed_square"].ratio == "1:1"
    everything = await upscale.call("ListPlatformFormats", pb.ListPlatformFormatsRequest())
    assert len(everything.formats) == len(CATALOGUE.formats)
    x = await upscale.call("ListPlatformFormats", pb.ListPlatformFormatsRequest(platform="x"))
    assert {f.platform for f in x.formats} == {"twitter"}
