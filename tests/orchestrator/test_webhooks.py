"""Signed webhooks: retried with backoff until the receiver takes them, verifiable by the seed's own code and a
Standard Webhooks verifier, persisted across restarts, and never sent to non-public targets."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.webhooks import WebhookSender, retry_after_seconds
from shared.errors import InvalidArgument
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
from tests.orchestrator.helpers import submit, upscale_spec, wait_for
from tests.seed_webhook import verify_webhook

SECRET = "whsec_" + base64.b64encode(b"per-key secret of alice, 32 bytes").decode()


def verify_standard_webhook(body: bytes, headers: dict, secret: str, tolerance_s: int = 300) -> bool:
    """Standard Webhooks (standardwebhooks.com) verification, written from the specification."""
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance_s:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest())
    for candidate in headers["webhook-signature"].split(" "):
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return True
    return False


class Receiver:
    """A local HTTP receiver that answers 500 to the first `fail_first` requests (optionally Retry-After)."""

    def __init__(self, fail_first: int = 0, retry_after: str | None = None, redirect_to: str | None = None,
                 host: str = "127.0.0.1") -> None:
        self.fail_first = fail_first
        self.retry_after = retry_after
        self.redirect_to = redirect_to
        self.requests: list[tuple[float, dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((time.time(), {k.lower(): v for k, v in self.headers.items()}, body))
                if receiver.redirect_to:
                    self.send_response(307)
                    self.send_header("Location", receiver.redirect_to)
                elif len(receiver.requests) <= receiver.fail_first:
                    self.send_response(500)
                    if receiver.retry_after is not None:
                        self.send_header("Retry-After", receiver.retry_after)
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for r in made:
        r.close()


async def _deliveries(orch, job_id: str, until, timeout: float = 30) -> list[dict]:
    async with asyncio.timeout(timeout):
        while True:
            rows = await orch.core.store.deliveries(job_id)
            if rows and until(rows):
                return rows
            await asyncio.sleep(0.05)


async def test_receiver_failing_three_times_gets_the_fourth_with_valid_signatures(start_orchestrator, database_url,
                                                                                  receiver):
    hook = receiver(fail_first=3, retry_after="1")
    orch = await start_orchestrator(database_url, url_allow_list="127.0.0.1", webhook_secrets={"alice": SECRET})
    job = await submit(orch.stub, upscale_spec(), webhook=pb.Webhook(url=hook.url))
    done = await wait_for(orch.stub, job.id)
    assert done.status == common_pb2.JOB_STATUS_COMPLETED  # the job did not wait for its webhook
    [row] = await _deliveries(orch, job.id, lambda rows: rows[0]["status"] == "delivered")
    assert row["attempts"] == 4 and row["last_status_code"] == 200
    assert len(hook.requests) == 4
    # Retry-After: 1 was honoured over the 0.05 s configured delay.
    gaps = [b[0] - a[0] for a, b in zip(hook.requests, hook.requests[1:])]
    assert all(gap >= 0.95 for gap in gaps)
    for _when, headers, body in hook.requests:
        assert verify_webhook(body, headers["x-freepik-signature"], SECRET)
        assert verify_standard_webhook(body, headers, SECRET)
        assert not verify_webhook(body, headers["x-freepik-signature"], "another secret")
        assert not verify_webhook(body + b" ", headers["x-freepik-signature"], SECRET)
    # One message id across retries (receivers deduplicate on it).
    assert len({headers["webhook-id"] for _, headers, _ in hook.requests}) == 1
    payload = json.loads(hook.requests[-1][2])
    assert payload["event"] == "job.completed" and payload["task_id"] == job.id and payload["job_id"] == job.id
    assert payload["data"]["status"] == "completed" and payload["data"]["model_used"] == "lanczos"
    assert payload["data"]["image_url"] == done.result.upscale.image.ref
    assert payload["results"] == [{"image_url": done.result.upscale.image.ref}]


async def test_per_job_secret_and_failure_payload(start_orchestrator, database_url, receiver):
    hook = receiver()
    orch = await start_orchestrator(database_url, url_allow_list="127.0.0.1")
    job = await submit(orch.stub, upscale_spec(16, 99), webhook=pb.Webhook(url=hook.url, secret="job secret"))
    await wait_for(orch.stub, job.id)
    await _deliveries(orch, job.id, lambda rows: rows[0]["status"] == "delivered")
    _when, headers, body = hook.requests[0]
    assert verify_webhook(body, headers["x-freepik-signature"], "job secret")
    payload = json.loads(body)
    assert payload["event"] == "job.failed" and payload["data"]["error"]["code"] == "INVALID_ARGUMENT"


async def test_deliveries_survive_a_restart(start_orchestrator, database_url, receiver):
    hook = receiver(fail_first=10**6)
    first = await start_orchestrator(database_url, url_allow_list="127.0.0.1", webhook_retry_delays_s=[0.3] * 5)
    job = await submit(first.stub, upscale_spec(), webhook=pb.Webhook(url=hook.url))
    await wait_for(first.stub, job.id)
    await _deliveries(first, job.id, lambda rows: rows[0]["attempts"] >= 1 and rows[0]["claim_token"] is None)
    await first.stop()
    hook.fail_first = 0
    second = await start_orchestrator(database_url, url_allow_list="127.0.0.1")
    [row] = await _deliveries(second, job.id, lambda rows: rows[0]["status"] == "delivered")
    assert row["attempts"] >= 2


async def test_delivery_gives_up_after_the_schedule(start_orchestrator, database_url, receiver):
    hook = receiver(fail_first=10**6)
    orch = await start_orchestrator(database_url, url_allow_list="127.0.0.1", webhook_retry_delays_s=[0.01] * 5)
    job = await submit(orch.stub, upscale_spec(), webhook=pb.Webhook(url=hook.url))
    [row] = await _deliveries(orch, job.id, lambda rows: rows[0]["status"] == "failed")
    assert row["attempts"] == 6 and len(hook.requests) == 6 and row["last_error"] == "HTTP 500"


def test_default_schedule_is_six_attempts_over_about_ten_minutes():
    settings = OrchestratorSettings()
    assert len(settings.webhook_retry_delays_s) + 1 >= 6
    assert 540 <= sum(settings.webhook_retry_delays_s) <= 660
    sender = WebhookSender(None, None, delays_s=settings.webhook_retry_delays_s, jitter=0.2)
    delays = [sender.next_delay(n, None) for n in range(1, 6)]
    for delay, base in zip(delays, settings.webhook_retry_delays_s):
        assert 0.8 * base <= delay <= 1.2 * base
    assert sender.next_delay(1, 120.0) >= 120.0  # Retry-After wins over a shorter backoff
    assert sender.next_delay(1, 10**6) <= 900.0  # ...up to a cap


def test_retry_after_parses_seconds_and_http_dates():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 60) == pytest.approx(60)
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/hook", "http://[::1]:9/hook", "http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data",
    "http://localhost:9/hook", "file:///etc/passwd", "http://" + "a" * 64 + ".example/hook",
    "http://[2002:7f00:1::]/hook",
])
async def test_webhook_targets_that_are_not_public_are_refused_at_submit(orch, url):
    with pytest.raises(InvalidArgument) as err:
        await submit(orch.stub, upscale_spec(), webhook=pb.Webhook(url=url))
    assert err.value.reason == "UNSAFE_URL"


async def test_a_redirect_to_loopback_is_refused_at_delivery(start_orchestrator, database_url, receiver):
    target = receiver()
    # The redirector lives on 127.0.0.2, the only address on the allow-list; it points at 127.0.0.1.
    redirector = receiver(redirect_to=target.url, host="127.0.0.2")
    orch = await start_orchestrator(database_url, url_allow_list="127.0.0.2/32")
    job = await submit(orch.stub, upscale_spec(), webhook=pb.Webhook(url=redirector.url))
    [row] = await _deliveries(orch, job.id, lambda rows: rows[0]["status"] == "failed")
    assert "non-public address" in row["last_error"] and row["attempts"] == 1
    assert len(redirector.requests) == 1 and target.requests == []


async def test_webhook_without_any_secret_is_refused(start_orchestrator, database_url, receiver):
    orch = await start_orchestrator(database_url, url_allow_list="127.0.0.1", webhook_default_secret="")
    with pytest.raises(InvalidArgument) as err:
        await submit(orch.stub, upscale_spec(), webhook=pb.Webhook(url=receiver().url))
    assert err.value.reason == "WEBHOOK_SECRET_MISSING"


async def test_progress_events_when_asked(start_orchestrator, database_url, receiver):
    from tests.orchestrator.helpers import workflow_spec

    hook = receiver()
    orch = await start_orchestrator(database_url, url_allow_list="127.0.0.1")
    job = await submit(orch.stub, workflow_spec("fan_out"), webhook=pb.Webhook(url=hook.url, include_progress=True))
    await wait_for(orch.stub, job.id)
    rows = await _deliveries(orch, job.id, lambda rows: all(r["status"] == "delivered" for r in rows)
                             and any(r["event"] == "workflow.completed" for r in rows))
    events = [r["event"] for r in rows]
    assert events.count("workflow.progress") >= 4 and events[-1] == "workflow.completed"
