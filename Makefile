# imagemesh: `make run` brings the mesh up on embedded defaults; `make test` runs the whole suite.
# Both set up everything themselves (venv, pinned packages, tools, offline models) and are idempotent.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TOOLS := .tools
BUF := $(TOOLS)/node/node_modules/.bin/buf
STAMP := $(VENV)/.installed
MODELS_STAMP := var/models/.prepared
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export U2NET_HOME := $(CURDIR)/var/models

.PHONY: help run test install tools models proto lint lint-proto bench clean

help:
	@echo "make run    - install, prepare models, start the whole mesh on 127.0.0.1 (Ctrl-C stops it)"
	@echo "make test   - install, prepare models, lint, run the whole test suite"
	@echo "make proto  - regenerate shared/gen from proto/"
	@echo "make lint   - buf lint + the deploy linters"
	@echo "make bench  - run the benchmarks, write bench/results/latest.{json,md}"

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependency declarations change. torch is pinned by constraints.txt: an unpinned
# torch pulls gigabytes of CUDA wheels.
$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -c constraints.txt -e '.[all]'
	touch $@

install: $(STAMP)

$(BUF):
	mkdir -p $(TOOLS)/node
	npm install --prefix $(TOOLS)/node --no-audit --no-fund --silent @bufbuild/buf@1

tools: $(BUF)

models: install
	$(PY) scripts/prepare_models.py --dest var/models

proto: install
	$(PY) scripts/gen_proto.py

lint-proto: tools
	$(BUF) lint
	@# On a branch: against main. On main itself (CI's clean clone): against the previous commit.
	@if [ "$$(git rev-parse --abbrev-ref HEAD 2>/dev/null)" != main ] && git cat-file -e main:buf.yaml 2>/dev/null; then \
		$(BUF) breaking --against '.git#branch=main'; \
	elif git cat-file -e HEAD~1:buf.yaml 2>/dev/null; then \
		$(BUF) breaking --against '.git#ref=HEAD~1'; \
	else echo "buf breaking: skipped (no earlier version of the contract in this clone)"; fi

lint: lint-proto

run: install models
	$(PY) scripts/run_mesh.py

# The container smoke runs after the suite: where podman cannot be installed it prints SKIPPED and why.
test: install tools models lint chromium postgres
	$(PY) -m pytest -q
	$(MAKE) --no-print-directory test-containers

bench: install models
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(TOOLS) var

-include mk/*.mk
