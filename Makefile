# ParaspinalLBP — developer and user entry points. Every target bootstraps .venv from Python 3.12.
#   make demo    the whole digital-twin chain on embedded default data (FULL=1: 314 participants)
#   make test    all tests (SLOW=1 adds the slow statistical checks)
#   make bench   benchmarks (ratios against a same-process baseline)
#   make lint    ruff + house checks

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= demo-out

# python3.12 from PATH (a pyenv shim only answers when .python-version selects 3.12), else pyenv's copy.
PYTHON312 ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null && { echo $$p; break; }; done)

.PHONY: venv test demo bench lint cmake-lists browser postgres loadgen clean help

help:
	@sed -n '1,6p' Makefile

venv: $(STAMP)

$(STAMP): pyproject.toml Testing/tools/fix_slicer_namespace.py
	@if [ -z "$(PYTHON312)" ]; then \
		echo "error: Python 3.12 not found. Install it (e.g. 'pyenv install 3.12', or your OS package python3.12) and re-run; Slicer 5.10+ bundles 3.12 too." >&2; exit 1; fi
	@test -x $(PY) || $(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) Testing/tools/fix_slicer_namespace.py
	@touch $(STAMP)

# Headless Chromium for the calculator's browser test (Debian package; needs root and apt).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
			|| echo "warning: could not install chromium; browser tests will skip (and fail in CI)"; \
		else echo "note: /usr/bin/chromium missing and not root: browser tests will skip"; fi; fi

# PostgreSQL for the randomisation service's tests (Debian package; the tests start a throwaway cluster
# with initdb/pg_ctl as the package's 'postgres' user, so no system service is started here).
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
			|| echo "warning: could not install postgresql; its tests will skip (and fail in CI)"; \
		else echo "note: PostgreSQL missing and not root: its tests will skip"; fi; fi

test: venv browser postgres
	$(PY) -m ruff check .
	$(PY) Testing/tools/update_cmake_lists.py --check
	$(PY) -m pytest $(if $(SLOW),,-m "not slow") $(PYTEST_ARGS)

demo: venv
	$(PY) -m ParaspinalLBPDemo --out $(OUT) $(if $(FULL),--full,)

# A compiled HTTP load generator for the calculator benchmark (a Python client would share the CPU
# with the server it measures); the benchmark falls back to wrk, then to Python, and says so.
loadgen:
	@if ! command -v hey >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hey >/dev/null) \
			|| echo "warning: could not install hey; bench_calculator falls back to wrk or Python"; \
		else echo "note: hey missing and not root: bench_calculator falls back to wrk or Python"; fi; fi

bench: venv loadgen
	@set -e; for b in Testing/benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b; done

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) Testing/tools/update_cmake_lists.py --check

cmake-lists: venv
	$(PY) Testing/tools/update_cmake_lists.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache *.egg-info
