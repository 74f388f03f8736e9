"""Prometheus metrics: one registry per server, served on its own port."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


@dataclass
class RpcMetrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    in_flight: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> "RpcMetrics":
        # A registry per server: tests build several servers in one process, and each must count its own. The
        # caller passes it when a service's own metrics (made before the server) must live beside these.
        registry = registry if registry is not None else CollectorRegistry()
        return cls(
            registry=registry,
            requests=Counter(
                "imagemesh_grpc_requests", "gRPC requests by method and status code",
                ["method", "code"], registry=registry,
            ),
            latency=Histogram(
                "imagemesh_grpc_request_duration_seconds", "gRPC request latency by method",
                ["method"], registry=registry,
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            ),
            in_flight=Gauge(
                "imagemesh_grpc_in_flight", "gRPC requests being handled", ["method"], registry=registry,
            ),
        )


def serve_metrics(registry: CollectorRegistry, host: str, port: int):
    """Start the metrics HTTP endpoint; returns (server, bound port), or (None, None) when port < 0."""
    if port < 0:
        return None, None
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server, server.server_port
