"""Real models on known answers: u2netp on a synthetic disc, MODNet on a real portrait, and the options."""

from __future__ import annotations

import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from PIL import Image

from shared import clients
from shared.gen.imagemesh.v1 import background_removal_service_pb2 as pb
from shared.gen.imagemesh.v1 import common_pb2
from tests.background_removal.conftest import ASTRONAUT, decoded, red_disc, remove


async def test_u2netp_mask_of_a_disc_matches_its_true_area(stub):
    img, truth = red_disc()
    reply = await remove(stub, img, "u2netp", only_mask=True)
    mask = np.asarray(decoded(reply.image), dtype=np.float64) / 255.0
    assert mask.shape == (256, 256)
    # MODELS.md: mask mean 0.199 against a true area of 0.196; within 2% of the truth.
    assert abs(mask.mean() - truth.mean()) / truth.mean() < 0.02
    assert mask[118:138, 118:138].min() > 0.95  # centre opaque
    border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    assert border.max() < 0.02  # border transparent
    assert reply.model_id == "u2netp" and reply.model_name == "U2-Net (small)"
    assert reply.provider == "CPUExecutionProvider"
    assert reply.cost.device_class == "cpu" and reply.cost.usd == 0.0 and reply.cost.device_seconds > 0


async def test_default_model_is_used_when_none_is_named(stub):
    img, _ = red_disc()
    assert (await remove(stub, img, only_mask=True)).model_id == "u2netp"


async def test_modnet_mattes_the_astronaut(stub):
    reply = await remove(stub, ASTRONAUT.read_bytes(), "modnet", only_mask=True)
    matte = np.asarray(decoded(reply.image), dtype=np.float64) / 255.0
    assert matte.shape == (512, 512)
    # Regions read off the 512x512 photo: her face and the orange suit are the person; the grey top-right corner,
    # the flag's top-left corner and the space shuttle model on the right are background.
    assert matte[60:180, 190:260].mean() > 0.9  # face
    assert matte[300:480, 80:340].mean() > 0.9  # suit
    assert matte[:40, :40].mean() < 0.05 and matte[:40, -40:].mean() < 0.05  # top corners
    assert matte[50:250, 390:450].mean() < 0.1  # the shuttle
    assert 0.35 < matte.mean() < 0.7  # a person, not everything nor nothing
    assert reply.model_name == "MODNet portrait matting"


async def test_modnet_input_size_follows_modnet_preprocessing(service):
    _, runner = service.deps.model_registry.runner("modnet")
    assert runner.input_size(512, 512) == (512, 512)
    assert runner.input_size(1024, 768) == (672, 512)  # short side to 512, long side rounded down to 32
    assert runner.input_size(300, 200) == (768, 512)  # smaller than 512 on both sides: scaled up
    assert runner.input_size(700, 400) == (700 - 700 % 32, 400 - 400 % 32)  # straddles 512: only rounded


async def test_cutout_alpha_is_the_mask_and_colours_are_kept(stub):
    img, _ = red_disc()
    mask = np.asarray(decoded((await remove(stub, img, "u2netp", only_mask=True)).image))
    cut = decoded((await remove(stub, img, "u2netp")).image)
    assert cut.mode == "RGBA" and cut.size == (256, 256)
    arr = np.asarray(cut)
    assert np.array_equal(arr[..., 3], mask)
    assert tuple(arr[128, 128][:3]) == (255, 0, 0) and arr[128, 128][3] > 240
    assert tuple(arr[100, 70][:3]) == (255, 0, 0)  # near the edge: straight alpha, colour not darkened


@pytest.mark.parametrize("fmt,media_type", [(common_pb2.IMAGE_FORMAT_WEBP, "image/webp"),
                                            (common_pb2.IMAGE_FORMAT_PNG, "image/png"),
                                            (common_pb2.IMAGE_FORMAT_RAW_RGBA, "image/x-raw-rgba")])
async def test_output_formats_keep_alpha(stub, fmt, media_type):
    img, _ = red_disc(128, 32)
    reply = await remove(stub, img, "u2netp", output_format=fmt)
    assert reply.image.media_type == media_type
    out = decoded(reply.image)
    assert out.mode == "RGBA" and out.getpixel((0, 0))[3] == 0 and out.getpixel((64, 64))[3] > 240


