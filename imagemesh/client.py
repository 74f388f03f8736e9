"""The imagemesh Python SDK over the gateway's REST API.

Wire format: the Freepik AI Orchestrator dialect at /v1 (seed 000: generate, tasks, workflows, post-processing,
the job event stream) plus the imagemesh extensions documented in docs/clients.md (generation size, steps, seed
and count; GET /v1/jobs; POST /v1/jobs/{id}/cancel), the shotgun dialect's POST /remove-background for
per-model cut-outs, and GET /health. `AsyncClient` does the work; `Client` is the same API, blocking.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import json
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx

from imagemesh.errors import ConnectionFailed, ImageMeshError, from_response
from imagemesh.models import (
    Cutout,
    Cutouts,
    GenerateSubmission,
    Health,
    JobPage,
    ProgressEvent,
    Task,
    WorkflowExecution,
    WorkflowInfo,
)

DEFAULT_URL = "http://127.0.0.1:8080"
RETRY_STATUSES = frozenset({429, 503})


def default_base_url() -> str:
    return os.environ.get("IMAGEMESH_URL") or DEFAULT_URL


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        stamp = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, stamp.timestamp() - time.time())


def _image_payload(image: bytes | str | os.PathLike) -> dict[str, str]:
    """Request fields for an input image: bytes or a local file go inline (base64), an http(s) URL as image_url."""
    if isinstance(image, str) and image.startswith(("http://", "https://", "data:")):
        return {"image_url": image}
    data = image if isinstance(image, bytes) else Path(image).read_bytes()
    return {"image": base64.b64encode(data).decode()}


def decode_data_uri(uri: str) -> bytes:
    try:
        return base64.b64decode(uri.split(",", 1)[1], validate=True)
    except (IndexError, binascii.Error) as exc:
        raise ImageMeshError(f"malformed data URI in the reply: {exc}") from None


class AsyncClient:
    """The gateway, asynchronously. `api_key` defaults to IMAGEMESH_API_KEY, `base_url` to IMAGEMESH_URL or
    http://127.0.0.1:8080. Answers 429/503 and connection failures on safe calls are retried with capped
    exponential backoff, waiting at least what Retry-After says; submits carry an Idempotency-Key so a retried
    submit is the same job."""

    def __init__(self, api_key: str | None = None, base_url: str | None = None, *, timeout: float = 600.0,
                 max_retries: int = 4, backoff_s: float = 0.5, max_backoff_s: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.api_key = api_key if api_key is not None else os.environ.get("IMAGEMESH_API_KEY") or None
        self.base_url = (base_url or default_base_url()).rstrip("/")
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        headers = {"User-Agent": "imagemesh-python"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, transport=transport,
                                       timeout=httpx.Timeout(timeout, connect=10.0))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- plumbing ------------------------------------------------------------------------------------------------

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = min(self.max_backoff_s, self.backoff_s * 2**attempt) * (0.5 + random.random() / 2)
        return max(backoff, retry_after or 0.0)

    async def _request(self, method: str, path: str, *, json_body: Any = None, params: Any = None,
                       retry: bool = True, ok: tuple[int, ...] = ()) -> httpx.Response:
        headers = {}
        if method == "POST" and retry:
            # The gateway passes this to the orchestrator: a retried submit returns the first job.
            headers["Idempotency-Key"] = uuid.uuid4().hex
        attempts = self.max_retries + 1 if retry else 1
        for attempt in range(attempts):
            try:
                reply = await self._http.request(method, path, json=json_body, params=params, headers=headers)
            except httpx.TransportError as exc:
                if attempt == attempts - 1:
                    raise ConnectionFailed(f"cannot reach the imagemesh gateway at {self.base_url}: "
                                           f"{exc.__class__.__name__}{': ' + str(exc) if str(exc) else ''}") from None
                await asyncio.sleep(self._delay(attempt, None))
                continue
            if reply.is_success or reply.status_code in ok:
                return reply
            wait = _retry_after(reply.headers.get("retry-after"))
            if reply.status_code in RETRY_STATUSES and attempt < attempts - 1:
                await asyncio.sleep(self._delay(attempt, wait))
                continue
            try:
                body = reply.json()
            except ValueError:
                body = reply.text
            raise from_response(reply.status_code, body, wait)
        raise AssertionError("unreachable")

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self._request(method, path, **kwargs)).json()

    # --- generation and tasks ------------------------------------------------------------------------------------

    async def generate(self, prompt: str, model: str = "auto", *, style: str | None = None,
                       aspect_ratio: str | None = None, quality_level: int | None = None, width: int | None = None,
                       height: int | None = None, steps: int | None = None, seed: int | None = None,
                       num_images: int = 1, webhook_url: str | None = None) -> GenerateSubmission:
        """Submit a generation; returns at once with the task id (watch it, or `wait`)."""
        body: dict[str, Any] = {"prompt": prompt, "model": model, "num_images": num_images}
        for key, value in (("style", style), ("aspect_ratio", aspect_ratio), ("quality_level", quality_level),
                           ("width", width), ("height", height), ("steps", steps), ("seed", seed),
                           ("webhook_url", webhook_url)):
            if value is not None:
                body[key] = value
        return GenerateSubmission.from_json(await self._json("POST", "/v1/generate", json_body=body))

    async def get_task(self, task_id: str) -> Task:
        return Task.from_json(await self._json("GET", f"/v1/jobs/{task_id}"))

    get_status = get_task

    async def list_jobs(self, *, status: list[str] | None = None, kind: str = "", page_size: int = 20,
                        page_token: str = "") -> JobPage:
        params: dict[str, Any] = {"page_size": page_size}
        if status:
            params["status"] = status
        if kind:
            params["kind"] = kind
        if page_token:
            params["page_token"] = page_token
        body = await self._json("GET", "/v1/jobs", params=params)
        return JobPage(jobs=tuple(Task.from_json(j) for j in body["jobs"]), total=body.get("total", 0),
                       next_page_token=body.get("next_page_token"))

    async def cancel(self, task_id: str) -> Task:
        return Task.from_json(await self._json("POST", f"/v1/jobs/{task_id}/cancel"))

    async def watch(self, task_id: str) -> AsyncIterator[ProgressEvent]:
        """The job's events (the SSE stream GET /v1/jobs/{id}/events) until it is terminal. A dropped stream is
        re-opened (it starts again with the job's current status)."""
        for attempt in range(self.max_retries + 1):
            try:
                async with aclosing(self._events(task_id)) as events:
                    async for event in events:
                        yield event
                        if event.done:
                            return
                return
            except (httpx.TransportError, ConnectionFailed):
                if attempt == self.max_retries:
                    raise ConnectionFailed(f"lost the event stream of {task_id} at {self.base_url}") from None
                await asyncio.sleep(self._delay(attempt, None))

    async def _events(self, task_id: str) -> AsyncIterator[ProgressEvent]:
        async with self._http.stream("GET", f"/v1/jobs/{task_id}/events",
                                     headers={"Accept": "text/event-stream"}) as reply:
            if not reply.is_success:
                await reply.aread()
                try:
                    body = reply.json()
                except ValueError:
                    body = reply.text
                raise from_response(reply.status_code, body, _retry_after(reply.headers.get("retry-after")))
            kind, data = "message", []
            async for line in reply.aiter_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    body = json.loads("\n".join(data))
                    if kind == "error":
                        raise ImageMeshError(body.get("message", "the job stream failed"), code=body.get("code", ""))
                    yield ProgressEvent.from_json(kind, body)
                    kind, data = "message", []

    async def wait(self, task_id: str) -> Task:
        """Follow the job to its end and return it as stored."""
        async for _ in self.watch(task_id):
            pass
        return await self.get_task(task_id)

    async def download(self, url: str) -> bytes:
        """A result image's bytes: a gateway URL (with this client's key) or a data URI."""
        if url.startswith("data:"):
            return decode_data_uri(url)
        return (await self._request("GET", url)).content

    # --- workflows -----------------------------------------------------------------------------------------------

    async def list_workflows(self) -> list[WorkflowInfo]:
        body = await self._json("GET", "/v1/workflows")
        return [WorkflowInfo.from_json(w) for w in body["workflows"]]

    async def execute_workflow(self, workflow_id: str, prompt: str | None = None, *,
                               image: bytes | str | os.PathLike | None = None,
                               custom_params: dict[str, Any] | None = None,
                               webhook_url: str | None = None) -> WorkflowExecution:
        body: dict[str, Any] = {"custom_params": custom_params or {}}
        if prompt is not None:
            body["prompt"] = prompt
        if image is not None:
            payload = _image_payload(image)
            # The workflow endpoint takes its input as image_url; inline bytes travel as a data URI.
            body["image_url"] = payload.get("image_url") or "data:image/png;base64," + payload["image"]
        if webhook_url:
            body["webhook_url"] = webhook_url
        return WorkflowExecution.from_json(
            await self._json("POST", f"/v1/workflows/{workflow_id}/execute", json_body=body))

    # --- post-processing -----------------------------------------------------------------------------------------

    async def upscale(self, image: bytes | str | os.PathLike, *, scale_factor: int = 4, method: str | None = None,
                      webhook_url: str | None = None) -> str:
        """Submit an upscale; returns the task id."""
        body: dict[str, Any] = {"scale_factor": scale_factor, **_image_payload(image)}
        if method:
            body["method"] = method
        if webhook_url:
            body["webhook_url"] = webhook_url
        return (await self._json("POST", "/v1/post-process/upscale", json_body=body))["task_id"]

    async def remove_background(self, image: bytes | str | os.PathLike, *, models: list[str] | None = None,
                                output_format: str = "png") -> Cutouts:
        """Every requested background-removal model on one image (all when `models` is empty), synchronously."""
        body = {"include_models": models or ["all"], "output_format": output_format, **_image_payload(image)}
        reply = await self._json("POST", "/remove-background", json_body=body)
        results = []
        for item in reply.get("results") or []:
            data = base64.b64decode(item["image_base64"]) if item.get("image_base64") else None
            results.append(Cutout(model_id=item["model_id"], status=item["status"], image=data,
                                  model_name=item.get("model_name"), error=item.get("error"),
                                  processing_time_ms=int(item.get("processing_time_ms") or 0),
                                  cost_usd=float(item.get("cost_usd") or 0.0)))
        return Cutouts(job_id=reply["job_id"], status=reply["status"], results=tuple(results),
                       total_cost_usd=reply.get("total_cost_usd"))

    # --- health --------------------------------------------------------------------------------------------------

    async def health(self) -> Health:
        """GET /health; an unhealthy mesh (503 with the health body) is returned, not raised."""
        reply = await self._request("GET", "/health", retry=False, ok=(503,))
        try:
            return Health.from_json(reply.json())
        except ValueError:
            raise from_response(reply.status_code, reply.text) from None


class Client:
    """The same API as AsyncClient, blocking (each call runs on this client's own event loop; do not use it from
    inside a running event loop: use AsyncClient there)."""

    def __init__(self, api_key: str | None = None, base_url: str | None = None, **kwargs: Any) -> None:
        self._runner = asyncio.Runner()
        self._async = self._runner.run(self._make(api_key, base_url, kwargs))

    @staticmethod
    async def _make(api_key: str | None, base_url: str | None, kwargs: dict[str, Any]) -> AsyncClient:
        return AsyncClient(api_key, base_url, **kwargs)

    @property
    def base_url(self) -> str:
        return self._async.base_url

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._runner.run(self._async.aclose())
        self._runner.close()

    def watch(self, task_id: str) -> Iterator[ProgressEvent]:
        events = self._async.watch(task_id)
        try:
            while True:
                try:
                    yield self._runner.run(events.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self._runner.run(events.aclose())

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._async, name)
        if not asyncio.iscoroutinefunction(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._runner.run(method(*args, **kwargs))

        call.__name__ = name
        call.__doc__ = method.__doc__
        return call
