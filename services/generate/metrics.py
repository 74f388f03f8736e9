"""Prometheus metrics of the Generate service, on the server's own registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class GenerateMetrics:
    queue_depth: Gauge
    batch_requests: Histogram
    images: Counter
    inference_seconds: Histogram
    interrupted: Counter
    loaded_bytes: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> GenerateMetrics:
        return cls(
            queue_depth=Gauge("imagemesh_generate_queue_depth", "Requests waiting for the device", registry=registry),
            batch_requests=Histogram("imagemesh_generate_batch_requests", "Requests per pipeline call", ["model"],
                                     buckets=(1, 2, 3, 4, 6, 8, 12, 16), registry=registry),
            images=Counter("imagemesh_generate_images", "Images generated", ["model"], registry=registry),
            inference_seconds=Histogram("imagemesh_generate_inference_seconds", "Pipeline time per call", ["model"],
                                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
                                        registry=registry),
            interrupted=Counter("imagemesh_generate_interrupted", "Pipeline calls stopped because every caller left",
                                registry=registry),
            loaded_bytes=Gauge("imagemesh_generate_loaded_bytes", "Bytes of loaded pipelines", registry=registry),
        )

    def observe_batch(self, model: str, requests: int, images: int, seconds: float) -> None:
        self.batch_requests.labels(model).observe(requests)
        self.images.labels(model).inc(images)
        self.inference_seconds.labels(model).observe(seconds)