async def test_raw_rgba_input_gives_the_same_mask_as_png(stub):
    img, _ = red_disc()
    rgba = img.convert("RGBA")
    raw = common_pb2.Image(data=rgba.tobytes(), media_type="image/x-raw-rgba", width=256, height=256)
    from_raw = np.asarray(decoded((await remove(stub, raw, "u2netp", only_mask=True)).image))
    from_png = np.asarray(decoded((await remove(stub, img, "u2netp", only_mask=True)).image))
    assert np.array_equal(from_raw, from_png)


async def test_background_colour_composites_an_opaque_image(stub):
    img, _ = red_disc()
    out = decoded((await remove(stub, img, "u2netp", background_color="#00ff00")).image).convert("RGBA")
    assert out.getpixel((2, 2)) == (0, 255, 0, 255)
    centre = out.getpixel((128, 128))
    assert centre[3] == 255 and centre[0] >= 250 and centre[1] <= 5  # red, with a 254/255 mask blending 1 level
    jpeg = await remove(stub, img, "u2netp", background_color="#0000ff", output_format=common_pb2.IMAGE_FORMAT_JPEG)
    assert jpeg.image.media_type == "image/jpeg"


async def test_post_process_mask_is_binary(stub):
    img, truth = red_disc()
    mask = np.asarray(decoded((await remove(stub, img, "u2netp", only_mask=True, post_process_mask=True)).image))
    assert set(np.unique(mask)) <= {0, 255}
    assert abs(mask.mean() / 255.0 - truth.mean()) / truth.mean() < 0.03


async def test_alpha_matting_refines_the_edge(stub):
    img, truth = red_disc(128, 32)
    plain = np.asarray(decoded((await remove(stub, img, "u2netp")).image))[..., 3] / 255.0
    matted = np.asarray(decoded((await remove(stub, img, "u2netp", alpha_matting=True,
                                              alpha_matting_foreground_threshold=200,
                                              alpha_matting_background_threshold=20,
                                              alpha_matting_erode_size=5)).image))
    alpha = matted[..., 3] / 255.0
    assert alpha[64, 64] > 0.99 and alpha[0, 0] < 0.01
    assert not np.array_equal(alpha, plain)  # pymatting really ran on the unknown band
    # A disc with a hard edge: matting must stay close to the true area.
    assert abs(alpha.mean() - truth.mean()) / truth.mean() < 0.05


async def test_list_models_reports_availability_and_provider(stub):
    for model in ("u2netp", "modnet"):  # loaded (at start-up or now): the provider is read from the live session
        await remove(stub, red_disc(64, 16)[0], model)
    reply = await clients.call(stub.ListRemovalModels, pb.ListRemovalModelsRequest())
    models = {m.id: m for m in reply.models}
    assert reply.default_model == "u2netp"
    assert set(models) >= {"u2netp", "modnet", "isnet-general-use", "birefnet-general", "u2net", "silueta"}
    for available in ("u2netp", "modnet"):
        assert models[available].available and not models[available].unavailable_reason
        assert models[available].provider == "CPUExecutionProvider"
    for missing in ("isnet-general-use", "birefnet-general", "u2net", "silueta"):
        assert not models[missing].available
        assert f"{missing}.onnx is not in" in models[missing].unavailable_reason
    assert models["modnet"].kind == "modnet" and models["u2netp"].kind == "rembg"
    assert models["u2netp"].description and models["u2netp"].display_name


async def test_health_serving_and_provider_metric(service):
    runtime, stub, channel, _deps = service
    await remove(stub, red_disc(64, 16)[0], "u2netp")
    assert await clients.check_health(channel, "imagemesh.v1.BackgroundRemovalService") == \
        health_pb2.HealthCheckResponse.ServingStatus.Name(health_pb2.HealthCheckResponse.SERVING)
    value = runtime.metrics.registry.get_sample_value(
        "imagemesh_background_removal_model_loaded", {"model": "u2netp", "provider": "CPUExecutionProvider"})
    assert value == 1.0
    timed = runtime.metrics.registry.get_sample_value("imagemesh_background_removal_seconds_count", {"model": "u2netp"})
    assert timed and timed > 0


async def test_runner_loads_once_per_process(service):
    registry = service.deps.model_registry
    first = registry.runner("u2netp")[1]
    assert registry.runner("u2netp")[1] is first


def test_astronaut_is_the_expected_photo():
    assert Image.open(ASTRONAUT).size == (512, 512)
