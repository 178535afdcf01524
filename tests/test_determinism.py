"""Same inputs + same seed -> bit-identical outputs, whatever the threads, chunking or path count.

Each path draws from its own stream, seeded from ``(seed, path index)``, so the result of a path
cannot depend on which thread ran it, on which chunk it was in, or on how many paths ran.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from conftest import AS_OF
from reference import reference_simulate

from forecast.parameters import Parameters
from forecast.simulate import simulate

OUTPUTS = ("set_index", "bookings", "won", "expired", "recaptured", "lost_to_expiry", "entered",
           "arrivals", "occupancy")
N_PATHS, HORIZON, SEED = 200, 60, 20240314


def assert_identical(a, b, paths=slice(None)):
    for name in OUTPUTS:
        if not hasattr(a, name):
            continue
        x, y = getattr(a, name)[paths], getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert x.tobytes() == y.tobytes(), f"{name} differs"


@pytest.fixture(scope="module")
def setup(b2b, b2b_params, b2b_pipeline):
    """The bundled model with two parameter sets (paths alternate), arrivals and a pipeline."""
    p = b2b_params.with_arrivals_scaled(0.2)
    params = Parameters(*(np.concatenate([getattr(p, f), getattr(p, f) * m])
                          for f, m in (("hazards", 1.3), ("arrivals_mean", 0.5),
                                       ("arrivals_dispersion", 1.0), ("day_of_week", 1.0),
                                       ("deal_mu", 1.01), ("deal_sigma", 1.0))))
    return b2b, params, b2b_pipeline


def run(setup, n_paths=N_PATHS, seed=SEED, **kw):
    model, params, pipeline = setup
    return simulate(model, params, pipeline, AS_OF, HORIZON, n_paths, seed,
                    occupancy_days=np.array([0, 29, HORIZON - 1]), **kw)


@pytest.fixture(scope="module")
def baseline(setup):
    return run(setup)


def test_repeatable(setup, baseline):
    assert_identical(baseline, run(setup))
    assert baseline.won.sum() > 0 and baseline.expired.sum() > 0  # a non-trivial run


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
def test_thread_count_does_not_matter(setup, baseline):
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run(setup)
        numba.set_num_threads(2)
        two = run(setup)
    finally:
        numba.set_num_threads(before)
    assert_identical(baseline, one)
    assert_identical(baseline, two)


def test_serial_twin_equals_parallel(setup, baseline):
    assert_identical(baseline, run(setup, parallel=False))


@pytest.mark.parametrize("chunk_size", [7, 256, N_PATHS])
def test_chunking_does_not_matter(setup, baseline, chunk_size):
    assert_identical(baseline, run(setup, chunk_size=chunk_size))


def test_first_paths_do_not_depend_on_path_count(setup, baseline):
    assert_identical(baseline, run(setup, n_paths=50), paths=slice(0, 50))


def test_different_seeds_differ(setup, baseline):
    other = run(setup, seed=SEED + 1)
    assert not np.array_equal(baseline.bookings, other.bookings)
    assert not np.array_equal(baseline.arrivals, other.arrivals)
    assert not np.array_equal(baseline.occupancy, other.occupancy)
    # Paths of one run differ from each other too (each has its own stream).
    assert len({row.tobytes() for row in baseline.arrivals}) == N_PATHS


def test_reference_simulator_is_repeatable(setup):
    model, params, pipeline = setup
    a, b = (reference_simulate(model, params, pipeline, AS_OF, 30, 20, seed=9) for _ in "ab")
    assert_identical(a, b)


@pytest.mark.parametrize("kind", ["cohorts", "epochs", "lead by lead", "drift walk"])
def test_a_longer_horizon_repeats_a_shorter_one_s_days(setup, kind):
    """The same seed gives the same days whatever the horizon: a nightly run over a year and
    a plan over its first quarter show that quarter's bands to the cent. Each lead draws its
    exit from its cohort's or its own substream whatever the horizon (a cohort used to draw
    a binomial count of leavers up to the horizon, so every draw moved with it), and the
    drift walk draws each period's steps from a stream of its own. Only the value lost to
    expiry (SQLs gone cold that do not come back *within the horizon*) may differ."""
    from dataclasses import replace

    from forecast.outlook import simulate_ahead

    model, params, pipeline = setup
    options = {}
    if kind == "epochs":  # a scenario's date: two parameter sets in turn
        options = {"set_index": np.array([[0, 1], [1, 0]])[np.arange(N_PATHS) % 2],
                   "switch_days": np.array([20])}
    elif kind == "lead by lead":  # a calendar: the lead-by-lead kernel
        cal = params.close_calendar.copy()
        cal[:, :, 0] = 1.6
        params = replace(params, close_calendar=cal)
    elif kind == "drift walk":
        params = replace(params, walk_sd=np.full((params.n_sets, 2), 0.3),
                         walk_months=np.ones(params.n_sets, dtype=np.int64))
    short, long = (simulate_ahead(model, params, pipeline, AS_OF, horizon, N_PATHS, SEED,
                                  occupancy_days=np.array([0, 29]), **options)
                   for horizon in (HORIZON, 3 * HORIZON))
    for name in ("bookings", "won", "expired", "recaptured", "entered", "arrivals"):
        a, b = getattr(short, name), getattr(long, name)[:, :HORIZON]
        assert a.tobytes() == b.tobytes(), name
    assert short.occupancy.tobytes() == long.occupancy.tobytes()
    assert short.won.sum() > 0 and long.won[:, HORIZON:].sum() > 0
