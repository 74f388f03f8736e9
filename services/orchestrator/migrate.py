"""Schema migrations of the job store: the alembic history in migrations/, run in code at start (no alembic.ini).

Several replicas may start at once, so an upgrade runs under a database-wide lock, inside one transaction:
- PostgreSQL: `pg_advisory_xact_lock` before anything is read; the second replica waits, then finds the version
  table at head and does nothing. DDL is transactional there, so a failed upgrade leaves no half-made schema, and
  the lock is released by the commit or rollback even when the process dies.
- SQLite: the engine from `make_engine` opens every transaction with BEGIN IMMEDIATE, which takes the database
  file's write lock up front (WAL mode: EXCLUSIVE would lock out no one else that IMMEDIATE doesn't). Another
  process's upgrade waits in busy_timeout and starts its read after the first one's commit. SQLite's DDL is
  transactional too.

Databases made before this history existed (by `metadata.create_all`) have tables but no version table: they are
stamped with the revision their shape matches, then upgraded like any other.

    python -m services.orchestrator.migrate                 # upgrade IMAGEMESH_DATABASE_URL to head (make migrate)
    python -m services.orchestrator.migrate current         # print the database's revision
    python -m services.orchestrator.migrate revision -m "add jobs.priority"   # autogenerate a new revision
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection, Engine

SCRIPTS = Path(__file__).with_name("migrations")
BASELINE = "0001"  # the schema create_all made before jobs.spec_hash
SPEC_HASH = "0002"
# One arbitrary 64-bit key names "the job store's schema" among advisory locks (the application takes no others).
ADVISORY_LOCK_KEY = 0x696D6D6967726174  # "immigrat"


def alembic_config(connection: Connection | None = None, stdout: io.TextIOBase | None = None) -> Config:
    config = Config(stdout=stdout) if stdout is not None else Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = connection
    return config


def only_tables_of(metadata: MetaData) -> Callable[..., bool]:
    """An autogenerate filter that ignores tables other code keeps in the same database (the gateway's API keys and
    rate limits), which would otherwise show up as tables to drop."""

    def include(obj, name, type_, reflected, compare_to) -> bool:
        return not (type_ == "table" and reflected and compare_to is None and name not in metadata.tables)

    return include


def _stamp_unversioned(connection: Connection) -> None:
    tables = inspect(connection)
    if tables.has_table("alembic_version") or not tables.has_table("jobs"):
        return
    columns = {column["name"] for column in tables.get_columns("jobs")}
    command.stamp(alembic_config(connection), SPEC_HASH if "spec_hash" in columns else BASELINE)


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the database to `revision` (head by default); a no-op when it is there already. `engine` must come
    from `store.make_engine` (on SQLite its BEGIN IMMEDIATE is the lock)."""
    with engine.connect() as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})")
        _stamp_unversioned(connection)
        command.upgrade(alembic_config(connection), revision)


def current(engine: Engine) -> str:
    out = io.StringIO()
    with engine.connect() as connection:
        command.current(alembic_config(connection, stdout=out))
    return out.getvalue().strip()


def main(argv: list[str] | None = None) -> int:
    # Imported here, not at the top: the store imports this module.
    from services.orchestrator.job_store import make_engine
    from services.orchestrator.settings import OrchestratorSettings

    parser = argparse.ArgumentParser(prog="python -m services.orchestrator.migrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", nargs="?", default="upgrade", choices=["upgrade", "current", "revision"])
    parser.add_argument("--to", default="head", help="upgrade: the target revision")
    parser.add_argument("-m", "--message", default="", help="revision: what the new revision changes")
    parser.add_argument("--url", default="", help="database URL (default: the orchestrator's settings)")
    args = parser.parse_args(argv)
    url = args.url or OrchestratorSettings().resolved_database_url
    engine = make_engine(url)
    try:
        if args.action == "upgrade":
            migrate(engine, args.to)
            print(f"{engine.url.render_as_string(hide_password=True)}: {current(engine) or 'empty'}")
        elif args.action == "current":
            print(current(engine) or "empty")
        else:
            if not args.message:
                parser.error("revision needs -m MESSAGE")
            # Autogenerate compares the models with a database at head: bring it there first.
            migrate(engine)
            with engine.connect() as connection:
                config = alembic_config(connection)
                # Numbered revisions (0001, 0002, ...) keep the history readable in a directory listing.
                head = ScriptDirectory.from_config(config).get_current_head()
                command.revision(config, message=args.message, autogenerate=True, rev_id=f"{int(head) + 1:04d}")
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
