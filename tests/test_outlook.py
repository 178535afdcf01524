"""The drift walk continued over the horizon (``forecast.outlook``): periods, the walk's law,
the per-path parameter sets, and the simulator using them."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from forecast.model import load_model
from forecast.outlook import continue_walk, periods_ahead, simulate_ahead, towards_won
from forecast.parameters import Parameters, default_parameters
from forecast.simulate import Pipeline, simulate


@pytest.fixture(scope="module")
def b2b():
    return load_model("b2b")


def test_periods_ahead():
    june_end = periods_ahead(dt.date(2017, 6, 30), 92)
    assert june_end[0] == 1 and june_end[30] == 1 and june_end[31] == 2  # 07-01, 07-31, 08-01
    assert june_end[-1] == 3  # 2017-09-30
    mid = periods_ahead(dt.date(2017, 6, 15), 20)
    assert (mid[:15] == 0).all() and (mid[15:] == 1).all()  # 06-16..06-30, then July
    q = periods_ahead(dt.date(2017, 5, 31), 122, "quarter")
    assert (q[:30] == 0).all() and (q[30:] == 1).all()  # June in Q2; July-Sept in Q3
    assert periods_ahead(dt.date(2017, 12, 31), 1)[0] == 1  # across the year


def test_walk_has_the_law_of_a_random_walk(b2b):
    """log multiplier j periods ahead ~ N(0, j sd^2), increments independent."""
    params = default_parameters(b2b)
    n = 8000  # 24,000 sets: under outlook.MAX_SETS
    out = continue_walk(params, towards_won(b2b), 0.1, 0.2, dt.date(2026, 9, 30), 92, n,
                        seed=3)
    # a walk per stage that moves towards won leave: lead, mql, sql, opportunity, nurture;
    # October, November, December
    assert out.conversion.shape == (n, 5, 3)
    np.testing.assert_array_equal(out.switch_days, [31, 61])
    for j in range(3):
        for series, sd in ((out.conversion[:, 0], 0.1), (out.conversion[:, 4], 0.1),
                           (out.arrivals, 0.2)):
            logs = np.log(series[:, j])
            assert abs(logs.mean()) < 4 * sd * np.sqrt(j + 1) / np.sqrt(n)
            assert abs(logs.std() / (sd * np.sqrt(j + 1)) - 1) < 0.03
    steps = np.diff(np.log(out.conversion[:, 0]), axis=1)
    assert abs(np.corrcoef(steps[:, 0], steps[:, 1])[0, 1]) < 0.045  # independent steps (4 SE)
    assert abs(np.corrcoef(np.log(out.conversion[:, 0, 0]), np.log(out.arrivals[:, 0]))[0, 1]) \
        < 0.045
    for a, b in ((0, 1), (1, 2), (0, 4)):  # the stages' walks are independent of each other
        assert abs(np.corrcoef(np.log(out.conversion[:, a, 2]),
                               np.log(out.conversion[:, b, 2]))[0, 1]) < 0.045


def test_student_t_steps_have_the_law_of_t(b2b):
    """With ``nu`` degrees of freedom the steps are Student-t (scale sd): a KS test against
    t(3) passes and one against the normal of the same scale fails; per-set ``nu`` (inf:
    normal) is honoured path by path."""
    from scipy import stats

    params = default_parameters(b2b)
    n = 8000
    out = continue_walk(params, towards_won(b2b), 0.1, 0.2, dt.date(2026, 9, 30), 92, n,
                        seed=3, nu=3.0)
    for series, sd in ((out.conversion[:, 0], 0.1), (out.conversion[:, 3], 0.1),
                       (out.arrivals, 0.2)):
        first = np.log(series[:, 0]) / sd
        second = np.diff(np.log(series[:, :2]), axis=1)[:, 0] / sd
        for steps in (first, second):
            assert stats.kstest(steps, stats.t(3).cdf).pvalue > 0.001
            assert stats.kstest(steps, stats.norm.cdf).pvalue < 1e-6
    normal = continue_walk(params, towards_won(b2b), 0.1, 0.2, dt.date(2026, 9, 30), 92, n,
                           seed=3)
    # the same normals underneath: a normal walk is unchanged by the t option's existence
    mixed = continue_walk(Parameters.concat([params, params]), towards_won(b2b), 0.1, 0.2,
                          dt.date(2026, 9, 30), 92, n, seed=3, nu=np.array([3.0, np.inf]))
    np.testing.assert_array_equal(mixed.conversion[1::2], normal.conversion[1::2])
    assert stats.kstest(np.log(mixed.conversion[0::2, 0, 0]) / 0.1,
                        stats.t(3).cdf).pvalue > 0.001
    with pytest.raises(ValueError, match="degrees of freedom"):
        continue_walk(params, towards_won(b2b), 0.1, 0.2, dt.date(2026, 9, 30), 92, 4, seed=3,
                      nu=0.0)


def test_sets_scale_conversion_and_arrivals_only(b2b):
    params = default_parameters(b2b)
    mask = towards_won(b2b)
    out = continue_walk(params, mask, 0.3, 0.3, dt.date(2026, 9, 30), 92, 5, seed=0)
    assert out.params.n_sets == 15
    for p in range(5):
        for e in range(3):
            k = out.set_index[p, e]
            ratio = out.params.hazards[k] / np.where(params.hazards[0] > 0,
                                                     params.hazards[0], 1.0)
            for s in range(mask.shape[0]):
                for d in range(mask.shape[1]):
                    if params.hazards[0][s, ..., d].any():
                        walk = np.flatnonzero(mask.any(axis=1)).tolist().index(s) \
                            if mask[s, d] else None
                        want = out.conversion[p, walk, e] if mask[s, d] else 1.0
                        np.testing.assert_allclose(ratio[s, ..., d], want, rtol=1e-12)
            np.testing.assert_allclose(out.params.arrivals_mean[k],
                                       params.arrivals_mean[0] * out.arrivals[p, e], rtol=1e-12)
            np.testing.assert_array_equal(out.params.deal_mu[k], params.deal_mu[0])


def test_a_path_keeps_its_walk_whatever_the_path_count(b2b):
    params = default_parameters(b2b)
    mask = towards_won(b2b)
    a = continue_walk(params, mask, 0.1, 0.1, dt.date(2026, 9, 30), 200, 10, seed=7)
    b = continue_walk(params, mask, 0.1, 0.1, dt.date(2026, 9, 30), 200, 100, seed=7)
    np.testing.assert_array_equal(a.conversion, b.conversion[:10])
    c = continue_walk(params, mask, 0.1, 0.1, dt.date(2026, 9, 30), 200, 10, seed=8)
    assert not np.array_equal(a.conversion, c.conversion)
    # Student-t steps too (their chi-square draws come from a stream of their own)
    a = continue_walk(params, mask, 0.1, 0.1, dt.date(2026, 9, 30), 200, 10, seed=7, nu=3.0)
    b = continue_walk(params, mask, 0.1, 0.1, dt.date(2026, 9, 30), 200, 100, seed=7, nu=3.0)
    np.testing.assert_array_equal(a.conversion, b.conversion[:10])
    np.testing.assert_array_equal(a.arrivals, b.arrivals[:10])


def test_zero_steps_change_nothing(b2b):
    params = default_parameters(b2b)
    out = continue_walk(params, towards_won(b2b), 0.0, 0.0, dt.date(2026, 9, 30), 92, 4,
                        seed=1)
    for k in range(out.params.n_sets):
        np.testing.assert_array_equal(out.params.hazards[k], params.hazards[0])
        np.testing.assert_array_equal(out.params.arrivals_mean[k], params.arrivals_mean[0])


def test_too_many_sets_is_a_clear_error(b2b):
    with pytest.raises(ValueError, match="one parameter set per path and month"):
        continue_walk(default_parameters(b2b), towards_won(b2b), 0.1, 0.1,
                      dt.date(2026, 9, 30), 3650, 100_000, seed=0)


def test_the_walk_widens_the_simulated_bands_as_it_should(b2b):
    """Arrivals only (no open pipeline), conversion fixed, arrivals walk with sd 0.25 a month:
    the simulated arrivals per month follow the walk. The log of month j's arrivals total has
    variance j sd^2 plus the small count noise: checked against the plain run's spread."""
    params = default_parameters(b2b)
    n = 2000
    out = continue_walk(params, towards_won(b2b), 0.0, 0.25, dt.date(2026, 9, 30), 92, n,
                        seed=2)
    walked = simulate(b2b, out.params, Pipeline.empty(), dt.date(2026, 9, 30), 92, n, seed=5,
                      set_index=out.set_index, switch_days=out.switch_days)
    plain = simulate(b2b, params, Pipeline.empty(), dt.date(2026, 9, 30), 92, n, seed=5)
    np.testing.assert_array_equal(walked.set_index, out.set_index)
    edges = [0, *out.switch_days, 92]
    for j in range(3):
        w = np.log(walked.arrivals[:, edges[j]:edges[j + 1]].sum(1))
        p = np.log(plain.arrivals[:, edges[j]:edges[j + 1]].sum(1))
        want = np.sqrt(p.var() + (j + 1) * 0.25**2)
        assert abs(w.std() / want - 1) < 0.08, (j, w.std(), want)
        # and each path's arrivals follow its own multiplier
        assert np.corrcoef(w, np.log(out.arrivals[:, j]))[0, 1] > 0.9


