"""Job metrics on the server's Prometheus registry (autoscaling reads queue depth and wait, not CPU)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


@dataclass
class JobMetrics:
    finished: Counter
    duration: Histogram
    queue_wait: Histogram
    running: Gauge
    pending: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> "JobMetrics":
        return cls(
            finished=Counter("imagemesh_jobs_finished", "Jobs finished by this process, by kind and status",
                             ["kind", "status"], registry=registry),
            duration=Histogram("imagemesh_job_duration_seconds", "Run time of finished jobs", ["kind"],
                               registry=registry, buckets=_BUCKETS),
            queue_wait=Histogram("imagemesh_job_queue_wait_seconds", "Time from submit to a worker's claim",
                                 ["kind"], registry=registry, buckets=_BUCKETS),
            running=Gauge("imagemesh_jobs_running", "Jobs this process is running", registry=registry),
            pending=Gauge("imagemesh_jobs_pending", "Pending jobs in the store (all replicas)", registry=registry),
        )
