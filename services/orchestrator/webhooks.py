"""Signed webhook deliveries: built with the job's state change (same transaction), sent by a loop that never
blocks job processing, retried with exponential backoff and jitter, honouring Retry-After, across restarts.

The body follows the document the client uses (the job's `webhook_format` label, from Webhook.format at submit):
seed 000's (`generation.completed`, task_id, data) by default, seed 002's (`job_completed`, job_id, full results,
a `signature` field in the body) for the shotgun dialect.

Each POST carries two signatures over the same raw body:
- `X-Freepik-Signature: sha256=<hex HMAC-SHA256(secret, body)>` (the seed's `verify_webhook`), and
- Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of
  "id.timestamp.body">`); a `whsec_`-prefixed secret is base64-decoded first, as that spec says.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import hmac
import json
import logging
import random
import time

from services.orchestrator.job_store import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PARTIAL,
    STATUS_NAME,
    AsyncStore,
    Delivery,
    new_id,
)
from shared import ssrf
from shared.errors import ImageMeshError
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb

log = logging.getLogger("imagemesh.orchestrator.webhooks")

# Event names per job kind, as 000 names them ("generation.completed").
_EVENT_PREFIX = {"generate": "generation", "workflow": "workflow"}


def _iso(stamp) -> str | None:  # noqa: ANN001
    if not stamp.seconds and not stamp.nanos:
        return None
    return stamp.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ")


def image_url(ref: str, base: str) -> str:
    return f"{base.rstrip('/')}/{ref}" if base else ref


FREEPIK, SHOTGUN = "freepik", "shotgun"
# Body formats, after the document a client follows; the dialect names it in Webhook.format at submit.
FORMATS = (FREEPIK, SHOTGUN)
FORMAT_LABEL = "webhook_format"


def _processing_seconds(job: pb.Job) -> float | None:
    if job.HasField("started_at") and job.HasField("finished_at"):
        return (job.finished_at.ToNanoseconds() - job.started_at.ToNanoseconds()) / 1e9
    return None


def payload(job: pb.Job, progress: bool, image_base_url: str = "", secret: str = "") -> tuple[str, dict]:
    """(event name, JSON body) in the job's webhook format (its `webhook_format` label; seed 000's by default)."""
    if job.labels.get(FORMAT_LABEL) == SHOTGUN:
        return shotgun_payload(job, progress, image_base_url, secret)
    return freepik_payload(job, progress, image_base_url)


def freepik_payload(job: pb.Job, progress: bool, image_base_url: str = "") -> tuple[str, dict]:
    """Seed 000's payload: event, task_id, timestamp, data {status, image_url, thumbnail_url, model_used,
    processing_time (whole seconds)}, plus imagemesh's extras (job_id, every image, cost, progress, steps, error)."""
    status = STATUS_NAME[job.status]
    event = f"{_EVENT_PREFIX.get(job.kind, 'job')}.{'progress' if progress else status}"
    from services.orchestrator.media import images_in

    refs = [image.ref for image in images_in(job.result) if image.ref]
    urls = [image_url(ref, image_base_url) for ref in refs]
    seconds = _processing_seconds(job)
    data = {
        "status": status,
        "image_url": urls[0] if urls else None,
        # The stored thumbnail (the gateway's image routes serve it with ?thumbnail=true) once URLs are public.
        "thumbnail_url": (f"{urls[0]}?thumbnail=true" if image_base_url else urls[0]) if urls else None,
        "image_urls": urls,
        # As the client asked for it (the submit's model_used), "auto" or nothing asked: the model that ran.
        "model_used": (asked if (asked := job.labels.get("model_requested", "")) and asked.lower() != "auto"
                       else job.model_id or None),
        "checkpoint": job.model_id or None,
        "processing_time": round(seconds) if seconds is not None else None,
        "cost_usd": round(job.cost.usd, 6),
        "progress": round(job.progress.fraction, 4),
        "message": job.progress.message,
        "steps": [{"step": s.index, "name": s.name, "action": s.action,
                   "status": STATUS_NAME.get(s.status, "pending"),
                   "result_url": image_url(s.outputs[0].ref, image_base_url) if s.outputs else None}
                  for s in job.steps],
    }
    if job.HasField("error"):
        data["error"] = {"code": job.error.reason, "message": job.error.message}
    body = {
        "event": event,
        "task_id": job.id,
        "job_id": job.id,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": data,
        "results": [{"image_url": url} for url in urls] if status == COMPLETED or refs else [],
    }
    return event, body


