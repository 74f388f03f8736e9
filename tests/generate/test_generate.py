"""Unary Generate and ListModels against a real in-process server with the tiny pipelines."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from shared import clients
from shared.clients import call
from shared.errors import ImageMeshError
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import generate_service_pb2 as pb
from shared.image_store import LocalImageStore
from tests.generate.conftest import SIZE, STEPS, params, pixels


async def generate(gen, **kwargs) -> pb.GenerateResponse:
    return await call(gen.stub.Generate, pb.GenerateRequest(parameters=params(**kwargs)))


async def test_same_seed_same_image_other_seed_other_image(gen):
    first = await generate(gen, seed=42)
    again = await generate(gen, seed=42)
    other = await generate(gen, seed=43)
    assert first.images[0].seed == 42
    assert first.images[0].image.data == again.images[0].image.data
    assert not np.array_equal(pixels(first.images[0].image), pixels(other.images[0].image))
    assert first.images[0].image.media_type == "image/png"
    assert (first.images[0].image.width, first.images[0].image.height) == (SIZE, SIZE)


async def test_random_seed_is_returned_and_reproduces_the_image(gen):
    drawn = await generate(gen, seed=-1)
    seed = drawn.images[0].seed
    assert seed >= 0
    replay = await generate(gen, seed=seed)
    assert replay.images[0].image.data == drawn.images[0].image.data


async def test_num_images_gives_consecutive_seeds_each_reproducible_alone(gen):
    reply = await generate(gen, seed=100, num_images=3)
    assert [(img.index, img.seed) for img in reply.images] == [(0, 100), (1, 101), (2, 102)]
    alone = await generate(gen, seed=101)
    # Each image has its own generator, so image 1 of the set is the single image of seed 101.
    assert np.abs(pixels(reply.images[1].image) - pixels(alone.images[0].image)).max() <= 1
    assert not np.array_equal(pixels(reply.images[0].image), pixels(reply.images[1].image))


async def test_metadata_timings_device_and_cost(gen):
    reply = await generate(gen, guidance_scale=5.0, style_preset="anime")
    meta = reply.metadata
    assert meta.model_id == "tiny-sd" and meta.steps == STEPS and meta.guidance_scale == 5.0
    assert meta.effective_prompt.startswith("a photo of an astronaut, anime style")
    assert (meta.width, meta.height) == (SIZE, SIZE)
    assert meta.device == "cpu" and meta.cost.device_class == "cpu"
    assert meta.scheduler == "DDIMScheduler" and meta.batch_size == 1
    assert meta.timings.inference_ms > 0 and meta.timings.total_ms >= meta.timings.inference_ms
    assert meta.cost.device_seconds > 0
    assert meta.cost.usd == 0.0  # the Orchestrator prices seconds; Generate never makes a dollar figure


async def test_aliases_aspect_ratio_and_negative_prompt_note(gen):
    reply = await generate(gen, model="FLUX-1", width=0, height=0, aspect_ratio="16:9", negative_prompt="blurry")
    assert reply.metadata.model_id == "tiny-sd" and not reply.notes
    # 64*64 pixel budget at 16:9 would make the short side 48, under min_size 64: the ratio wins, exactly 16:9.
    assert (reply.metadata.width, reply.metadata.height) == (128, 72)
    assert (reply.images[0].image.width, reply.images[0].image.height) == (128, 72)
    ignored = await generate(gen, model="flux-dev", negative_prompt="blurry")
    assert ignored.metadata.model_id == "tiny-sd-b"
    assert ignored.notes == ["negative_prompt ignored: model tiny-sd-b does not support negative prompts"]
    # The two tiny models really are different networks.
    same_seed = await generate(gen, model="tiny-sd")
    assert not np.array_equal(pixels(ignored.images[0].image), pixels(same_seed.images[0].image))


async def test_default_size_and_steps_come_from_the_registry(gen):
    reply = await generate(gen, width=0, height=0, steps=0)
    assert (reply.metadata.width, reply.metadata.height, reply.metadata.steps) == (SIZE, SIZE, STEPS)


async def test_scheduler_override_and_output_formats(gen):
    reply = await generate(gen, scheduler="EulerDiscreteScheduler", output_format=common_pb2.IMAGE_FORMAT_WEBP)
    assert reply.metadata.scheduler == "EulerDiscreteScheduler"
    assert reply.images[0].image.media_type == "image/webp"
    raw = await generate(gen, output_format=common_pb2.IMAGE_FORMAT_RAW_RGBA)
    assert raw.images[0].image.media_type == "image/x-raw-rgba"
    assert len(raw.images[0].image.data) == SIZE * SIZE * 4
    # The override is per call: the next request is back on the model's own scheduler.
    assert (await generate(gen)).metadata.scheduler == "DDIMScheduler"


async def test_outputs_always_come_back_inline_and_nothing_is_stored(gen):
    # store_output is deprecated and ignored: the orchestrator is the image store's only writer.
    reply = await generate(gen, store_output=True, owner="key_1", seed=7, prompt="a red fox")
    image = reply.images[0].image
    assert image.WhichOneof("source") == "data" and Image.open(io.BytesIO(image.data)).size == (SIZE, SIZE)
    assert LocalImageStore(gen.core.settings.resolved_image_store_dir).list() == []


async def test_an_image_reference_is_refused(gen):
    """Generate never reads the image store: a reference is INVALID_ARGUMENT, whoever's it is."""
    with pytest.raises(ImageMeshError) as err:
        await generate(gen, operation=pb.GENERATE_OPERATION_IMAGE_TO_IMAGE,
                       init_image=common_pb2.Image(ref="img_" + "0" * 32), strength=0.5)
    assert err.value.reason == "IMAGE_REF_NOT_ACCEPTED" and err.value.grpc_code.name == "INVALID_ARGUMENT"


