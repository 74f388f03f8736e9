"""Which torch device runs the pipelines: chosen (cuda, mps, cpu) or pinned, and never silently replaced."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Device:
    name: str  # what torch is given: "cuda:0", "mps", "cpu"
    kind: str  # the device class priced and reported: cuda, mps, cpu
    total_memory: int  # bytes: the GPU's memory, or physical RAM on cpu/mps
    error: str = ""  # set when a pinned device does not exist here; every model is then FAILED with it

    @property
    def available(self) -> bool:
        return not self.error


def _physical_ram() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 1024**3


def choose_device(setting: str) -> Device:
    import torch

    wanted = (setting or "auto").strip().lower()
    if wanted == "auto":
        if torch.cuda.is_available():
            wanted = "cuda:0"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            wanted = "mps"
        else:
            wanted = "cpu"
    if wanted == "cuda":
        wanted = "cuda:0"
    if wanted.startswith("cuda"):
        index = int(wanted.split(":", 1)[1]) if ":" in wanted else 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            return Device(wanted, "cuda", 0, error=f"device {wanted} was asked for but is not available here "
                                                   f"({torch.cuda.device_count()} CUDA devices)")
        return Device(wanted, "cuda", torch.cuda.get_device_properties(index).total_memory)
    if wanted == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            return Device("mps", "mps", 0, error="device mps was asked for but is not available here")
        return Device("mps", "mps", _physical_ram())
    if wanted == "cpu":
        return Device("cpu", "cpu", _physical_ram())
    return Device(wanted, wanted.split(":")[0], 0, error=f"unknown device {setting!r}; use auto, cuda[:N], mps or cpu")


def default_budget(device: Device) -> int:
    """Bytes of pipelines kept loaded when no budget is configured (headroom left for activations)."""
    return int(device.total_memory * (0.8 if device.kind == "cuda" else 0.5))
