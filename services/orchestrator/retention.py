"""The image store's retention, enforced by the orchestrator (its only writer): a periodic sweep that deletes
images past the maximum age and, past the maximum total size, the oldest first (shared.image_store.sweep, through
the ImageStore interface, so a local folder and an S3 bucket follow the same policy). docs/orchestrator.md,
"Image retention", lists the settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from shared.image_store import ImageStore, RetentionPolicy, SweepResult, sweep

log = logging.getLogger(__name__)


class RetentionSweeper:
    def __init__(self, store: ImageStore, policy: RetentionPolicy, interval_s: float) -> None:
        self.store = store
        self.policy = policy
        self.interval_s = interval_s
        self.last: SweepResult | None = None
        self._task: asyncio.Task | None = None

    async def sweep_once(self) -> SweepResult:
        result = await asyncio.to_thread(sweep, self.store, self.policy)
        self.last = result
        if result.deleted:
            log.info("image retention: %d image(s) deleted (%d bytes); %d kept (%d bytes)", result.deleted,
                     result.freed_bytes, result.kept, result.kept_bytes)
        return result

    async def _loop(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except Exception:  # a failed sweep (store unreachable) is retried next interval
                log.exception("image retention sweep failed")
            await asyncio.sleep(self.interval_s)

    async def start(self) -> None:
        if self.policy.enabled and self.interval_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="image-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
