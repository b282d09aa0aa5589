# Entry points for a fresh machine with Python 3.11 and make: run, test, bench.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test bench lint install clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## make run: embedded PostgreSQL under ./var, migrations, demo data, API on :8000
run: $(STAMP)
	$(BIN)/pitwarden serve --demo

## make test: quality gates, then the whole suite on a private embedded PostgreSQL
test: lint
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## make bench: throughput and latency figures, written to docs/benchmarks.md
bench: $(STAMP)
	$(BIN)/python -m benchmarks.wallet
	$(BIN)/python -m benchmarks.gate
	$(BIN)/python -m benchmarks.audit
	$(BIN)/python -m benchmarks.vault
	$(BIN)/python -m benchmarks.policy
	$(BIN)/python -m benchmarks.payments

clean:
	rm -rf $(VENV) var