# Seed 002's events: a finished job (completed or partial) is "job_completed".
_SHOTGUN_EVENTS = {COMPLETED: "job_completed", PARTIAL: "job_completed", FAILED: "job_failed",
                   CANCELLED: "job_cancelled"}


def _shotgun_results(job: pb.Job, image_base_url: str) -> list[dict]:
    """Seed 002's full result objects (model_id, model_name, status, image_url, error, processing_time_ms,
    cost_usd); a job that is not a shotgun (an /upscale) reports its one result the same way. image_base64 is
    null: the image is at image_url (a webhook body carries no megabytes)."""
    kind = job.result.WhichOneof("result")
    if kind == "shotgun":
        out = []
        for r in job.result.shotgun.results:
            ok = r.status == pb.SHOTGUN_RESULT_STATUS_SUCCESS
            out.append({
                "model_id": r.model_id, "model_name": r.model_name or None, "status": "success" if ok else "error",
                "image_base64": None, "image_url": image_url(r.image.ref, image_base_url) if r.image.ref else None,
                "error": r.error or None, "processing_time_ms": r.processing_time_ms, "cost_usd": round(r.cost.usd, 6),
                **({"upscale_status": r.upscale_status} if r.upscale_status else {}),
            })
        return out
    from services.orchestrator.media import images_in

    refs = [image.ref for image in images_in(job.result) if image.ref]
    if not refs and not job.HasField("error"):
        return []
    seconds = _processing_seconds(job)
    ok = STATUS_NAME[job.status] == COMPLETED
    return [{"model_id": job.model_id or job.kind, "model_name": None, "status": "success" if ok else "error",
             "image_base64": None, "image_url": image_url(ref, image_base_url) if ref else None,
             "error": None if ok else job.error.message or None,
             "processing_time_ms": round(seconds * 1000) if seconds is not None else 0,
             "cost_usd": round(job.cost.usd, 6)} for ref in (refs or [""])]


def shotgun_payload(job: pb.Job, progress: bool, image_base_url: str = "", secret: str = "") -> tuple[str, dict]:
    """Seed 002's payload: {"event": "job_completed", "job_id", "results": [...], "signature"}, plus status,
    processing_time_ms, total_cost_usd and a timestamp. `signature` is body_signature(secret, the body without it)."""
    status = STATUS_NAME[job.status]
    event = "job_progress" if progress else _SHOTGUN_EVENTS.get(status, f"job_{status}")
    seconds = _processing_seconds(job)
    body: dict = {
        "event": event,
        "job_id": job.id,
        "status": status,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "processing_time_ms": round(seconds * 1000) if seconds is not None else None,
        "results": _shotgun_results(job, image_base_url),
        "total_cost_usd": round(job.cost.usd, 6),
    }
    unavailable = [{"model_id": u.model_id, "reason": u.reason} for u in job.result.shotgun.unavailable]
    if unavailable:
        body["unavailable_models"] = unavailable
    if job.HasField("error"):
        body["error"] = {"type": job.error.reason.lower(), "message": job.error.message}
    body["signature"] = body_signature(secret, body)
    return event, body


def body_signature(secret: str, body: dict) -> str:
    """The shotgun body's own `signature`: "sha256=" + hex HMAC-SHA256(secret, the body without `signature`,
    serialised as compact JSON with sorted keys), so seed 000's verify_webhook checks it too:
    verify_webhook(json.dumps(body_without_signature, separators=(",", ":"), sort_keys=True).encode(),
    body["signature"], secret)."""
    unsigned = {k: v for k, v in body.items() if k != "signature"}
    return freepik_signature(secret, canonical(unsigned))


