"""The mesh's catalogues, as the services that own them list them, cached for a few seconds.

Surfaces (the gateway's dialects, the CLI, the SDKs) resolve names on nearly every request; asking the owning
service each time would put a backend hop on every call, so each section is remembered briefly. The orchestrator
adds no rule here: what a model or method means stays with its service.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from services.orchestrator.backends import Backends
from shared import clients
from shared.gen.imagemesh.v1 import background_removal_service_pb2 as br_pb
from shared.gen.imagemesh.v1 import generate_service_pb2 as gen_pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
from shared.gen.imagemesh.v1 import upscale_service_pb2 as up_pb

ALL_SECTIONS = (
    pb.CATALOG_SECTION_GENERATION_MODELS,
    pb.CATALOG_SECTION_REMOVAL_MODELS,
    pb.CATALOG_SECTION_UPSCALE_METHODS,
    pb.CATALOG_SECTION_PLATFORM_FORMATS,
)


@dataclass
class _Cached:
    value: Message
    expires_at: float


class MeshCatalog:
    def __init__(self, backends: Backends, ttl_s: float = 5.0, timeout_s: float = 10.0) -> None:
        self.ttl_s = ttl_s
        # section -> (response field, fetch(platform)); only the platform formats take the platform filter.
        self._fetchers: dict[int, tuple[str, Callable[[str], Awaitable[Message]]]] = {
            pb.CATALOG_SECTION_GENERATION_MODELS: ("generation_models", lambda _: clients.call(
                backends.generate.ListModels, gen_pb.ListModelsRequest(), timeout=timeout_s)),
            pb.CATALOG_SECTION_REMOVAL_MODELS: ("removal_models", lambda _: clients.call(
                backends.background_removal.ListRemovalModels, br_pb.ListRemovalModelsRequest(), timeout=timeout_s)),
            pb.CATALOG_SECTION_UPSCALE_METHODS: ("upscale_methods", lambda _: clients.call(
                backends.upscale.ListMethods, up_pb.ListMethodsRequest(), timeout=timeout_s)),
            pb.CATALOG_SECTION_PLATFORM_FORMATS: ("platform_formats", lambda platform: clients.call(
                backends.upscale.ListPlatformFormats, up_pb.ListPlatformFormatsRequest(platform=platform),
                timeout=timeout_s)),
        }
        self._cache: dict[tuple[int, str], _Cached] = {}

    async def section(self, section: int, platform: str = "") -> Message:
        key = (section, platform if section == pb.CATALOG_SECTION_PLATFORM_FORMATS else "")
        cached = self._cache.get(key)
        if cached and cached.expires_at > time.monotonic():
            return cached.value
        value = await self._fetchers[section][1](key[1])
        if len(self._cache) > 256:  # platform names come from callers: never let them grow the cache unbounded
            self._cache.clear()
        self._cache[key] = _Cached(value, time.monotonic() + self.ttl_s)
        return value

    async def get(self, sections: list[int], platform: str = "") -> pb.GetCatalogResponse:
        wanted = [s for s in sections if s in self._fetchers] or list(ALL_SECTIONS)
        values = await asyncio.gather(*(self.section(s, platform) for s in wanted))
        reply = pb.GetCatalogResponse()
        for section, value in zip(wanted, values):
            getattr(reply, self._fetchers[section][0]).CopyFrom(value)
        return reply
