"""The job store's alembic history: databases made by create_all (before the history existed) upgrade to head
with their rows, an upgrade at head changes nothing, replicas upgrading at once all succeed, and head is exactly
what the models describe. Over SQLite and PostgreSQL (a throwaway database per session, a schema per test)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tomllib
from fnmatch import fnmatch

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine

from services.orchestrator import migrate as migrations
from services.orchestrator.job_store import (
    COMPLETED,
    STATUS_NAME,
    JobStore,
    NewJob,
    make_engine,
    metadata,
    spec_hash,
)
from shared.errors import IdempotencyKeyReused
from tests.mesh import REPO
from tests.orchestrator.helpers import upscale_spec

# What `metadata.create_all` emitted on main before migrations (SQLAlchemy 2.0, both dialects; {blob} is BLOB or
# BYTEA), kept as text so this test keeps describing those databases whatever the models become. {spec_hash} is
# the column databases made since commit 3449f29 have; older ones lack it.
CREATE_ALL_DDL = """
CREATE TABLE job_steps (
	job_id VARCHAR(64) NOT NULL, name VARCHAR(128) NOT NULL, idx INTEGER NOT NULL, action VARCHAR(64) NOT NULL,
	status VARCHAR(16) NOT NULL, attempts INTEGER NOT NULL, depends_on TEXT NOT NULL, optional BOOLEAN NOT NULL,
	outputs {blob}, error_reason VARCHAR(64), error_message TEXT, started_at FLOAT, finished_at FLOAT,
	cost_usd FLOAT NOT NULL, device_seconds FLOAT NOT NULL, device_class VARCHAR(16) NOT NULL,
	PRIMARY KEY (job_id, name)
);
CREATE TABLE jobs (
	id VARCHAR(64) NOT NULL, owner VARCHAR(128) NOT NULL, kind VARCHAR(32) NOT NULL, status VARCHAR(16) NOT NULL,
	model_id VARCHAR(128) NOT NULL, workflow_id VARCHAR(128) NOT NULL, idempotency_key VARCHAR(256), {spec_hash}
	spec {blob} NOT NULL, result {blob}, progress {blob}, error_reason VARCHAR(64), error_message TEXT,
	error_metadata TEXT, labels TEXT NOT NULL, webhook_url TEXT NOT NULL, webhook_secret TEXT NOT NULL,
	webhook_progress BOOLEAN NOT NULL, created_at FLOAT NOT NULL, started_at FLOAT, finished_at FLOAT,
	processing_seconds FLOAT, cost_usd FLOAT NOT NULL, device_seconds FLOAT NOT NULL,
	device_class VARCHAR(16) NOT NULL, attempts INTEGER NOT NULL, claim_token VARCHAR(64), lease_owner VARCHAR(128),
	lease_expires_at FLOAT, heartbeat_at FLOAT, cancel_requested BOOLEAN NOT NULL, trace_context TEXT NOT NULL,
	version INTEGER NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT uq_jobs_owner_idempotency_key UNIQUE (owner, idempotency_key)
);
CREATE INDEX ix_jobs_owner_created ON jobs (owner, created_at);
CREATE INDEX ix_jobs_status_created ON jobs (status, created_at);
CREATE TABLE selections (
	id VARCHAR(64) NOT NULL, job_id VARCHAR(64) NOT NULL, owner VARCHAR(128) NOT NULL, model_id VARCHAR(128) NOT NULL,
	category VARCHAR(128) NOT NULL, notes TEXT NOT NULL, created_at FLOAT NOT NULL,
	PRIMARY KEY (id)
);
CREATE INDEX ix_selections_category ON selections (category);
CREATE TABLE webhook_deliveries (
	id VARCHAR(64) NOT NULL, job_id VARCHAR(64) NOT NULL, owner VARCHAR(128) NOT NULL, event VARCHAR(64) NOT NULL,
	url TEXT NOT NULL, secret TEXT NOT NULL, body {blob} NOT NULL, status VARCHAR(16) NOT NULL,
	attempts INTEGER NOT NULL, next_attempt_at FLOAT NOT NULL, created_at FLOAT NOT NULL, delivered_at FLOAT,
	last_status_code INTEGER, last_error TEXT, claim_token VARCHAR(64), lease_expires_at FLOAT,
	PRIMARY KEY (id)
);
CREATE INDEX ix_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX ix_webhook_deliveries_job_id ON webhook_deliveries (job_id);
"""

# The gateway's tables share the database and are not this history's (gateway/access_store.py creates them).
GATEWAY_DDL = """
CREATE TABLE gateway_api_keys (key_sha256 VARCHAR(64) NOT NULL, owner VARCHAR(200) NOT NULL,
	created_at BIGINT NOT NULL, PRIMARY KEY (key_sha256));
