"""Waiting on state that settles in the background (a health watch, a job) without fixed sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(probe: Callable[[], Awaitable[Any]], check: Callable[[Any], bool], timeout: float = 30.0) -> Any:
    """Poll `probe` until `check` holds on its result and return that result; fail with the last one after
    `timeout` seconds (a bound on hanging, not a performance figure)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if check(value):
            return value
        assert loop.time() < deadline, f"still {value!r} after {timeout}s"
        await asyncio.sleep(0.02)
