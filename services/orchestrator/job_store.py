"""The durable job store: one interface over SQLite (the embedded default) and PostgreSQL (clusters).

Plain synchronous SQLAlchemy Core; `AsyncStore` runs each call in a small thread pool so the event loop never
waits on the database. Rows hold protobuf bytes for the spec, result and progress (images inside them are
image-store references, never pixels) and plain columns for everything a query filters or sums on.

Claiming is a compare-and-set: `SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL (SQLite ignores the clause
and serialises writers with BEGIN IMMEDIATE instead), then `UPDATE ... WHERE status='pending'` whose row count
says who won. Every write a worker makes afterwards is fenced by its claim token, so a worker whose lease was
taken over can no longer touch the job.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from google.protobuf import timestamp_pb2
from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    create_engine,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from services.orchestrator.migrate import migrate
from shared.errors import IdempotencyKeyReused, InvalidArgument, NotFound, QueueFull
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb

PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, PARTIAL, SKIPPED = (
    "pending", "running", "completed", "failed", "cancelled", "partial", "skipped")
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED, PARTIAL})
STATUS_ENUM = {
    PENDING: common_pb2.JOB_STATUS_PENDING, RUNNING: common_pb2.JOB_STATUS_RUNNING,
    COMPLETED: common_pb2.JOB_STATUS_COMPLETED, FAILED: common_pb2.JOB_STATUS_FAILED,
    CANCELLED: common_pb2.JOB_STATUS_CANCELLED, PARTIAL: common_pb2.JOB_STATUS_PARTIAL,
    SKIPPED: common_pb2.JOB_STATUS_SKIPPED,
}
STATUS_NAME = {v: k for k, v in STATUS_ENUM.items()}

metadata = MetaData()

jobs = Table(
    "jobs", metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("model_id", String(128), nullable=False, default=""),
    Column("workflow_id", String(128), nullable=False, default=""),
    Column("idempotency_key", String(256), nullable=True),
    # sha256 of the submitted spec (deterministic serialization, before images move to the store): a repeated
    # idempotency key with another request is refused instead of answered with the earlier job.
    Column("spec_hash", String(64), nullable=True),
    Column("spec", LargeBinary, nullable=False),
    Column("result", LargeBinary, nullable=True),
    Column("progress", LargeBinary, nullable=True),
    Column("error_reason", String(64), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("error_metadata", Text, nullable=True),
    Column("labels", Text, nullable=False, default="{}"),
    Column("webhook_url", Text, nullable=False, default=""),
    Column("webhook_secret", Text, nullable=False, default=""),
    Column("webhook_progress", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("processing_seconds", Float, nullable=True),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("device_seconds", Float, nullable=False, default=0.0),
    Column("device_class", String(16), nullable=False, default=""),
    Column("attempts", Integer, nullable=False, default=0),
    Column("claim_token", String(64), nullable=True),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("heartbeat_at", Float, nullable=True),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    # W3C trace context of the submitter (JSON), so the work a worker does later joins the submitter's trace.
    Column("trace_context", Text, nullable=False, default="{}"),
    # Bumped on every change, so a watcher polls one integer instead of the whole row.
    Column("version", Integer, nullable=False, default=0),
    UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
    Index("ix_jobs_status_created", "status", "created_at"),
    Index("ix_jobs_owner_created", "owner", "created_at"),
)

job_steps = Table(
    "job_steps", metadata,
    Column("job_id", String(64), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("idx", Integer, nullable=False),
    Column("action", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("depends_on", Text, nullable=False, default="[]"),
    Column("optional", Boolean, nullable=False, default=False),
    # The step's output images as Image messages holding store references (no pixels).
    Column("outputs", LargeBinary, nullable=True),
    Column("error_reason", String(64), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("device_seconds", Float, nullable=False, default=0.0),
    Column("device_class", String(16), nullable=False, default=""),
)

webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    Column("id", String(64), primary_key=True),
    Column("job_id", String(64), nullable=False, index=True),
    Column("owner", String(128), nullable=False),
    Column("event", String(64), nullable=False),
    Column("url", Text, nullable=False),
    Column("secret", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False),  # pending, delivered, failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("claim_token", String(64), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Index("ix_deliveries_due", "status", "next_attempt_at"),
)

selections = Table(
    "selections", metadata,
    Column("id", String(64), primary_key=True),
    Column("job_id", String(64), nullable=False),
    Column("owner", String(128), nullable=False),
    Column("model_id", String(128), nullable=False),
    Column("category", String(128), nullable=False),
    Column("notes", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Index("ix_selections_category", "category"),
)


class LostLease(Exception):
    """The worker's claim on a job is gone (its lease expired and another worker took the job over)."""