def test_simulate_ahead_is_simulate_without_a_walk_and_walks_with_one(b2b):
    from dataclasses import replace

    params = default_parameters(b2b)
    as_of = dt.date(2026, 9, 30)
    plain = simulate(b2b, params, Pipeline.empty(), as_of, 60, 50, seed=4)
    same = simulate_ahead(b2b, params, Pipeline.empty(), as_of, 60, 50, seed=4)
    np.testing.assert_array_equal(plain.entered, same.entered)

    walking = replace(params, walk_sd=np.array([[0.2, 0.3]]), walk_months=np.array([3]))
    got = simulate_ahead(b2b, walking, Pipeline.empty(), as_of, 120, 50, seed=4)
    ahead = continue_walk(walking, towards_won(b2b), 0.2, 0.3, as_of, 120, 50, seed=4,
                          period="quarter")
    want = simulate(b2b, ahead.params, Pipeline.empty(), as_of, 120, 50, seed=4,
                    set_index=ahead.set_index, switch_days=ahead.switch_days, epochs=True)
    np.testing.assert_array_equal(got.entered, want.entered)
    np.testing.assert_array_equal(got.switch_days, [92])  # 2027-01-01: the next quarter
    assert not ahead.params.has_walk  # the walked sets are not walked again

    mixed = Parameters.concat([walking, replace(walking, walk_months=np.array([1]))])
    with pytest.raises(ValueError, match="one period"):
        simulate_ahead(b2b, mixed, Pipeline.empty(), as_of, 60, 10, seed=0)
