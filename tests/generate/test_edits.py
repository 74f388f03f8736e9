"""Generate's own edit rules: the outpaint canvas and its mask, and the checks that run before it is allocated."""

from __future__ import annotations

import pytest
from PIL import Image

from services.generate.edits import Outpaint, full_mask, outpaint_canvas
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
