"""A plain day-by-day reference simulator, written independently of ``forecast.simulate.kernels``.

It follows the model's definition literally: on every day, every lead still in a transient state
draws one uniform and leaves with probability ``1 - exp(-Λ)`` (``Λ`` the total hazard of its
age band), then a second uniform picks the destination with probability ``λ_d / Λ``. It is slow
by design (one draw per lead per day) and uses numba's own ``np.random`` (Mersenne Twister,
seeded per path), so it shares no code and no random stream with the fast kernel.
``tests/test_equivalence.py`` checks that both give the same distribution of every output.

Conventions (``forecast.hazards``, DESIGN.md). Day ``t`` of the horizon is ``as_of + 1 + t``.
A lead first at risk in its state on day ``t0`` has age ``t - t0`` on day ``t``. After leaving
on day ``t`` it is counted in the new state at the end of day ``t`` and is at risk there from
day ``t + 1`` at age 0. Arrivals of day ``t`` are in the entry stage at the end of day ``t``
(at risk from ``t + 1``); open leads of the pipeline are at risk from day 0 with their age.

Outputs, per path: ``won`` / ``bookings`` on the day a deal enters ``won`` (its known amount, or
a lognormal draw made when it first enters the amount stage or won); ``expired[t, s]``: expiry
moves (back, or to nurture) out of active stage ``s``, each raising the recycle level by one up
to the last; ``recaptured``: moves out of nurture into a stage; ``entered[t, d]``: leads
entering state ``d`` on day ``t`` (moves and arrivals);
``occupancy``: leads per state at the end of the chosen days (won and lost cumulative).
``lost_to_expiry``: a lead expiring from stage ``s``, the model's qualified stage or a later
one, with nothing pending sets aside
``winprob(s, its recycle level before the expiry) x (amount, or the segment's mean deal)``,
dated that day (going cold from an earlier stage sets nothing aside); it is released if the
lead later enters stage ``s`` or a later active stage, or won; whatever is still set aside at
the end of the horizon counts.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from forecast.calendar import arrival_multipliers, close_multipliers
from forecast.hazards import absorption
from forecast.model import FunnelModel
from forecast.parameters import Parameters
from forecast.simulate.engine import Pipeline

# Move kinds as in ``FunnelModel.move_kinds``: 1 advance/skip, 2 expiry, 3 recapture, 4 lost.
_EXPIRY = 2
_RECAPTURE = 3


@dataclass(frozen=True)
class ReferenceResult:
    """The per-path outputs of :class:`forecast.simulate.SimulationResult`, same shapes."""

    set_index: np.ndarray
    bookings: np.ndarray
    won: np.ndarray
    expired: np.ndarray
    recaptured: np.ndarray
    lost_to_expiry: np.ndarray
    entered: np.ndarray
    arrivals: np.ndarray
    occupancy: np.ndarray
    occupancy_days: np.ndarray
    n_open: int

    @property
    def n_paths(self) -> int:
        return self.bookings.shape[0]

    @property
    def horizon(self) -> int:
        return self.bookings.shape[1]

    @property
    def moves(self) -> np.ndarray:
        return self.entered.sum(axis=2, dtype=np.int64) - self.arrivals


@njit(cache=True)
def _set_of_day(t, ks, switch_days):
    """The parameter set in force on day ``t``: ``ks[e]`` for the ``e`` switch days passed."""
    e = 0
    for d in switch_days:
        if t >= d:
            e += 1
    return ks[e]


@njit(cache=True)
def _draw_arrivals(ks, switch_days, weekday0, arr_mean, arr_size, dow, arr_cal, horizon):
    """``counts[t, g]``: new leads of segment ``g`` on day ``t`` (negative binomial / Poisson)."""
    n_seg = arr_mean.shape[1]
    counts = np.zeros((horizon, n_seg), dtype=np.int64)
    for t in range(horizon):
        k = _set_of_day(t, ks, switch_days)
        wd = (weekday0 + t) % 7
        for g in range(n_seg):
            mean = arr_mean[k, g] * dow[k, wd] * arr_cal[k, t]
            if mean <= 0.0:
                continue
            size = arr_size[k, g]
            if size > 0.0:
                lam = np.random.gamma(size, mean / size)  # gamma-Poisson mixture
            else:
                lam = mean
            counts[t, g] = np.random.poisson(lam)
    return counts


@njit(cache=True)
def _reference_path(seed, ks, switch_days, weekday0, entry, amount_stage, qualified,
                    open_state, open_age, open_seg, open_rec, open_amount,
                    hazards, band_lo, kinds, winprob, deal_mean, deal_mu, deal_sigma,
                    arr_mean, arr_size, dow, occ_days, close_class, close_mult, arr_cal,
                    bookings, won, expired, recaptured, lost_value, entered, arrivals, occupancy):
    np.random.seed(seed)
    horizon = bookings.shape[0]
    n_active = kinds.shape[0] - 1
    won_state = n_active + 1
    n_bands = band_lo.shape[0]
    n_rec = hazards.shape[4]
    n_dest = hazards.shape[5]

    # Arrivals do not depend on anything else, so they can be drawn up front; this also tells
    # how many leads the path will hold.
    counts = _draw_arrivals(ks, switch_days, weekday0, arr_mean, arr_size, dow, arr_cal, horizon)
    n_open = open_state.shape[0]
    cap = n_open + counts.sum()

    # One row per lead: current state, day it entered it (age = t - t0), segment, recycle level,
    # amount (NaN = unknown), and its pending "lost to expiry" value, day and stage.
    state = np.empty(cap, dtype=np.int64)
    t0 = np.empty(cap, dtype=np.int64)
    seg = np.empty(cap, dtype=np.int64)
    rec = np.empty(cap, dtype=np.int64)
    amount = np.empty(cap)
    pend_val = np.zeros(cap)
    pend_day = np.full(cap, -1, dtype=np.int64)
    pend_stage = np.full(cap, -1, dtype=np.int64)
    for i in range(n_open):
        state[i] = open_state[i]
        t0[i] = -open_age[i]  # age open_age[i] on day 0
        seg[i] = open_seg[i]
        rec[i] = open_rec[i]
        amount[i] = open_amount[i]
    n = n_open

    m = 0
    for t in range(horizon):
        k = _set_of_day(t, ks, switch_days)
        m_close = close_mult[k, t]  # today's multiplier of each closing move (to won, lost)
        # Every lead present at the start of day t (arrivals of day t come after this loop).
        for i in range(n):
            s = state[i]
            if s >= won_state:  # won or lost: absorbed
                continue
            age = t - t0[i]
            b = 0
            for j in range(n_bands):
                if band_lo[j] <= age:
                    b = j
            g = seg[i]
            r = rec[i]
            lam = 0.0
            for d in range(n_dest):
                lam += hazards[k, s, b, g, r, d] * (m_close[close_class[d]] if close_class[d] >= 0
                                                    else 1.0)
            if np.random.random() >= 1.0 - math.exp(-lam):
                continue  # stays today
            # Leaves today: destination d with probability hazard_d / lam.
            x = np.random.random() * lam
            dest = -1
            c = 0.0
            for d in range(n_dest):
                h = hazards[k, s, b, g, r, d] * (m_close[close_class[d]] if close_class[d] >= 0
                                                  else 1.0)
                if h > 0.0:
                    dest = d
                    c += h
                    if x < c:
                        break
            entered[t, dest] += 1
            kind = kinds[s, dest]
            if (dest == won_state or dest == amount_stage) and np.isnan(amount[i]):
                amount[i] = np.random.lognormal(deal_mu[k, g], deal_sigma[k, g])
            if kind == _EXPIRY:
                expired[t, s] += 1
                if pend_stage[i] < 0 and s >= qualified:
                    # Only leads that went cold from the qualified stage or later count.
                    value = deal_mean[k, g] if np.isnan(amount[i]) else amount[i]
                    pend_val[i] = winprob[k, s, g, r] * value
                    pend_day[i] = t
                    pend_stage[i] = s
                rec[i] = min(r + 1, n_rec - 1)
            elif kind == _RECAPTURE:
                recaptured[t] += 1
            if dest == won_state:
                bookings[t] += amount[i]
                won[t] += 1
                pend_stage[i] = -1
            elif pend_stage[i] >= 0 and pend_stage[i] <= dest < n_active:
                pend_stage[i] = -1  # back in the stage it went cold from, or further on
            state[i] = dest
            t0[i] = t + 1  # at risk in its new state from tomorrow, at age 0

        # Today's arrivals: in the entry stage from the end of today.
        for g in range(counts.shape[1]):
            for _ in range(counts[t, g]):
                state[n] = entry
                t0[n] = t + 1
                seg[n] = g
                rec[n] = 0
                amount[n] = np.nan
                n += 1
            arrivals[t] += counts[t, g]
            entered[t, entry] += counts[t, g]

        if m < occ_days.shape[0] and occ_days[m] == t:
            for i in range(n):
                occupancy[m, state[i]] += 1
            m += 1

    for i in range(n):
        if pend_stage[i] >= 0:
            lost_value[pend_day[i]] += pend_val[i]


@njit(cache=True)
def _reference_paths(seeds, set_index, switch_days, weekday0, entry, amount_stage, qualified,
                     open_state, open_age, open_seg, open_rec, open_amount,
                     hazards, band_lo, kinds, winprob, deal_mean, deal_mu, deal_sigma,
                     arr_mean, arr_size, dow, occ_days, close_class, close_mult, arr_cal,
                     bookings, won, expired, recaptured, lost_value, entered, arrivals, occupancy):
    for p in range(seeds.shape[0]):
        _reference_path(seeds[p], set_index[p], switch_days, weekday0, entry, amount_stage,
                        qualified, open_state, open_age, open_seg, open_rec, open_amount,
                        hazards, band_lo, kinds, winprob, deal_mean, deal_mu, deal_sigma,
                        arr_mean, arr_size, dow, occ_days, close_class, close_mult, arr_cal,
                        bookings[p], won[p], expired[p], recaptured[p], lost_value[p],
                        entered[p], arrivals[p], occupancy[p])


def reference_simulate(model: FunnelModel, params: Parameters, pipeline: Pipeline,
                       as_of: dt.date, horizon: int, n_paths: int, seed: int,
                       occupancy_days=None, set_index=None,
                       switch_days=()) -> ReferenceResult:
    """Same contract and outputs as :func:`forecast.simulate.simulate`, simulated day by day."""
    switch_days = np.asarray(switch_days, dtype=np.int64).reshape(-1)
    if set_index is None:
        set_index = np.arange(n_paths, dtype=np.int64) % params.n_sets
    set_index = np.asarray(set_index, dtype=np.int64)
    if set_index.ndim == 1:
        set_index = np.repeat(set_index[:, None], len(switch_days) + 1, axis=1)
    set_index = np.ascontiguousarray(set_index)
    if occupancy_days is None:
        occupancy_days = np.array([horizon - 1], dtype=np.int64)
    occupancy_days = np.asarray(occupancy_days, dtype=np.int64)
    seeds = np.random.SeedSequence(seed).generate_state(n_paths, np.uint32).astype(np.int64)

    n_active, n_states = model.n_active, len(model.states)
    winprob = np.stack([np.transpose(absorption(model, h).win, (1, 0, 2))
                        for h in params.hazards])  # [set, state, g, r]
    amount_stage = model.state_index(model.amount_stage) if model.amount_stage else -1
    bookings = np.zeros((n_paths, horizon))
    won = np.zeros((n_paths, horizon), dtype=np.int64)
    expired = np.zeros((n_paths, horizon, n_active), dtype=np.int64)
    recaptured = np.zeros((n_paths, horizon), dtype=np.int64)
    lost = np.zeros((n_paths, horizon))
    entered = np.zeros((n_paths, horizon, n_states), dtype=np.int64)
    arrivals = np.zeros((n_paths, horizon), dtype=np.int64)
    occupancy = np.zeros((n_paths, len(occupancy_days), n_states), dtype=np.int64)
    # Calendar effects: the move to won times close_mult[set, day, 0], to lost times
    # close_mult[set, day, 1]; arrivals times arr_cal[set, day] (forecast.calendar maps dates
    # to multipliers).
    first = as_of + dt.timedelta(days=1)
    close_class = np.array([{"won": 0, "lost": 1}.get(s, -1) for s in model.states])
    close_mult = np.ascontiguousarray(close_multipliers(params.close_calendar, first, horizon,
                                                        model.calendar.month_end_days))
    arr_cal = np.ascontiguousarray(arrival_multipliers(params.arrivals_calendar, first, horizon,
                                                       model.calendar.month_end_days))
    pl = pipeline
    _reference_paths(
        seeds, set_index, switch_days, (as_of + dt.timedelta(days=1)).weekday(),
        model.state_index(model.entry), amount_stage, model.state_index(model.qualified_stage),
        pl.state.astype(np.int64), pl.age.astype(np.int64), pl.segment.astype(np.int64),
        pl.recycle.astype(np.int64), pl.amount.astype(np.float64),
        np.ascontiguousarray(params.hazards, dtype=np.float64),
        np.asarray(model.age_bands, dtype=np.int64), model.move_kinds().astype(np.int64),
        np.ascontiguousarray(winprob), params.deal_mean, params.deal_mu, params.deal_sigma,
        params.arrivals_mean, params.arrivals_dispersion, params.day_of_week, occupancy_days,
        close_class, close_mult, arr_cal,
        bookings, won, expired, recaptured, lost, entered, arrivals, occupancy)
    return ReferenceResult(
        set_index=set_index, bookings=bookings, won=won, expired=expired, recaptured=recaptured,
        lost_to_expiry=lost, entered=entered, arrivals=arrivals, occupancy=occupancy,
        occupancy_days=occupancy_days, n_open=len(pipeline),
    )
