"""Numba kernels of the simulator: numpy arrays and scalars in, preallocated arrays out.

The process (see ``forecast.hazards`` for the conventions) is simulated lead by lead: leads do
not interact, so each one's whole trajectory over the horizon can be drawn at once. Instead of a
uniform draw per lead per day, the day a lead leaves its state is drawn by inverting the
piecewise-constant cumulative hazard: with ``E ~ Exp(1)`` and band total ``Λ``, the lead leaves
on the ``floor(E / Λ)``-th day of the band if that falls inside it, else carries ``E - Λ·L``
into the next band. ``P(floor(E/Λ) >= j) = e^{-jΛ}``, exactly the day-by-day survival, so this
is the same process in distribution; ``tests/reference.py`` keeps the plain day-by-day kernel
and ``tests/test_equivalence.py`` compares the two.

State numbering: active stages ``0..S-1``, nurture ``S``, won ``S+1``, lost ``S+2``.
Move kinds (``kinds[s, d]``): 1 advance/skip, 2 expiry, 3 recapture, 4 lost.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from forecast.simulate.rng import (
    exponential,
    lognormal,
    negative_binomial,
    seed_substream,
    uniform,
)

KIND_EXPIRY = 2
KIND_RECAPTURE = 3
# Keys of a path's random substreams (``seed_substream``): open lead ``j`` uses key ``j``, the
# arrivals count of day ``t`` and segment ``g`` uses ``KEY_COUNT + t * 4096 + g``, and the
# ``i``-th of those arrivals ``KEY_ARRIVAL + (t * 4096 + g) * 2**24 + i``.
KEY_COUNT = 1 << 61
KEY_ARRIVAL = 1 << 62


@njit(cache=True)
def _band_of(age, band_lo):
    b = band_lo.shape[0] - 1
    while b > 0 and age < band_lo[b]:
        b -= 1
    return b


@njit(cache=True)
def epoch_of(t, ep_start):
    """Index of the epoch holding day ``t`` (``ep_start`` ends with a far-future sentinel)."""
    ep = 0
    while ep_start[ep + 1] <= t:
        ep += 1
    return ep


@njit(cache=True)
def sample_exit(st, total, close_total, close_mult, cmax, ks, ep_start, s, g, r, band_lo, age, t,
                horizon):
    """Day on which a lead in state ``s`` at ``age`` on day ``t`` leaves, its age band there,
    the parameter set in force that day and that day's multiplier of closing moves.

    The cumulative hazard is piecewise constant over age bands and over epochs (calendar
    spans with their own parameter set ``ks[epoch]``; one epoch unless a scenario changes
    parameters on a date). Calendar effects (closing hazards times ``close_mult[k, day]``) are
    drawn by thinning: ``total`` is the dominating hazard (closing moves at the set's largest
    multiplier ``cmax[k]``); a candidate day is kept with probability
    ``(1 - e^{-Λ(day)}) / (1 - e^{-Λ_dom})``, else the search restarts the next day, which is
    exact for the day-by-day process. Without calendar effects every candidate is kept and no
    extra number is drawn. Returns ``(-1, band, set, 1.0)`` when the lead is still there at
    the end of the horizon.
    """
    n_b = band_lo.shape[0]
    while True:  # one pass per thinning candidate
        e = exponential(st)
        b = _band_of(age, band_lo)
        ep = epoch_of(t, ep_start)
        rejected = False
        while True:
            k = ks[ep]
            lam = total[k, s, b, g, r]
            last = b == n_b - 1
            to_epoch = ep_start[ep + 1] - t  # days to the next epoch (huge in the last one)
            span = to_epoch if last else min(band_lo[b + 1] - age, to_epoch)
            if lam > 0.0:
                cap = lam * span  # as in sample_exit_plain: the same test, the same draws
                if e < cap:
                    x = e / lam
                    if x >= horizon - t:
                        return -1, b, k, 1.0
                    off = int(x)
                    if off >= span:  # guard against rounding at the edge
                        off = span - 1
                    day = t + off
                    m = close_mult[k, day]
                    if m == cmax[k]:
                        return day, b, k, m
                    lam_day = lam - (cmax[k] - m) * close_total[k, s, b, g, r]
                    if uniform(st) * -math.expm1(-lam) < -math.expm1(-lam_day):
                        return day, b, k, m
                    age += day + 1 - t  # rejected: the lead is still there after that day
                    t = day + 1
                    rejected = True
                    break
                e -= cap
            elif last and ep_start[ep + 1] >= horizon:
                return -1, b, k, 1.0
            t += span
            if t >= horizon:
                return -1, b, k, 1.0
            age += span
            if not last and age >= band_lo[b + 1]:
                b += 1
            if t >= ep_start[ep + 1]:
                ep += 1
        if rejected and t >= horizon:
            return -1, _band_of(age, band_lo), ks[epoch_of(horizon - 1, ep_start)], 1.0


@njit(cache=True)
def sample_exit_plain(st, lam_flat, off, n_b, band_lo, age, t, horizon):
    """:func:`sample_exit` for a run with one epoch and no calendar effects: the same draws
    and the same answer (``(-1, band)`` when the lead stays past the horizon), from the
    stage's band hazards ``lam_flat[off:off + n_b]``.

    Why a twin: the general version's arguments (five- and six-dimensional tables, epochs,
    calendar) made the call and the code around it about 1.7x slower on the reference
    workload, and nearly every run is a plain one.
    """
    e = exponential(st)
    b = _band_of(age, band_lo)
    while True:
        lam = lam_flat[off + b]
        if b == n_b - 1:  # the last band has no end
            if lam > 0.0:
                x = e / lam
                if x >= horizon - t:
                    return -1, b
                return t + int(x), b
            return -1, b
        span = band_lo[b + 1] - age
        if lam > 0.0:
            cap = lam * span  # the band's cumulative hazard: compared, not divided (faster)
            if e < cap:
                x = e / lam
                if x >= horizon - t:
                    return -1, b
                off_day = int(x)
                if off_day >= span:  # guard against rounding at the edge
                    off_day = span - 1
                return t + off_day, b
            e -= cap
        t += span
        if t >= horizon:
            return -1, b
        age += span
        b += 1


@njit(cache=True)
def sample_destination(st, cumdest, k, s, b, g, r):
    """Destination of a lead leaving ``s`` in band ``b``: ``k`` with probability ``λ_k / Λ``."""
    u = uniform(st)
    d = 0
    while u >= cumdest[k, s, b, g, r, d]:
        d += 1
    return d


@njit(cache=True)
def sample_destination_scaled(st, hazards, closing, k, s, b, g, r, m):
    """Destination on a day whose closing moves run at ``m`` times their hazard."""
    n_dest = hazards.shape[5]
    lam = 0.0
    for d in range(n_dest):
        lam += hazards[k, s, b, g, r, d] * (m if closing[d] else 1.0)
    x = uniform(st) * lam
    c = 0.0
    dest = -1
    for d in range(n_dest):
        h = hazards[k, s, b, g, r, d] * (m if closing[d] else 1.0)
        if h > 0.0:
            dest = d
            c += h
            if x < c:
                break
    return dest


@njit(cache=True)
def record_event(events, event_amounts, n_events, lead_id, state, day, segment, amount):
    """Append ``(lead_id, state, day, segment)`` and its amount; count it even when full."""
    i = n_events[0]
    if i < events.shape[0]:
        events[i, 0] = lead_id
        events[i, 1] = state
        events[i, 2] = day
        events[i, 3] = segment
        event_amounts[i] = amount
    n_events[0] = i + 1


@njit(cache=True)
def simulate_path(st, ks, ep_start, weekday0, entry, open_state, open_age, open_seg, open_rec,
                  open_amount, total, cumdest, band_lo, kinds, winprob, deal_mean, deal_mu,
                  deal_sigma, amount_stage, arr_mean, arr_size, dow, occ_days,
                  hazards, closing, close_total, close_mult, cmax, arr_cal, lam_flat, plain,
                  bookings, won, expired, recaptured, lost_value, entered, arrivals, occupancy,
                  events, event_amounts, n_events):
    """One Monte Carlo path: the open pipeline (as "day -1"), then each day's arrivals.

    Each lead is simulated from its state to absorption or the end of the horizon, its whole
    trajectory at once: it is in state ``s`` (age ``age`` on day ``t0``, its first day at risk)
    and counted there from the end of day ``ed``. Accumulates into the path's output rows
    (``entered[t, d]`` counts the leads entering state ``d`` on day ``t``, arrivals included).
    When ``events`` has rows, every state entered is also recorded there as
    ``(lead_id, state, day, segment)``, with the deal amount where known.

    Day ``t`` uses parameter set ``ks[e]`` of its epoch ``e``: epoch ``e`` holds the days
    ``ep_start[e] <= t < ep_start[e + 1]`` (``ep_start[0] == 0``, the last entry a sentinel
    beyond the horizon); a lead's hazards switch on the day its epoch changes.

    Randomness: ``st`` is the path's root; every lead, and every day's arrivals count per
    segment, draws from its own substream of it (``seed_substream``, keys above), so a change
    to one lead or one segment's arrivals leaves the others' draws as they were.
    """
    horizon = bookings.shape[0]
    n_states = kinds.shape[1]
    n_seg = arr_mean.shape[1]
    n_open = open_state.shape[0]
    occ_diff = np.zeros((horizon + 1, n_states), dtype=np.int64)
    n_active = kinds.shape[0] - 1
    won_state = n_active + 1
    lost_state = n_active + 2
    n_rec = total.shape[4]
    lead_id = 0
    ep_t = 0
    rs = np.empty(4, dtype=np.uint64)  # the random stream of the current lead (or count)
    # A plain run (one epoch, no calendar effect; ``plain``) samples exits with
    # sample_exit_plain from ``lam_flat``: the dominating totals ``total`` laid out as
    # ``[set, state, segment, recycle, band]``, flattened.
    k0 = ks[0]
    n_st = total.shape[1]
    n_bands = total.shape[2]
    n_sg = total.shape[3]
    for t in range(-1, horizon):
        wd = (weekday0 + t) % 7
        while t >= 0 and ep_start[ep_t + 1] <= t:
            ep_t += 1
        k = ks[ep_t]  # the parameter set of day t (arrivals)
        for g in range(n_seg if t >= 0 else 1):
            if t < 0:
                n = n_open
            else:
                seed_substream(rs, st, KEY_COUNT + t * 4096 + g)
                n = negative_binomial(rs, arr_mean[k, g] * dow[k, wd] * arr_cal[k, t],
                                      arr_size[k, g])
                arrivals[t] += n
                entered[t, entry] += n
            for j in range(n):
                if t < 0:  # an open lead of the starting pipeline
                    s, age, t0, seg, rec, amount = (open_state[j], open_age[j], 0, open_seg[j],
                                                    open_rec[j], open_amount[j])
                    seed_substream(rs, st, j)
                else:  # a new arrival: in the entry stage from the end of day t
                    s, age, t0, seg, rec, amount = entry, 0, t + 1, g, 0, np.nan
                    seed_substream(rs, st, KEY_ARRIVAL + (t * 4096 + g) * (1 << 24) + j)
                    if events.shape[0] > 0:
                        record_event(events, event_amounts, n_events, lead_id, entry, t, g,
                                     np.nan)
                # The lead, from its state to absorption or the end of the horizon. Written
                # out here, not as a function: as a call it cost a third more (its 30 array
                # arguments), and numba's inline="always" made the path 2x slower.
                ed = t  # counted in state s from the end of day ed (-1: at the start)
                pend_val = 0.0
                pend_day = -1
                pend_stage = -1
                while True:
                    occ_diff[max(ed, 0), s] += 1
                    if plain:
                        exit_day, b = sample_exit_plain(
                            rs, lam_flat, (((k0 * n_st + s) * n_sg + seg) * n_rec + rec) * n_bands,
                            n_bands, band_lo, age, t0, horizon)
                        kx = k0
                        mx = 1.0
                    else:
                        exit_day, b, kx, mx = sample_exit(rs, total, close_total, close_mult,
                                                          cmax, ks, ep_start, s, seg, rec,
                                                          band_lo, age, t0, horizon)
                    if exit_day < 0:
                        break
                    occ_diff[exit_day, s] -= 1
                    if mx == 1.0:
                        d = sample_destination(rs, cumdest, kx, s, b, seg, rec)
                    else:
                        d = sample_destination_scaled(rs, hazards, closing, kx, s, b, seg, rec, mx)
                    entered[exit_day, d] += 1
                    kind = kinds[s, d]
                    if d == won_state or d == amount_stage:
                        if amount != amount:  # NaN: not known yet, draw it now
                            amount = lognormal(rs, deal_mu[kx, seg], deal_sigma[kx, seg])
                    if events.shape[0] > 0:
                        priced = d == won_state or d == amount_stage
                        record_event(events, event_amounts, n_events, lead_id, d, exit_day, seg,
                                     amount if priced else np.nan)
                    if d == won_state:
                        bookings[exit_day] += amount
                        won[exit_day] += 1
                        occ_diff[exit_day, d] += 1
                        pend_stage = -1
                        break
                    if d == lost_state:
                        occ_diff[exit_day, d] += 1
                        break
                    if kind == KIND_EXPIRY:
                        expired[exit_day, s] += 1
                        if pend_stage < 0:
                            value = amount if amount == amount else deal_mean[kx, seg]
                            pend_val = winprob[kx, s, seg, rec] * value
                            pend_day = exit_day
                            pend_stage = s
                        rec = min(rec + 1, n_rec - 1)
                    elif kind == KIND_RECAPTURE:
                        recaptured[exit_day] += 1
                    if pend_stage >= 0 and pend_stage <= d < n_active:
                        pend_stage = -1  # came back to the stage it went cold from (or further)
                    s = d
                    age = 0
                    t0 = exit_day + 1
                    ed = exit_day
                if pend_stage >= 0:
                    lost_value[pend_day] += pend_val
                lead_id += 1
    running = np.zeros(n_states, dtype=np.int64)
    m = 0
    for t in range(horizon):
        running += occ_diff[t]
        while m < occ_days.shape[0] and occ_days[m] == t:
            occupancy[m, :] = running
            m += 1


def _make_forecast(parallel: bool):
    """Compile the all-paths loop, parallel over paths or as its serial twin.

    The loop is a closure over ``loop`` so the two compilations have distinct cache keys
    (numba's on-disk cache key ignores the ``parallel`` flag but includes closure variables).
    """
    loop = prange if parallel else range

    def forecast(rng_states, set_index, ep_start, weekday0, entry, open_state, open_age, open_seg,
                 open_rec, open_amount, total, cumdest, band_lo, kinds, winprob, deal_mean,
                 deal_mu, deal_sigma, amount_stage, arr_mean, arr_size, dow, occ_days,
                 hazards, closing, close_total, close_mult, cmax, arr_cal, lam_flat, plain,
                 bookings, won, expired, recaptured, lost_value, entered, arrivals, occupancy):
        no_events = np.zeros((0, 4), dtype=np.int64)
        no_amounts = np.zeros(0)
        for p in loop(rng_states.shape[0]):
            st = rng_states[p].copy()
            counter = np.zeros(1, dtype=np.int64)
            simulate_path(st, set_index[p], ep_start, weekday0, entry, open_state, open_age,
                          open_seg, open_rec, open_amount, total, cumdest, band_lo, kinds, winprob,
                          deal_mean, deal_mu, deal_sigma, amount_stage, arr_mean, arr_size, dow,
                          occ_days, hazards, closing, close_total, close_mult, cmax, arr_cal,
                          lam_flat, plain, bookings[p], won[p], expired[p], recaptured[p],
                          lost_value[p], entered[p], arrivals[p], occupancy[p], no_events,
                          no_amounts, counter)

    return njit(parallel=parallel, cache=True)(forecast)


forecast_parallel = _make_forecast(parallel=True)
forecast_serial = _make_forecast(parallel=False)