def canonical(value: dict) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def freepik_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode()
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def sign(secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "User-Agent": "imagemesh-webhooks/1",
        "X-Freepik-Signature": freepik_signature(secret, body),
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_signature(secret, msg_id, timestamp, body),
    }


class DeliveryFactory:
    """Called by the store inside a job's terminal (or progress) transition: the rows to send."""

    def __init__(self, image_base_url: str = "") -> None:
        self.image_base_url = image_base_url

    def __call__(self, job: pb.Job, url: str, secret: str, progress: bool) -> list[dict]:
        event, body = payload(job, progress, self.image_base_url, secret)
        now = time.time()
        return [dict(id=new_id("msg"), job_id=job.id, owner=job.owner, event=event, url=url, secret=secret,
                     body=json.dumps(body, separators=(",", ":")).encode(), status="pending", attempts=0,
                     next_attempt_at=now, created_at=now)]


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class WebhookSender:
    """Sends due deliveries in the background; its failures never touch job processing."""

    def __init__(self, store: AsyncStore, policy: ssrf.UrlPolicy, *, delays_s: list[float], jitter: float = 0.2,
                 max_retry_after_s: float = 900.0, timeout_s: float = 10.0, poll_interval_s: float = 1.0,
                 concurrency: int = 8) -> None:
        self.store = store
        self.policy = policy
        self.delays_s = list(delays_s)
        self.jitter = jitter
        self.max_retry_after_s = max_retry_after_s
        self.timeout_s = timeout_s
        self.poll_interval_s = poll_interval_s
        self.concurrency = concurrency
        self.wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._inflight: set[asyncio.Task] = set()

    @property
    def max_attempts(self) -> int:
        return len(self.delays_s) + 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="webhooks")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for task in list(self._inflight):
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            free = self.concurrency - len(self._inflight)
            due = []
            if free > 0:
                try:
                    due = await self.store.claim_deliveries(free, self.timeout_s * 3 + 30)
                except Exception:  # noqa: BLE001
                    log.exception("claiming webhook deliveries failed")
            for delivery in due:
                task = asyncio.create_task(self._send(delivery))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            if due:
                continue
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), self.poll_interval_s)
            except asyncio.TimeoutError:
                pass

    def next_delay(self, attempts: int, retry_after: float | None) -> float:
        delay = self.delays_s[min(attempts - 1, len(self.delays_s) - 1)]
        delay *= 1 + random.uniform(-self.jitter, self.jitter)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after_s))
        return delay

    async def _send(self, delivery: Delivery) -> None:
        headers = sign(delivery.secret, delivery.id, delivery.body)
        status_code, error, retry_after = None, None, None
        try:
            answer = await ssrf.post(delivery.url, delivery.body, headers, self.policy, timeout_s=self.timeout_s)
            status_code = answer.status_code
            if 200 <= status_code < 300:
                await self.store.delivery_outcome(delivery.id, delivery.token, "delivered", status_code, None)
                return
            error = f"HTTP {status_code}"
            retry_after = retry_after_seconds({k.lower(): v for k, v in answer.headers.items()}.get("retry-after"))
        except ssrf.UnsafeUrl as exc:
            # The URL itself is refused (it was safe at submit; DNS changed since): retrying cannot help.
            await self.store.delivery_outcome(delivery.id, delivery.token, "failed", None, exc.message)
            return
        except ImageMeshError as exc:
            error = exc.message
        except Exception as exc:  # noqa: BLE001
            error = f"{type(exc).__name__}"
        if delivery.attempts >= self.max_attempts:
            log.warning("webhook %s for job %s failed after %d attempts: %s", delivery.id, delivery.job_id,
                        delivery.attempts, error)
            await self.store.delivery_outcome(delivery.id, delivery.token, "failed", status_code, error)
            return
        when = time.time() + self.next_delay(delivery.attempts, retry_after)
        await self.store.delivery_outcome(delivery.id, delivery.token, "pending", status_code, error, when)
