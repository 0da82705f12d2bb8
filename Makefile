# Two commands for a fresh machine:  make run   and   make test
# Each creates .venv when needed and installs what it needs, idempotently.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
ARGS ?=
# torch: the CPU build on this machine's disk; any torch>=2.1 works for users.
TORCH_PIN ?= torch==2.13.0

.PHONY: run test check lint bench system-deps clean rmskin mutation

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
# tests a private dbus-daemon. Installed once when missing; two `make test` at once on a fresh
# machine take turns (flock) and the second finds them installed, instead of failing on apt's lock.
SYSTEM_DEPS_MISSING = ! command -v chromium >/dev/null 2>&1 || ! command -v Xvfb >/dev/null 2>&1 || ! command -v dbus-daemon >/dev/null 2>&1
system-deps:
	@if $(SYSTEM_DEPS_MISSING); then \
		if [ "$$(id -u)" = "0" ]; then \
			flock /tmp/dream-window-system-deps.lock sh -c 'if $(SYSTEM_DEPS_MISSING); then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium xvfb dbus-daemon >/dev/null; fi'; \
		else \
			echo "note: chromium/xvfb/dbus-daemon missing and not root: browser, X11 and D-Bus tests will be skipped"; \
		fi; \
	fi

test: $(VENV)/.test system-deps
	$(VENV)/bin/lint-imports
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider $(ARGS)

check: $(VENV)/.test
	$(VENV)/bin/ruff check src tests bench tools
	$(VENV)/bin/ruff format --check src tests bench tools
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The Rainmeter skin as a .rmskin package (Rainmeter's installer format), for config.yaml's folders.
rmskin: $(VENV)/.core
	$(VENV)/bin/dream-window rainmeter package dist/ --config config.yaml

# Mutation testing of the core modules ([tool.mutmut] in pyproject.toml). Slow: not part of `test`.
# `mutmut results` / `mutmut show NAME` afterwards list and explain the survivors.
# One OpenMP thread: mutmut forks a child per mutant, and torch's thread pool, started in the
# parent, hangs in a forked child until the CPU limit kills it, which mutmut counts as "caught"
# (82 slerp mutants were scored that way before this).
mutation: $(VENV)/.test
	$(PIP) install -q "mutmut>=3.3"
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 DREAM_WINDOW_TEST_SLACK=1 PYTEST_TIMEOUT=20 $(VENV)/bin/mutmut run --max-children 2 || true
	$(PY) tools/mutation_scores.py

# Every bench runs (a failure does not stop the rest); at the end one table: each bench's exit status
# and its headline, the last line it printed other than its "took N s".
bench: $(VENV)/.test
	@logs=$$(mktemp -d); \
	for b in bench/[!_]*.py; do \
		n=$$(basename $$b .py); echo "== $$b"; \
		{ $(PY) $$b; echo $$? > $$logs/$$n.rc; } 2>&1 | tee $$logs/$$n.log; \
	done; \
	failed=0; printf '\n%-18s %-5s %s\n' bench exit headline; \
	for b in bench/[!_]*.py; do \
		n=$$(basename $$b .py); rc=$$(cat $$logs/$$n.rc); [ "$$rc" = 0 ] || failed=1; \
		line=$$(grep -v '^[[:space:]]*$$' $$logs/$$n.log | grep -Ev '^\(?(bench )?took [0-9]' | tail -n 1); \
		printf '%-18s %-5s %s\n' "$$n" "$$rc" "$$line"; \
	done; \
	rm -rf $$logs; exit $$failed

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
