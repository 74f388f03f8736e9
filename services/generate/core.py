"""GenerateCore: validate, queue onto the device worker, encode the outputs, measure device seconds.

Outputs always go back inline: the orchestrator is the image store's only writer (it knows the job, the owner
and which image of how many each one is).

Plain Python (no gRPC): the servicer converts protobuf to GenerateInput and GenerateOutput back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from services.generate import sizing
from services.generate.catalog import Catalog, ModelEntry
from services.generate.loaded import LoadState, ModelManager
from services.generate.request import GenerateInput, Plan, validate
from services.generate.settings import GenerateSettings
from services.generate.worker import DeviceWorker, Outcome, ProgressFn
from shared import images
from shared.gen.imagemesh.v1 import common_pb2

log = logging.getLogger("imagemesh.generate")


@dataclass
class OutputImage:
    image: common_pb2.Image
    seed: int
    index: int


@dataclass
class GenerateOutput:
    plan: Plan
    images: list[OutputImage]
    device: str
    device_class: str
    scheduler: str
    timings_ms: dict[str, int]
    device_seconds: float
    batch_size: int
    notes: list[str] = field(default_factory=list)


@dataclass
class ModelStatus:
    entry: ModelEntry
    state: LoadState
    reason: str
    is_default: bool


class GenerateCore:
    def __init__(self, settings: GenerateSettings, registry: Catalog, manager: ModelManager, worker: DeviceWorker,
                 templates: dict[str, tuple[int, int]] | None = None) -> None:
        self.settings = settings
        self.templates = templates or {}
        self.registry = registry
        self.manager = manager
        self.worker = worker

    @property
    def device(self) -> str:
        return self.manager.device.name

    def plan(self, inp: GenerateInput) -> Plan:
        plan = validate(inp, self.registry, max_prompt_length=self.settings.max_prompt_length,
                        max_images=self.settings.max_images_per_request, templates=self.templates)
        # A FAILED model answers at once; it never reaches the queue.
        self.manager.check_available(plan.entry)
        return plan

    async def generate(self, inp: GenerateInput, progress: ProgressFn | None = None) -> GenerateOutput:
        started = time.perf_counter()
        # Validation resizes the input images: a worker thread, never the event loop.
        plan = await asyncio.to_thread(self.plan, inp)
        job = self.worker.submit(plan, progress)
        try:
            outcome: Outcome = await job.future
        except asyncio.CancelledError:
            # The caller left (client cancelled or its deadline passed): free the queue slot, or stop the
            # pipeline at its next step when no other request shares the batch.
            self.worker.cancel(job)
            raise
        if progress is not None:
            progress(common_pb2.Progress(stage=common_pb2.STAGE_ENCODING, fraction=1.0, message="Encoding"))
        encode_started = time.perf_counter()
        outputs = await asyncio.to_thread(self._encode, plan, outcome)
        encode_s = time.perf_counter() - encode_started
        device = self.manager.device
        return GenerateOutput(
            plan=plan, images=outputs, device=device.name, device_class=device.kind, scheduler=outcome.scheduler,
            timings_ms={"queue_ms": _ms(outcome.queue_s), "load_ms": _ms(outcome.load_s),
                        "inference_ms": _ms(outcome.inference_s), "encode_ms": _ms(encode_s),
                        "total_ms": _ms(time.perf_counter() - started)},
            device_seconds=outcome.device_seconds,
            batch_size=outcome.batch_requests, notes=[*plan.notes, *outcome.notes],
        )

    def _encode(self, plan: Plan, outcome: Outcome) -> list[OutputImage]:
        return [OutputImage(images.to_message(sizing.fit_exactly(pil, plan.output_width, plan.output_height),
                                              plan.output_format), seed, index)
                for index, (pil, seed) in enumerate(zip(outcome.images, plan.seeds))]

    def models(self) -> list[ModelStatus]:
        statuses = []
        for entry in self.registry.entries.values():
            state, reason = self.manager.state(entry.id)
            statuses.append(ModelStatus(entry, state, reason, entry.id == self.registry.default_id))
        return statuses

    async def start(self) -> None:
        """Start the device worker (it preloads the models marked `preload` first); the server calls this at
        start, and a request that comes first starts it too."""
        self.worker.ensure_started()

    async def ready(self) -> bool:
        """SERVING when the default model is loaded or loadable: the device exists and it has not FAILED."""
        if self.worker.metrics is not None:
            self.worker.metrics.loaded_bytes.set(self.manager.loaded_bytes())
        state, _ = self.manager.state(self.registry.default_id)
        return self.manager.device.available and state != LoadState.FAILED


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))
