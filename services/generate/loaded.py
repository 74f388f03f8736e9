"""Loaded pipelines (what is in memory; catalog.py is what is configured): state per catalog entry, lazy or preloaded, an LRU under a memory budget.

Only the device worker thread loads, unloads and runs pipelines, so loading needs no lock against inference;
the lock only guards the state that ListModels and health read from the event loop.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from services.generate import control, families
from services.generate.catalog import Catalog, ModelEntry
from services.generate.device import Device
from services.generate.diffusers_lookup import diffusers_class
from shared.errors import ModelUnavailable

log = logging.getLogger("imagemesh.generate.models")

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
MIB = 1024 * 1024


class LoadState(str, Enum):
    NOT_LOADED = "not_loaded"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass
class Slot:
    entry: ModelEntry
    state: LoadState = LoadState.NOT_LOADED
    reason: str = ""
    pipe: Any = None
    derived: dict[str, Any] = field(default_factory=dict)
    bytes: int = 0
    last_used: float = 0.0
    loads: int = 0


def pipeline_bytes(pipe: Any) -> int:
    """Bytes held by a pipeline's modules (parameters and buffers): what loading it costs the device."""
    import torch

    total = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            for tensor in (*component.parameters(), *component.buffers()):
                total += tensor.numel() * tensor.element_size()
    return total


def _folder_weight_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)


def _version(text: str) -> tuple[int, int]:
    parts = text.split(".")
    return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)


def load_dtype(entry: ModelEntry, device_kind: str) -> str:
    """The torch dtype an entry loads as: its own, or for `auto` half precision on CUDA (what GPUs are fast at;
    bfloat16 for FLUX, whose activations overflow float16) and float32 elsewhere (CPUs compute half precision
    slowly or not at all)."""
    if entry.dtype != "auto":
        return entry.dtype
    family = families.FAMILIES.get(entry.family, families.FAMILIES["sd1"])
    return family.cuda_dtype if device_kind == "cuda" else "float32"


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


def _operation_of(pipe: Any) -> str:
    name = type(pipe).__name__
    if "Inpaint" in name:
        return "inpaint"
    if "Img2Img" in name or "Image2Image" in name:
        return "image_to_image"
    return "text_to_image"


