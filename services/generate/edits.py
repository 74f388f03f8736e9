"""What an INPAINT request implies when it does not draw its own mask.

- Outpainting: the image placed on a larger canvas, and the mask of the new area (white = generate).
- An inpaint without a mask: the whole image is repainted.
- A mask drawn in transparency (OpenAI's edits: alpha 0 = edit here): turned into white = repaint.

Generate owns these because it owns the pixels: surfaces (Image Studio's edit operations, A1111's img2img) pass
the numbers, and the canvas is built here, in a worker thread, after its size has been checked.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from shared.errors import ImageTooLarge, InvalidArgument

# At most this many pixels are added per side; Generate's own size limits apply to the canvas after it.
MAX_EXPAND = 2048


@dataclass(frozen=True)
class Outpaint:
    left: int = 0
    right: int = 0
    up: int = 0
    down: int = 0

    def check(self) -> None:
        """The sides alone, before any image is decoded."""
        for name in ("left", "right", "up", "down"):
            value = getattr(self, name)
            if value < 0 or value > MAX_EXPAND:
                raise InvalidArgument(f"outpaint.{name} must be between 0 and {MAX_EXPAND}", field=f"expand_{name}",
                                      received=value)
        if not any((self.left, self.right, self.up, self.down)):
            raise InvalidArgument("outpaint needs at least one side to grow (left, right, up or down)",
                                  field="expand_left")

    def canvas_size(self, width: int, height: int) -> tuple[int, int]:
        return width + self.left + self.right, height + self.up + self.down

    def check_canvas(self, width: int, height: int, max_pixels: int) -> None:
        """The canvas an image of width x height would need, refused before it is allocated."""
        canvas_w, canvas_h = self.canvas_size(width, height)
        if canvas_w * canvas_h > max_pixels:
            raise ImageTooLarge(f"the outpaint canvas {canvas_w}x{canvas_h} exceeds {max_pixels} pixels",
                                field="outpaint", max_pixels=max_pixels)


def outpaint_canvas(image: Image.Image, sides: Outpaint) -> tuple[Image.Image, Image.Image]:
    """The image on the grown canvas (neutral grey where new) and the mask of the new area."""
    source = image.convert("RGB")
    size = sides.canvas_size(source.width, source.height)
    canvas = Image.new("RGB", size, (127, 127, 127))
    canvas.paste(source, (sides.left, sides.up))
    mask = Image.new("L", size, 255)
    mask.paste(0, (sides.left, sides.up, sides.left + source.width, sides.up + source.height))
    return canvas, mask


def full_mask(size: tuple[int, int]) -> Image.Image:
    return Image.new("L", size, 255)


def mask_from_alpha(image: Image.Image) -> Image.Image:
    """White where the image is fully transparent (the area to repaint), black elsewhere."""
    alpha = image.convert("RGBA").getchannel("A")
    return alpha.point(lambda value: 255 if value == 0 else 0)
