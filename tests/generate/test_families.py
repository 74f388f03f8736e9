"""Every model family through the real Generate server: SDXL, SD3 and FLUX (dev and schnell), tiny and random,
built offline by prepare_models and loaded with from_pretrained from the shipped registry (models.yaml).

Per family: text-to-image, image-to-image and inpaint through the family's own diffusers pipelines, seeds,
batching equal to separate runs, cancellation within one step, and the family rules (FLUX takes no negative
prompt, T5 families read max_sequence_length tokens, schnell's step and guidance limits), reported in notes.
Also: linkedin_post is exactly 1200x628 on every family.
"""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from services.generate.catalog import Catalog, ModelEntry
from services.generate.families import unpack_latents
from services.generate.loaded import load_dtype
from services.generate.settings import DEFAULT_MODELS_FILE
from shared.clients import call
from shared.errors import ImageMeshError
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import generate_service_pb2 as pb
from tests.generate.conftest import MODELS_DIR, params, pixels, start_generate, tiny_entry, write_registry

# The seed names each family answers to (services/generate/models.yaml), and the pipelines it must run.
FAMILIES = {
    "sdxl": ("tiny-sdxl", "StableDiffusionXL"),
    "sd-3.5": ("tiny-sd3", "StableDiffusion3"),
    "flux-1": ("tiny-flux-dev", "Flux"),
    "black-forest-labs/FLUX.1-schnell": ("tiny-flux-schnell", "Flux"),
}
CLASS_SUFFIX = {"text_to_image": "Pipeline", "image_to_image": "Img2ImgPipeline", "inpaint": "InpaintPipeline"}
NAMES = list(FAMILIES)
# Batched vs alone: the tolerance of tests/generate/test_batching.py.
MAX_GREY_LEVELS = 2
MAX_MEAN_DIFF = 0.05
STEPS = 2


@pytest_asyncio.fixture(scope="module")
async def fam(tmp_path_factory):
    # The shipped registry, so the names, families and limits under test are the ones clients get. Prompts up to
    # 4000 characters: 512 T5 tokens are about 2000.
    server = await start_generate(tmp_path_factory.mktemp("families"), models_file=DEFAULT_MODELS_FILE,
                                  batch_window_ms=0, max_batch_images=4, max_prompt_length=4000)
    yield server
    await server.close()


async def generate(server, **kwargs) -> pb.GenerateResponse:
    kwargs.setdefault("steps", STEPS)
    return await call(server.stub.Generate, pb.GenerateRequest(parameters=params(**kwargs)))


def png(image: Image.Image) -> common_pb2.Image:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return common_pb2.Image(data=buf.getvalue())


def source(size: int = 64) -> Image.Image:
    return Image.open(MODELS_DIR / "testdata" / "astronaut.png").convert("RGB").resize((size, size))


