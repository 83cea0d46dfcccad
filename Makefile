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

.PHONY: all run test lint typecheck pytest bench setup clean system-packages

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

# Daemons the tests start themselves come from Debian packages, installed only when missing
# (apt-get update once, then one install): dockerd from docker.io for the Docker tests.
system-packages:
	@missing=""; \
	command -v dockerd >/dev/null 2>&1 || missing="$$missing docker.io"; \
	if [ -n "$$missing" ]; then \
		DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

setup: $(STAMP) $(NODE_STAMP) system-packages

run: $(STAMP)
	$(BIN)/python -m infrarust run -c $(CONFIG)

lint: $(STAMP)
	$(BIN)/ruff check infrarust tests bench
	$(BIN)/ruff format --check infrarust tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) $(NODE_STAMP) system-packages
	$(BIN)/pytest

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python -m bench.setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(E2E)/node_modules .mypy_cache .ruff_cache .pytest_cache
