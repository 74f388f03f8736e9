"""The Upscale service's own Prometheus metrics, on the server's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class UpscaleMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sr_provider = Gauge(
            "imagemesh_upscale_sr_provider_info",
            "Super-resolution methods and the execution provider each runs on (1 = available, 0 = unavailable)",
            ["method", "provider"], registry=registry,
        )
        self.upscales = Counter("imagemesh_upscale_upscales", "Upscales by method actually used", ["method"],
                                registry=registry)
        self.fallbacks = Counter("imagemesh_upscale_fallbacks", "Upscales that asked for a model but used Lanczos",
                                 ["reason"], registry=registry)
        self.tiles = Counter("imagemesh_upscale_sr_tiles", "Model tiles run", ["method"], registry=registry)
        self.relights = Counter("imagemesh_upscale_relights", "Relights by style", ["style"], registry=registry)
        self.social_images = Counter("imagemesh_upscale_social_images", "Social crops by platform", ["platform"],
                                     registry=registry)
