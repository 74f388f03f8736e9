"""Lanczos resampling that is correct for transparent images.

Resampling straight RGBA lets the colour of fully transparent pixels (often black) bleed into visible
edges: a dark fringe. Resampling premultiplied colour (RGBa) weights each colour by its alpha, so
transparent pixels contribute nothing; un-premultiplying afterwards restores straight alpha.
"""

from __future__ import annotations

from PIL import Image


def lanczos_resize(img: Image.Image, width: int, height: int) -> Image.Image:
    """Resize with Lanczos; RGBA goes through premultiplied alpha, RGB directly."""
    if img.mode == "RGBA":
        premultiplied = img.convert("RGBa")
        return premultiplied.resize((width, height), Image.Resampling.LANCZOS).convert("RGBA")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img.resize((width, height), Image.Resampling.LANCZOS)
