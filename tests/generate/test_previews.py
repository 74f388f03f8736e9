"""Live previews: the per-family latent->RGB decoders on synthetic latents (every family, FLUX's packing), TAESD,
and previews on Generate's progress stream from the real tiny pipeline.

The channels the gateway carries them on (FLUX WebSocket, SSE, CyberImage status, A1111 /progress, WatchJob) are
tested through a real mesh in tests/gateway/test_previews_channels.py."""

from __future__ import annotations

import io

import numpy as np
import pytest
import pytest_asyncio
import torch
from PIL import Image

from services.generate import preview as pv
from shared.clients import call, stream
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import generate_service_pb2 as pb
from tests.generate.conftest import SIZE, params, start_generate


def decoded(image: common_pb2.Image) -> Image.Image:
    assert image.media_type == "image/png"
    img = Image.open(io.BytesIO(image.data))
    img.load()
    assert img.format == "PNG" and img.mode == "RGB"
    assert (img.width, img.height) == (image.width, image.height)
    return img


# ---- the decoders, on synthetic latents -------------------------------------------------------------------------

@pytest.mark.parametrize("family,channels", [("sd1", 4), ("sdxl", 4), ("sd3", 16), ("flux", 16)])
def test_each_family_has_a_table_for_its_latent_channels(family, channels):
    factors, bias = pv.LATENT_RGB[family]
    assert len(factors) == channels and all(len(row) == 3 for row in factors) and len(bias) == 3


@pytest.mark.parametrize("family,channels", [("sd1", 4), ("sdxl", 4), ("sd3", 16), ("flux", 16)])
def test_projection_is_the_linear_map_of_the_family(family, channels):
    latents = torch.randn(2, channels, 5, 7, generator=torch.Generator().manual_seed(0))
    rgb = pv.project(latents, family)
    assert rgb.shape == (2, 3, 5, 7)
    factors, bias = (np.array(x, dtype=np.float64) for x in pv.LATENT_RGB[family])
    pixel = latents[1, :, 3, 4].double().numpy()
    expected = np.clip((pixel @ factors + bias + 1) / 2, 0, 1)
    np.testing.assert_allclose(rgb[1, :, 3, 4].double().numpy(), expected, atol=1e-5)


def test_sd1_channel_colours_follow_comfyui():
    """SD 1.x's first latent channel is warm-bright, its fourth pulls towards yellow (minus blue)."""
    first = torch.zeros(1, 4, 1, 1)
    first[0, 0] = 1.0
    r, g, b = pv.project(first, "sd1")[0, :, 0, 0].tolist()
    assert r > 0.5 and g > 0.5 and b > 0.5
    fourth = torch.zeros(1, 4, 1, 1)
    fourth[0, 3] = 1.0
    r, g, b = pv.project(fourth, "sd1")[0, :, 0, 0].tolist()
    assert b < r < 0.5 and b < 0.2


