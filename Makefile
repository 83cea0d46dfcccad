# infrarust: `make run` and `make test` set everything up on a fresh machine, then do their job.
# The virtual environment lives in .venv/ and is rebuilt only when pyproject.toml or
# requirements-dev.txt change (the stamp file records that).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
E2E := tests/e2e
NODE_STAMP := $(E2E)/node_modules/.installed
CONFIG ?= conf/infrarust.toml

.PHONY: all run test lint typecheck pytest bench setup clean

all: test

$(STAMP): pyproject.toml requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements-dev.txt -e '.[test]'
	touch $@

# The end-to-end tests drive real Minecraft software (PrismarineJS) from npm, pinned by the lock file.
$(NODE_STAMP): $(E2E)/package.json $(E2E)/package-lock.json
	cd $(E2E) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(STAMP) $(NODE_STAMP)

run: $(STAMP)
	$(BIN)/python -m infrarust run -c $(CONFIG)

lint: $(STAMP)
	$(BIN)/ruff check infrarust tests bench scripts
	$(BIN)/ruff format --check infrarust tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) $(NODE_STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python -m bench.setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(E2E)/node_modules .mypy_cache .ruff_cache .pytest_cache
