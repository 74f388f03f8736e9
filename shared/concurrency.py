"""Bounded execution of blocking work (model inference, resampling) off the event loop."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from shared.errors import QueueFull

T = TypeVar("T")


class BoundedExecutor:
    """At most `concurrency` jobs run at once in worker threads; at most `max_queue` wait.

    Past the queue bound a caller gets QUEUE_FULL (RESOURCE_EXHAUSTED) at once instead of an unbounded wait.
    """

    def __init__(self, concurrency: int, max_queue: int, name: str = "worker") -> None:
        self.concurrency = max(1, concurrency)
        self.max_queue = max(0, max_queue)
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=name)
        self._slots = asyncio.Semaphore(self.concurrency)
        self._waiting = 0
        self.running = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._slots.locked() and self._waiting >= self.max_queue:
            raise QueueFull(
                f"server busy: {self.running} running and {self._waiting} queued (limit {self.max_queue})",
                max_queue=self.max_queue,
            )
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        self.running += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(*args))
        finally:
            self.running -= 1
            self._slots.release()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
