# mk/db.mk: the job store's schema, an alembic history in services/orchestrator/migrations (included by Makefile).
#
#   make migrate                  upgrade IMAGEMESH_DATABASE_URL (default var/imagemesh.db) to head. The orchestrator
#                                 does the same at start, under a lock; this is for a release step run ahead of it
#   make migrate-current          print the database's revision
#   make migration m="add x"      autogenerate the next revision from the models (review it before committing)

.PHONY: migrate migrate-current migration

migrate: install
	$(PY) -m services.orchestrator.migrate upgrade

migrate-current: install
	$(PY) -m services.orchestrator.migrate current

migration: install
	@test -n "$(m)" || { echo 'usage: make migration m="what the revision changes"'; exit 2; }
	$(PY) -m services.orchestrator.migrate revision -m "$(m)"

# make postgres: PostgreSQL on 127.0.0.1:5432 (IMAGEMESH_TEST_PG) for the tests, started when it is installed but
# down (pg_ctlcluster, else `service postgresql start`). With CI=true a server that cannot be had fails the build;
# elsewhere it prints why and the PostgreSQL tests skip with that reason. `make test` runs it first.
.PHONY: postgres
postgres: install
	$(PY) -m tests.pg
