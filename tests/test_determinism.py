"""Same inputs + same seed -> bit-identical outputs, whatever the threads, chunking or path count.

Each path draws from its own stream, seeded from ``(seed, path index)``, so the result of a path
cannot depend on which thread ran it, on which chunk it was in, or on how many paths ran.
"""

from __future__ import annotations

from dataclasses import replace

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


def test_a_date_that_changes_nothing_changes_no_draw(setup, baseline):
    """A run cut at dates where its parameter set stays the same (a scenario family's
    baseline, cut at every scenario's dates) draws exactly as the run without them: the
    cohorts' exit tables and the leads going alone treat such epochs as one."""
    sets = np.arange(N_PATHS) % setup[1].n_sets
    cut = run(setup, set_index=np.repeat(sets[:, None], 3, axis=1),
              switch_days=np.array([10, 41]))
    np.testing.assert_array_equal(cut.set_index[:, 2], baseline.set_index[:, 0])
    assert_identical(baseline, replace(cut, set_index=baseline.set_index))  # (one per epoch)


def test_a_date_that_changes_the_rates_leaves_the_days_before_it(setup, baseline):
    """Half the paths switch sets on day 25, in both directions: every path's days before it
    are those of the run without the date, bit for bit (the cohorts' draws past a date are
    rescaled, not redrawn), and the days after it differ."""
    sets = np.arange(N_PATHS) % setup[1].n_sets
    switched = run(setup, set_index=np.stack([sets, 1 - sets], axis=1),
                   switch_days=np.array([25]))
    for name in ("bookings", "won", "expired", "recaptured", "lost_to_expiry", "entered",
                 "arrivals"):
        a, b = getattr(baseline, name), getattr(switched, name)
        if name == "lost_to_expiry":  # set aside on the day a deal goes cold, by what follows
            continue
        assert a[:, :25].tobytes() == b[:, :25].tobytes(), name
    np.testing.assert_array_equal(baseline.occupancy[:, 0], switched.occupancy[:, 0])
    assert not np.array_equal(baseline.entered[:, 25:], switched.entered[:, 25:])


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


@pytest.mark.parametrize(("kind", "short"), [
    ("cohorts", HORIZON), ("epochs", HORIZON), ("lead by lead", HORIZON),
    ("month ends", 10), ("drift walk", HORIZON), ("drift walk", 10), ("quarterly walk", 17)])
def test_a_longer_horizon_repeats_a_shorter_one_s_days(setup, kind, short):
    """The same seed gives the same days whatever the horizon: a nightly run over a year and
    a plan over its first quarter show that quarter's bands to the cent. Each lead draws its
    exit from its cohort's or its own substream whatever the horizon (a cohort used to draw
    a binomial count of leavers up to the horizon, so every draw moved with it), and the
    drift walk draws each period's steps from a stream of its own. A drift walk draws by
    stretches of constant hazard even where the shorter horizon stays in the as-of month, and
    a calendar's kernel and thinning bound are chosen from every kind of day, not the
    horizon's (no month end reached in the shorter run). Only the value lost to expiry (SQLs
    gone cold that do not come back *within the horizon*) may differ."""
    from dataclasses import replace

    from forecast.outlook import simulate_ahead

    model, params, pipeline = setup
    long, options = 3 * HORIZON, {}
    if kind == "epochs":  # a scenario's date: two parameter sets in turn
        options = {"set_index": np.array([[0, 1], [1, 0]])[np.arange(N_PATHS) % 2],
                   "switch_days": np.array([20])}
    elif kind in ("lead by lead", "month ends"):  # a calendar: the lead-by-lead kernel
        cal = params.close_calendar.copy()
        if kind == "lead by lead":
            cal[:, :, 0] = 1.6  # Mondays
        else:
            cal[:, 0, 10] = 1.5  # won deals at month ends only (none in the first 10 days)
        params = replace(params, close_calendar=cal)
    elif kind in ("drift walk", "quarterly walk"):
        params = replace(params, walk_sd=np.full((params.n_sets, 2), 0.3),
                         walk_months=np.full(params.n_sets, 1 if kind == "drift walk" else 3))
    runs = []
    for horizon in (short, long):
        runs.append(simulate_ahead(model, params, pipeline, AS_OF, horizon, N_PATHS, SEED,
                                   occupancy_days=np.array([0, 9]), **options))
    a, b = runs
    for name in ("bookings", "won", "expired", "recaptured", "entered", "arrivals"):
        x, y = getattr(a, name), getattr(b, name)[:, :short]
        assert x.tobytes() == y.tobytes(), name
    assert a.occupancy.tobytes() == b.occupancy.tobytes()
    assert a.won.sum() > 0 and b.won[:, short:].sum() > 0
