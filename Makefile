# Two commands on a fresh machine: `make demo` and `make test`. Both create the virtual
# environment and install the package when needed. Settings for pytest and ruff live in
# pyproject.toml (one source of truth), except the test workers' (XDIST, below): a plain
# `pytest` by hand stays in one process.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# numba's on-disk cache is invalidated by a change to a kernel's own file, not to the files it
# calls into (a new sampler in rng.py left stale kernels in place): key the cache by the
# simulator's sources so any change there starts a fresh one.
KERNEL_HASH := $(shell cat forecast/simulate/*.py tests/reference.py 2>/dev/null | cksum | cut -d' ' -f1)
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba_cache/$(KERNEL_HASH)
# The machine sets PYTHONDONTWRITEBYTECODE; without .pyc files every import recompiles numba.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test test-fast bench lint clean browser

# Each change of the simulator's sources starts a new cache directory under .numba_cache/; the
# ones of earlier sources are never read again, so they go (only when the location is ours).
ifeq ($(origin NUMBA_CACHE_DIR),file)
$(shell find .numba_cache -mindepth 1 -maxdepth 1 -type d ! -name '$(KERNEL_HASH)' -exec rm -rf {} + 2>/dev/null)
endif

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/forecast run

# The test files run on parallel workers (one per core, at most 4: each holds 1-1.5 GB and
# compiles the kernels into a numba cache of its own), a file at a time on each, so a file's
# module-scoped fixtures (fits, mostly) are built once. TEST_WORKERS=0: one process.
TEST_WORKERS ?= auto
XDIST := -n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile
test: $(STAMP) browser
	$(BIN)/python -m pytest $(XDIST)

# The report's browser test (tests/test_report_browser.py) drives Debian's chromium through
# Playwright (a browser download of Playwright's own cannot work here). Installed with apt when
# missing and we can (root); otherwise the test is skipped and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	     --no-install-recommends chromium >/dev/null; } \
	  || echo "chromium is missing and could not be installed: the report's browser test will be skipped"

test-fast: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/simulator.py
	$(BIN)/python benchmarks/statistics_bench.py
	$(BIN)/python benchmarks/fit.py

lint: $(STAMP)
	$(BIN)/ruff check forecast tests benchmarks

clean:
	rm -rf $(VENV) .numba_cache .pytest_cache build dist
