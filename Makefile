# Two commands for a fresh machine:  make run   and   make test
# Each creates .venv when needed and installs what it needs, idempotently.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
ARGS ?=
# torch: the CPU build on this machine's disk; any torch>=2.1 works for users.
TORCH_PIN ?= torch==2.13.0

.PHONY: run test check lint bench system-deps clean rmskin

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Core install: lean (no torch). Re-run when pyproject.toml changes.
$(VENV)/.core: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e .
	touch $@

# Test install: everything, torch pinned first so nothing pulls a CUDA build.
$(VENV)/.test: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q "$(TORCH_PIN)"
	$(PIP) install -q -e ".[ml,monitor,export,test]" "$(TORCH_PIN)"
	touch $@ $(VENV)/.core

run: $(VENV)/.core
	$(VENV)/bin/dream-window run --config config.yaml $(ARGS)

# Browser tests use Debian's chromium; fullscreen tests use Xvfb; the screen-lock and screensaver
# tests a private dbus-daemon. Installed once when missing.
system-deps:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v Xvfb >/dev/null 2>&1 || ! command -v dbus-daemon >/dev/null 2>&1; then \
		if [ "$$(id -u)" = "0" ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium xvfb dbus-daemon >/dev/null; \
		else \
			echo "note: chromium/xvfb/dbus-daemon missing and not root: browser, X11 and D-Bus tests will be skipped"; \
		fi; \
	fi

test: $(VENV)/.test system-deps
	$(VENV)/bin/lint-imports
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider $(ARGS)

check: $(VENV)/.test
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The Rainmeter skin as a .rmskin package (Rainmeter's installer format), for config.yaml's folders.
rmskin: $(VENV)/.core
	$(VENV)/bin/dream-window rainmeter package dist/ --config config.yaml

bench: $(VENV)/.test
	for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
