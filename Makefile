# voltrisk — two commands: `make up` (start the local platform) and `make test`.
# Everything is installed by these targets on a fresh machine: the virtualenv and
# Python packages, the Kafka broker jars (Maven), and Chromium for the browser tests.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: install up down status test test-all browser clean help

help:
	@echo "make up      install and start broker, warehouse, worker, simulator, dashboard"
	@echo "make down    stop what make up started"
	@echo "make test    install and run the test suite (real Kafka broker and warehouse)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)
	$(BIN)/voltrisk broker fetch

# Chromium takes the dashboard screenshots; Debian's package (root can install it).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	    else echo "chromium is missing: install Debian's chromium package for the browser tests"; fi; }

up: install
	$(BIN)/voltrisk up

down:
	@if [ -x $(BIN)/voltrisk ]; then $(BIN)/voltrisk down; else echo "nothing to stop (no .venv)"; fi

status:
	$(BIN)/voltrisk status

# The fast and integration tiers; `slow` tests are run by bench/ (make test-all runs them too).
test: install browser
	@set +e; $(BIN)/pytest -m "not slow" $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

test-all: install browser
	$(BIN)/pytest $(PYTEST_ARGS)

clean: down
	rm -rf .voltrisk
