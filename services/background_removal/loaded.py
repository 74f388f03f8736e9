"""Loaded models (what is in memory; catalog.py is what is configured): each loaded once per process, on first use or at start-up, and kept.

A model is available when its file is present; a load that fails (wrong sha256, provider that cannot run,
broken file) makes it unavailable for the life of the process, with the reason, instead of failing every request
the slow way.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from services.background_removal.catalog import Catalog, ModelSpec
from services.background_removal.inference import RUNNERS, AdaptiveRunner, MaskRunner
from services.background_removal.providers import CPU
from services.background_removal.threads import ThreadBudget, available_cpus
from shared.errors import InvalidModel, ModelUnavailable

log = logging.getLogger("imagemesh.background_removal")


@dataclass(frozen=True)
class LoadedModel:
    spec: ModelSpec
    available: bool
    reason: str
    provider: str
    loaded: bool


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class LoadedModels:
    def __init__(self, catalog: Catalog, models_dir: Path, provider_choice: str, intra_op_threads: int,
                 inter_op_threads: int, on_load: Callable[[ModelSpec, str], None] | None = None,
                 max_concurrency: int = 2, cores: int | None = None) -> None:
        self.catalog = catalog
        self.models_dir = Path(models_dir)
        self.provider_choice = provider_choice
        self.intra = intra_op_threads
        self.inter = inter_op_threads
        # intra_op_threads 0 = adapt to load (threads.py): one budget for every model of this process.
        self.budget = ThreadBudget(cores or available_cpus(), max_concurrency)
        self._on_load = on_load
        self._runners: dict[str, MaskRunner] = {}
        self._failed: dict[str, str] = {}
        self._locks = {spec.id: threading.Lock() for spec in catalog.models}

    @property
    def default_model(self) -> str:
        return self.catalog.default_model

    def _missing_reason(self, spec: ModelSpec) -> str:
        if spec.id in self._failed:
            return self._failed[spec.id]
        if spec.kind == "remote":
            return (f"remote provider '{spec.provider}' is not configured on this deployment (no API key; "
                    "imagemesh runs every model locally)")
        if not (self.models_dir / spec.file).is_file():
            return f"model file {spec.file} is not in {self.models_dir} (nothing is downloaded at run time)"
        return ""

    def state(self, spec: ModelSpec) -> LoadedModel:
        reason = self._missing_reason(spec)
        runner = self._runners.get(spec.id)
        return LoadedModel(spec, available=not reason, reason=reason, provider=runner.provider if runner else "",
                          loaded=runner is not None)

    def states(self) -> list[LoadedModel]:
        return [self.state(spec) for spec in self.catalog.models]

    def spec(self, model_id: str) -> ModelSpec:
        """The model's spec, or INVALID_MODEL with the supported list, or MODEL_UNAVAILABLE with the reason."""
        model_id = model_id or self.default_model
        spec = self.catalog.get(model_id)
        if spec is None:
            supported = [s.id for s in self.catalog.models if not self._missing_reason(s)]
            raise InvalidModel(f"unknown background-removal model {model_id!r}; supported: {', '.join(supported)}",
                               field="model", received=model_id, supported=supported)
        reason = self._missing_reason(spec)
        if reason:
            raise ModelUnavailable(f"model {model_id!r} is unavailable: {reason}", field="model", model=model_id)
        return spec

    def is_loaded(self, model_id: str) -> bool:
        return model_id in self._runners

    def runner(self, model_id: str) -> tuple[ModelSpec, MaskRunner]:
        """The loaded runner (loading it now if needed; blocking, call it off the event loop)."""
        spec = self.spec(model_id)
        runner = self._runners.get(spec.id)
        if runner is not None:
            return spec, runner
        with self._locks[spec.id]:
            if spec.id in self._runners:
                return spec, self._runners[spec.id]
            self.spec(spec.id)  # another thread may have failed it while we waited
            started = time.perf_counter()
            try:
                path = self.models_dir / spec.file
                if spec.sha256 and sha256_file(path) != spec.sha256:
                    raise ValueError(f"sha256 of {path} does not match the catalogue; refusing a wrong model")
                runner = self._build(spec)
            except Exception as exc:  # noqa: BLE001 - any load failure makes the model unavailable, with why
                self._failed[spec.id] = f"failed to load: {exc}"
                log.error("model %s failed to load: %s", spec.id, exc)
                raise ModelUnavailable(f"model {spec.id!r} is unavailable: failed to load: {exc}",
                                       field="model", model=spec.id) from None
            self._runners[spec.id] = runner
        log.info("model %s loaded in %.2fs on %s (provider asked: %s)", spec.id, time.perf_counter() - started,
                 runner.provider, self.provider_choice)
        if self._on_load:
            self._on_load(spec, runner.provider)
        return spec, runner

    def _build(self, spec: ModelSpec) -> MaskRunner:
        """A runner with fixed threads (intra_op_threads > 0, or a GPU session), else an AdaptiveRunner with a
        session per thread level. Every session runs once here: the first run of a session allocates and plans
        (about 1 s for u2netp); it is paid before SERVING, not by a request."""
        warm = Image.new("RGB", (64, 64), (127, 127, 127))
        make = RUNNERS[spec.kind]
        first = make(spec, self.models_dir, self.provider_choice, self.intra or self.budget.levels[0], self.inter)
        if self.intra > 0 or first.provider != CPU:
            first.predict(warm)
            return first
        by_threads = {self.budget.levels[0]: first}
        for level in self.budget.levels[1:]:
            by_threads[level] = make(spec, self.models_dir, self.provider_choice, level, self.inter)
        runner = AdaptiveRunner(by_threads, self.budget)
        runner.warm(warm)
        return runner

    def load(self, preload_all: bool) -> None:
        """Start-up loading: the default model first (readiness waits on it), then the others if asked."""
        default = self.catalog.get(self.default_model)
        wanted = [default.id] + ([s.id for s in self.catalog.models if s.id != default.id] if preload_all else [])
        for model_id in wanted:
            if self._missing_reason(self.catalog.get(model_id)):
                continue
            try:
                self.runner(model_id)
            except ModelUnavailable:
                pass  # recorded with its reason; listed as unavailable