def timestamp(value: float | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(value * 1e9))
    return stamp


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass
class NewJob:
    owner: str
    kind: str
    spec: pb.JobSpec
    model_id: str = ""
    workflow_id: str = ""
    idempotency_key: str = ""
    spec_hash: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    webhook_url: str = ""
    webhook_secret: str = ""
    webhook_progress: bool = False
    trace_context: dict[str, str] = field(default_factory=dict)
    id: str = field(default_factory=lambda: new_id("job"))


@dataclass
class Claim:
    job: pb.Job
    token: str
    trace_context: dict[str, str] = field(default_factory=dict)


@dataclass
class StepRecord:
    name: str
    index: int
    action: str
    status: str
    depends_on: list[str] = field(default_factory=list)
    optional: bool = False
    attempts: int = 0
    outputs: list[common_pb2.Image] = field(default_factory=list)
    error: common_pb2.ErrorDetail | None = None
    started_at: float | None = None
    finished_at: float | None = None
    cost: common_pb2.Cost = field(default_factory=common_pb2.Cost)


@dataclass
class Delivery:
    id: str
    job_id: str
    owner: str
    event: str
    url: str
    secret: str
    body: bytes
    attempts: int
    token: str


def spec_hash(spec: pb.JobSpec) -> str:
    """What makes two submits "the same request" for an idempotency key: the spec's canonical bytes."""
    return hashlib.sha256(spec.SerializeToString(deterministic=True)).hexdigest()


# Builds the webhook deliveries a job's state change owes, inside the same transaction as the change.
DeliveryFactory = Callable[[pb.Job, str, str, bool], list[dict]]


def make_engine(url: str, pool_size: int = 5) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection, _record):
            # pysqlite's own transaction handling defers BEGIN; take it over so writers lock up front.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            # IMMEDIATE takes the write lock at BEGIN: two processes never both read 'pending' and then race to
            # upgrade (which SQLite answers with SQLITE_BUSY instead of waiting).
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


