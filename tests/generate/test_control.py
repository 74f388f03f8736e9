"""Control and edits that run their models: ControlNet (sketch, structure), InstructPix2Pix, IP-Adapter style, and
search inpainting whose region comes from CLIPSeg or the subject mask. Real gRPC server, real tiny models."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import pytest_asyncio
from PIL import Image, ImageDraw

from services.generate import control, segmentation
from shared import images
from shared.gen.imagemesh.v1 import generate_service_pb2 as pb
from tests.generate.conftest import MODELS_DIR, pixels, start_generate, tiny_entry

STEPS = 2


def entries() -> list[dict]:
    return [
        tiny_entry("tiny-sd", "tiny-sd", operations=["text_to_image", "image_to_image"]),
        tiny_entry("tiny-sd-inpaint", "tiny-sd-inpaint", pipeline="StableDiffusionInpaintPipeline",
                   operations=["inpaint"]),
        tiny_entry("tiny-sd-controlnet", "tiny-sd-controlnet", pipeline="StableDiffusionControlNetPipeline",
                   operations=["control"]),
        tiny_entry("tiny-sdxl-controlnet", "tiny-sdxl-controlnet", pipeline="StableDiffusionXLControlNetPipeline",
                   family="sdxl", operations=["control"]),
        tiny_entry("tiny-sd-instruct", "tiny-sd-instruct", pipeline="StableDiffusionInstructPix2PixPipeline",
                   operations=["instruct_edit"]),
        tiny_entry("tiny-sd-style", "tiny-sd", ip_adapter="tiny-ip-adapter", operations=["style", "style_transfer"]),
        tiny_entry("tiny-clipseg", "tiny-clipseg", pipeline="CLIPSegForImageSegmentation", operations=["segment"]),
    ]


@pytest_asyncio.fixture(scope="module")
async def gen(tmp_path_factory):
    server = await start_generate(tmp_path_factory.mktemp("control"), entries())
    yield server
    await server.close()


def square(size=(64, 64), box=(16, 16, 48, 48), fill=(255, 255, 255), background=(0, 0, 0)) -> Image.Image:
    image = Image.new("RGB", size, background)
    ImageDraw.Draw(image).rectangle(box, fill=fill)
    return image


def sketch(size=(64, 64)) -> Image.Image:
    """Dark strokes on white paper."""
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.line((8, 8, 56, 56), fill=(0, 0, 0), width=3)
    draw.ellipse((20, 30, 44, 54), outline=(30, 30, 30), width=2)
    return image


def photo(size=(64, 64)) -> Image.Image:
    return Image.open(MODELS_DIR / "testdata" / "astronaut.png").convert("RGB").resize(size)


def msg(image: Image.Image):
    return images.to_message(image)


MODEL_FOR = {pb.GENERATE_OPERATION_CONTROL: "tiny-sd-controlnet", pb.GENERATE_OPERATION_INSTRUCT_EDIT: "tiny-sd-instruct",
             pb.GENERATE_OPERATION_STYLE: "tiny-sd-style", pb.GENERATE_OPERATION_STYLE_TRANSFER: "tiny-sd-style",
             pb.GENERATE_OPERATION_INPAINT: "tiny-sd-inpaint"}


async def run(gen, **kwargs) -> pb.GenerateResponse:
    base = {"prompt": "a house", "steps": STEPS, "seed": 7, "model": MODEL_FOR.get(kwargs.get("operation"), "")}
    base.update(kwargs)
    return await gen.stub.Generate(pb.GenerateRequest(parameters=pb.GenerateParameters(**base)))


# -- preprocessing and the subject rule (plain Python) ----------------------------------------------------------


def test_canny_finds_the_edges_of_a_square():
    edges = np.asarray(control.preprocess(square(), "canny").convert("L"))
    assert edges[14:19, 30].max() == 255 and edges[30, 14:19].max() == 255  # on the square's border
    assert edges[32, 32] == 0 and edges[2, 2] == 0  # inside it and outside it: flat, no edge


def test_lineart_and_scribble_turn_dark_strokes_into_light_lines():
    lines = np.asarray(control.preprocess(sketch(), "lineart").convert("L"))
    assert lines[32, 32] == 255 and lines[2, 60] == 0  # the stroke, the paper
    scribble = np.asarray(control.preprocess(sketch(), "scribble").convert("L"))
    assert set(np.unique(scribble)) == {0, 255}


@pytest.mark.parametrize("prompt,subject", [
    ("person", True), ("the subject", True), ("Main object", True), ("a product", True), ("the main person!", True),
    ("dog", False), ("red ball", False), ("the sky behind the person", False),
])
def test_which_search_prompts_name_the_main_subject(prompt, subject):
    assert segmentation.names_subject(prompt) is subject


# -- control -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preprocessor,source", [("canny", square), ("lineart", sketch), ("scribble", sketch)])
async def test_control_runs_controlnet_after_preprocessing(gen, preprocessor, source):
    reply = await run(gen, operation=pb.GENERATE_OPERATION_CONTROL, init_image=msg(source((80, 64))),
                      control_preprocessor=preprocessor, control_strength=0.9)
    assert reply.metadata.model_id == "tiny-sd-controlnet"
    assert reply.metadata.path == f"controlnet:{preprocessor}"
    assert pixels(reply.images[0].image).shape == (64, 80, 3)
    assert any(note.startswith("control:") and "0.9" in note for note in reply.notes)


async def test_the_control_image_steers_the_output(gen):
    """Same seed and prompt: the same control image gives the same picture, another one a different picture."""
    def call(box):
        return run(gen, operation=pb.GENERATE_OPERATION_CONTROL, init_image=msg(square(box=box)))
    first, again, other = [pixels((await call(box)).images[0].image)
                           for box in ((16, 16, 48, 48), (16, 16, 48, 48), (4, 30, 60, 40))]
    assert np.array_equal(first, again)
    assert np.abs(first - other).mean() > 1.0


async def test_control_with_a_control_image_repaints_init_image_under_it(gen):
    def call(box):
        return run(gen, operation=pb.GENERATE_OPERATION_CONTROL, init_image=msg(photo((72, 64))), strength=0.75,
                   steps=4, control_image=msg(square(box=box)), control_preprocessor="canny")
    first = await call((16, 16, 48, 48))
    assert first.metadata.path == "controlnet:canny:img2img"
    assert pixels(first.images[0].image).shape == (64, 72, 3)
    other = await call((4, 30, 60, 40))
    assert np.abs(pixels(first.images[0].image) - pixels(other.images[0].image)).mean() > 1.0


async def test_sdxl_controlnet(gen):
    def call(box):
        return run(gen, model="tiny-sdxl-controlnet", operation=pb.GENERATE_OPERATION_CONTROL,
                   init_image=msg(square((72, 64), box=box)), negative_prompt="blurry")
    first = await call((16, 16, 48, 48))
    assert (first.metadata.model_id, first.metadata.path) == ("tiny-sdxl-controlnet", "controlnet:canny")
    assert pixels(first.images[0].image).shape == (64, 72, 3)
    other = await call((4, 30, 60, 40))
    assert np.abs(pixels(first.images[0].image) - pixels(other.images[0].image)).mean() > 1.0


async def test_unknown_preprocessor_is_refused(gen):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await run(gen, operation=pb.GENERATE_OPERATION_CONTROL, init_image=msg(square()), control_preprocessor="hed")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "canny" in caught.value.details()


# -- instruct and style ----------------------------------------------------------------------------------------------


async def test_general_edit_runs_instruct_pix2pix(gen):
    reply = await run(gen, operation=pb.GENERATE_OPERATION_INSTRUCT_EDIT, prompt="make it snowy",
                      init_image=msg(photo((64, 48))), image_guidance_scale=2.0)
    assert (reply.metadata.model_id, reply.metadata.path) == ("tiny-sd-instruct", "instruct-pix2pix")
    assert pixels(reply.images[0].image).shape == (48, 64, 3)
    assert any("InstructPix2Pix at image guidance 2" in note for note in reply.notes)


async def test_style_runs_the_ip_adapter_on_the_reference(gen):
    def call(reference):
        return run(gen, operation=pb.GENERATE_OPERATION_STYLE, style_image=msg(reference), width=64, height=64,
                   style_strength=0.8)
    first = await call(photo())
    assert (first.metadata.model_id, first.metadata.path) == ("tiny-sd-style", "ip-adapter")
    other = await call(square())
    assert np.abs(pixels(first.images[0].image) - pixels(other.images[0].image)).mean() > 1.0


async def test_style_transfer_is_image_to_image_under_the_ip_adapter(gen):
    reply = await run(gen, operation=pb.GENERATE_OPERATION_STYLE_TRANSFER, init_image=msg(photo((72, 64))),
                      style_image=msg(sketch()), strength=0.5, steps=4)
    assert reply.metadata.path == "ip-adapter:img2img"
    assert pixels(reply.images[0].image).shape == (64, 72, 3)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await run(gen, operation=pb.GENERATE_OPERATION_STYLE_TRANSFER, init_image=msg(photo()))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "style_image" in caught.value.details()


# -- search: the region from text -------------------------------------------------------------------------------------


def changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.abs(before.astype(np.int16) - after.astype(np.int16)).max(axis=2) > 0


async def test_search_replace_repaints_only_what_clipseg_selects(gen):
    source = photo()
    reply = await run(gen, operation=pb.GENERATE_OPERATION_INPAINT, prompt="a golden helmet",
                      search_prompt="helmet", init_image=msg(source))
    assert (reply.metadata.model_id, reply.metadata.path) == ("tiny-sd-inpaint", "search:clipseg")
    out = pixels(reply.images[0].image)
    assert out.shape == (64, 64, 3)
    # The same model, run here, selects the same region: the edit happened there and nowhere else.
    model = segmentation.load(str(MODELS_DIR / "tiny-clipseg"), "cpu", None)
    region = np.asarray(model.region(source, "helmet")) > 0
    assert 0 < region.mean() < 1
    diff = changed(np.asarray(source), out)
    assert not diff[~region].any()
    assert diff[region].mean() > 0.9
    assert any("tiny-clipseg (CLIPSeg) selected" in note for note in reply.notes)


async def test_a_subject_search_asks_for_the_subject_mask_then_uses_it(gen):
    source = square(fill=(200, 30, 30), background=(128, 128, 128))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await run(gen, operation=pb.GENERATE_OPERATION_INPAINT, prompt="blue", search_prompt="the subject",
                  init_image=msg(source))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "subject_mask" in caught.value.details()
    mask = square(fill=(255, 255, 255)).convert("L")  # what BackgroundRemoval answers for this square
    reply = await run(gen, operation=pb.GENERATE_OPERATION_INPAINT, prompt="blue", search_prompt="the subject",
                      init_image=msg(source), subject_mask=msg(mask))
    assert reply.metadata.path == "search:subject-mask"
    diff = changed(np.asarray(source), pixels(reply.images[0].image))
    inside = np.asarray(mask) > 0
    assert not diff[~inside].any() and diff[inside].mean() > 0.9


async def test_a_given_mask_wins_over_the_search_prompt(gen):
    mask = square().convert("L")
    reply = await run(gen, operation=pb.GENERATE_OPERATION_INPAINT, prompt="x", search_prompt="helmet",
                      init_image=msg(photo()), mask_image=msg(mask))
    assert reply.metadata.path == "inpaint"
    assert "search_prompt ignored: the request gives its own mask" in reply.notes


async def test_segmentation_is_listed_but_never_generates(gen):
    listing = await gen.stub.ListModels(pb.ListModelsRequest())
    ops = {m.id: list(m.operations) for m in listing.models}
    assert ops["tiny-clipseg"] == [pb.GENERATE_OPERATION_SEGMENT]
    assert ops["tiny-sd-style"] == [pb.GENERATE_OPERATION_STYLE, pb.GENERATE_OPERATION_STYLE_TRANSFER]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await run(gen, model="tiny-clipseg", operation=pb.GENERATE_OPERATION_SEGMENT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