def left_half_mask(size: int = 64) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (0, 0, size // 2, size))
    return mask


def assert_same_image(a, b) -> None:
    diff = np.abs(pixels(a) - pixels(b))
    assert diff.max() <= MAX_GREY_LEVELS and diff.mean() < MAX_MEAN_DIFF, (diff.max(), diff.mean())


def pipeline_class(server, model_id: str, operation: str) -> str:
    slot = server.core.manager.slots[model_id]
    return type(slot.derived[operation]).__name__


# --- text-to-image, image-to-image, inpaint, seeds --------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
async def test_text_to_image_runs_the_family_pipeline_and_seeds_repeat(fam, name):
    model_id, prefix = FAMILIES[name]
    first = await generate(fam, model=name, seed=7)
    assert first.metadata.model_id == model_id
    assert pipeline_class(fam, model_id, "text_to_image") == prefix + "Pipeline"
    assert Image.open(io.BytesIO(first.images[0].image.data)).size == (64, 64)
    again = await generate(fam, model=name, seed=7)
    other = await generate(fam, model=name, seed=8)
    assert again.images[0].image.data == first.images[0].image.data
    assert not np.array_equal(pixels(other.images[0].image), pixels(first.images[0].image))


@pytest.mark.parametrize("name", NAMES)
async def test_image_to_image_runs_the_family_pipeline_on_the_source(fam, name):
    model_id, prefix = FAMILIES[name]
    i2i = dict(model=name, seed=3, steps=4, strength=0.5, operation=pb.GENERATE_OPERATION_IMAGE_TO_IMAGE)
    own = await generate(fam, init_image=png(source()), **i2i)
    assert pipeline_class(fam, model_id, "image_to_image") == prefix + "Img2ImgPipeline"
    assert (own.metadata.width, own.metadata.height) == (64, 64)
    flipped = await generate(fam, init_image=png(source().transpose(Image.FLIP_LEFT_RIGHT)), **i2i)
    # The source image goes in: another source, same seed and prompt, another picture.
    assert not np.array_equal(pixels(own.images[0].image), pixels(flipped.images[0].image))


@pytest.mark.parametrize("name", NAMES)
async def test_inpaint_runs_the_family_pipeline_and_uses_the_mask(fam, name):
    model_id, prefix = FAMILIES[name]
    inpaint = dict(model=name, seed=3, steps=3, operation=pb.GENERATE_OPERATION_INPAINT, init_image=png(source()))
    half = await generate(fam, mask_image=png(left_half_mask()), **inpaint)
    assert pipeline_class(fam, model_id, "inpaint") == prefix + "InpaintPipeline"
    whole = await generate(fam, **inpaint)
    assert "no mask_image: the whole image is repainted" in whole.notes
    assert not np.array_equal(pixels(half.images[0].image), pixels(whole.images[0].image))
    again = await generate(fam, mask_image=png(left_half_mask()), **inpaint)
    assert again.images[0].image.data == half.images[0].image.data


# --- batching and cancellation ----------------------------------------------------------------------------

BATCH = [
    dict(prompt="a lighthouse at dusk", seed=11),
    dict(prompt="a bowl of ramen", seed=22, negative_prompt="blurry"),
    dict(prompt="an astronaut riding a horse", seed=33),
    dict(prompt="a red fox in snow", seed=44, negative_prompt="text, watermark"),
]
# SDXL cannot batch "no negative prompt" (zero embeddings) with a negative prompt: two batches of two.
# SD3 batches all four; FLUX drops the negative prompts and batches all four.
BATCH_SIZES = {"sdxl": [2, 2, 2, 2], "sd-3.5": [4, 4, 4, 4], "flux-1": [4, 4, 4, 4]}


@pytest.mark.parametrize("name", list(BATCH_SIZES))
async def test_batched_requests_give_the_images_of_separate_runs(fam, name):
    worker = fam.core.worker
    alone = [await generate(fam, model=name, **kw) for kw in BATCH]
    assert [r.metadata.batch_size for r in alone] == [1, 1, 1, 1]
    worker.window_s = 3.0  # long enough that the four always meet; a full batch starts at once
    try:
        together = await asyncio.gather(*(generate(fam, model=name, **kw) for kw in BATCH))
    finally:
        worker.window_s = 0.0
    assert [r.metadata.batch_size for r in together] == BATCH_SIZES[name]
    for batched, single, kw in zip(together, alone, BATCH):
        assert batched.images[0].seed == single.images[0].seed == kw["seed"]
        assert list(batched.notes) == list(single.notes)
        assert_same_image(batched.images[0].image, single.images[0].image)
    # num_images: seeds continue image by image, each image the one its seed gives alone.
    two = await generate(fam, model=name, seed=50, num_images=2)
    assert [i.seed for i in two.images] == [50, 51]
    assert_same_image(two.images[1].image, (await generate(fam, model=name, seed=51)).images[0].image)


@pytest.mark.parametrize("name", ["sdxl", "sd-3.5", "flux-1"])
async def test_a_cancelled_stream_stops_within_one_step(fam, name):
    worker = fam.core.worker
    before = len(worker.stats.interrupted)
    longest = fam.core.registry.resolve(name).max_steps
    call_ = fam.stub.GenerateStream(pb.GenerateStreamRequest(parameters=params(model=name, steps=longest)))
    seen = 0
    async for event in call_:
        if event.HasField("progress") and event.progress.stage == common_pb2.STAGE_GENERATING:
            seen = event.progress.step
            if seen >= 2:
                call_.cancel()
                break
    deadline = asyncio.get_running_loop().time() + 60
    while len(worker.stats.interrupted) == before:  # the cap turns a hang into a failure; no timing asserted
        assert asyncio.get_running_loop().time() < deadline, "the pipeline was never interrupted"
        await asyncio.sleep(0.02)
    steps_run, total = worker.stats.interrupted[-1]
    assert total == longest and seen <= steps_run < longest
    # At most the step in flight when the cancel arrived ran after it.
    assert worker.stats.steps_after_cancel[-1] <= 1
    # And the worker is free for the next request.
    assert len((await generate(fam, model=name)).images) == 1


# --- family rules -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["flux-1", "black-forest-labs/FLUX.1-schnell"])
async def test_flux_ignores_negative_prompts_and_says_so(fam, name):
    model_id, _ = FAMILIES[name]
    plain = await generate(fam, model=name, seed=5)
    negative = await generate(fam, model=name, seed=5, negative_prompt="blurry, low quality")
    assert f"negative_prompt ignored: model {model_id} does not support negative prompts (FLUX takes no " \
           "negative prompt)" in negative.notes
    assert negative.images[0].image.data == plain.images[0].image.data


@pytest.mark.parametrize("name", ["sdxl", "sd-3.5"])
async def test_sdxl_and_sd3_use_negative_prompts(fam, name):
    plain = await generate(fam, model=name, seed=5)
    negative = await generate(fam, model=name, seed=5, negative_prompt="blurry, low quality")
    assert not any("negative_prompt" in note for note in negative.notes)
    assert not np.array_equal(pixels(plain.images[0].image), pixels(negative.images[0].image))


def _t5_prompt(fam, name: str, tokens: int, tail: str) -> str:
    """A prompt whose first `tokens` T5 tokens are fixed, followed by `tail`."""
    pipe = fam.core.manager.slots[FAMILIES[name][0]].pipe
    tokenizer = pipe.tokenizer_3 if FAMILIES[name][0] == "tiny-sd3" else pipe.tokenizer_2
    words = ("a lighthouse on a cliff at dusk with seagulls " * 100).split()
    prompt = ""
    for word in words:
        candidate = f"{prompt} {word}".strip()
        if len(tokenizer(candidate).input_ids) - 1 > tokens:  # less the closing </s>
            break
        prompt = candidate
    return f"{prompt} {tail}"


@pytest.mark.parametrize("name,limit", [("black-forest-labs/FLUX.1-schnell", 256), ("sd-3.5", 256),
                                        ("flux-1", 512)])
async def test_max_sequence_length_is_what_the_t5_encoder_reads(fam, name, limit):
    await generate(fam, model=name)  # loaded, so the test can use its tokenizer
    model = fam.core.registry.resolve(name)
    assert model.max_sequence_length == limit
    # Two prompts that differ only past the limit give the same picture, and a note says the rest was cut.
    one = await generate(fam, model=name, seed=9, prompt=_t5_prompt(fam, name, limit + 10, "in red"))
    two = await generate(fam, model=name, seed=9, prompt=_t5_prompt(fam, name, limit + 10, "in blue"))
    assert one.images[0].image.data == two.images[0].image.data
    assert any(note.startswith(f"prompt truncated: the T5 text encoder reads max_sequence_length={limit} tokens")
               for note in one.notes)
    # Within the limit, the T5 reads the difference (CLIP, 77 tokens, does not see it).
    three = await generate(fam, model=name, seed=9, prompt=_t5_prompt(fam, name, limit - 30, "in red"))
    four = await generate(fam, model=name, seed=9, prompt=_t5_prompt(fam, name, limit - 30, "in blue"))
    assert not np.array_equal(pixels(three.images[0].image), pixels(four.images[0].image))
    assert not any(note.startswith("prompt truncated") for note in three.notes)


async def test_schnell_clamps_steps_and_ignores_guidance_with_notes(fam):
    name = "black-forest-labs/FLUX.1-schnell"
    # Seed 001 documents 30 steps and guidance 4.0 by default; schnell runs at most 4 steps, without guidance.
    asked = await generate(fam, model=name, seed=4, steps=30, guidance_scale=4.0)
    assert (asked.metadata.steps, asked.metadata.guidance_scale) == (4, 0.0)
    assert "steps 30 clamped to 4: model tiny-flux-schnell takes 1 to 4" in asked.notes
    assert ("guidance_scale 4 ignored: model tiny-flux-schnell is guidance-distilled and takes no guidance scale"
            in asked.notes)
    plain = await generate(fam, model=name, seed=4, steps=4)
    assert list(plain.notes) == [] and plain.images[0].image.data == asked.images[0].image.data
    omitted = await call(fam.stub.Generate, pb.GenerateRequest(parameters=pb.GenerateParameters(
        model=name, prompt="a photo of an astronaut", width=64, height=64, seed=4)))
    assert omitted.metadata.steps == 4 and omitted.images[0].image.data == plain.images[0].image.data


async def test_flux_dev_embeds_the_guidance_scale(fam):
    low = await generate(fam, model="flux-1", seed=6, guidance_scale=1.5)
    high = await generate(fam, model="flux-1", seed=6, guidance_scale=6.0)
    assert (low.metadata.guidance_scale, high.metadata.guidance_scale) == (1.5, 6.0)
    assert not np.array_equal(pixels(low.images[0].image), pixels(high.images[0].image))


async def test_models_that_refuse_out_of_range_values_refuse_them(fam):
    with pytest.raises(ImageMeshError) as info:
        await generate(fam, model="flux-1", steps=51)
    assert info.value.reason == "INVALID_ARGUMENT" and "steps must be between 1 and 50" in info.value.message


def test_registry_checks_family_rules():
    with pytest.raises(ValueError, match="flux pipelines take no negative prompt"):
        ModelEntry(id="f", path="f", family="flux", size_multiple=16, min_size=64, max_size=1024,
                   supports_negative_prompt=True)
    with pytest.raises(ValueError, match="sizes are multiples of 16"):
        ModelEntry(id="s", path="s", family="sd3", size_multiple=8)
    with pytest.raises(ValueError, match="max_sequence_length applies"):
        ModelEntry(id="x", path="x", family="sdxl", max_sequence_length=77)
    with pytest.raises(ValueError, match="max_sequence_length must be 1 to 512"):
        ModelEntry(id="x", path="x", family="flux", max_sequence_length=1024)
    flux = ModelEntry(id="f", path="f", family="flux", min_size=64, max_size=1024)
    assert (flux.supports_negative_prompt, flux.max_sequence_length, flux.size_multiple) == (False, 512, 16)


def test_auto_dtype_is_half_precision_on_cuda_bfloat16_for_flux():
    entries = {f: ModelEntry(id=f, path=f, family=f, dtype="auto") for f in ("sd1", "sdxl", "sd3", "flux")}
    assert {f: load_dtype(e, "cuda") for f, e in entries.items()} == {
        "sd1": "float16", "sdxl": "float16", "sd3": "float16", "flux": "bfloat16"}
    assert {load_dtype(e, "cpu") for e in entries.values()} == {"float32"}
    assert load_dtype(ModelEntry(id="x", path="x", family="flux", dtype="float16"), "cuda") == "float16"


def test_an_entry_without_family_gets_it_from_the_checkpoint(tmp_path):
    # Registries written before families (helm's SDXL entry, say) keep working: model_index.json names the class.
    entries = [tiny_entry(name, name) for name in ("tiny-sd", "tiny-sdxl", "tiny-sd3", "tiny-flux-schnell")]
    for entry in entries:
        del entry["size_multiple"]  # the family's
    entries.append(tiny_entry("by-class", "nowhere", pipeline="StableDiffusion3Pipeline", size_multiple=16))
    catalog = Catalog.from_file(write_registry(tmp_path, entries), MODELS_DIR)
    found = {e.id: (e.family, e.size_multiple, e.supports_negative_prompt, e.max_sequence_length)
             for e in catalog.entries.values()}
    assert found == {"tiny-sd": ("sd1", 8, True, 0), "tiny-sdxl": ("sdxl", 8, True, 0),
                     "tiny-sd3": ("sd3", 16, True, 256), "tiny-flux-schnell": ("flux", 16, False, 512),
                     "by-class": ("sd3", 16, True, 256)}
    with pytest.raises(ValueError, match="'bad' is a flux model .* sizes are multiples of 16"):
        Catalog.from_file(write_registry(tmp_path, [tiny_entry("bad", "tiny-flux-dev")]), MODELS_DIR)


async def test_a_checkpoint_of_another_family_than_the_registry_says_is_failed(tmp_path):
    server = await start_generate(tmp_path, [tiny_entry("wrong", "tiny-flux-schnell", family="sd1")])
    try:
        with pytest.raises(ImageMeshError) as info:
            await generate(server, model="wrong")
        assert info.value.reason == "MODEL_UNAVAILABLE"
        assert "the registry says family sd1, the checkpoint loads as a flux pipeline" in info.value.message
    finally:
        await server.close()


def test_flux_latents_unpack_to_the_vae_layout():
    import torch

    # What a step callback sees for a 64x48 FLUX image: 4x3 tokens of 2x2 patches of 16 channels.
    grid = torch.arange(16 * 8 * 6, dtype=torch.float32).reshape(1, 16, 8, 6)
    packed = grid.view(1, 16, 4, 2, 3, 2).permute(0, 2, 4, 1, 3, 5).reshape(1, 12, 64)  # FluxPipeline._pack_latents
    assert torch.equal(unpack_latents("flux", packed, 64, 48), grid)
    assert unpack_latents("sd3", grid, 64, 48) is grid


# --- exact sizes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*NAMES[:3], "tiny-sd"])
async def test_linkedin_post_is_exactly_1200x628_on_every_family(fam, name):
    reply = await generate(fam, model=name, width=0, height=0, steps=1, template="linkedin_post")
    assert Image.open(io.BytesIO(reply.images[0].image.data)).size == (1200, 628)
    assert (reply.metadata.width, reply.metadata.height) == (1200, 628)
    # The model ran at its nearest supported size (multiples of 8 or 16, within its maximum) and says so.
    [note] = [n for n in reply.notes if n.startswith("generated at ")]
    assert note.endswith("resized and cropped to 1200x628")


async def test_explicit_1200x628_is_accepted_where_the_model_maximum_allows(fam):
    reply = await generate(fam, model="sdxl", width=1200, height=628, steps=1)
    assert Image.open(io.BytesIO(reply.images[0].image.data)).size == (1200, 628)
    with pytest.raises(ImageMeshError) as info:  # tiny-sd: 1024 pixels a side at most
        await generate(fam, model="tiny-sd", width=1200, height=628, steps=1)
    assert info.value.reason == "INVALID_ARGUMENT" and info.value.metadata["field"] == "width"