"""

HEAD = ScriptDirectory.from_config(migrations.alembic_config()).get_current_head()
SPEC = upscale_spec(16, 2)


def run_script(engine: Engine, script: str, **fields: str) -> None:
    blob = "BYTEA" if engine.dialect.name == "postgresql" else "BLOB"
    with engine.begin() as conn:
        for statement in script.format(blob=blob, **fields).split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)


def create_all_database(url: str, with_spec_hash: bool) -> Engine:
    """A database as main's create_all left it, holding a finished job with a step, a delivery and a selection."""
    engine = make_engine(url)
    run_script(engine, CREATE_ALL_DDL + GATEWAY_DDL, spec_hash="spec_hash VARCHAR(64)," if with_spec_hash else "")
    hash_column, hash_value = (", spec_hash", ", :spec_hash") if with_spec_hash else ("", "")
    with engine.begin() as conn:
        conn.execute(text(
            f"INSERT INTO jobs (id, owner, kind, status, model_id, workflow_id, idempotency_key{hash_column}, spec,"
            " labels, webhook_url, webhook_secret, webhook_progress, created_at, finished_at, cost_usd,"
            " device_seconds, device_class, attempts, cancel_requested, trace_context, version)"
            f" VALUES ('job_old', 'alice', 'upscale', 'completed', 'm', '', 'key-1'{hash_value}, :spec, :labels,"
            " '', '', false, 100.0, 101.5, 0.25, 1.5, 'cpu', 1, false, '{}', 3)"),
            {"spec": SPEC.SerializeToString(), "labels": json.dumps({"team": "a"}), "spec_hash": spec_hash(SPEC)})
        conn.execute(text(
            "INSERT INTO job_steps (job_id, name, idx, action, status, attempts, depends_on, optional, cost_usd,"
            " device_seconds, device_class) VALUES ('job_old', 'upscale', 0, 'upscale', 'completed', 1, '[]', false,"
            " 0.25, 1.5, 'cpu')"))
        conn.execute(text(
            "INSERT INTO webhook_deliveries (id, job_id, owner, event, url, secret, body, status, attempts,"
            " next_attempt_at, created_at) VALUES ('msg_1', 'job_old', 'alice', 'job.completed', 'http://x', 's',"
            " :body, 'delivered', 1, 100.0, 100.0)"), {"body": b"{}"})
        conn.execute(text(
            "INSERT INTO selections (id, job_id, owner, model_id, category, notes, created_at)"
            " VALUES ('sel_1', 'job_old', 'alice', 'm', 'portraits', '', 100.0)"))
        conn.execute(text("INSERT INTO gateway_api_keys VALUES ('k', 'alice', 1)"))
    return engine


def revision_of(engine: Engine) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()


def schema_of(engine: Engine) -> dict:
    tables = inspect(engine)
    return {name: (sorted(c["name"] for c in tables.get_columns(name)),
                   sorted(i["name"] for i in tables.get_indexes(name)))
            for name in sorted(tables.get_table_names())}


def model_diff(engine: Engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "compare_type": True, "include_object": migrations.only_tables_of(metadata)})
        return compare_metadata(context, metadata)


