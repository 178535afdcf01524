"""Shared fixtures: the bundled b2b model, a small hand-written two-stage model, open pipelines.

Numba kernels are compiled once and cached on disk (``NUMBA_CACHE_DIR``); the fixtures are
session-scoped so every test file builds the same objects once.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import sys
import tempfile

# `make test` runs the test files on parallel workers (pytest-xdist, a file at a time on each).
# Numba's on-disk cache is not safe for two processes compiling the same function at once
# (each numbers a new entry by the index it read, so one can leave the index pointing at the
# other's code): each worker gets a cache of its own, set before numba is imported, and the
# programs the tests start inherit it. Without NUMBA_CACHE_DIR (pytest -n run by hand, not by
# make), a new temporary one, removed at exit: correct, but every run compiles afresh. Some
# test files import this module again (``tests.conftest``): the second time, nothing to do.
if os.environ.get("PYTEST_XDIST_WORKER", "") not in ("", os.environ.get("FORECAST_TEST_CACHE_OF")):
    assert "numba" not in sys.modules, "numba was imported before the worker's cache was set"
    _worker = os.environ["PYTEST_XDIST_WORKER"]
    _base = os.environ.get("NUMBA_CACHE_DIR")
    if not _base:  # a temporary cache of this worker's own, removed when it exits
        import atexit
        import shutil

        _base = tempfile.mkdtemp(prefix="forecast-numba-")
        atexit.register(shutil.rmtree, _base, ignore_errors=True)
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(_base, _worker)
    os.environ["FORECAST_TEST_CACHE_OF"] = _worker

import numba
import numpy as np
import pytest

from forecast.model import FunnelModel, load_model
from forecast.parameters import Parameters, default_parameters
from forecast.simulate.engine import Pipeline

AS_OF = dt.date(2024, 3, 14)  # a Thursday: the horizon starts on a Friday

# Two active stages with expiry back (b -> a) and to nurture (a, b -> nurture), recapture out of
# nurture into both stages, three recycle levels, a "cooling" first band in nurture (no hazard at
# all for 3 days), a zero hazard in some bands, Poisson arrivals with a weekday pattern, and
# amounts known from stage b on.
TWO_STAGE_TOML = """
[funnel]
name = "two_stage"
stages = ["a", "b"]
entry = "a"
qualified_stage = "a"
amount_stage = "b"
age_bands = [0, 3, 10]

[moves.a]
b =       [0.10, 0.06, 0.02]
nurture = [0.02, 0.05, 0.08]
lost =    [0.00, 0.02, 0.04]

[moves.b]
won =     [0.05, 0.10, 0.03]
a =       [0.03, 0.02, 0.04]
nurture = [0.01, 0.02, 0.03]
lost =    [0.02, 0.02, 0.02]

[moves.nurture]
a =       [0.00, 0.05, 0.02]
b =       [0.00, 0.02, 0.01]
lost =    [0.00, 0.01, 0.03]

[recycle]
advance_multiplier = [1.0, 0.5, 0.25]

[segments.x]
arrivals_per_day = 1.5
arrivals_dispersion = 0
conversion_multiplier = 1.0
deal_mean = 1000
deal_sigma = 0.5

[segments.y]
arrivals_per_day = 0.8
arrivals_dispersion = 0
conversion_multiplier = 1.4
deal_mean = 3000
deal_sigma = 1.0

[arrivals]
day_of_week = [1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2]
"""


@pytest.fixture(scope="session")
def b2b() -> FunnelModel:
    return load_model("b2b")


@pytest.fixture(scope="session")
def b2b_params(b2b) -> Parameters:
    return default_parameters(b2b)


@pytest.fixture(scope="session")
def two_stage(tmp_path_factory) -> FunnelModel:
    path = tmp_path_factory.mktemp("models") / "two_stage.toml"
    path.write_text(TWO_STAGE_TOML)
    return load_model(path)


@pytest.fixture(scope="session")
def two_stage_params(two_stage) -> Parameters:
    return default_parameters(two_stage)


def mixed_pipeline(model: FunnelModel, ages, amount_every: int = 3, seed: int = 0,
                   size: int | None = None) -> Pipeline:
    """Open leads in every transient state x age x segment x recycle level, in a shuffled order.

    Every ``amount_every``-th lead has a known amount (drawn around the segment's deal mean).
    ``size``: keep only that many of the combinations (a random subset; at least one per state).
    """
    combos = list(itertools.product(range(model.n_transient), ages, range(len(model.segments)),
                                    range(model.recycle_levels)))
    if size is not None:
        keep = np.random.default_rng(seed + 1).choice(len(combos), size, replace=False)
        combos = [combos[i] for i in sorted(keep)]
        assert {c[0] for c in combos} == set(range(model.n_transient))
    state, age, seg, rec = (np.array(c, dtype=np.int64) for c in zip(*combos, strict=True))
    rng = np.random.default_rng(seed)
    amount = np.full(len(combos), np.nan)
    known = np.arange(len(combos)) % amount_every == 0
    means = np.array([s.deal_mean for s in model.segments])
    amount[known] = np.round(means[seg[known]] * rng.uniform(0.2, 3.0, known.sum()))
    order = rng.permutation(len(combos))
    return Pipeline(state[order], age[order], seg[order], rec[order], amount[order])


@pytest.fixture(scope="session")
def two_stage_pipeline(two_stage) -> Pipeline:
    return mixed_pipeline(two_stage, ages=[0, 1, 2, 3, 5, 9, 10, 11, 40])


@pytest.fixture(scope="session")
def b2b_pipeline(b2b) -> Pipeline:
    return mixed_pipeline(b2b, ages=[0, 6, 7, 29, 30, 89, 90, 179, 180, 400], amount_every=4,
                          size=250)


@pytest.fixture(autouse=True)
def _restore_numba_threads():
    """Tests may change numba's thread count; put it back after each one."""
    n = numba.get_num_threads()
    yield
    numba.set_num_threads(n)
