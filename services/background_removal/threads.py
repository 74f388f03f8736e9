"""How many onnxruntime threads an inference gets: the whole machine when it runs alone, a share under concurrency.

onnxruntime fixes a session's intra-op thread count when the session is made, so a runner keeps one session per
thread level (`levels`), and each inference takes the level that fits the inferences running beside it when it
starts: `cores // running`, at least 1. With 2 cores and 2 concurrent requests: a lone request runs on 2 threads,
two at once on 1 thread each (the best fixed setting for throughput, measured in bench/bgremoval_threads.py).
Counted per process, across models, so a shotgun's models share the machine too.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (a container's limit)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def thread_levels(cores: int, max_concurrency: int) -> list[int]:
    """The intra-op thread counts a runner needs sessions for, widest first: cores // k for k = 1..max_concurrency."""
    cores, max_concurrency = max(1, cores), max(1, max_concurrency)
    return sorted({max(1, cores // k) for k in range(1, max_concurrency + 1)}, reverse=True)


class ThreadBudget:
    """Counts the inferences running in this process and hands each one its thread level when it starts."""

    def __init__(self, cores: int, max_concurrency: int) -> None:
        self.cores = max(1, cores)
        self.levels = thread_levels(self.cores, max_concurrency)
        self._lock = threading.Lock()
        self.running = 0

    def level_for(self, running: int) -> int:
        """The widest level that fits `running` inferences (this one included) on the cores."""
        share = max(1, self.cores // max(1, running))
        return next((level for level in self.levels if level <= share), self.levels[-1])

    @contextlib.contextmanager
    def slot(self) -> Iterator[int]:
        with self._lock:
            self.running += 1
            threads = self.level_for(self.running)
        try:
            yield threads
        finally:
            with self._lock:
                self.running -= 1
