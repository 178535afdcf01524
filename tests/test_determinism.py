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
