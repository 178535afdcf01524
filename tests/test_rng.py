"""The samplers of ``forecast.simulate.rng`` against their exact distributions.

Continuous samplers: Kolmogorov-Smirnov against the exact CDF. Counts: mean and variance within
a few standard errors, and a chi-square goodness of fit on the exact probabilities (tail bins
merged so every expected count is at least 20). Seeds are fixed, so the results are
deterministic; the thresholds (p > 1e-3) only matter when the generator changes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit
from scipy import stats

from forecast.simulate.rng import (
    exponential,
    lognormal,
    negative_binomial,
    normal,
    path_states,
    poisson,
    seed_substream,
    standard_gamma,
    uniform,
)

N = 200_000
ALPHA = 1e-3


@njit(cache=True)
def _draw(st, kind, a, b, n):
    """``n`` draws of one sampler from the xoshiro state ``st`` (advanced in place)."""
    out = np.empty(n)
    for i in range(n):
        if kind == 0:
            out[i] = uniform(st)
        elif kind == 1:
            out[i] = exponential(st)
        elif kind == 2:
            out[i] = normal(st)
        elif kind == 3:
            out[i] = standard_gamma(st, a)
        elif kind == 4:
            out[i] = poisson(st, a)
        elif kind == 5:
            out[i] = negative_binomial(st, a, b)
        else:
            out[i] = lognormal(st, a, b)
    return out


def draw(kind: int, a: float = 0.0, b: float = 0.0, seed: int = 0, n: int = N) -> np.ndarray:
    return _draw(path_states(seed, 0, 1)[0], kind, a, b, n)


def ks(x, cdf) -> float:
    return float(stats.kstest(x, cdf).pvalue)


def test_uniform():
    u = draw(0, seed=1)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert ks(u, stats.uniform.cdf) > ALPHA
    # Consecutive draws are uncorrelated; 53 bits of resolution (multiples of 2**-53).
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 4 / math.sqrt(N)
    assert np.all(u * 2.0**53 == np.floor(u * 2.0**53))
    assert len(np.unique(u)) == N


def test_exponential():
    x = draw(1, seed=2)
    assert x.min() >= 0.0
    assert ks(x, stats.expon.cdf) > ALPHA


def test_normal():
    x = draw(2, seed=3)
    assert ks(x, stats.norm.cdf) > ALPHA


def test_lognormal():
    x = draw(6, 10.0, 0.9, seed=4)
    assert ks(x, stats.lognorm(s=0.9, scale=math.exp(10.0)).cdf) > ALPHA


@pytest.mark.parametrize("shape", [0.5, 1.0, 3.7, 40.0])
def test_standard_gamma(shape):
    x = draw(3, shape, seed=5)
    assert x.min() >= 0.0
    assert ks(x, stats.gamma(shape).cdf) > ALPHA
    assert abs(x.mean() - shape) < 4 * math.sqrt(shape / N)


def _chi2_gof(x: np.ndarray, pmf) -> float:
    """Chi-square goodness of fit of counts ``x`` to ``pmf(k)``; tails merged (expected >= 20)."""
    n = len(x)
    k = np.arange(int(x.max()) + 200)
    expected = pmf(k) * n
    observed = np.bincount(x.astype(np.int64), minlength=len(k)).astype(float)
    big = np.flatnonzero(expected >= 20)
    lo, hi = big[0], big[-1]
    obs = np.concatenate([[observed[:lo + 1].sum()], observed[lo + 1:hi],
                          [observed[hi:].sum()]])
    exp = np.concatenate([[expected[:lo + 1].sum()], expected[lo + 1:hi],
                          [n - expected[:hi].sum()]])
    if len(obs) < 2:
        return 1.0
    return float(stats.chisquare(obs, exp).pvalue)


def _assert_moments(x: np.ndarray, mean: float, var: float, mu4: float):
    """Sample mean and variance within 5 standard errors (``mu4``: 4th central moment)."""
    n = len(x)
    assert abs(x.mean() - mean) < 5 * math.sqrt(var / n), (x.mean(), mean)
    assert abs(x.var(ddof=1) - var) < 5 * math.sqrt((mu4 - var**2) / n), (x.var(ddof=1), var)


@pytest.mark.parametrize("lam", [0.3, 4.0, 9.99, 10.0, 57.0, 800.0])
def test_poisson(lam):
    """Both algorithms: multiplication below 10, PTRS from 10 on."""
    x = draw(4, lam, seed=6)
    assert np.all(x == np.floor(x)) and x.min() >= 0
    _assert_moments(x, lam, lam, lam * (1 + 3 * lam))
    assert _chi2_gof(x, stats.poisson(lam).pmf) > ALPHA


def test_poisson_of_zero_is_zero():
    assert np.all(draw(4, 0.0, n=100) == 0)


@pytest.mark.parametrize(("mean", "size"), [(0.5, 0.7), (3.0, 2.0), (12.0, 6.0), (40.0, 5.0),
                                            (150.0, 0.8), (7.0, 0.0)])
def test_negative_binomial(mean, size):
    """Gamma-Poisson mixture: var = m + m^2/size; size 0 means Poisson."""
    x = draw(5, mean, size, seed=7)
    if size > 0:
        dist = stats.nbinom(n=size, p=size / (size + mean))
    else:
        dist = stats.poisson(mean)
    var = mean + (mean**2 / size if size > 0 else 0.0)
    assert dist.var() == pytest.approx(var)
    _assert_moments(x, mean, var, dist.moment(4) - 4 * mean * dist.moment(3)
                    + 6 * mean**2 * dist.moment(2) - 3 * mean**4)
    assert _chi2_gof(x, dist.pmf) > ALPHA


def test_negative_binomial_of_zero_mean_is_zero():
    assert np.all(draw(5, 0.0, 2.0, n=100) == 0)


def test_path_states_distinct_and_independent_of_range():
    states = path_states(123, 0, 1000)
    assert states.dtype == np.uint64 and states.shape == (1000, 4)
    assert len({row.tobytes() for row in states}) == 1000
    np.testing.assert_array_equal(path_states(123, 400, 410), states[400:410])
    np.testing.assert_array_equal(path_states(123, 999, 1000)[0], states[999])
    assert not np.array_equal(path_states(124, 0, 1000), states)
    assert not np.any(np.all(path_states(124, 0, 1000) == states, axis=1))


def test_path_streams_are_uncorrelated():
    a = _draw(path_states(5, 0, 1)[0], 0, 0.0, 0.0, N)
    b = _draw(path_states(5, 1, 2)[0], 0, 0.0, 0.0, N)
    assert abs(np.corrcoef(a, b)[0, 1]) < 4 / math.sqrt(N)
    # The draw advances the state in place: same state, same stream.
    st = path_states(5, 0, 1)[0]
    first = _draw(st, 0, 0.0, 0.0, 10)
    np.testing.assert_array_equal(first, a[:10])
    np.testing.assert_array_equal(_draw(st, 0, 0.0, 0.0, 10), a[10:20])


def test_substreams_are_distinct_repeatable_and_uncorrelated():
    """Per-lead substreams: same root and key, same stream; neighbouring keys and roots give
    uncorrelated streams; the root is not advanced."""
    root = path_states(11, 0, 1)[0]
    kept = root.copy()

    def stream(r, key, n=N):
        out = np.empty(4, dtype=np.uint64)
        seed_substream(out, r, key)
        return _draw(out, 0, 0.0, 0.0, n)

    a = stream(root, 0)
    np.testing.assert_array_equal(root, kept)
    np.testing.assert_array_equal(stream(root, 0, 10), a[:10])
    other_root = path_states(11, 1, 2)[0]
    for b in (stream(root, 1), stream(root, 1 << 62), stream(other_root, 0)):
        assert abs(np.corrcoef(a, b)[0, 1]) < 4 / math.sqrt(N)
    # Uniform over many short substreams too (first draw of 20,000 consecutive keys).
    firsts = np.array([stream(root, k, 1)[0] for k in range(20_000)])
    assert stats.kstest(firsts, "uniform").pvalue > 1e-3
