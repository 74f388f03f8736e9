"""The BackgroundRemoval service's own Prometheus metrics, on the server's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram

from services.background_removal.catalog import ModelSpec


class BackgroundRemovalMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.loaded = Gauge("imagemesh_background_removal_model_loaded",
                            "1 when a model is loaded, labelled with the ONNX provider it really runs on",
                            ["model", "provider"], registry=registry)
        self.seconds = Histogram("imagemesh_background_removal_seconds", "Removal time per model (inference and "
                                 "cut-out, without queueing)", ["model"], registry=registry,
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))

    def model_loaded(self, spec: ModelSpec, provider: str) -> None:
        self.loaded.labels(spec.id, provider).set(1)

    def observe(self, model_id: str, seconds: float) -> None:
        self.seconds.labels(model_id).observe(seconds)
