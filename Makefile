# Frontdoor: `make run` and `make test` are all a new user needs.

# The newest Python 3.11+ that actually runs (a pyenv shim can exist for a version that is not active).
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp
ASSETS := web/static/vendor/frontdoor.css

.PHONY: run setup assets db test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Frontdoor needs Python 3.11 or newer on the PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@# The DfE's CIN census rules: its own pins (govuk-bank-holidays < 0.14, pandas < 2) clash with
	@# ours, and it needs only pandas and numpy at run time, so it goes in without its dependencies.
	$(BIN)/python -c 'import sys; sys.exit(sys.version_info >= (3, 12))' \
		&& $(BIN)/python -m pip install --quiet --no-deps csc-validator-be-cin==0.1.13 \
		|| echo "csc-validator-be-cin needs Python 3.11 (pandas < 2): the census validation test will skip"
	@touch $@

# Front-end assets come from npm (pinned in package-lock.json) and are never committed.
$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "Frontdoor's pages need Node.js with npm" >&2; exit 1; }
	npm ci --no-audit --no-fund
	@touch $@

$(ASSETS): $(NODE_STAMP) web/assets/frontdoor.scss web/assets/build.mjs
	node web/assets/build.mjs

assets: $(ASSETS)

setup: $(STAMP) $(ASSETS)

db: setup
	$(BIN)/frontdoor init --demo-cases

run: db
	$(BIN)/frontdoor run

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest

test: lint typecheck pytest

bench: setup
	$(BIN)/python bench/engine_throughput.py

clean:
	rm -rf $(VENV) node_modules web/static/vendor instance .pytest_cache .mypy_cache .ruff_cache
