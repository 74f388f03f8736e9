"""The background-removal shotgun (seed 002): one image, several models in parallel, every result back.

The image is decoded once here and travels to BackgroundRemoval as raw RGBA (image/x-raw-rgba), so no replica
decodes a PNG and nobody re-encodes one per model. Each model is its own unary call with its own deadline on a
round-robin channel, so the calls spread over every replica and one slow, failing or dead backend costs only its
own result: that model comes back with status error and a reason, the others succeed.

Which models run: the list given; empty or ["all"] = every available model; "auto" = the most chosen model for the
image category; top_k > 0 = the k most chosen. Rankings come from a `RankingSource` (an async callable
`rank(category) -> [model_id, ...]`, most chosen first): the orchestrator's selection store in production,
`InMemoryRanking` in tests.

Each model's result is priced as it finishes, with the Orchestrator's one price table (pricing.py): its `cost`
(removal plus any upscale) and the summary's `total_cost` (the sum over every model) are the figures its job,
analytics and webhooks carry.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from services.orchestrator.pricing import PriceTable, sum_costs
from shared import clients, images
from shared.errors import (
    DeadlineExceeded,
    ImageMeshError,
    InvalidArgument,
    InvalidModel,
    ModelUnavailable,
    ServiceUnavailable,
    to_detail,
)
from shared.gen.imagemesh.v1 import background_removal_service_pb2 as br_pb
from shared.gen.imagemesh.v1 import background_removal_service_pb2_grpc as br_grpc
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
from shared.gen.imagemesh.v1 import upscale_service_pb2 as up_pb
from shared.gen.imagemesh.v1 import upscale_service_pb2_grpc as up_grpc

RankingSource = Callable[[str], Awaitable[list[str]]]
ALL = "all"
AUTO = "auto"
SUCCESS = pb.SHOTGUN_RESULT_STATUS_SUCCESS
ERROR = pb.SHOTGUN_RESULT_STATUS_ERROR


class InMemoryRanking:
    """Selections counted per category in memory: the RankingSource for tests and single-process demos.

    `rank("")` ranks over every category. Ties keep the order in which models were first chosen.
    """

    def __init__(self) -> None:
        self._counts: dict[str, Counter] = defaultdict(Counter)

    def record(self, model_id: str, category: str = "") -> None:
        self._counts[category][model_id] += 1
        if category:
            self._counts[""][model_id] += 1

    async def __call__(self, category: str) -> list[str]:
        return [model for model, _ in self._counts.get(category, Counter()).most_common()]


@dataclass(frozen=True)
class ShotgunLimits:
    # Deadline of one model's call (and of its upscale) when the request gives none.
    per_model_timeout_s: float = 60.0
    # Most models one shotgun may run.
    max_models: int = 16
    # Deadline of the ListRemovalModels call used to expand "all", "auto" and top_k.
    list_timeout_s: float = 10.0


def overall_status(results: list[pb.ShotgunResult]) -> int:
    """Seed 002: completed when every model succeeded, partial when some did, failed when none did."""
    succeeded = sum(1 for r in results if r.status == SUCCESS)
    if results and succeeded == len(results):
        return common_pb2.JOB_STATUS_COMPLETED
    return common_pb2.JOB_STATUS_PARTIAL if succeeded else common_pb2.JOB_STATUS_FAILED


def _dedupe(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(i for i in ids if i))


class Shotgun:
    def __init__(self, removal: br_grpc.BackgroundRemovalServiceStub, upscale: up_grpc.UpscaleServiceStub | None,
                 ranking: RankingSource, limits: ShotgunLimits | None = None,
                 image_limits: images.ImageLimits | None = None, prices: PriceTable | None = None) -> None:
        self.removal = removal
        self.upscale = upscale
        self.ranking = ranking
        self.limits = limits or ShotgunLimits()
        self.image_limits = image_limits or images.ImageLimits()
        self.prices = prices or PriceTable(per_second_usd={})

    async def _catalogue(self, timeout_s: float | None = None) -> br_pb.ListRemovalModelsResponse:
        return await clients.call(self.removal.ListRemovalModels, br_pb.ListRemovalModelsRequest(),
                                  timeout=timeout_s or self.limits.list_timeout_s)

    async def _ranked(self, category: str, available: list[str], default: str) -> list[str]:
        """Available models, most chosen first, then the default, then the catalogue's order (no data: default)."""
        chosen = [m for m in await self.ranking(category) if m in available]
        return _dedupe([*chosen, default if default in available else "", *available])

    async def plan(self, spec: pb.ShotgunSpec) -> tuple[list[str], dict[str, str], list[pb.UnavailableModel]]:
        """The model ids this shotgun runs, in order; the display names known for them (by id and alias); and,
        when "all" was asked, the models it left out because they cannot run here, each with why. An id or alias
        that BackgroundRemoval lists is recognised; a named one that cannot run comes back as its error entry."""
        asked = _dedupe([m.strip() for m in spec.models])
        if spec.top_k < 0:
            raise InvalidArgument("top_k must be >= 0", field="top_k", received=spec.top_k)
        # The one place a shotgun's model list is checked: an id BackgroundRemoval does not list at all is the
        # caller's mistake, refused before any work; a listed but unavailable one becomes that model's error entry.
        expanding = not asked or ALL in asked or AUTO in asked or spec.top_k > 0
        # Asked within the deadline a model's call gets, when the request sets one.
        per_model_s = spec.per_model_timeout_ms / 1000 if spec.per_model_timeout_ms > 0 else None
        try:
            catalogue = await self._catalogue(min(filter(None, (per_model_s, self.limits.list_timeout_s))))
        except (ServiceUnavailable, DeadlineExceeded):
            if expanding:
                raise
            # Named models and no catalogue (BackgroundRemoval away): each model's call says what happened to it.
            catalogue = br_pb.ListRemovalModelsResponse()
        names = {name: m.display_name for m in catalogue.models for name in (m.id, *m.aliases)}
        unknown = [m for m in asked if m not in (ALL, AUTO) and m not in names]
        left_out: list[pb.UnavailableModel] = []
        if unknown and names:
            shown = ", ".join(repr(m[:64]) for m in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
            raise InvalidModel(f"unknown background-removal model(s) {shown}; supported: "
                               f"all, auto, {', '.join(names)}", field="models",
                               supported_models=[ALL, AUTO, *names])
        # One model named twice (by id and by alias) runs once, under the first name given.
        seen: dict[str, str] = {}
        for m in asked:
            info = next((c for c in catalogue.models if m in (c.id, *c.aliases)), None)
            seen.setdefault(info.id if info else m, m)
        asked = [m for m in asked if m in seen.values()]
        if expanding:
            available = [m.id for m in catalogue.models if m.available]
            ranked = await self._ranked(spec.image_category, available, catalogue.default_model)
            if not asked or ALL in asked:
                named = {n for m in asked for c in catalogue.models if m in (c.id, *c.aliases)
                         for n in (c.id, *c.aliases)}
                asked = _dedupe([*(m for m in available if m not in named), *(m for m in asked if m != ALL)])
                left_out = [pb.UnavailableModel(model_id=m.id, reason=m.unavailable_reason or "unavailable")
                            for m in catalogue.models if not m.available and m.id not in named]
            if AUTO in asked:
                pick = ranked[:1]  # the most chosen available model, else the default (empty when none is available)
                asked = _dedupe([p for m in asked for p in (pick if m == AUTO else [m])])
            if spec.top_k > 0:
                asked = [m for m in ranked if m in asked][:spec.top_k]
            if not asked:
                raise ModelUnavailable("no background-removal model is available for this shotgun",
                                       field="models", available=available)
        if len(asked) > self.limits.max_models:
            raise InvalidArgument(f"a shotgun runs at most {self.limits.max_models} models, got {len(asked)}",
                                  field="models", max=self.limits.max_models)
        return asked, names, left_out

    @staticmethod
    def validate(spec: pb.ShotgunSpec) -> None:
        """What would fail every model the same way is refused once, before any model runs."""
        if spec.output_format == common_pb2.IMAGE_FORMAT_JPEG and not spec.options.background_color:
            raise InvalidArgument("output_format must be png or webp (alpha kept); jpeg only with background_color",
                                  field="output_format")
        if spec.upscale_factor < 0:
            raise InvalidArgument("upscale_factor must be >= 0", field="upscale_factor", received=spec.upscale_factor)
        if spec.per_model_timeout_ms < 0:
            raise InvalidArgument("per_model_timeout_ms must be >= 0", field="per_model_timeout_ms")

    def prepare_image(self, spec: pb.ShotgunSpec) -> tuple[common_pb2.Image, common_pb2.Dimensions]:
        """Decode once (limits checked here) and carry raw RGBA to every call."""
        if spec.image.media_type == images.RAW_RGBA and spec.image.WhichOneof("source") == "data":
            images.decode_raw(spec.image.data, spec.image.width, spec.image.height, self.image_limits)
            raw = spec.image
        else:
            decoded = images.decode_message(spec.image, self.image_limits)
            raw = images.to_message(decoded, common_pb2.IMAGE_FORMAT_RAW_RGBA)
        return raw, common_pb2.Dimensions(width=raw.width, height=raw.height)

    async def _one(self, model_id: str, name: str, image: common_pb2.Image, size: common_pb2.Dimensions,
                   spec: pb.ShotgunSpec, timeout: float) -> pb.ShotgunResult:
        started = time.perf_counter()
        result = pb.ShotgunResult(model_id=model_id, model_name=name, input_dimensions=size)
        upscaling = spec.upscale_factor > 0 and self.upscale is not None
        request = br_pb.RemoveBackgroundRequest(
            image=image, model=model_id, options=spec.options,
            # When an upscale follows, the cut-out stays raw RGBA for that hop too: encoded once, at the end.
            output_format=common_pb2.IMAGE_FORMAT_RAW_RGBA if upscaling else spec.output_format,
        )
        try:
            reply = await clients.call(self.removal.RemoveBackground, request, timeout=timeout)
        except ImageMeshError as error:
            if isinstance(error, DeadlineExceeded):
                error.message = f"model {model_id} timed out after {timeout:g}s"
            elif isinstance(error, ServiceUnavailable):  # gRPC's own text ("Cancelling all calls") says too little
                error.message = f"background-removal backend unavailable during model {model_id}: {error.message}"
            result.status = ERROR
            result.error = error.message
            result.error_detail.CopyFrom(to_detail(error))
            result.processing_time_ms = int((time.perf_counter() - started) * 1000)
            return result
        result.status = SUCCESS
        result.model_name = reply.model_name or name
        result.image.CopyFrom(reply.image)
        result.cost.CopyFrom(self.prices.reprice(reply.cost, "remove_background",
                                                 fallback_seconds=time.perf_counter() - started))
        result.cost_usd = result.cost.usd
        result.output_dimensions.CopyFrom(common_pb2.Dimensions(width=reply.image.width, height=reply.image.height))
        if upscaling:
            await self._upscale(result, spec, timeout)
        result.processing_time_ms = int((time.perf_counter() - started) * 1000)
        return result

    async def _upscale(self, result: pb.ShotgunResult, spec: pb.ShotgunSpec, timeout: float) -> None:
        """The /process pipeline: upscale a successful cut-out; a failed upscale keeps the cut-out, says why."""
        started = time.perf_counter()
        try:
            reply = await clients.call(self.upscale.Upscale, up_pb.UpscaleRequest(
                image=result.image, scale_factor=spec.upscale_factor, mode="fast", preserve_alpha=True,
                output_format=spec.output_format), timeout=timeout)
        except ImageMeshError as error:
            result.upscale_status = "error"
            result.error = f"upscale failed: {error.message}"
            result.error_detail.CopyFrom(to_detail(error, result.error))
            cut = images.decode_message(result.image, self.image_limits)
            result.image.CopyFrom(images.to_message(cut, spec.output_format))
            return
        result.upscale_status = "success"
        result.image.CopyFrom(reply.image)
        upscale = self.prices.reprice(reply.cost, "upscale", fallback_seconds=time.perf_counter() - started)
        result.cost.CopyFrom(sum_costs([result.cost, upscale]))
        result.cost_usd = result.cost.usd
        result.output_dimensions.CopyFrom(reply.output_dimensions)

    async def stream(self, spec: pb.ShotgunSpec, job_id: str = "") -> AsyncIterator[pb.StreamShotgunResponse]:
        """Each model's result as it finishes, then the summary (results in request order)."""
        started = time.perf_counter()
        self.validate(spec)
        image, size = self.prepare_image(spec)  # a bad image fails the whole request, before any model runs
        models, names, left_out = await self.plan(spec)
        timeout = spec.per_model_timeout_ms / 1000 if spec.per_model_timeout_ms > 0 else self.limits.per_model_timeout_s
        tasks = [asyncio.create_task(self._one(m, names.get(m, ""), image, size, spec, timeout)) for m in models]
        done: dict[str, pb.ShotgunResult] = {}
        try:
            for finished in asyncio.as_completed(tasks):
                result = await finished
                done[result.model_id] = result
                yield pb.StreamShotgunResponse(result=result)
        finally:
            for task in tasks:  # the caller went away: stop waiting on the backends
                task.cancel()
        results = [done[m] for m in models]
        # A failed model carries no cost (nothing reported it); summing every result keeps the rule one line.
        total = sum_costs([r.cost for r in results])
        yield pb.StreamShotgunResponse(summary=pb.ShotgunSummary(
            job_id=job_id or f"job_{uuid.uuid4().hex}",
            status=overall_status(results),
            processing_time_ms=int((time.perf_counter() - started) * 1000),
            results=results,
            total_cost_usd=total.usd,
            total_cost=total,
            unavailable=left_out,
        ))

    async def run(self, spec: pb.ShotgunSpec, job_id: str = "") -> pb.ShotgunSummary:
        async with contextlib.aclosing(self.stream(spec, job_id)) as events:
            async for event in events:
                if event.WhichOneof("event") == "summary":
                    return event.summary
        raise AssertionError("the shotgun stream always ends with a summary")  # pragma: no cover