async def test_image_to_image_from_the_same_folder_and_inpaint(gen):
    source = Image.new("RGB", (96, 96), (200, 30, 30))
    buf = io.BytesIO()
    source.save(buf, "PNG")
    init = common_pb2.Image(data=buf.getvalue(), media_type="image/png")
    reply = await generate(gen, operation=pb.GENERATE_OPERATION_IMAGE_TO_IMAGE, init_image=init, strength=0.5,
                           steps=4, width=0, height=0)
    # No size given: the source's 96x96 is kept; strength 0.5 of 4 steps runs 2.
    assert (reply.images[0].image.width, reply.images[0].image.height) == (96, 96)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    buf = io.BytesIO()
    mask.save(buf, "PNG")
    inpainted = await generate(gen, model="tiny-sd-inpaint", operation=pb.GENERATE_OPERATION_INPAINT,
                               init_image=init, mask_image=common_pb2.Image(data=buf.getvalue()))
    assert inpainted.metadata.model_id == "tiny-sd-inpaint"
    assert (inpainted.images[0].image.width, inpainted.images[0].image.height) == (SIZE, SIZE)


INVALID = [
    (dict(prompt=""), "INVALID_ARGUMENT", "prompt"),
    (dict(prompt="x" * 1001), "PROMPT_TOO_LONG", "prompt"),
    (dict(negative_prompt="x" * 1001), "PROMPT_TOO_LONG", "negative_prompt"),
    (dict(model="invalid-model"), "INVALID_MODEL", "model"),
    (dict(steps=801), "INVALID_ARGUMENT", "steps"),
    (dict(steps=-1), "INVALID_ARGUMENT", "steps"),
    (dict(guidance_scale=25.0), "INVALID_ARGUMENT", "guidance_scale"),
    (dict(width=60), "INVALID_ARGUMENT", "width"),
    (dict(width=1024), "INVALID_ARGUMENT", "width"),
    (dict(height=4096), "INVALID_ARGUMENT", "height"),
    (dict(width=0, height=0, aspect_ratio="wide"), "INVALID_ARGUMENT", "aspect_ratio"),
    (dict(num_images=9), "INVALID_ARGUMENT", "num_images"),
    (dict(num_images=-2), "INVALID_ARGUMENT", "num_images"),
    (dict(seed=-5), "INVALID_ARGUMENT", "seed"),
    (dict(style_preset="vaporwave"), "INVALID_ARGUMENT", "style_preset"),
    (dict(scheduler="NoSuchScheduler"), "INVALID_ARGUMENT", "scheduler"),
    (dict(operation=pb.GENERATE_OPERATION_INPAINT), "INVALID_ARGUMENT", "operation"),
    (dict(operation=pb.GENERATE_OPERATION_IMAGE_TO_IMAGE), "MISSING_IMAGE", "init_image"),
    (dict(operation=pb.GENERATE_OPERATION_IMAGE_TO_IMAGE, strength=1.5,
          init_image=common_pb2.Image(data=b"\x89PNG")), "INVALID_FORMAT", "image"),
]


