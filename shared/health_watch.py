"""HealthWatcher: one long-lived `grpc.health.v1.Health/Watch` stream per service, its latest status cached.

A reader (the gateway's /health, a CLI status line) asks the cache instead of sending a Check per question: the
backends push each change, so the answer costs no RPC and is as fresh as the last change the server sent.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

log = logging.getLogger("imagemesh.health_watch")

UNKNOWN = "UNKNOWN"
UNAVAILABLE = "UNAVAILABLE"
SERVING = "SERVING"

# (service, new status) after every change the cache sees.
Listener = Callable[[str, str], None]


class HealthWatcher:
    """Watches each named channel's health (`service=""`: the whole server) until `stop()`.

    A broken stream sets the status to UNAVAILABLE and the watch is re-opened with jittered exponential backoff;
    the re-opened call waits for the channel to be READY, so gRPC's own reconnect backoff paces a dead backend.
    """

    def __init__(self, channels: Mapping[str, grpc.aio.Channel], *, service: str = "",
                 backoff_initial_s: float = 0.1, backoff_max_s: float = 5.0) -> None:
        self._channels = dict(channels)
        self._service = service
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._statuses = {name: UNKNOWN for name in self._channels}
        self._reported: set[str] = set()
        self._first_round = asyncio.Event()
        self._listeners: list[Listener] = []
        self._tasks: list[asyncio.Task] = []

    @property
    def started(self) -> bool:
        return bool(self._tasks)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def statuses(self) -> dict[str, str]:
        """The cached status of every service (UNKNOWN until its first answer): no RPC."""
        return dict(self._statuses)

    def status(self, name: str) -> str:
        return self._statuses[name]

    def start(self) -> None:
        """Open the watches (idempotent); call from the running event loop that will read the cache."""
        if self._tasks:
            return
        self._tasks = [asyncio.create_task(self._watch(name, channel), name=f"health-watch-{name}")
                       for name, channel in self._channels.items()]

    async def wait_first_round(self, timeout: float) -> bool:
        """Wait until every service has answered once (or failed once), at most `timeout` seconds.

        A reader right after start would otherwise see UNKNOWN for services that are in fact up."""
        if self._first_round.is_set():
            return True
        try:
            await asyncio.wait_for(self._first_round.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _set(self, name: str, status: str) -> None:
        self._reported.add(name)
        if len(self._reported) == len(self._channels):
            self._first_round.set()
        if self._statuses[name] == status:
            return
        log.info("health of %s: %s -> %s", name, self._statuses[name], status)
        self._statuses[name] = status
        for listener in self._listeners:
            try:
                listener(name, status)
            except Exception:  # a faulty listener must not end the watch
                log.exception("health listener failed")

    async def _watch(self, name: str, channel: grpc.aio.Channel) -> None:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=self._service)
        delay = self._backoff_initial_s
        first = True
        while True:
            # The first attempt must not wait for READY: a backend that is down at start is reported UNAVAILABLE
            # at once rather than after the first reader's timeout.
            call = stub.Watch(request, wait_for_ready=not first)
            first = False
            try:
                async for reply in call:
                    self._set(name, health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
                    delay = self._backoff_initial_s
            except grpc.aio.AioRpcError as exc:
                log.debug("health watch of %s broke: %s", name, exc.code())
            except grpc.aio.UsageError:
                # The channel was closed under the watch: nothing can be watched on it any more.
                self._set(name, UNAVAILABLE)
                return
            finally:
                call.cancel()
            # Ended or broke: the backend is gone until a new stream says otherwise.
            self._set(name, UNAVAILABLE)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self._backoff_max_s)
