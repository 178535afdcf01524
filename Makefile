# Two commands on a fresh machine: `make demo` and `make test`. Both create the virtual
# environment and install the package when needed. Settings for pytest and ruff live in
# pyproject.toml (one source of truth).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba_cache
# The machine sets PYTHONDONTWRITEBYTECODE; without .pyc files every import recompiles numba.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test test-fast bench lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/forecast run

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/simulator.py
	$(BIN)/python benchmarks/statistics_bench.py
	$(BIN)/python benchmarks/fit.py

lint: $(STAMP)
	$(BIN)/ruff check forecast tests benchmarks

clean:
	rm -rf $(VENV) .numba_cache .pytest_cache build dist