@pytest.mark.parametrize("kwargs,reason,field", INVALID, ids=[f"{r}-{f}-{i}" for i, (_, r, f) in enumerate(INVALID)])
async def test_every_bad_value_names_its_field(gen, kwargs, reason, field):
    with pytest.raises(ImageMeshError) as info:
        await generate(gen, **kwargs)
    assert info.value.reason == reason
    assert info.value.metadata.get("field") == field
    assert info.value.grpc_code.name == "INVALID_ARGUMENT"


async def test_strength_out_of_range(gen):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, "PNG")
    with pytest.raises(ImageMeshError) as info:
        await generate(gen, operation=pb.GENERATE_OPERATION_IMAGE_TO_IMAGE, strength=1.5,
                       init_image=common_pb2.Image(data=buf.getvalue()))
    assert (info.value.reason, info.value.metadata["field"]) == ("INVALID_ARGUMENT", "strength")


async def test_invalid_model_lists_supported_models(gen):
    with pytest.raises(ImageMeshError) as info:
        await generate(gen, model="invalid-model")
    supported = info.value.metadata["supported_models"].split(",")
    assert {"auto", "tiny-sd", "flux-1", "imagen3", "black-forest-labs/FLUX.1-schnell"} <= set(supported)


async def test_list_models_reports_states_device_and_limits(gen):
    await generate(gen)  # tiny-sd is loaded by now
    reply = await call(gen.stub.ListModels, pb.ListModelsRequest())
    assert reply.device == "cpu" and reply.default_model == "tiny-sd"
    models = {m.id: m for m in reply.models}
    assert set(models) == {"tiny-sd", "tiny-sd-b", "tiny-sd-inpaint"}
    tiny = models["tiny-sd"]
    assert tiny.state == pb.MODEL_STATE_READY and tiny.is_default and tiny.device == "cpu"
    assert "flux-1" in tiny.aliases and tiny.size_multiple == 8 and tiny.max_steps == 800
    assert list(tiny.operations) == [pb.GENERATE_OPERATION_TEXT_TO_IMAGE, pb.GENERATE_OPERATION_IMAGE_TO_IMAGE]
    assert not models["tiny-sd-b"].supports_negative_prompt
    assert all(m.state != pb.MODEL_STATE_FAILED for m in reply.models)


async def test_health_is_serving(gen):
    assert await clients.check_health(gen.channel) == "SERVING"


async def test_a_prompt_longer_than_the_text_encoder_reads_gets_a_note(gen):
    long_prompt = " ".join(["a very detailed castle on a hill"] * 20)  # ~140 CLIP tokens, 660 characters
    reply = await generate(gen, prompt=long_prompt)
    assert any(note.startswith("prompt truncated: the text encoder reads 77 tokens") for note in reply.notes)
    assert not (await generate(gen)).notes
