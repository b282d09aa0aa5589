# Entry points for a fresh machine with Python 3.11 and make: run, test, bench.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test test-shifted bench lint install clean screenshots

# The console's browser tests and screenshots: Debian's Chromium, driven by Playwright (which
# never downloads a browser of its own here), and axe-core from npm, injected into the pages.
CHROMIUM := /usr/bin/chromium
AXE_STAMP := tests/browser/node_modules/.installed-stamp

# The console's sign-in tests run a real OpenID provider (tests/oidc, the npm package
# oidc-provider, under Node 20): its packages come from tests/oidc/package-lock.json.
OIDC_DEPS := tests/oidc/node_modules/.package-lock.json
$(OIDC_DEPS): tests/oidc/package.json tests/oidc/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
	npm ci --prefix tests/oidc --no-audit --no-fund
	@touch $@

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

$(CHROMIUM):
	apt-get update -qq && apt-get install -y -qq chromium

$(AXE_STAMP): tests/browser/package.json tests/browser/package-lock.json
	npm ci --prefix tests/browser --no-audit --no-fund
	@touch $(AXE_STAMP)

## make run: embedded PostgreSQL under ./var, migrations, demo data, API on :8000
run: $(STAMP)
	$(BIN)/pitwarden serve --demo

## make test: quality gates, then the whole suite on a private embedded PostgreSQL
test: lint $(CHROMIUM) $(AXE_STAMP) $(OIDC_DEPS)
	$(BIN)/pytest -q

## make test-shifted: the whole suite with every clock 540 days ahead (the process's and the
## embedded PostgreSQL's, through libfaketime): no test may depend on the day it runs
SHIFT ?= +540d
test-shifted: $(STAMP) $(CHROMIUM) $(AXE_STAMP) $(OIDC_DEPS)
	@command -v faketime >/dev/null || { apt-get update -qq && apt-get install -y -qq faketime; }
	faketime -f '$(SHIFT)' $(BIN)/pytest -q -p no:cacheprovider

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

## make screenshots: the console's main pages, taken in headless Chromium, into docs/console/
screenshots: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m scripts.console_screenshots

clean:
	rm -rf $(VENV) var tests/browser/node_modules