def _flux_pack(latents: torch.Tensor) -> torch.Tensor:
    """diffusers' FluxPipeline._pack_latents (0.3x-0.4x): 2x2 patches of C channels into tokens of 4C. Written
    out here because importing FluxPipeline costs seconds."""
    b, c, h, w = latents.shape
    return latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def test_flux_latents_are_unpacked_as_the_pipeline_packs_them():
    width, height, scale = 768, 1024, 8  # latent grid 128 x 96, packed into 64 x 48 tokens of 64
    spatial = torch.randn(2, 16, height // scale, width // scale, generator=torch.Generator().manual_seed(1))
    packed = _flux_pack(spatial)
    assert packed.shape == (2, 64 * 48, 64)
    assert torch.equal(pv.unpack_flux(packed, width, height, scale), spatial)
    # The first token holds the top-left 2x2 patch, channel-major.
    assert torch.equal(packed[0, 0, :4], spatial[0, 0, :2, :2].reshape(4))
    # Another VAE scale factor (a tiny pipeline): the grid comes from the token count and the aspect.
    assert torch.equal(pv.unpack_flux(packed, width * 2, height * 2, scale), spatial)


@pytest.mark.parametrize("family,shape,size,expected", [
    ("sd1", (2, 4, 64, 64), (512, 512), (128, 128)),
    ("sdxl", (1, 4, 128, 96), (768, 1024), (96, 128)),
    ("sd3", (1, 16, 128, 128), (1024, 1024), (128, 128)),
    ("flux", (1, 64 * 48, 64), (768, 1024), (96, 128)),
    ("sd1", (1, 4, 8, 8), (64, 64), (64, 64)),  # never larger than the image itself
])
def test_previews_of_every_family_have_the_preview_size(family, shape, size, expected):
    previewer = pv.Previewer(pv.PreviewConfig(max_side=128))
    latents = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    images = previewer.decode(latents, [0], family=family, width=size[0], height=size[1])
    assert len(images) == 1 and decoded(images[0]).size == expected == pv.preview_size(*size, 128)


def test_each_image_of_a_batch_gets_its_own_preview():
    previewer = pv.Previewer(pv.PreviewConfig(max_side=32))
    latents = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    first, third = previewer.decode(latents, [0, 2], family="sd1", width=64, height=64)
    alone = previewer.decode(latents[2:], [0], family="sd1", width=64, height=64)[0]
    assert first.data != third.data and third.data == alone.data


@pytest.mark.parametrize("channels", [1, 2, 3, 8])
def test_other_channel_counts_fall_back_to_a_neutral_mapping(channels):
    """The tiny random test pipelines of other families have few latent channels: still a preview, never an error."""
    latents = torch.randn(1, channels, 6, 6, generator=torch.Generator().manual_seed(4))
    rgb = pv.project(latents, "sdxl")
    assert rgb.shape == (1, 3, 6, 6) and 0 <= float(rgb.min()) and float(rgb.max()) <= 1


def test_family_comes_from_the_entry_then_the_pipeline_class():
    def pipe(name: str):
        return type(name, (), {})()

    assert pv.family_of(pipe("FluxPipeline")) == "flux"
    assert pv.family_of(pipe("FluxImg2ImgPipeline")) == "flux"
    assert pv.family_of(pipe("StableDiffusion3Pipeline")) == "sd3"
    assert pv.family_of(pipe("StableDiffusionXLInpaintPipeline")) == "sdxl"
    assert pv.family_of(pipe("StableDiffusionPipeline")) == "sd1"
    assert pv.family_of(pipe("StableDiffusionPipeline"), type("E", (), {"family": "SDXL"})()) == "sdxl"


def test_previews_are_due_every_k_steps():
    assert [s for s in range(1, 13) if pv.PreviewConfig(every_steps=4).due(s)] == [4, 8, 12]
    assert not any(pv.PreviewConfig(every_steps=0).due(s) for s in range(1, 13))


def test_taesd_decodes_when_configured(tmp_path):
    """A TAESD (AutoencoderTiny) configured for the family decodes instead of the projection: a tiny random one
    here, saved and loaded like a real one."""
    from diffusers import AutoencoderTiny

    AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                    num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1),
                    latent_channels=4).save_pretrained(tmp_path / "taesd")
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    taesd = pv.Previewer(pv.PreviewConfig(max_side=48, taesd={"sd1": "taesd"}, models_dir=tmp_path))
    linear = pv.Previewer(pv.PreviewConfig(max_side=48))
    with_taesd = taesd.decode(latents, [0], family="sd1", width=64, height=64)[0]
    projected = linear.decode(latents, [0], family="sd1", width=64, height=64)[0]
    assert decoded(with_taesd).size == decoded(projected).size == (48, 48)
    assert with_taesd.data != projected.data
    # A family without one, or a TAESD whose channels do not fit, keeps the projection.
    assert taesd.decode(latents, [0], family="sdxl", width=64, height=64)[0].data == \
        linear.decode(latents, [0], family="sdxl", width=64, height=64)[0].data
    wide = torch.randn(1, 16, 8, 8)
    assert taesd.decode(wide, [0], family="sd1", width=64, height=64)[0].data == \
        linear.decode(wide, [0], family="sd1", width=64, height=64)[0].data


