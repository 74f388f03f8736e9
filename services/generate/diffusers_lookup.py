"""Classes looked up by name in diffusers, safely from several threads.

diffusers imports its submodules lazily on first attribute access. Two worker threads asking for a class at the same
moment can see the module half-imported and get an AttributeError for a class that exists ("unknown scheduler
EulerAncestralDiscreteScheduler" under load), so every lookup by name goes through one lock.
"""
from __future__ import annotations

import threading

_LOOKUP = threading.Lock()


def diffusers_class(name: str):
    """The diffusers attribute `name`, or None when diffusers has no such name."""
    import diffusers

    with _LOOKUP:
        return getattr(diffusers, name, None)
