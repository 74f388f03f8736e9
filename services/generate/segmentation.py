"""Text-prompted region selection for INPAINT's search_prompt (Image Studio's search_replace, search_recolor).

Two paths, and the rule choosing between them lives here only:
- The search prompt names the main subject (`names_subject`): the region is the background-removal subject mask.
  Generate does not call other services; it answers SUBJECT_MASK_REQUIRED and the orchestrator, which chains
  services, asks BackgroundRemoval for the mask and calls again with `subject_mask`.
- Anything else: a segmentation model from the registry (an entry with the `segment` operation: CLIPSeg) scores
  every pixel against the prompt; the region is where sigmoid(logits) >= MASK_THRESHOLD.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from PIL import Image

# Prompts that name the main subject rather than a thing to find, compared after lowercasing, dropping
# punctuation and a leading article ("the", "a", "an"), and the words "main" and "whole".
SUBJECT_WORDS = frozenset({
    "subject", "person", "people", "man", "woman", "human", "portrait", "product", "object", "foreground",
    "main subject", "main object", "main product", "main person", "subject of the image", "subject of the photo",
})
MASK_THRESHOLD = 0.5
# A subject mask (BackgroundRemoval's 0..255 matte) is the subject where it is at least this.
SUBJECT_THRESHOLD = 128


def _normalise(prompt: str) -> str:
    words = re.sub(r"[^a-z0-9 ]+", " ", prompt.lower()).split()
    while words and words[0] in ("the", "a", "an"):
        words = words[1:]
    return " ".join(words)


def names_subject(prompt: str) -> bool:
    """Whether a search prompt names the image's main subject (then the subject mask is the region)."""
    text = _normalise(prompt)
    return text in SUBJECT_WORDS or text.replace("main ", "").replace("whole ", "") in SUBJECT_WORDS


def subject_region(mask: Image.Image, size: tuple[int, int]) -> Image.Image:
    """BackgroundRemoval's mask at the run size, as white = repaint."""
    return mask.convert("L").resize(size, Image.BILINEAR).point(lambda v: 255 if v >= SUBJECT_THRESHOLD else 0)


@dataclass
class SegmentationModel:
    """A loaded CLIPSeg: looks like a pipeline to the model manager (components for its memory, `to`)."""

    model: Any
    processor: Any
    device: str

    @property
    def components(self) -> dict[str, Any]:
        return {"model": self.model}

    def set_progress_bar_config(self, **_: Any) -> None:
        """Nothing to show: one forward pass."""

    def region(self, image: Image.Image, prompt: str) -> Image.Image:
        """White where the image matches the prompt, at the image's size."""
        import torch

        inputs = self.processor(text=[prompt], images=[image.convert("RGB")], return_tensors="pt", padding=True)
        inputs = {key: value.to(self.device) for key, value in inputs.items()}
        with torch.no_grad():
            logits = self.model(**inputs).logits
        scores = torch.sigmoid(logits.reshape(1, 1, *logits.shape[-2:]).float())
        scores = torch.nn.functional.interpolate(scores, size=(image.height, image.width), mode="bilinear",
                                                 align_corners=False)[0, 0]
        selected = (scores >= MASK_THRESHOLD).to(torch.uint8).mul(255).cpu().numpy()
        return Image.fromarray(selected, mode="L")


def load(location: str, device: str, dtype: Any) -> SegmentationModel:
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    model = CLIPSegForImageSegmentation.from_pretrained(location, dtype=dtype).to(device).eval()
    return SegmentationModel(model, CLIPSegProcessor.from_pretrained(location), device)


def coverage(mask: Image.Image) -> float:
    """The fraction of the image a mask selects."""
    histogram = mask.histogram()
    return sum(histogram[128:]) / max(1, mask.width * mask.height)