# ---- on Generate's progress stream, from the real tiny pipeline ---------------------------------------------------

PREVIEW_SIDE = 48


@pytest_asyncio.fixture(scope="module")
async def previewing(tmp_path_factory):
    server = await start_generate(tmp_path_factory.mktemp("previews"), preview_every_steps=2,
                                  preview_max_side=PREVIEW_SIDE)
    yield server
    await server.close()


async def _events(server, **kwargs) -> list[pb.GenerateStreamResponse]:
    request = pb.GenerateStreamRequest(parameters=params(**kwargs))
    return [event async for event in stream(server.stub.GenerateStream, request)]


def _previews(events) -> list[tuple[int, common_pb2.Image]]:
    return [(e.progress.step, e.progress.preview) for e in events
            if e.WhichOneof("event") == "progress" and e.progress.HasField("preview")]


async def test_stream_carries_a_preview_every_k_steps(previewing):
    events = await _events(previewing, steps=5, seed=7)
    previews = _previews(events)
    assert [step for step, _ in previews] == [2, 4]
    assert all(decoded(image).size == (PREVIEW_SIDE, PREVIEW_SIDE) for _, image in previews)
    # They come before the result, on generating events, and they change as the latents are denoised.
    assert events[-1].WhichOneof("event") == "result"
    assert previews[0][1].data != previews[1][1].data
    # The same seed gives the same previews.
    assert _previews(await _events(previewing, steps=5, seed=7)) == previews


async def test_preview_is_of_the_run_size_aspect(previewing):
    previews = _previews(await _events(previewing, steps=2, width=128, height=64))
    assert [decoded(image).size for _, image in previews] == [(PREVIEW_SIDE, PREVIEW_SIDE // 2)]


async def test_a_request_of_several_images_previews_its_first(previewing):
    two = _previews(await _events(previewing, steps=2, num_images=2, seed=11))
    one = _previews(await _events(previewing, steps=2, num_images=1, seed=11))
    assert len(two) == 1 and len(one) == 1
    assert np.abs(np.asarray(decoded(two[0][1]), dtype=np.int16)
                  - np.asarray(decoded(one[0][1]), dtype=np.int16)).max() <= 1


async def test_previews_off_and_unary_calls_carry_none(tmp_path, previewing):
    off = await start_generate(tmp_path / "off", preview_every_steps=0)
    try:
        assert _previews(await _events(off, steps=4)) == []
    finally:
        await off.close()
    # Generate (unary) has no progress listener: nothing is decoded, the result is the same as streamed.
    reply = await call(previewing.stub.Generate, pb.GenerateRequest(parameters=params(steps=2, seed=5)))
    streamed = (await _events(previewing, steps=2, seed=5))[-1].result
    assert reply.images[0].image.data == streamed.images[0].image.data
    assert (reply.images[0].image.width, reply.images[0].image.height) == (SIZE, SIZE)


# ---- every family's tiny pipeline (the shipped registry) ----------------------------------------------------------

@pytest_asyncio.fixture(scope="module")
async def families_previewing(tmp_path_factory):
    from services.generate.settings import DEFAULT_MODELS_FILE

    server = await start_generate(tmp_path_factory.mktemp("family-previews"), models_file=DEFAULT_MODELS_FILE,
                                  preview_every_steps=1, preview_max_side=PREVIEW_SIDE)
    yield server
    await server.close()


@pytest.mark.parametrize("model,family", [("tiny-sdxl", "sdxl"), ("tiny-sd3", "sd3"), ("tiny-flux-dev", "flux")])
async def test_every_family_streams_previews(families_previewing, model, family):
    entry = families_previewing.core.registry.resolve(model)
    assert entry.family == family
    previews = _previews(await _events(families_previewing, model=model, steps=2, width=128, height=64))
    assert [step for step, _ in previews] == [1, 2]
    assert [decoded(image).size for _, image in previews] == [(PREVIEW_SIDE, PREVIEW_SIDE // 2)] * 2
    assert previews[0][1].data != previews[1][1].data
