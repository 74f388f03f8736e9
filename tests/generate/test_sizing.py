"""Generate's sizing and quality rules: exact output sizes (explicit, aspect ratio, template), the size the model
runs at, quality -> steps, the per-request image limit. Plain Python first, then one server round trip."""

from __future__ import annotations

from fractions import Fraction

import pytest
from PIL import Image

from services.generate import sizing
from services.generate.catalog import Catalog, ModelEntry
from services.generate.request import GenerateInput, steps_for_quality, validate
from services.generate.settings import DEFAULT_TEMPLATES_FILE
from shared.clients import call
from shared.errors import ImageMeshError, InvalidArgument
from shared.gen.imagemesh.v1 import generate_service_pb2 as pb
from tests.generate.conftest import params

TEMPLATES = sizing.load_templates(DEFAULT_TEMPLATES_FILE)
# An SDXL-like model: trained at 1024x1024, sides 512..2048 in multiples of 8.
ENTRY = ModelEntry(id="xl", path="xl", default_width=1024, default_height=1024, min_size=512, max_size=2048,
                   min_steps=4, default_steps=30, max_steps=50)
SMALL = ModelEntry(id="small", path="small", default_width=128, default_height=128, min_size=64, max_size=1024)


def plan(entry: ModelEntry = ENTRY, **kwargs):
    registry = Catalog([entry], entry.id, "/nonexistent")
    return validate(GenerateInput(prompt="a desk", **kwargs), registry, max_prompt_length=100, max_images=8,
                    templates=TEMPLATES)


def test_the_shipped_templates_have_the_documented_sizes():
    # Seed 003 documents linkedin_post as 1200x628 and instagram_feed_square as 1080x1080.
    assert TEMPLATES["linkedin_post"] == (1200, 628)
    assert TEMPLATES["instagram_feed_square"] == (1080, 1080)
    assert TEMPLATES["instagram_story"] == (1080, 1920)


def test_explicit_1200x628_within_max_is_the_exact_output_run_at_the_nearest_multiple():
    p = plan(width=1200, height=628)
    assert (p.output_width, p.output_height) == (1200, 628)
    assert (p.width, p.height) == (1200, 624)
    assert any("resized and cropped to 1200x628" in note for note in p.notes)
    exact = plan(width=1200, height=632)
    assert (exact.width, exact.height) == (exact.output_width, exact.output_height) == (1200, 632)
    assert not exact.notes


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_templates_are_exact_even_past_the_models_max(template):
    p = plan(SMALL, template=template)
    assert (p.output_width, p.output_height) == TEMPLATES[template]
    assert max(p.width, p.height) <= SMALL.max_size and p.width % 8 == 0 and p.height % 8 == 0
    # The run keeps the template's shape to within a multiple of 8.
    assert abs(p.width / p.height - p.output_width / p.output_height) < 0.05


def test_linkedin_post_template_on_a_large_model_runs_near_its_size():
    p = plan(template="linkedin_post")
    assert (p.output_width, p.output_height, p.width, p.height) == (1200, 628, 1200, 624)


def test_explicit_size_or_ratio_wins_over_a_template():
    p = plan(template="linkedin_post", width=1024, height=512)
    assert (p.output_width, p.output_height) == (1024, 512)
    assert any("template 'linkedin_post' ignored" in note for note in p.notes)


def test_unknown_template_lists_the_known_ones():
    with pytest.raises(InvalidArgument) as info:
        plan(template="myspace_banner")
    assert info.value.metadata["field"] == "template" and "linkedin_post" in info.value.message


@pytest.mark.parametrize("ratio,expected", [("1:1", (1024, 1024)), ("16:9", (1360, 765)), ("9:16", (765, 1360)),
                                            ("3:2", (1254, 836)), ("4:5", (916, 1145)), ("1.91:1", (1337, 700))])
def test_aspect_ratios_are_exact_at_the_pixel_budget(ratio, expected):
    p = plan(aspect_ratio=ratio)
    assert (p.output_width, p.output_height) == expected
    assert Fraction(*expected) == sizing.parse_aspect_ratio(ratio)
    # Exactness costs a little of the budget: sides step by the ratio's terms (191x100 for 1.91:1).
    assert abs(p.output_width * p.output_height - 1024 * 1024) < 0.11 * 1024 * 1024


def test_aspect_ratio_keeps_the_ratio_when_the_budget_is_under_min_size():
    assert sizing.size_for_ratio(Fraction(16, 9), 64 * 64, 64, 512) == (128, 72)
    assert sizing.size_for_ratio(Fraction(1, 4), 64 * 64, 64, 512) == (64, 256)


def test_one_side_and_a_ratio_give_the_other_exactly():
    p = plan(width=1280, aspect_ratio="16:9")
    assert (p.output_width, p.output_height) == (1280, 720)


def test_explicit_sizes_outside_the_models_limits_are_refused():
    for kwargs in (dict(width=4096, height=1024), dict(width=256, height=1024)):
        with pytest.raises(InvalidArgument):
            plan(**kwargs)


def test_fit_exactly_resizes_and_centre_crops():
    image = Image.new("RGB", (1200, 624), (10, 20, 30))
    out = sizing.fit_exactly(image, 1200, 628)
    assert out.size == (1200, 628) and out.getpixel((600, 314)) == (10, 20, 30)
    assert sizing.fit_exactly(image, 1200, 624) is image


@pytest.mark.parametrize("quality,steps", [("1", 4), ("draft", 17), ("standard", 30), ("5", 30), ("high", 38),
                                           ("premium", 42), ("ultra", 50), ("10", 50)])
def test_quality_maps_onto_the_models_step_range(quality, steps):
    assert steps_for_quality(quality, ENTRY) == steps
    assert plan(quality=quality).steps == steps


def test_explicit_steps_win_over_quality_and_bad_quality_is_refused():
    p = plan(quality="ultra", steps=12)
    assert p.steps == 12 and any("quality 'ultra' ignored" in note for note in p.notes)
    for bad in ("11", "0", "best"):
        with pytest.raises(InvalidArgument) as info:
            plan(quality=bad)
        assert info.value.metadata["field"] == "quality"


def test_the_image_limit_is_generates():
    assert plan(num_images=8).num_images == 8
    with pytest.raises(InvalidArgument) as info:
        plan(num_images=9)
    assert info.value.metadata["field"] == "num_images"


async def test_template_output_is_exact_through_the_server(gen):
    reply = await call(gen.stub.Generate, pb.GenerateRequest(parameters=params(
        width=0, height=0, template="email_header", quality="draft", steps=0)))
    assert (reply.metadata.width, reply.metadata.height) == (600, 200)
    assert (reply.images[0].image.width, reply.images[0].image.height) == (600, 200)
    assert reply.metadata.steps == steps_for_quality("draft", gen.core.registry.default)
    assert any("resized and cropped to 600x200" in note for note in reply.notes)
    with pytest.raises(ImageMeshError) as info:
        await call(gen.stub.Generate, pb.GenerateRequest(parameters=params(num_images=9)))
    assert info.value.metadata["field"] == "num_images"


async def test_list_models_exposes_the_limit_providers_and_templates(gen):
    reply = await call(gen.stub.ListModels, pb.ListModelsRequest())
    assert all(m.max_images_per_request == 8 for m in reply.models)
    assert {t.id: (t.width, t.height) for t in reply.templates} == TEMPLATES