class JobStore:
    """Synchronous store over an Engine; see AsyncStore for use from the event loop."""

    def __init__(self, engine: Engine, deliveries_for: DeliveryFactory | None = None,
                 max_pending: int = 10_000) -> None:
        self.engine = engine
        self.deliveries_for = deliveries_for
        self.max_pending = max_pending
        self.is_postgres = engine.dialect.name == "postgresql"

    def migrate(self, revision: str = "head") -> None:
        """Create or upgrade the schema (alembic, under a lock several replicas can race for; see migrate.py)."""
        migrate(self.engine, revision)

    def ping(self) -> bool:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return True

    # --- jobs: create, read, list ----------------------------------------------------------------------------

    def create_job(self, new: NewJob) -> tuple[pb.Job, bool]:
        """Insert a pending job; (job, True), or (the earlier job, False) for a repeated idempotency key
        (IDEMPOTENCY_KEY_REUSED when the earlier job was submitted with another spec)."""
        now = time.time()
        if new.idempotency_key:
            existing = self.find_idempotent(new.owner, new.idempotency_key, new.spec_hash)
            if existing is not None:
                return existing, False
        try:
            with self.engine.begin() as conn:
                pending = conn.execute(select(func.count()).select_from(jobs).where(jobs.c.status == PENDING)).scalar()
                if pending >= self.max_pending:
                    raise QueueFull(f"the job queue is full ({pending} pending)", max_queue=self.max_pending)
                conn.execute(jobs.insert().values(
                    id=new.id, owner=new.owner, kind=new.kind, status=PENDING, model_id=new.model_id,
                    workflow_id=new.workflow_id, idempotency_key=new.idempotency_key or None,
                    spec_hash=new.spec_hash or None,
                    spec=new.spec.SerializeToString(), labels=json.dumps(new.labels), webhook_url=new.webhook_url,
                    webhook_secret=new.webhook_secret, webhook_progress=new.webhook_progress, created_at=now,
                    trace_context=json.dumps(new.trace_context),
                    cost_usd=0.0, device_seconds=0.0, device_class="", attempts=0, cancel_requested=False, version=0,
                    progress=common_pb2.Progress(stage=common_pb2.STAGE_QUEUED, message="queued").SerializeToString(),
                ))
        except IntegrityError:
            # Two submits with one key raced; the other insert won, and its job is the answer to both.
            existing = (self.find_idempotent(new.owner, new.idempotency_key, new.spec_hash)
                        if new.idempotency_key else None)
            if existing is None:
                raise
            return existing, False
        return self.get_job(new.id), True

    def find_idempotent(self, owner: str, key: str, spec_hash: str = "") -> pb.Job | None:
        """The owner's job submitted with `key`; IDEMPOTENCY_KEY_REUSED when it was submitted with another spec
        than the one hashed to `spec_hash` (a row from before hashes were kept can't be compared)."""
        with self.engine.begin() as conn:
            row = conn.execute(select(jobs).where(jobs.c.owner == owner, jobs.c.idempotency_key == key)).first()
            if row is None:
                return None
            if spec_hash and row.spec_hash and row.spec_hash != spec_hash:
                raise IdempotencyKeyReused(
                    f"Idempotency key {key!r} was already used for a different request (job {row.id}); "
                    "send a new key for a new request", idempotency_key=key, job_id=row.id)
            return self._to_job(conn, row)

    def get_job(self, job_id: str, owner: str | None = None) -> pb.Job:
        """The job; NOT_FOUND when missing or another owner's (never a 403 that leaks its existence)."""
        with self.engine.begin() as conn:
            return self._to_job(conn, self._row(conn, job_id, owner))

    def version(self, job_id: str) -> int:
        with self.engine.begin() as conn:
            value = conn.execute(select(jobs.c.version).where(jobs.c.id == job_id)).scalar()
        if value is None:
            # The id is the client's input: never echoed (error metadata is bounded; an id can be 10k characters).
            raise NotFound("job not found", reason="JOB_NOT_FOUND")
        return value

    def _row(self, conn: Connection, job_id: str, owner: str | None, lock: bool = False):
        query = select(jobs).where(jobs.c.id == job_id)
        if lock:
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None or (owner is not None and row.owner != owner):
            # The id is the client's input: never echoed (error metadata is bounded; an id can be 10k characters).
            raise NotFound("job not found", reason="JOB_NOT_FOUND")
        return row

    def list_jobs(self, owner: str | None, statuses: Iterable[str] = (), kind: str = "", model_id: str = "",
                  page_size: int = 50, page_token: str = "") -> tuple[list[pb.Job], str, int]:
        """Newest first, keyset-paginated on (created_at, id) so inserts never shift a page."""
        page_size = 50 if page_size <= 0 else min(page_size, 500)
        conditions = []
        if owner is not None:
            conditions.append(jobs.c.owner == owner)
        statuses = list(statuses)
        if statuses:
            conditions.append(jobs.c.status.in_(statuses))
        if kind:
            conditions.append(jobs.c.kind == kind)
        if model_id:
            conditions.append(jobs.c.model_id == model_id)
        page_conditions = list(conditions)
        if page_token:
            try:
                created, last_id = json.loads(base64.urlsafe_b64decode(page_token.encode()))
            except (ValueError, TypeError):
                raise InvalidArgument("page_token is not valid", field="page_token") from None
            page_conditions.append(or_(jobs.c.created_at < created,
                                       and_(jobs.c.created_at == created, jobs.c.id < last_id)))
        with self.engine.begin() as conn:
            total = conn.execute(select(func.count()).select_from(jobs).where(*conditions)).scalar()
            rows = conn.execute(select(jobs).where(*page_conditions)
                                .order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(page_size + 1)).all()
            steps = self._steps(conn, [row.id for row in rows[:page_size]])
            found = [self._to_job(conn, row, steps.get(row.id, [])) for row in rows[:page_size]]
        token = ""
        if len(rows) > page_size:
            last = rows[page_size - 1]
            token = base64.urlsafe_b64encode(json.dumps([last.created_at, last.id]).encode()).decode()
        return found, token, total

    # --- cancel ----------------------------------------------------------------------------------------------

    def request_cancel(self, job_id: str, owner: str | None) -> pb.Job:
        """Pending: cancelled now. Running: flagged; its worker interrupts it. Terminal: unchanged."""
        now = time.time()
        with self.engine.begin() as conn:
            row = self._row(conn, job_id, owner, lock=True)
            if row.status == PENDING:
                conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.status == PENDING).values(
                    status=CANCELLED, finished_at=now, error_reason="CANCELLED",
                    error_message="cancelled before it started", version=jobs.c.version + 1))
                job = self._to_job(conn, self._row(conn, job_id, None))
                self._add_deliveries(conn, job)
                return job
            if row.status == RUNNING:
                conn.execute(update(jobs).where(jobs.c.id == job_id).values(
                    cancel_requested=True, version=jobs.c.version + 1))
            return self._to_job(conn, self._row(conn, job_id, None))

    # --- workers: claim, heartbeat, fenced writes, finish ----------------------------------------------------

    def claim(self, worker: str, limit: int, lease_s: float) -> list[Claim]:
        now = time.time()
        claimed = []
        with self.engine.begin() as conn:
            candidates = conn.execute(
                select(jobs.c.id).where(jobs.c.status == PENDING).order_by(jobs.c.created_at, jobs.c.id)
                .limit(limit).with_for_update(skip_locked=True)
            ).scalars().all()
            for job_id in candidates:
                token = uuid.uuid4().hex
                won = conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.status == PENDING).values(
                    status=RUNNING, claim_token=token, lease_owner=worker, lease_expires_at=now + lease_s,
                    heartbeat_at=now, attempts=jobs.c.attempts + 1, version=jobs.c.version + 1,
                    started_at=func.coalesce(jobs.c.started_at, now),
                    progress=common_pb2.Progress(stage=common_pb2.STAGE_LOADING, message="started")
                    .SerializeToString(),
                )).rowcount
                if won == 1:
                    row = self._row(conn, job_id, None)
                    claimed.append(Claim(self._to_job(conn, row), token, json.loads(row.trace_context or "{}")))
        return claimed

    def heartbeat(self, claims: dict[str, str], lease_s: float) -> dict[str, str]:
        """Renew leases; per job "ok", "cancel" (a client asked) or "lost" (the claim is gone)."""
        now = time.time()
        answer = {}
        with self.engine.begin() as conn:
            for job_id, token in claims.items():
                renewed = conn.execute(update(jobs).where(
                    jobs.c.id == job_id, jobs.c.claim_token == token, jobs.c.status == RUNNING,
                ).values(lease_expires_at=now + lease_s, heartbeat_at=now)).rowcount
                if not renewed:
                    answer[job_id] = "lost"
                    continue
                flagged = conn.execute(select(jobs.c.cancel_requested).where(jobs.c.id == job_id)).scalar()
                answer[job_id] = "cancel" if flagged else "ok"
        return answer

    def _fence(self, conn: Connection, job_id: str, token: str, **values: Any) -> None:
        done = conn.execute(update(jobs).where(
            jobs.c.id == job_id, jobs.c.claim_token == token, jobs.c.status == RUNNING,
        ).values(version=jobs.c.version + 1, **values)).rowcount
        if not done:
            raise LostLease(job_id)

    def save_progress(self, job_id: str, token: str, progress: common_pb2.Progress) -> None:
        """Progress within a step (e.g. denoising steps). Progress webhooks follow step changes only, so a
        receiver gets a handful of events per job, not one per denoising step."""
        with self.engine.begin() as conn:
            self._fence(conn, job_id, token, progress=progress.SerializeToString())

    def save_step(self, job_id: str, token: str, step: StepRecord,
                  progress: common_pb2.Progress | None = None) -> None:
        values = {
            "idx": step.index, "action": step.action, "status": step.status, "attempts": step.attempts,
            "depends_on": json.dumps(step.depends_on), "optional": step.optional,
            "outputs": pb.WorkflowOutputs(images=step.outputs).SerializeToString(),
            "error_reason": step.error.reason if step.error else None,
            "error_message": step.error.message if step.error else None,
            "started_at": step.started_at, "finished_at": step.finished_at, "cost_usd": step.cost.usd,
            "device_seconds": step.cost.device_seconds, "device_class": step.cost.device_class,
        }
        with self.engine.begin() as conn:
            extra = {"progress": progress.SerializeToString()} if progress is not None else {}
            self._fence(conn, job_id, token, **extra)
            updated = conn.execute(update(job_steps).where(
                job_steps.c.job_id == job_id, job_steps.c.name == step.name).values(**values)).rowcount
            if not updated:
                conn.execute(job_steps.insert().values(job_id=job_id, name=step.name, **values))
            if progress is not None and self.deliveries_for is not None:
                wants = conn.execute(select(jobs.c.webhook_progress).where(jobs.c.id == job_id)).scalar()
                if wants:
                    self._add_deliveries(conn, self._to_job(conn, self._row(conn, job_id, None)), progress=True)

    def finish(self, job_id: str, token: str, status: str, result: pb.JobResult | None = None,
               error: common_pb2.ErrorDetail | None = None, cost: common_pb2.Cost | None = None,
               model_id: str | None = None) -> pb.Job:
        now = time.time()
        with self.engine.begin() as conn:
            row = self._row(conn, job_id, None)
            values: dict[str, Any] = {
                "status": status, "finished_at": now, "claim_token": None, "lease_owner": None,
                "lease_expires_at": None,
                "processing_seconds": now - (row.started_at or now),
                "result": result.SerializeToString() if result is not None else None,
                "error_reason": error.reason if error else None, "error_message": error.message if error else None,
                "error_metadata": json.dumps(dict(error.metadata)) if error else None,
                "progress": common_pb2.Progress(stage=common_pb2.STAGE_DONE, fraction=1.0 if status == COMPLETED else 0,
                                             message=status).SerializeToString(),
            }
            if cost is not None:
                values.update(cost_usd=cost.usd, device_seconds=cost.device_seconds, device_class=cost.device_class)
            if model_id:
                values["model_id"] = model_id
            self._fence(conn, job_id, token, **values)
            job = self._to_job(conn, self._row(conn, job_id, None))
            self._add_deliveries(conn, job)
            return job

    def release(self, job_id: str, token: str) -> None:
        """Give a running job back to the queue (graceful shutdown): another replica picks it up at once."""
        with self.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.claim_token == token,
                                            jobs.c.status == RUNNING).values(
                status=PENDING, claim_token=None, lease_owner=None, lease_expires_at=None,
                attempts=jobs.c.attempts - 1, version=jobs.c.version + 1,
                progress=common_pb2.Progress(stage=common_pb2.STAGE_QUEUED, message="requeued: worker stopped")
                .SerializeToString()))

    def reset_stalled(self, max_attempts: int, owner: str | None = None, now: float | None = None) -> tuple[int, int]:
        """Running jobs whose lease ran out (their worker died): back to pending, or failed with WORKER_LOST
        after `max_attempts` lost workers, or cancelled when a cancel was asked. Returns (requeued, failed)."""
        now = time.time() if now is None else now
        requeued = failed = 0
        with self.engine.begin() as conn:
            query = select(jobs.c.id, jobs.c.claim_token, jobs.c.attempts, jobs.c.cancel_requested).where(
                jobs.c.status == RUNNING, jobs.c.lease_expires_at < now)
            if owner:
                query = query.where(jobs.c.owner == owner)
            for job_id, token, attempts, cancel in conn.execute(query.with_for_update(skip_locked=True)).all():
                fence = and_(jobs.c.id == job_id, jobs.c.status == RUNNING, jobs.c.claim_token == token)
                if cancel or attempts >= max_attempts:
                    reason, message = ("CANCELLED", "cancelled while its worker was lost") if cancel else (
                        "WORKER_LOST",
                        f"the worker running this job stopped {attempts} time(s) (its lease expired); giving up")
                    done = conn.execute(update(jobs).where(fence).values(
                        status=CANCELLED if cancel else FAILED, finished_at=now, error_reason=reason,
                        error_message=message, claim_token=None, lease_owner=None, lease_expires_at=None,
                        version=jobs.c.version + 1)).rowcount
                    if done:
                        failed += 1
                        self._add_deliveries(conn, self._to_job(conn, self._row(conn, job_id, None)))
                else:
                    requeued += conn.execute(update(jobs).where(fence).values(
                        status=PENDING, claim_token=None, lease_owner=None, lease_expires_at=None,
                        version=jobs.c.version + 1,
                        progress=common_pb2.Progress(
                            stage=common_pb2.STAGE_QUEUED,
                            message="requeued: the worker running it stopped (lease expired)").SerializeToString(),
                    )).rowcount
        return requeued, failed

    # --- webhook deliveries ----------------------------------------------------------------------------------

    def _add_deliveries(self, conn: Connection, job: pb.Job, progress: bool = False) -> None:
        if self.deliveries_for is None or not job.webhook_url:
            return
        row = conn.execute(select(jobs.c.webhook_secret, jobs.c.webhook_progress).where(jobs.c.id == job.id)).first()
        if progress and not row.webhook_progress:
            return
        for delivery in self.deliveries_for(job, job.webhook_url, row.webhook_secret, progress):
            conn.execute(webhook_deliveries.insert().values(**delivery))

    def claim_deliveries(self, limit: int, lease_s: float) -> list[Delivery]:
        now = time.time()
        out = []
        with self.engine.begin() as conn:
            rows = conn.execute(select(webhook_deliveries).where(
                webhook_deliveries.c.status == "pending", webhook_deliveries.c.next_attempt_at <= now,
                or_(webhook_deliveries.c.lease_expires_at.is_(None), webhook_deliveries.c.lease_expires_at < now),
            ).order_by(webhook_deliveries.c.next_attempt_at).limit(limit).with_for_update(skip_locked=True)).all()
            for row in rows:
                token = uuid.uuid4().hex
                same_claim = (webhook_deliveries.c.claim_token.is_(None) if row.claim_token is None
                              else webhook_deliveries.c.claim_token == row.claim_token)
                won = conn.execute(update(webhook_deliveries).where(
                    webhook_deliveries.c.id == row.id, webhook_deliveries.c.status == "pending", same_claim,
                ).values(claim_token=token, lease_expires_at=now + lease_s,
                         attempts=webhook_deliveries.c.attempts + 1)).rowcount
                if won:
                    out.append(Delivery(row.id, row.job_id, row.owner, row.event, row.url, row.secret, row.body,
                                        row.attempts + 1, token))
        return out

    def delivery_outcome(self, delivery_id: str, token: str, status: str, status_code: int | None,
                         error: str | None, next_attempt_at: float | None = None) -> None:
        values: dict[str, Any] = {"status": status, "last_status_code": status_code, "last_error": error,
                                      "claim_token": None, "lease_expires_at": None}
        if status == "delivered":
            values["delivered_at"] = time.time()
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        with self.engine.begin() as conn:
            conn.execute(update(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id,
                                                          webhook_deliveries.c.claim_token == token).values(**values))

    def deliveries(self, job_id: str) -> list[dict]:
        with self.engine.begin() as conn:
            rows = conn.execute(select(webhook_deliveries).where(webhook_deliveries.c.job_id == job_id)
                                .order_by(webhook_deliveries.c.created_at)).all()
        return [dict(row._mapping) for row in rows]

    # --- selections ------------------------------------------------------------------------------------------

    def log_selection(self, job_id: str, owner: str, model_id: str, category: str, notes: str) -> str:
        selection_id = new_id("sel")
        with self.engine.begin() as conn:
            conn.execute(selections.insert().values(id=selection_id, job_id=job_id, owner=owner, model_id=model_id,
                                                    category=category, notes=notes, created_at=time.time()))
        return selection_id

    def ranking(self, category: str = "") -> list[tuple[str, int]]:
        count = func.count().label("n")
        query = select(selections.c.model_id, count).group_by(selections.c.model_id)
        if category:
            query = query.where(selections.c.category == category)
        with self.engine.begin() as conn:
            rows = conn.execute(query.order_by(count.desc(), selections.c.model_id)).all()
        return [(model_id, n) for model_id, n in rows]

    # --- statistics ------------------------------------------------------------------------------------------

    def status_counts(self, owner: str | None = None, since: float | None = None,
                      by_model: bool = False) -> dict:
        columns = [jobs.c.model_id, jobs.c.status] if by_model else [jobs.c.status]
        query = select(*columns, func.count()).group_by(*columns)
        if owner:
            query = query.where(jobs.c.owner == owner)
        if since is not None:
            query = query.where(jobs.c.created_at >= since)
        with self.engine.begin() as conn:
            rows = conn.execute(query).all()
        if not by_model:
            return {status: n for status, n in rows}
        counts: dict[str, dict[str, int]] = {}
        for model_id, status, n in rows:
            counts.setdefault(model_id, {})[status] = n
        return counts

    def average_processing(self, owner: str | None = None, by_model: bool = False) -> dict:
        columns = [jobs.c.model_id] if by_model else []
        query = select(*columns, func.avg(jobs.c.processing_seconds)).where(jobs.c.status == COMPLETED)
        if owner:
            query = query.where(jobs.c.owner == owner)
        if by_model:
            query = query.group_by(jobs.c.model_id)
        with self.engine.begin() as conn:
            rows = conn.execute(query).all()
        if by_model:
            return {model_id: float(avg or 0) for model_id, avg in rows}
        return {"": float(rows[0][0] or 0)} if rows else {"": 0.0}

    def owner_jobs_since(self, owner: str, since: float) -> list[tuple]:
        """(status, model_id, created_at, processing_seconds, Cost, kind, workflow_id) of an owner's jobs, for
        analytics."""
        with self.engine.begin() as conn:
            rows = conn.execute(select(
                jobs.c.status, jobs.c.model_id, jobs.c.created_at, jobs.c.processing_seconds, jobs.c.cost_usd,
                jobs.c.device_seconds, jobs.c.device_class, jobs.c.kind, jobs.c.workflow_id,
            ).where(jobs.c.owner == owner, jobs.c.created_at >= since)).all()
        return [(status, model_id, created_at, seconds,
                 common_pb2.Cost(usd=usd or 0.0, device_seconds=device_seconds or 0.0, device_class=device_class or ""),
                 kind, workflow_id)
                for status, model_id, created_at, seconds, usd, device_seconds, device_class, kind, workflow_id in rows]

    def workflow_history(self, workflow_id: str, limit: int = 20) -> list[tuple[float, float]]:
        """(seconds, cost) of the latest completed runs of a workflow, for ListWorkflows' estimate."""
        with self.engine.begin() as conn:
            rows = conn.execute(select(jobs.c.processing_seconds, jobs.c.cost_usd).where(
                jobs.c.kind == "workflow", jobs.c.workflow_id == workflow_id, jobs.c.status == COMPLETED,
            ).order_by(jobs.c.finished_at.desc()).limit(limit)).all()
        return [(float(s or 0), float(c or 0)) for s, c in rows]

    # --- row -> protobuf -------------------------------------------------------------------------------------

    def _steps(self, conn: Connection, job_ids: list[str]) -> dict[str, list[pb.JobStep]]:
        if not job_ids:
            return {}
        rows = conn.execute(select(job_steps).where(job_steps.c.job_id.in_(job_ids)).order_by(job_steps.c.idx)).all()
        found: dict[str, list[pb.JobStep]] = {}
        for row in rows:
            step = pb.JobStep(name=row.name, action=row.action, status=STATUS_ENUM[row.status], attempts=row.attempts,
                              depends_on=json.loads(row.depends_on), index=row.idx, optional=row.optional,
                              cost=common_pb2.Cost(usd=row.cost_usd, device_seconds=row.device_seconds,
                                                   device_class=row.device_class))
            if row.outputs:
                step.outputs.extend(pb.WorkflowOutputs.FromString(row.outputs).images)
            if row.error_reason:
                step.error.CopyFrom(common_pb2.ErrorDetail(reason=row.error_reason, message=row.error_message or ""))
            if row.started_at is not None:
                step.started_at.CopyFrom(timestamp(row.started_at))
            if row.finished_at is not None:
                step.finished_at.CopyFrom(timestamp(row.finished_at))
            found.setdefault(row.job_id, []).append(step)
        return found

    def _to_job(self, conn: Connection, row, steps: list[pb.JobStep] | None = None) -> pb.Job:
        job = pb.Job(id=row.id, owner=row.owner, kind=row.kind, status=STATUS_ENUM[row.status],
                     model_id=row.model_id, idempotency_key=row.idempotency_key or "", webhook_url=row.webhook_url,
                     labels=json.loads(row.labels or "{}"),
                     cost=common_pb2.Cost(usd=row.cost_usd, device_seconds=row.device_seconds,
                                          device_class=row.device_class))
        job.spec.ParseFromString(row.spec)
        if row.result:
            job.result.ParseFromString(row.result)
        if row.progress:
            job.progress.ParseFromString(row.progress)
        if row.error_reason:
            job.error.CopyFrom(common_pb2.ErrorDetail(reason=row.error_reason, message=row.error_message or "",
                                                      metadata=json.loads(row.error_metadata or "{}")))
        for name in ("created_at", "started_at", "finished_at"):
            value = getattr(row, name)
            if value is not None:
                getattr(job, name).CopyFrom(timestamp(value))
        job.steps.extend(steps if steps is not None else self._steps(conn, [row.id]).get(row.id, []))
        return job


class AsyncStore:
    """The JobStore's methods as coroutines, each run in a thread pool (one thread for SQLite: it has one
    writer anyway, and a single connection never sees 'database is locked' from itself)."""

    def __init__(self, store: JobStore, threads: int = 4) -> None:
        self.sync = store
        self._pool = ThreadPoolExecutor(max_workers=1 if not store.is_postgres else threads,
                                        thread_name_prefix="jobstore")

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.sync, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.get_running_loop().run_in_executor(self._pool, partial(method, *args, **kwargs))

        return call

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.sync.engine.dispose()
