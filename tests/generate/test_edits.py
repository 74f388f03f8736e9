"""Generate's own edit rules: the outpaint canvas and its mask, the checks that run before it is allocated, and
masks drawn in transparency (mask_from_alpha, OpenAI's edits)."""

from __future__ import annotations

import pytest
from PIL import Image

from services.generate.catalog import Catalog, ModelEntry
from services.generate.edits import Outpaint, full_mask, mask_from_alpha, outpaint_canvas
from services.generate.request import GenerateInput, validate
from shared.errors import ImageTooLarge, InvalidArgument


def test_outpaint_canvas_and_mask():
    source = Image.new("RGB", (40, 30), (200, 10, 10))
    canvas, mask = outpaint_canvas(source, Outpaint(left=8, right=16, up=0, down=4))
    assert canvas.size == mask.size == (64, 34)
    assert canvas.getpixel((8, 0)) == (200, 10, 10) and mask.getpixel((8, 0)) == 0
    assert mask.getpixel((0, 0)) == 255 and mask.getpixel((63, 33)) == 255


@pytest.mark.parametrize("sides", [Outpaint(), Outpaint(left=-1, right=8), Outpaint(up=2049)])
def test_outpaint_sides_are_checked_before_any_image(sides):
    with pytest.raises(InvalidArgument):
        sides.check()


def test_the_canvas_is_refused_before_it_exists():
    # An 8000x4000 image grown by 2048 on each side would need 12096x8096 pixels: refused from the numbers alone.
    with pytest.raises(ImageTooLarge):
        Outpaint(left=2048, right=2048, up=2048, down=2048).check_canvas(8000, 4000, 40_000_000)
    Outpaint(right=32).check_canvas(64, 64, 40_000_000)


def test_full_mask_repaints_everything():
    mask = full_mask((5, 3))
    assert mask.size == (5, 3) and mask.getextrema() == (255, 255)


def _hole(size: int = 64) -> Image.Image:
    """An opaque red square with a fully transparent 16x16 hole at (8, 8)."""
    image = Image.new("RGBA", (size, size), (200, 10, 10, 255))
    image.paste((0, 0, 0, 0), (8, 8, 24, 24))
    return image


def test_transparent_pixels_become_the_white_repaint_area():
    mask = mask_from_alpha(_hole())
    assert mask.mode == "L" and mask.size == (64, 64)
    assert mask.getpixel((10, 10)) == 255 and mask.getpixel((40, 40)) == 0
    assert sum(1 for value in mask.getdata() if value == 255) == 16 * 16


INPAINT = ModelEntry(id="inpaint", path="inpaint", operations=("inpaint",), default_width=64, default_height=64,
                     min_size=64, max_size=1024)


def _plan(**kwargs):
    registry = Catalog([INPAINT], INPAINT.id, "/nonexistent")
    return validate(GenerateInput(prompt="a cat", operation="inpaint", mask_from_alpha=True, **kwargs), registry,
                    max_prompt_length=100, max_images=8)


def test_mask_from_alpha_reads_the_mask_or_else_the_image_transparency():
    opaque = Image.new("RGB", (64, 64), (10, 200, 10))
    from_mask = _plan(init_image=opaque, mask_image=_hole())
    assert from_mask.mask_image.getpixel((10, 10)) == 255 and from_mask.mask_image.getpixel((40, 40)) == 0
    from_image = _plan(init_image=_hole())
    assert from_image.mask_image.getpixel((10, 10)) == 255 and from_image.mask_image.getpixel((40, 40)) == 0
    assert any("transparent pixels" in note for note in from_image.notes)
    # Neither has transparency: the whole image is repainted, as an inpaint without a mask.
    assert _plan(init_image=opaque).mask_image.getextrema() == (255, 255)


@pytest.mark.parametrize("mask", [Image.new("RGB", (64, 64)), _hole(32)], ids=["no-alpha", "other-size"])
def test_an_alpha_mask_without_transparency_or_of_another_size_is_refused(mask):
    with pytest.raises(InvalidArgument) as caught:
        _plan(init_image=Image.new("RGB", (64, 64)), mask_image=mask)
    assert caught.value.metadata["field"] == "mask_image"


def test_mask_from_alpha_is_for_inpaint_only():
    registry = Catalog([ModelEntry(id="sd", path="sd")], "sd", "/nonexistent")
    with pytest.raises(InvalidArgument):
        validate(GenerateInput(prompt="a cat", operation="image_to_image", init_image=_hole(), mask_from_alpha=True),
                 registry, max_prompt_length=100, max_images=8)
