"""Tiny harness: time a baseline and a subject in the same run, interleaved, and report medians and ratios.

Machines here are noisy, so absolute seconds mean little; the ratio subject/baseline measured side by side
is what a benchmark reports. Nothing here asserts thresholds.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Awaitable, Callable


@dataclass
class Comparison:
    name: str
    subject: str
    baseline: str
    subject_s: float
    baseline_s: float
    repeats: int
    unit: str = "s"
    notes: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.subject_s / self.baseline_s if self.baseline_s else float("inf")

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": round(self.ratio, 4)}


async def compare(name: str, subject: tuple[str, Callable[[], Awaitable[object]]],
                  baseline: tuple[str, Callable[[], Awaitable[object]]], repeats: int = 5, warmup: int = 1,
                  notes: str = "") -> Comparison:
    """Median wall time of each, runs interleaved (baseline, subject, baseline, ...) so drift hits both."""
    for _ in range(warmup):
        await baseline[1]()
        await subject[1]()
    base_times, subject_times = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        await baseline[1]()
        base_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        await subject[1]()
        subject_times.append(time.perf_counter() - started)
    return Comparison(name, subject[0], baseline[0], statistics.median(subject_times), statistics.median(base_times),
                      repeats, notes=notes)


def rgba_test_image(size: int = 1024):
    """Noisy RGBA with a hard-edged opaque disc: the benchmarks' shared 1024x1024 RGBA input."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (size, size, 4), dtype=np.uint8)
    half = size // 2
    arr[..., 3] = np.where(np.hypot(*np.mgrid[-half:size - half, -half:size - half]) < size * 0.39, 255, 0)
    return Image.fromarray(arr, "RGBA")


def _value(value: float, unit: str) -> str:
    """Seconds print as milliseconds; counts and sizes as they are, with their unit."""
    if unit == "s":
        return f"{value * 1000:.1f} ms"
    return f"{value:.1f} {unit}" if value != int(value) else f"{int(value)} {unit}"


def markdown_table(rows: list[Comparison]) -> str:
    lines = ["| benchmark | subject | baseline | subject median | baseline median | ratio | notes |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.name} | {row.subject} | {row.baseline} | {_value(row.subject_s, row.unit)} | "
                     f"{_value(row.baseline_s, row.unit)} | {row.ratio:.2f}x | {row.notes} |")
    return "\n".join(lines) + "\n"