@pytest.mark.parametrize("with_spec_hash", [True, False], ids=["made-by-main", "before-spec-hash"])
def test_a_create_all_database_upgrades_to_head_with_its_rows(database_url, with_spec_hash):
    engine = create_all_database(database_url, with_spec_hash)
    migrations.migrate(engine)
    assert revision_of(engine) == HEAD
    assert model_diff(engine) == []
    store = JobStore(engine)
    job = store.get_job("job_old", "alice")
    assert (STATUS_NAME[job.status], job.spec, dict(job.labels), job.cost.usd, job.idempotency_key) == (
        COMPLETED, SPEC, {"team": "a"}, 0.25, "key-1")
    assert [step.name for step in job.steps] == ["upscale"]
    assert [d["id"] for d in store.deliveries("job_old")] == ["msg_1"]
    assert store.ranking("portraits") == [("m", 1)]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT spec_hash FROM jobs")).scalar_one() == (
            spec_hash(SPEC) if with_spec_hash else None)
        assert conn.execute(text("SELECT owner FROM gateway_api_keys")).scalar_one() == "alice"
    # The kept hash refuses a reused key with another spec; a row from before hashes can't be compared.
    other = NewJob(owner="alice", kind="upscale", spec=upscale_spec(16, 4), idempotency_key="key-1",
                   spec_hash=spec_hash(upscale_spec(16, 4)))
    if with_spec_hash:
        with pytest.raises(IdempotencyKeyReused):
            store.create_job(other)
    else:
        assert store.create_job(other) == (job, False)
    engine.dispose()


@pytest.mark.parametrize("start", ["empty", "create-all"])
def test_upgrading_a_database_at_head_changes_nothing(database_url, start):
    engine = create_all_database(database_url, True) if start == "create-all" else make_engine(database_url)
    migrations.migrate(engine)
    before = schema_of(engine)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, sql, *_: statements.append(sql))
    migrations.migrate(engine)
    assert schema_of(engine) == before and revision_of(engine) == HEAD
    writes = [sql for sql in statements
              if sql.split(None, 1)[0].upper() in {"CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE"}]
    assert writes == []
    engine.dispose()


# A replica: imports done, says it is ready, waits for the gate, then upgrades through the CLI (make migrate).
REPLICA = """
import sys, time
from pathlib import Path
from services.orchestrator import job_store, settings  # the slow imports, before the gate
from services.orchestrator.migrate import main
gate, ready, url = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
ready.touch()
while not gate.exists():
    time.sleep(0.005)
sys.exit(main(["--url", url]))
"""


@pytest.mark.parametrize("start", ["empty", "create-all-before-spec-hash"])
def test_replicas_upgrading_at_once_all_succeed(database_url, start, tmp_path):
    """Processes, as replicas are: threads of one process would also contend on Python's import lock of env.py."""
    if start != "empty":
        create_all_database(database_url, False).dispose()
    gate = tmp_path / "go"
    replicas = [subprocess.Popen([sys.executable, "-c", REPLICA, str(gate), str(tmp_path / f"ready-{n}"), database_url],
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for n in range(3)]
    while not all((tmp_path / f"ready-{n}").exists() for n in range(3)):
        assert all(replica.poll() is None for replica in replicas), [r.communicate()[0] for r in replicas]
        time.sleep(0.01)
    gate.touch()
    outcomes = [(replica.wait(), replica.communicate()[0]) for replica in replicas]
    assert [code for code, _ in outcomes] == [0, 0, 0], outcomes
    engine = make_engine(database_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
    assert model_diff(engine) == []
    engine.dispose()


def test_head_is_what_the_models_describe(database_url):
    engine = make_engine(database_url)
    migrations.migrate(engine)
    assert model_diff(engine) == []
    # The comparison does see a difference when there is one.
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_selections_category")
    assert [diff[0] for diff in model_diff(engine)] == ["add_index"]
    engine.dispose()


def test_each_revision_downgrades_to_the_one_before(database_url):
    engine = make_engine(database_url)
    migrations.migrate(engine)
    with engine.connect() as conn, conn.begin():
        command.downgrade(migrations.alembic_config(conn), migrations.BASELINE)
    assert revision_of(engine) == migrations.BASELINE
    assert "spec_hash" not in schema_of(engine)["jobs"][0]
    migrations.migrate(engine)
    assert model_diff(engine) == []
    engine.dispose()


def test_the_history_ships_with_the_package():
    """setuptools package data covers every file of the history (the images copy services/orchestrator whole)."""
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data["services.orchestrator"]
    package = REPO / "services" / "orchestrator"
    files = [path.relative_to(package).as_posix() for path in migrations.SCRIPTS.rglob("*")
             if path.is_file() and "__pycache__" not in path.parts]
    assert "migrations/env.py" in files and "migrations/versions/0001_baseline.py" in files
    assert [name for name in files if not any(fnmatch(name, pattern) for pattern in patterns)] == []