class ModelManager:
    def __init__(self, registry: Catalog, device: Device, budget_bytes: int) -> None:
        self.registry = registry
        self.device = device
        self.budget_bytes = budget_bytes
        self._lock = threading.Lock()
        self.slots = {entry_id: Slot(entry) for entry_id, entry in registry.entries.items()}
        self.unloads: list[str] = []  # ids unloaded to make room, oldest first (metrics, tests, logs)
        for slot in self.slots.values():
            if not device.available:
                self._fail(slot, device.error)
                continue
            source = registry.source_of(slot.entry)
            if source.is_local and not Path(source.location).is_dir():
                # Known before any request: say so at once instead of failing a load on the first request.
                self._fail(slot, f"model folder not found: {source.location}")

    # -- state, read from the event loop -------------------------------------------------------------------
    def state(self, entry_id: str) -> tuple[LoadState, str]:
        with self._lock:
            slot = self.slots[entry_id]
            return slot.state, slot.reason

    def loaded_bytes(self) -> int:
        with self._lock:
            return sum(s.bytes for s in self.slots.values() if s.state == LoadState.READY)

    def check_available(self, entry: ModelEntry) -> None:
        state, reason = self.state(entry.id)
        if state == LoadState.FAILED:
            raise ModelUnavailable(f"model {entry.id} is unavailable: {reason}", model=entry.id)

    def is_loaded(self, entry_id: str) -> bool:
        return self.state(entry_id)[0] == LoadState.READY

    def _set(self, slot: Slot, state: LoadState, reason: str = "") -> None:
        with self._lock:
            slot.state, slot.reason = state, reason

    def _fail(self, slot: Slot, reason: str) -> None:
        log.error("model %s FAILED: %s", slot.entry.id, reason)
        self._set(slot, LoadState.FAILED, reason)

    # -- loading, worker thread only ------------------------------------------------------------------------
    def acquire(self, entry: ModelEntry, operation: str, on_loading: Callable[[], None] | None = None) -> tuple[Any, float]:
        """The pipeline for `operation`, loading the entry first if needed; returns (pipeline, load seconds)."""
        slot = self.slots[entry.id]
        load_s = 0.0
        if slot.state == LoadState.FAILED:
            raise ModelUnavailable(f"model {entry.id} is unavailable: {slot.reason}", model=entry.id)
        if slot.state != LoadState.READY:
            if on_loading:
                on_loading()
            started = time.perf_counter()
            self._load(slot)
            load_s = time.perf_counter() - started
        slot.last_used = time.monotonic()
        return self._pipeline_for(slot, operation), load_s

    def _load(self, slot: Slot) -> None:
        entry = slot.entry
        source = self.registry.source_of(entry)
        estimate = _folder_weight_bytes(Path(source.location)) if source.is_local else 0
        if estimate > self.budget_bytes:
            self._fail(slot, f"needs about {estimate / MIB:.0f} MiB, more than the memory budget "
                             f"{self.budget_bytes / MIB:.0f} MiB")
            raise ModelUnavailable(f"model {entry.id} is unavailable: {slot.reason}", model=entry.id)
        self._make_room(estimate, keep=entry.id)
        self._set(slot, LoadState.LOADING)
        log.info("loading model %s from %s on %s", entry.id, source.location, self.device.name)
        try:
            pipe = self._from_pretrained(entry, source)
        except Exception as exc:  # noqa: BLE001 - any load failure makes the model FAILED with its reason
            self._fail(slot, f"load failed: {type(exc).__name__}: {exc}")
            self._release()
            raise ModelUnavailable(f"model {entry.id} is unavailable: {slot.reason}", model=entry.id) from None
        loaded_family = families.family_of_pipeline(pipe)
        if loaded_family != entry.family:
            del pipe
            self._release()
            self._fail(slot, f"the registry says family {entry.family}, the checkpoint loads as a {loaded_family} "
                             "pipeline: set `family:` in the registry")
            raise ModelUnavailable(f"model {entry.id} is unavailable: {slot.reason}", model=entry.id)
        size = pipeline_bytes(pipe)
        with self._lock:
            slot.pipe, slot.derived, slot.bytes, slot.loads = pipe, {}, size, slot.loads + 1
            slot.state, slot.reason = LoadState.READY, ""
        if size > self.budget_bytes:
            self.unload(entry.id)
            self._fail(slot, f"needs {size / MIB:.0f} MiB, more than the memory budget {self.budget_bytes / MIB:.0f} MiB")
            raise ModelUnavailable(f"model {entry.id} is unavailable: {slot.reason}", model=entry.id)
        # The estimate came from files on disk; the measured size is what counts against the budget.
        self._make_room(0, keep=entry.id)
        log.info("model %s ready on %s: %.1f MiB (%.1f of %.1f MiB budget in use)", entry.id, self.device.name,
                 size / MIB, self.loaded_bytes() / MIB, self.budget_bytes / MIB)

    def _from_pretrained(self, entry: ModelEntry, source) -> Any:
        import diffusers
        import torch

        if control.SEGMENT in entry.operations:
            # A segmentation model (CLIPSeg) is a transformers model, not a diffusers pipeline.
            from services.generate import segmentation

            dtype = getattr(torch, load_dtype(entry, self.device.kind))
            return segmentation.load(source.location, self.device.name, dtype)
        cls = diffusers.DiffusionPipeline if entry.pipeline == "auto" else diffusers_class(entry.pipeline)
        if cls is None:
            raise ValueError(f"diffusers has no pipeline class {entry.pipeline!r}")
        dtype = load_dtype(entry, self.device.kind)
        # diffusers renamed torch_dtype to dtype (0.36); give whichever this version takes without a warning.
        dtype_key = "dtype" if _version(diffusers.__version__) >= (0, 36) else "torch_dtype"
        kwargs: dict[str, Any] = {dtype_key: getattr(torch, dtype)}
        if source.revision:
            kwargs["revision"] = source.revision
        import transformers

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
        pipe = cls.from_pretrained(source.location, **kwargs)
        if entry.ip_adapter:
            control.load_ip_adapter(pipe, self.registry.local_path(entry.ip_adapter))
        pipe.to(self.device.name)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _pipeline_for(self, slot: Slot, operation: str) -> Any:
        if operation in slot.derived:
            return slot.derived[operation]
        pipe = slot.pipe
        base = control.DERIVED.get(operation, operation)
        if operation == control.CONTROL_IMG2IMG:
            # StableDiffusionControlNetImg2ImgPipeline, sharing the loaded ControlNet pipeline's modules.
            import diffusers

            pipe = diffusers.AutoPipelineForImage2Image.from_pipe(pipe)
            pipe.set_progress_bar_config(disable=True)
            slot.derived[operation] = pipe
            return pipe
        if operation not in control.NATIVE and _operation_of(pipe) != base:
            import diffusers

            auto = {"text_to_image": diffusers.AutoPipelineForText2Image,
                    "image_to_image": diffusers.AutoPipelineForImage2Image,
                    "inpaint": diffusers.AutoPipelineForInpainting}[base]
            # from_pipe shares the loaded modules: image-to-image costs no extra memory.
            pipe = auto.from_pipe(pipe)
            pipe.set_progress_bar_config(disable=True)
        slot.derived[operation] = pipe
        return pipe

    def _make_room(self, needed: int, keep: str) -> None:
        while True:
            with self._lock:
                loaded = [s for s in self.slots.values() if s.state == LoadState.READY and s.entry.id != keep]
                used = sum(s.bytes for s in self.slots.values() if s.state == LoadState.READY)
            if used + needed <= self.budget_bytes or not loaded:
                return
            victim = min(loaded, key=lambda s: s.last_used)
            log.info("unloading model %s (least recently used) to stay within %.0f MiB", victim.entry.id,
                     self.budget_bytes / MIB)
            self.unload(victim.entry.id)
            self.unloads.append(victim.entry.id)

    def unload(self, entry_id: str) -> None:
        slot = self.slots[entry_id]
        with self._lock:
            slot.pipe, slot.derived, slot.bytes = None, {}, 0
            if slot.state == LoadState.READY:
                slot.state = LoadState.NOT_LOADED
        self._release()

    def _release(self) -> None:
        """Give freed pipeline memory back: collect cycles, empty the CUDA cache, and on glibc trim the heap
        (freed tensors leave malloc arenas holding pages, so RSS would creep up as families are swapped)."""
        gc.collect()
        if self.device.kind == "cuda":
            import torch

            torch.cuda.empty_cache()
        _malloc_trim()

    def unload_all(self) -> None:
        for entry_id in self.slots:
            if self.slots[entry_id].pipe is not None:
                self.unload(entry_id)
