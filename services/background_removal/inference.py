"""Mask runners: one loaded model each, `predict(rgb) -> L mask` of the input's size, thread-safe.

onnxruntime's `InferenceSession.run` may be called from several threads at once, so one runner per model and
process serves every request.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort
from PIL import Image

from services.background_removal.catalog import ModelSpec
from services.background_removal.providers import active_provider, requested_providers, session_options
from services.background_removal.threads import ThreadBudget

# U2NET_HOME is process-wide and rembg reads it while it builds a session; one session at a time.
_REMBG_ENV_LOCK = threading.Lock()


class MaskRunner(Protocol):
    provider: str

    def predict(self, rgb: Image.Image) -> Image.Image: ...


class RembgRunner:
    """A rembg session built with explicit providers and threads (never rembg's own provider guess)."""

    def __init__(self, spec: ModelSpec, models_dir: Path, provider_choice: str, intra: int, inter: int) -> None:
        from rembg import new_session

        path = models_dir / spec.file
        if not path.is_file():  # rembg would download it; we never do
            raise FileNotFoundError(f"{spec.file} is not in {models_dir}")
        with _REMBG_ENV_LOCK:
            os.environ["U2NET_HOME"] = str(models_dir.resolve())
            self.session = new_session(spec.session, sess_opts=session_options(intra, inter),
                                       providers=requested_providers(provider_choice))
        self.provider = active_provider(self.session.inner_session, provider_choice)

    def predict(self, rgb: Image.Image) -> Image.Image:
        masks = self.session.predict(rgb)
        return masks[0].convert("L")


class ModnetRunner:
    """MODNet with its own pre-processing (through rembg's u2net_custom the matte comes out wrong).

    The short side is scaled to `reference_size` when the image is outside it, both sides are rounded down to a
    multiple of 32, pixels go to [-1, 1]; the output is a 0..1 matte, resized back to the input.
    """

    def __init__(self, spec: ModelSpec, models_dir: Path, provider_choice: str, intra: int, inter: int) -> None:
        path = models_dir / spec.file
        if not path.is_file():
            raise FileNotFoundError(f"{spec.file} is not in {models_dir}")
        self.reference_size = int(spec.preprocess.get("reference_size", 512))
        self.multiple = int(spec.preprocess.get("multiple_of", 32))
        self.session = ort.InferenceSession(str(path), sess_options=session_options(intra, inter),
                                            providers=requested_providers(provider_choice))
        self.provider = active_provider(self.session, provider_choice)
        self.input_name = self.session.get_inputs()[0].name

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        ref = self.reference_size
        if max(width, height) < ref or min(width, height) > ref:
            if width >= height:
                height, width = ref, int(width / height * ref)
            else:
                width, height = ref, int(height / width * ref)
        return max(self.multiple, width - width % self.multiple), max(self.multiple, height - height % self.multiple)

    def predict(self, rgb: Image.Image) -> Image.Image:
        width, height = self.input_size(*rgb.size)
        # BOX is Pillow's area resampling, the INTER_AREA of MODNet's reference code.
        resized = rgb.resize((width, height), Image.Resampling.BOX) if (width, height) != rgb.size else rgb
        x = np.asarray(resized, dtype=np.float32) / 127.5 - 1.0
        matte = self.session.run(None, {self.input_name: x.transpose(2, 0, 1)[None]})[0][0, 0]
        mask = Image.fromarray(np.clip(matte * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
        return mask.resize(rgb.size, Image.Resampling.BILINEAR) if mask.size != rgb.size else mask


RUNNERS = {"rembg": RembgRunner, "modnet": ModnetRunner}


class AdaptiveRunner:
    """One model with a session per thread level (services/background_removal/threads.py): each prediction runs on
    the session whose intra-op thread count fits the inferences running beside it when it starts."""

    def __init__(self, by_threads: dict[int, MaskRunner], budget: ThreadBudget) -> None:
        self.by_threads = by_threads
        self.budget = budget
        self.provider = next(iter(by_threads.values())).provider
        self.last_threads = 0  # what the latest prediction ran on (tests, benchmarks)

    def predict(self, rgb: Image.Image) -> Image.Image:
        with self.budget.slot() as threads:
            runner = self.by_threads.get(threads) or next(iter(self.by_threads.values()))
            self.last_threads = threads
            return runner.predict(rgb)

    def __getattr__(self, name: str):
        # Anything else (input_size, session, ...) is the model's, read from the widest session's runner.
        if name == "by_threads":
            raise AttributeError(name)
        return getattr(next(iter(self.by_threads.values())), name)

    def warm(self, rgb: Image.Image) -> None:
        """Run every session once (the first run of a session allocates and plans)."""
        for runner in self.by_threads.values():
            runner.predict(rgb)
