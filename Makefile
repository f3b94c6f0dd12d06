# Fresh-machine entry points: `make demo` and `make test` need only Python 3.11+ and make.
# `make test` runs the store suites on PostgreSQL too when its server programs are installed
# (a throwaway cluster, tests/pg_cluster.py); `make test-sqlite` runs SQLite only.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-sqlite lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m bot demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

test-sqlite: $(STAMP)
	STORE_BACKENDS=sqlite $(PY) -m pytest -m "not postgresql"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
