"""The closed forms of ``forecast.hazards`` against brute force, day by day over long age ranges.

Brute force follows the discrete-time definition literally: at age ``a`` the total hazard is the
band's ``Λ(a)``, a lead still there leaves with probability ``1 - e^{-Λ(a)}``, to ``k`` with
share ``λ_k / Λ``, and then has spent ``T = a + 1`` whole days in the state.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from forecast.hazards import (
    median_days_in_stage,
    shelf_life,
    stage_exit,
    survival_quantile,
    transition_tables,
)
from forecast.model import EXPIRY


def _n_ages(last_band_rates: np.ndarray, age_bands, nats: float = 40.0) -> int:
    """Ages to sum over so that whatever has an open-ended hazard has left, up to ``e^-nats``."""
    positive = last_band_rates[last_band_rates > 0]
    return int(age_bands[-1] + nats / positive.min()) + 2
def _band_index(age_bands, n_ages: int) -> np.ndarray:
    """Age band of every age 0 .. n_ages-1."""
    return np.searchsorted(np.asarray(age_bands), np.arange(n_ages), side="right") - 1


def _brute_exit(hazards: np.ndarray, age_bands):
    """Day-by-day sums: exit probability, ``E[T 1{next = k}]`` and staying probability.

    ``hazards`` has axes ``[state, band, ..., dest]`` (as ``stage_exit``); results
    ``[state, ..., dest]`` and ``[state, ...]``.
    """
    h = np.moveaxis(hazards, 1, 0)  # [band, state, ..., dest]
    total = h.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total[..., None] > 0, h / total[..., None], 0.0)
    band = _band_index(age_bands, _n_ages(total[-1], age_bands))
    alive = np.ones(total.shape[1:])
    prob = np.zeros(h.shape[1:])
    days = np.zeros(h.shape[1:])
    for a, b in enumerate(band):  # a lead still there at age a leaves today with 1 - e^-Λ
        leave = alive * -np.expm1(-total[b])
        prob += leave[..., None] * share[b]
        days += (a + 1) * leave[..., None] * share[b]  # ... having spent T = a + 1 days
        alive = alive * np.exp(-total[b])
    return prob, days, alive


def _brute_quantile(rates: np.ndarray, age_bands, q: float) -> np.ndarray:
    """Smallest ``n >= 1`` with ``exp(-Σ_{a<n} Λ(a)) <= 1 - q``; inf if never."""
    target = -math.log1p(-q)
    band = _band_index(age_bands, _n_ages(rates[..., -1], age_bands, nats=target + 1))
    out = np.full(rates.shape[:-1], np.inf)
    cum = np.zeros(rates.shape[:-1])
    for n, b in enumerate(band, start=1):
        cum = cum + rates[..., b]  # Σ_{a<n} Λ(a)
        out = np.where(np.isinf(out) & (cum >= target * (1 - 1e-12)), n, out)
    return out


def _random_table(rng, age_bands, shape=(3, 2, 2), n_dest=5, zero_share=0.3):
    """Hazards ``[state, band, g, r, dest]`` with zeros, tiny and large values, zero-total bands.

    Every open-ended (last band) total is 0 or at least 0.01, so the brute force is short.
    """
    n_s, n_g, n_r = shape
    n_b = len(age_bands)
    h = rng.uniform(0.002, 0.4, size=(n_s, n_b, n_g, n_r, n_dest))
    h *= rng.random(h.shape) > zero_share
    last = h[:, -1].sum(-1, keepdims=True)
    h[:, -1] *= np.where((last > 0) & (last < 0.01), 0.01 / np.where(last > 0, last, 1), 1.0)
    if n_b > 1:
        h[0, 1] = 0.0  # a band with no hazard at all (a "cooling" period)
    h[1, -1] = 0.0  # never leaves once in the last band: positive stay probability
    h[2, 0, 0, 0, :] = 0.0
    h[2, 0, 0, 0, 1], h[2, 0, 0, 0, 3] = 1e-9, 0.3  # a tiny hazard next to a large one
    return h


AGE_BANDS_CASES = [(0,), (0, 1), (0, 7, 30, 90, 180), (0, 2, 3, 10)]


@pytest.mark.parametrize("age_bands", AGE_BANDS_CASES)
def test_stage_exit_matches_day_by_day_sums(age_bands):
    rng = np.random.default_rng(len(age_bands))
    h = _random_table(rng, age_bands)
    ex = stage_exit(h, age_bands)
    prob, days, stay = _brute_exit(h, age_bands)
    np.testing.assert_allclose(ex.prob, prob, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(ex.days, days, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(ex.stay, stay, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(ex.prob.sum(-1) + ex.stay, 1.0, rtol=0, atol=1e-12)


def test_stage_exit_bundled_b2b(b2b, b2b_params):
    h = b2b_params.hazards[0]
    ex = stage_exit(h, b2b.age_bands)
    prob, days, _ = _brute_exit(h, b2b.age_bands)
    np.testing.assert_allclose(ex.prob, prob, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(ex.days, days, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(ex.stay, 0.0, atol=1e-13)


def test_stage_exit_constant_hazard_by_hand():
    """One band: T geometric with P(T = n) = ρ^(n-1)(1-ρ), mean 1/(1-ρ); shares λ_k/Λ."""
    lam = np.array([0.03, 0.0, 0.05])
    ex = stage_exit(lam[None, None, :], (0,))
    total = lam.sum()
    q = -math.expm1(-total)
    np.testing.assert_allclose(ex.prob[0], lam / total, rtol=1e-14)
    np.testing.assert_allclose(ex.days[0], lam / total / q, rtol=1e-12)
    assert ex.stay[0] == 0.0


@pytest.mark.parametrize("q", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("age_bands", AGE_BANDS_CASES)
def test_survival_quantile_matches_brute_force(age_bands, q):
    rng = np.random.default_rng(10 + len(age_bands))
    h = _random_table(rng, age_bands, shape=(4, 3, 3))
    rates = np.moveaxis(h.sum(-1), 1, -1)  # [state, g, r, band]
    # Slow early bands too, so that quantiles land in later bands (the last band keeps its
    # rate: 0, never reached, or >= 0.002 so the brute force reaches it).
    slow = np.array([0.01] * (len(age_bands) - 1) + [1.0])
    rates = np.concatenate([rates, rates * slow, rates * slow * 0.1])
    got = survival_quantile(rates, age_bands, q)
    want = _brute_quantile(rates, age_bands, q)
    np.testing.assert_array_equal(got, want)
    assert np.isinf(want).any() and np.isfinite(want).any()


def test_survival_quantile_by_hand():
    # Constant hazard ln2 / 10: P(T > 10) = 1/2 exactly, so the median is 10 days.
    assert survival_quantile(np.array([math.log(2) / 10]), (0,), 0.5) == 10
    # A huge hazard: everyone leaves on the first day, T = 1.
    assert survival_quantile(np.array([50.0]), (0,), 0.5) == 1
    # Nothing for 5 days, then ln2 per day: median 6.
    assert survival_quantile(np.array([0.0, math.log(2)]), (0, 5), 0.5) == 6
    # Never leaves.
    assert survival_quantile(np.array([0.0]), (0,), 0.5) == np.inf
    # Half a nat in total then never again: P(T > n) >= e^-0.5 > 1/2 forever.
    assert survival_quantile(np.array([0.1, 0.0]), (0, 5), 0.5) == np.inf


def test_median_days_in_stage_matches_brute_force(b2b, b2b_params):
    h = b2b_params.hazards[0]
    got = median_days_in_stage(b2b, h)
    want = _brute_quantile(np.moveaxis(h.sum(-1), 1, -1), b2b.age_bands, 0.5)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("which", ["b2b", "two_stage"])
def test_shelf_life_matches_brute_force(request, which):
    model = request.getfixturevalue(which)
    h = request.getfixturevalue(f"{which}_params").hazards[0]
    for stage in model.stages:
        s = model.state_index(stage)
        expiry = [d for d in model.states
                  if d != stage and model.move_kind(stage, d) == EXPIRY]
        rates = sum(h[s, :, :, :, model.state_index(d)] for d in expiry)  # [band, g, r]
        if not expiry:
            rates = np.zeros(h.shape[1:4])
        want = _brute_quantile(np.moveaxis(rates, 0, -1), model.age_bands, 0.5)
        np.testing.assert_array_equal(shelf_life(model, h, stage), want, err_msg=stage)


def test_b2b_sql_shelf_life_by_hand(b2b, b2b_params):
    """SQL expiry (to mql + nurture): 0.005/day for 7 days, then 0.029/day: median day 30."""
    # 7 * 0.005 = 0.035; (ln 2 - 0.035) / 0.029 = 22.7 -> 23 more days -> 30.
    got = shelf_life(b2b, b2b_params.hazards[0], "sql")
    assert np.all(got == 30)


def _tables_cases():
    rng = np.random.default_rng(7)
    h = _random_table(rng, (0, 2, 3, 10), shape=(3, 2, 2), n_dest=6, zero_share=0.5)
    h[0, 0, 0, 0] = 0.0  # a cell with no hazard at all
    h[0, 0, 0, 1] = [0.0, 0.0, 0.0, 0.0, 0.0, 1e-300]  # only the last, tiny
    h[0, 0, 1, 0] = [0.2, 0.0, 0.0, 0.0, 0.0, 0.0]  # only the first
    h[0, 0, 1, 1] = [0.1, 1e-17, 0.0, 0.3, 1e-17, 0.0]  # tiny ones that round away
    return [h]


@pytest.mark.parametrize("hazards", _tables_cases())
def test_transition_tables_rows_end_at_one_and_skip_zero_hazards(hazards, b2b_params):
    for h in (hazards, b2b_params.hazards):
        total, cum = transition_tables(h)
        np.testing.assert_array_equal(total, h.sum(-1))
        live = total > 0
        assert np.all(cum[live][:, -1] == 1.0)  # exactly one
        assert np.all(cum[~live] == 0.0)
        assert np.all(np.diff(cum, axis=-1) >= 0) and np.all((cum >= 0) & (cum <= 1))
        # The destination interval of a zero hazard is empty: cum[d] == cum[d-1] (0 for d=0).
        prev = np.concatenate([np.zeros((*cum.shape[:-1], 1)), cum[..., :-1]], axis=-1)
        zero = (h == 0) & live[..., None]
        np.testing.assert_array_equal(cum[zero], prev[zero])
        # Shares agree with λ_k / Λ.
        with np.errstate(invalid="ignore", divide="ignore"):
            share = h / total[..., None]
        np.testing.assert_allclose((cum - prev)[live], share[live], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("hazards", _tables_cases())
def test_destination_rule_never_selects_a_zero_hazard(hazards):
    """The kernel's rule ``d = first d with u < cum[d]``, at every interval edge and u -> 1."""
    total, cum = transition_tables(hazards)
    rows = cum[total > 0]
    haz = hazards[total > 0]
    for row, h in zip(rows, haz, strict=True):
        edges = row[row < 1.0]
        us = np.concatenate([[0.0, np.nextafter(1.0, 0.0)], edges,
                             np.nextafter(edges, 0.0), np.nextafter(edges, 1.0)])
        us = us[(us >= 0) & (us < 1)]
        for u in us:
            d = int(np.argmax(u < row))  # first d with u < cum[d]; exists since row[-1] == 1
            assert u < row[d]
            assert h[d] > 0, (row, h, u, d)
