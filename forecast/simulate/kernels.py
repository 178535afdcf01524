"""Numba kernels of the simulator: numpy arrays and scalars in, preallocated arrays out.

Leads do not interact, so there is no need to step every lead through every day. Two exact
algorithms, both the day-by-day process in distribution (``tests/reference.py`` keeps the plain
day-by-day kernel and ``tests/test_equivalence.py`` compares):

- **Lead by lead** (:func:`simulate_path`, :func:`run_alone`): each lead's whole trajectory at
  once. Instead of a uniform draw per lead per day, the day a lead leaves its state is drawn by
  inverting the piecewise-constant cumulative hazard: with ``E ~ Exp(1)`` and band total
  ``Λ``, the lead leaves on the ``floor(E / Λ)``-th day of the band if that falls inside it,
  else carries ``E - Λ·L`` into the next band. ``P(floor(E/Λ) >= j) = e^{-jΛ}``, exactly the
  day-by-day survival. Used for runs with calendar effects and for event logs.
- **By cohorts** (:func:`simulate_path_cohorts`): leads that entered the same state on the same
  day with the same segment and recycle level, with no amount and nothing pending, are
  exchangeable; a cohort's leads draw their exits one after the other from the cohort's
  substream (a stayer costs one number), and the leavers of a day form the next states'
  cohorts. Leads with an
  amount or a pending "lost to expiry" value go on alone (:func:`run_alone`). Used for every
  other run: about 1.7 times faster per thread on the reference workload (README). A cohort
  reads its leavers' days and destinations from a table of the exact exit distribution
  (:func:`exit_tables`, one per epoch): one uniform draw and a lookup per leaver instead of
  an exponential, a uniform and two searches; a leaver still there when a scenario's date
  brings other parameters goes on from the same draw (so the days before the date do not
  move). A drift walk's runs draw by stretches of constant hazard.

State numbering: active stages ``0..S-1``, nurture ``S``, won ``S+1``, lost ``S+2``.
Move kinds (``kinds[s, d]``): 1 advance/skip, 2 expiry, 3 recapture, 4 lost.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

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
# The cohort kernel: a cohort is identified by what it is, so that the same cohort in two
# runs (a scenario and its baseline) draws the same numbers: ``ident = ((t * S + s) * G + g)
# * R + r`` for the cohort entering state ``s`` on day ``t`` (segment ``g``, recycle level
# ``r``; ``S`` transient states, ``G`` segments, ``R`` levels), ``GROUP + ((age * S + s) * G
# + g) * R + r`` for a group of the open pipeline. It draws from ``KEY_COHORT + ident``, and
# its ``i``-th leaver to go on alone from ``KEY_ALONE + ident * 2**24 + i``; open leads alone
# keep their index in the pipeline. The ranges do not overlap (KEY_ARRIVAL's ends below
# KEY_COHORT for days below 2**25; idents stay below 2**34 for ages and days below 2**24).
GROUP = 1 << 33
KEY_COHORT = 3 << 61
KEY_ALONE = 1 << 60


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
    the parameter set in force that day and whether every closing multiplier is 1 that day.

    The cumulative hazard is piecewise constant over age bands and over epochs (calendar
    spans with their own parameter set ``ks[epoch]``; one epoch unless a scenario changes
    parameters on a date). Calendar effects (the hazard of closing move ``c`` times
    ``close_mult[k, day, c]``) are drawn by thinning: ``total`` is the dominating hazard (each
    closing move at the set's largest multiplier ``cmax[k, c]``); a candidate day is kept with
    probability ``(1 - e^{-Λ(day)}) / (1 - e^{-Λ_dom})``, else the search restarts the next
    day, which is exact for the day-by-day process. Without calendar effects every candidate
    is kept and no extra number is drawn. Returns ``(-1, band, set, True)`` when the lead is
    still there at the end of the horizon.
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
                        return -1, b, k, True
                    off = int(x)
                    if off >= span:  # guard against rounding at the edge
                        off = span - 1
                    day = t + off
                    # (unsigned indices: numba wraps signed ones around, which showed here)
                    uk, ud = np.uint64(k), np.uint64(day)
                    lam_day = lam
                    unit = True
                    for c in range(cmax.shape[1]):
                        uc = np.uint64(c)
                        m = close_mult[uk, ud, uc]
                        unit &= m == 1.0
                        if m != cmax[uk, uc]:
                            lam_day -= (cmax[uk, uc] - m) * close_total[
                                uk, np.uint64(s), np.uint64(b), np.uint64(g), np.uint64(r), uc]
                    if lam_day == lam:  # every closing move at its largest: nothing to thin
                        return day, b, k, unit
                    if uniform(st) * -math.expm1(-lam) < -math.expm1(-lam_day):
                        return day, b, k, unit
                    age += day + 1 - t  # rejected: the lead is still there after that day
                    t = day + 1
                    rejected = True
                    break
                e -= cap
            elif last and ep_start[ep + 1] >= horizon:
                return -1, b, k, True
            t += span
            if t >= horizon:
                return -1, b, k, True
            age += span
            if not last and age >= band_lo[b + 1]:
                b += 1
            if t >= ep_start[ep + 1]:
                ep += 1
        if rejected and t >= horizon:
            return -1, _band_of(age, band_lo), ks[epoch_of(horizon - 1, ep_start)], True


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
def sample_destination_scaled(st, hazards, close_class, close_mult, k, s, b, g, r, day):
    """Destination on day ``day``, whose closing moves run at ``close_mult[k, day,
    close_class[d]]`` times their hazard (``close_class[d] < 0``: not a closing move, times
    1). Indices, not a slice of ``close_mult``: a slice per call cost about 12% of a calendar
    run."""
    n_dest = hazards.shape[5]
    lam = 0.0
    for d in range(n_dest):
        c = close_class[d]
        lam += hazards[k, s, b, g, r, d] * (close_mult[k, day, c] if c >= 0 else 1.0)
    x = uniform(st) * lam
    c = 0.0
    dest = -1
    for d in range(n_dest):
        cl = close_class[d]
        h = hazards[k, s, b, g, r, d] * (close_mult[k, day, cl] if cl >= 0 else 1.0)
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
def run_alone(st, nq, q_key, q_lead, q_state, q_dest, q_day, q_age, q_seg, q_rec, q_amount,
              ks, ep_start, total, cumdest, band_lo, kinds, winprob, deal_mean, deal_mu,
              deal_sigma, amount_stage, qual, hazards, close_class, close_total, close_mult, cmax,
              lam_flat, plain, occ_diff, bookings, won, expired, recaptured, lost_value, entered,
              events, event_amounts, n_events):
    """Follow the ``nq`` queued leads one by one, each from its own substream ``q_key[q]``,
    to absorption or the end of the horizon, its whole trajectory at once.

    Entry ``q`` is lead ``q_lead[q]`` (for event logs) of segment ``q_seg[q]``, recycle level
    ``q_rec[q]``, amount ``q_amount[q]`` (NaN: not known yet), nothing pending. With
    ``q_dest[q] < 0`` it is in state ``q_state[q]``, counted there from the end of day
    ``q_day[q]`` (-1: the open pipeline) and at risk from the next day at age ``q_age[q]``;
    otherwise it leaves ``q_state[q]`` for ``q_dest[q]`` on day ``q_day[q]`` (already counted
    out of ``q_state[q]``). Leads are queued, not followed one call each: a call passing this
    many arrays costs over a microsecond.

    A plain run (one epoch, no calendar effect: ``plain``) samples exits with
    :func:`sample_exit_plain` from ``lam_flat``, the dominating totals ``total`` laid out as
    ``[set, state, segment, recycle, band]`` and flattened.

    "Lost to expiry": going cold from the qualified stage ``qual`` or later with nothing
    pending sets aside the eventual win probability there times the amount (or the segment's
    mean deal); coming back to that stage or further, or winning, releases it; whatever is
    still set aside at the end counts on the day it went cold.
    """
    horizon = bookings.shape[0]
    n_st = total.shape[1]
    n_bands = total.shape[2]
    n_sg = total.shape[3]
    n_rec = total.shape[4]
    n_active = kinds.shape[0] - 1
    won_state = n_active + 1
    lost_state = n_active + 2
    k0 = ks[0]
    rs = np.empty(4, dtype=np.uint64)
    for q in range(nq):
        seed_substream(rs, st, q_key[q])
        lead_id = q_lead[q]
        s = q_state[q]
        seg = q_seg[q]
        rec = q_rec[q]
        amount = q_amount[q]
        pend_val = 0.0
        pend_day = -1
        pend_stage = -1
        d = q_dest[q]
        exit_day = q_day[q]
        ed = exit_day
        age = q_age[q]
        t0 = exit_day + 1
        kx = ks[epoch_of(max(exit_day, 0), ep_start)]
        while True:
            if d < 0:  # in state s (age `age` on day t0): when does it leave, and for where?
                occ_diff[max(ed, 0), s] += 1
                if plain:
                    exit_day, b = sample_exit_plain(
                        rs, lam_flat, (((k0 * n_st + s) * n_sg + seg) * n_rec + rec) * n_bands,
                        n_bands, band_lo, age, t0, horizon)
                    kx = k0
                    unit = True
                else:
                    exit_day, b, kx, unit = sample_exit(rs, total, close_total, close_mult,
                                                        cmax, ks, ep_start, s, seg, rec, band_lo,
                                                        age, t0, horizon)
                if exit_day < 0:
                    break
                occ_diff[exit_day, s] -= 1
                if unit:
                    d = sample_destination(rs, cumdest, kx, s, b, seg, rec)
                else:
                    d = sample_destination_scaled(rs, hazards, close_class, close_mult, kx, s, b,
                                                  seg, rec, exit_day)
            # The move s -> d on exit_day.
            entered[exit_day, d] += 1
            kind = kinds[s, d]
            priced = d == won_state or d == amount_stage
            if priced and amount != amount:  # NaN: not known yet, draw it now
                amount = lognormal(rs, deal_mu[kx, seg], deal_sigma[kx, seg])
            if events.shape[0] > 0:
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
                if pend_stage < 0 and s >= qual:
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
            d = -1
            age = 0
            t0 = exit_day + 1
            ed = exit_day
        if pend_stage >= 0:
            lost_value[pend_day] += pend_val


@njit(cache=True)
def exit_tables(horizon, kinds, n_seg, n_rec, n_slots):
    """A thread's tables of where and when a lead entering a state at age 0 leaves it, for
    :func:`simulate_path_cohorts`: one row per slot and ``(state, segment, recycle level)``
    (row ``(slot * S + s) * G * R + g * R + r``; a path has a slot per parameter set it uses,
    more than one in a run with scenario dates, so ``n_slots`` is the run's epoch count),
    filled by :func:`exit_table_row` the first time a path of another parameter set needs it
    (``tab_k``: the set each row holds, -1 none).

    Row ``(s, g, r)`` has ``horizon * W`` cells, ``W`` a power of two at least the number of
    moves out of any state: cell ``j * W + i`` is "leaves on the ``j``-th day at risk for the
    ``i``-th destination of ``dests[s]``", and ``tab_c`` holds the cumulative probabilities, so
    one uniform draw below ``tab_c`` at the end of day ``R - 1`` is a leaver within ``R`` days
    and its cell (found from ``tab_guide``) its day and destination: the same distribution as
    the exponential and the destination draw of the stretches, in one number and a lookup.
    """
    n_trans, n_states = kinds.shape
    width = 1
    for s in range(n_trans):
        n_d = 0
        for d in range(n_states):
            n_d += kinds[s, d] != 0
        while width < n_d:
            width *= 2
    dests = np.full((n_trans, width), -1, dtype=np.int64)
    for s in range(n_trans):
        i = 0
        for d in range(n_states):
            if kinds[s, d] != 0:
                dests[s, i] = d
                i += 1
    rows = n_slots * n_trans * n_seg * n_rec
    return (np.zeros((rows, horizon * width)), np.zeros((rows, horizon * width), dtype=np.int32),
            np.zeros(rows), np.full(rows, -1, dtype=np.int64), dests)


@njit(cache=True)
def exit_table_row(tab_c, tab_guide, tab_ginv, row, hazards, total, band_lo, dests, k, s, g,
                   r):
    """Fill row ``row`` of :func:`exit_tables` for state ``s``, segment ``g``, recycle level
    ``r`` under parameter set ``k``: on the ``j``-th day at risk (age ``j``, band ``b``) a lead
    leaves with probability ``S(j) - S(j+1)`` (``S(j) = e^{-Λ_0 - ... - Λ_{j-1}}``, exactly the
    day-by-day survival), for destination ``d`` with share ``λ_d / Λ_b``.

    The guide table makes the lookup a step or two for a draw anywhere in the row (Chen and
    Asau's guide tables, Devroye 1986, III.2.4): ``tab_guide[row, i]`` is the first cell whose
    cumulative probability times ``tab_ginv[row]`` reaches ``i``, so the cell of a draw ``u`` is
    at or after ``tab_guide[row, int(u * tab_ginv[row])]`` (floating-point products keep their
    order). For a draw confined to a narrow span of probability (a group so old that few of
    its leads are left) the buckets are few and the scan longer: 30 to 120 cells on average
    for b2b groups past 180 days, each a predictable step (bisection measured no faster).

    Hazards of moves the model does not have must be zero (``kernel_tables`` checks): the row
    holds the model's moves only.
    """
    width = dests.shape[1]
    n_cells = tab_c.shape[1]
    n_b = band_lo.shape[0]
    c_row = tab_c[row]
    # Per band: each destination's cumulative share of the band's hazard, and from which
    # destination on the day's cells end where the day ends (its last move's; the first
    # when nothing leaves). Computed once per band, not per day: a posterior run builds the
    # rows of every path's own set, and this halved the time.
    share = np.zeros((n_b, width))
    ends = np.zeros(n_b, dtype=np.int64)
    for b in range(n_b):
        lam = total[k, s, b, g, r]
        acc = 0.0
        last = -1
        for i in range(width):
            d = dests[s, i]
            if d >= 0 and lam > 0.0:
                h = hazards[k, s, b, g, r, d]
                if h > 0.0:
                    acc += h
                    last = i
            share[b, i] = acc / lam if lam > 0.0 else 0.0
        ends[b] = last if last >= 0 else (width if lam > 0.0 else 0)
    b = 0
    surv = 1.0
    rho = math.exp(-total[k, s, 0, g, r])
    for j in range(n_cells // width):
        if b < n_b - 1 and j >= band_lo[b + 1]:
            b += 1
            rho = math.exp(-total[k, s, b, g, r])
        nxt = surv * rho
        left = surv - nxt  # leaves on this day
        base = 1.0 - surv
        day_end = 1.0 - nxt
        # never past the day's end, where rounding would put it out of order; the day's last
        # destination ends exactly where the day ends (with nothing leaving, the day's cells
        # are all 1 - surv: rho is 1)
        for i in range(ends[b]):
            c_row[j * width + i] = min(base + left * share[b, i], day_end)
        for i in range(ends[b], width):
            c_row[j * width + i] = day_end
        surv = nxt
    c_tot = c_row[n_cells - 1]
    ginv = n_cells / c_tot if c_tot > 0.0 else 0.0
    tab_ginv[row] = ginv
    guide = tab_guide[row]
    c = 0
    for i in range(n_cells):
        while c < n_cells - 1 and c_row[c] * ginv < i:
            c += 1
        guide[i] = c


@njit(cache=True, inline="always")
def table_cell(tab_c, tab_guide, tab_ginv, row, u):
    """The cell of row ``row`` in which the cumulative probability passes ``u``."""
    ur = np.uint64(row)  # unsigned indices: no wraparound of negative ones to compute
    c = np.uint64(tab_guide[ur, np.uint64(min(int(u * tab_ginv[ur]), tab_c.shape[1] - 1))])
    while tab_c[ur, c] <= u:
        c += np.uint64(1)
    return np.int64(c)


QUEUE = 4096  # leads queued for run_alone before each call
ONE_BELOW = 1.0 - 2.0 ** -53  # the largest double below 1


@njit(cache=True)
def occupancy_from(occ_diff, occ_days, occupancy):
    """Leads per state at the end of each of ``occ_days``, from the day-by-day changes."""
    running = np.zeros(occ_diff.shape[1], dtype=np.int64)
    m = 0
    for t in range(occ_diff.shape[0] - 1):
        running += occ_diff[t]
        while m < occ_days.shape[0] and occ_days[m] == t:
            occupancy[m, :] = running
            m += 1


@njit(cache=True)
def cohort_schedule(kinds, n_rec):
    """The order in which :func:`simulate_path_cohorts` runs its cohorts: passes over the
    horizon, each for a set of ``(state, recycle level)`` nodes; pass ``p`` holds the nodes
    ``sched_s[i], sched_r[i]`` for ``sched_start[p] <= i < sched_start[p + 1]``.

    A cohort takes leavers only from cohorts of earlier days and of nodes with a move to its
    own, and a move raises the recycle level or leaves it (an expiry raises it, up to the
    last level). So the nodes fall into strongly connected components (most alone: leads move
    on and do not come back at the same level), and taking the components in topological
    order, each over all days before the next, every cohort is complete when its turn comes;
    inside a component the days go in order and its nodes take turns within each day. Running
    one node's cohorts in a row keeps its exit table row and the cohorts it feeds in cache.

    The order of the components: a component reached from another has strictly more nodes
    (outside itself) that reach it, so sorting by that count is a topological order.
    """
    n_trans = kinds.shape[0]
    n_nodes = n_trans * n_rec
    reach = np.zeros((n_nodes, n_nodes), dtype=np.bool_)
    for s in range(n_trans):
        for r in range(n_rec):
            for d in range(n_trans):
                if kinds[s, d] != 0:
                    r2 = min(r + (kinds[s, d] == KIND_EXPIRY), n_rec - 1)
                    reach[s * n_rec + r, d * n_rec + r2] = True
    for w in range(n_nodes):  # transitive closure (Warshall)
        for u in range(n_nodes):
            if reach[u, w]:
                for v in range(n_nodes):
                    if reach[w, v]:
                        reach[u, v] = True
    comp = np.full(n_nodes, -1, dtype=np.int64)  # a component: its first node
    ancestors = np.zeros(n_nodes, dtype=np.int64)
    for u in range(n_nodes):
        for v in range(n_nodes):
            if comp[u] < 0 and (v == u or (reach[u, v] and reach[v, u])):
                comp[u] = v
    for u in range(n_nodes):
        for v in range(n_nodes):
            if reach[v, u] and comp[v] != comp[u]:
                ancestors[u] += 1
    order = np.argsort(ancestors * n_nodes + comp, kind="mergesort")
    sched_s = np.empty(n_nodes, dtype=np.int64)
    sched_r = np.empty(n_nodes, dtype=np.int64)
    sched_start = np.zeros(n_nodes + 1, dtype=np.int64)
    n_pass = 0
    for i in range(n_nodes):
        u = order[i]
        sched_s[i] = u // n_rec
        sched_r[i] = u % n_rec
        if i > 0 and comp[u] != comp[order[i - 1]]:
            n_pass += 1
            sched_start[n_pass] = i
    sched_start[n_pass + 1] = n_nodes
    return sched_s, sched_r, sched_start[:n_pass + 2]


@njit(cache=True)
def draw_arrivals(rs, st, t, g, k, wd, arr_mean, arr_size, dow, arr_cal):
    """The number of new leads of segment ``g`` on day ``t``, from its own substream."""
    seed_substream(rs, st, KEY_COUNT + t * 4096 + g)
    return negative_binomial(rs, arr_mean[k, g] * dow[k, wd] * arr_cal[k, t], arr_size[k, g])


@njit(cache=True)
def simulate_path(st, ks, ep_start, weekday0, entry, qual, open_state, open_age, open_seg,
                  open_rec, open_amount, total, cumdest, band_lo, kinds, winprob, deal_mean,
                  deal_mu, deal_sigma, amount_stage, arr_mean, arr_size, dow, occ_days,
                  hazards, close_class, close_total, close_mult, cmax, arr_cal, lam_flat, plain,
                  bookings, won, expired, recaptured, lost_value, entered, arrivals, occupancy,
                  events, event_amounts, n_events, occ_diff, queue):
    """One Monte Carlo path, lead by lead: the open pipeline (as "day -1"), then each day's
    arrivals, each lead followed from its state to absorption or the end of the horizon
    (:func:`run_alone`). The general kernel: any calendar effect, and event logs. Accumulates
    into the path's output rows (``entered[t, d]`` counts the leads entering state ``d`` on
    day ``t``, arrivals included). When ``events`` has rows, every state entered is also
    recorded there as ``(lead_id, state, day, segment)``, with the deal amount where known.

    Day ``t`` uses parameter set ``ks[e]`` of its epoch ``e``: epoch ``e`` holds the days
    ``ep_start[e] <= t < ep_start[e + 1]`` (``ep_start[0] == 0``, the last entry a sentinel
    beyond the horizon); a lead's hazards switch on the day its epoch changes.

    Randomness: ``st`` is the path's root; every lead, and every day's arrivals count per
    segment, draws from its own substream of it (``seed_substream``, keys above), so a change
    to one lead or one segment's arrivals leaves the others' draws as they were.
    """
    horizon = bookings.shape[0]
    n_seg = arr_mean.shape[1]
    n_open = open_state.shape[0]
    occ_diff[:] = 0
    q_key, q_lead, q_state, q_dest, q_day, q_age, q_seg, q_rec, q_amount = queue
    q_dest[:] = -1
    nq = 0
    lead_id = 0
    ep_t = 0
    rs = np.empty(4, dtype=np.uint64)
    for t in range(-1, horizon):
        if t >= 0:
            while ep_start[ep_t + 1] <= t:
                ep_t += 1
        for g in range(n_seg if t >= 0 else 1):
            if t < 0:
                n = n_open
            else:
                n = draw_arrivals(rs, st, t, g, ks[ep_t], (weekday0 + t) % 7, arr_mean,
                                  arr_size, dow, arr_cal)
                arrivals[t] += n
                entered[t, entry] += n
            for j in range(n):
                if t < 0:  # an open lead of the starting pipeline
                    q_key[nq], q_state[nq], q_day[nq], q_age[nq] = j, open_state[j], -1, open_age[j]
                    q_seg[nq], q_rec[nq], q_amount[nq] = open_seg[j], open_rec[j], open_amount[j]
                else:  # a new arrival: in the entry stage from the end of day t
                    q_key[nq] = KEY_ARRIVAL + (t * 4096 + g) * (1 << 24) + j
                    q_state[nq], q_day[nq], q_age[nq] = entry, t, 0
                    q_seg[nq], q_rec[nq], q_amount[nq] = g, 0, np.nan
                    if events.shape[0] > 0:
                        record_event(events, event_amounts, n_events, lead_id, entry, t, g,
                                     np.nan)
                q_lead[nq] = lead_id
                lead_id += 1
                nq += 1
                if nq == QUEUE:
                    run_alone(st, nq, q_key, q_lead, q_state, q_dest, q_day, q_age, q_seg,
                              q_rec, q_amount, ks, ep_start, total, cumdest, band_lo, kinds,
                              winprob, deal_mean, deal_mu, deal_sigma, amount_stage, qual,
                              hazards, close_class, close_total, close_mult, cmax, lam_flat, plain,
                              occ_diff, bookings, won, expired, recaptured, lost_value, entered,
                              events, event_amounts, n_events)
                    nq = 0
    run_alone(st, nq, q_key, q_lead, q_state, q_dest, q_day, q_age, q_seg, q_rec, q_amount, ks,
              ep_start, total, cumdest, band_lo, kinds, winprob, deal_mean, deal_mu, deal_sigma,
              amount_stage, qual, hazards, close_class, close_total, close_mult, cmax, lam_flat,
              plain, occ_diff, bookings, won, expired, recaptured, lost_value, entered, events,
              event_amounts, n_events)
    occupancy_from(occ_diff, occ_days, occupancy)


@njit(cache=True)
def simulate_path_cohorts(st, ks, ep_start, weekday0, entry, qual, open_state, open_age,
                          open_seg, open_rec, open_amount, open_key, grp_state, grp_age, grp_seg,
                          grp_rec, grp_count, total, cumdest, band_lo, kinds, winprob,
                          deal_mean, deal_mu, deal_sigma, amount_stage, arr_mean, arr_size, dow,
                          occ_days, hazards, close_class, close_total, close_mult, cmax, arr_cal,
                          lam_flat, plain, bookings, won, expired, recaptured, lost_value,
                          entered, arrivals, occupancy, occ_diff, cohort, queue, tables,
                          schedule):
    """One Monte Carlo path by cohorts: the kernel of every run without calendar effects.
    The same process and outputs as :func:`simulate_path`, from other draws.

    A cohort is ``n`` exchangeable leads: the same state, age, segment and recycle level, no
    amount, nothing pending. Ahead of it lie stretches of constant hazard (age bands cut at
    epoch starts and at the horizon) with cumulative hazard ``H`` in all. Each lead, in
    turn, draws its ``E ~ Exp(1)`` and leaves before the horizon when it falls below ``H``;
    the stretch where ``E`` falls, the day in it and the destination follow as for a single
    lead. (Until 2026-12-05 a cohort of more than 16 leads drew a binomial count of leavers
    before the horizon: the same law, but every draw then depended on the horizon, and a
    longer run did not repeat a shorter one's days.) Leavers for another transient state join the
    cohort of that state, day, segment and recycle level (``cohort``, flat, ordered by state,
    segment, recycle level and day), the lost are counted in that table too; those that
    win, take an amount or go cold with a value pending are queued to go on alone
    (:func:`run_alone`, each from its own substream, keyed by its cohort and its rank in
    it). A stayer costs one draw.

    With ``plain`` (no calendar, no drift walk) the stretches are mostly not needed: the row
    of :func:`exit_tables` for the cohort's state, segment and recycle level, under the
    parameter set of its first day at risk, holds the probability of every (day,
    destination) cell, cumulated: each lead draws ``u`` uniform, a leaver when below
    ``c_hi``, the cumulative probability at the end of the segment (the horizon, or the
    first day another set takes over), and then the cell holding ``u`` is its day and
    destination. A group of the open pipeline aged ``a`` uses the row from ``a`` on: ``u``
    uniform in ``[c_lo, 1)``, ``c_lo`` the row's cumulative probability at age ``a`` (the exit
    given that the group lasted to ``a``); groups so old that ``1 - c_lo`` is below ``1e-6``
    go by the stretches, where rounding cannot show. A lead with ``u >= c_hi`` is still there
    when the next set takes over: ``v = (u - c_hi) / (1 - c_hi)`` is uniform given that, and
    is read in that set's row from the age the lead has then (``c_lo' + v (1 - c_lo')``), and
    so on; past a row too old to read precisely it becomes an exponential, ``-log(1 - v)``,
    that finds the exit in the stretches, and given the day the position inside it, through
    its distribution function (``(1 - e^{-Λx}) / (1 - e^{-Λ})``, uniform and independent of
    the day), picks the destination (the same inverse distribution function as the rows').
    One draw a lead either way: the days before a date are those of a run without it.
    Epochs in a row with the same set are merged first (``mks``, ``mst``), so a run cut
    where nothing changes draws as the run without the cut.

    Order: the open pipeline's leads with a known amount alone (``open_*``, substreams
    ``open_key``), the arrivals of every day into the entry stage's cohorts, the open
    pipeline's other leads as groups of equal state, age, segment and recycle level
    (``grp_*``), then the cohorts in the order of :func:`cohort_schedule` (``schedule``,
    computed once per thread): a state and recycle level over the whole horizon, segment by
    segment, before the states it feeds (where leads can come back to the same state and
    level, those states day by day together). A cohort's leavers leave the next day at the
    earliest and a cohort takes leavers only from the states and levels before it, so each
    cohort is complete when its turn comes. Each group and cohort draws from its own
    substream, keyed by what it is (keys above), so the order does not change the draws,
    what happens in one does not move the draws of another, and a scenario's baseline draws
    the same for the same cohort.
    """
    horizon = bookings.shape[0]
    n_states = kinds.shape[1]
    n_trans = kinds.shape[0]  # active stages and nurture: the states cohorts live in
    n_seg = arr_mean.shape[1]
    n_st = total.shape[1]
    n_bands = total.shape[2]
    n_rec = total.shape[4]
    n_active = n_trans - 1
    won_state = n_active + 1
    lost_state = n_active + 2
    # Epochs in a row with the same parameter set are one: a run cut at a date where its
    # parameters do not change (a scenario's baseline) draws as the run without the date.
    n_ep = ep_start.shape[0] - 1
    # (``mst`` from ``nm`` on all the sentinel, ``mks`` the last set: as ``ks``, ``ep_start``)
    mks = np.full(n_ep, ks[n_ep - 1], dtype=np.int64)
    mst = np.full(n_ep + 1, ep_start[n_ep], dtype=np.int64)
    nm = 0
    for e in range(n_ep):
        if e == 0 or ks[e] != ks[e - 1]:
            mks[nm], mst[nm] = ks[e], ep_start[e]
            nm += 1
    alone_plain = plain and nm == 1  # run_alone's fast path: one epoch
    # the exit-table slot of each epoch: one per parameter set (the first epoch using it)
    slot = np.empty(n_ep, dtype=np.int64)
    for e in range(nm):
        slot[e] = e
        for f in range(e):
            if mks[f] == mks[e]:
                slot[e] = slot[f]
                break
    n_nodes = n_trans * n_seg * n_rec  # rows of an exit-table slot
    occ_diff[:] = 0
    cohort[:] = 0
    no_events = np.zeros((0, 4), dtype=np.int64)
    no_amounts = np.zeros(0)
    no_count = np.zeros(1, dtype=np.int64)
    q_key, q_lead, q_state, q_dest, q_day, q_age, q_seg, q_rec, q_amount = queue
    q_lead[:] = 0
    nq = 0
    tab_c, tab_guide, tab_ginv, tab_k, dests = tables
    width = dests.shape[1]
    shift = 0
    while (1 << shift) < width:
        shift += 1
    c_lo = c_hi = 0.0
    t_off = 0
    day = o_p = o_g = o_i = 0
    rs = np.empty(4, dtype=np.uint64)
    n_xmax = n_bands + ep_start.shape[0]
    x_start = np.empty(n_xmax, dtype=np.int64)
    x_span = np.empty(n_xmax, dtype=np.int64)
    x_dest = np.empty(n_xmax, dtype=np.int64)
    dest_flat = cumdest.reshape(-1)
    x_inv = np.empty(n_xmax)
    x_cum = np.empty(n_xmax)
    x_lam = np.empty(n_xmax)
    # a cohort's segments of exit-table rows, one per parameter set it meets (see below)
    sg_row = np.empty(n_ep, dtype=np.int64)
    sg_off = np.empty(n_ep, dtype=np.int64)
    sg_clo = np.empty(n_ep)
    sg_chi = np.empty(n_ep)
    # What a cohort leaver's move from s to d does: go on alone, count an expiry (and raise
    # the recycle level), count a recapture.
    alone = np.zeros((n_trans, n_states), dtype=np.bool_)
    is_expiry = np.zeros((n_trans, n_states), dtype=np.int64)
    is_recapture = np.zeros((n_trans, n_states), dtype=np.int64)
    for a in range(n_trans):
        for d in range(n_states):
            is_expiry[a, d] = kinds[a, d] == KIND_EXPIRY
            is_recapture[a, d] = kinds[a, d] == KIND_RECAPTURE
            alone[a, d] = d == won_state or d == amount_stage or (is_expiry[a, d] == 1
                                                                  and a >= qual)
    # Where in the cohort table a leaver of state s (segment g, recycle level r) for d is
    # counted: from ``to_row[(s * n_seg + g) * n_rec + r, d]`` on, by day.
    to_row = np.empty((n_trans * n_seg * n_rec, n_states), dtype=np.int64)
    for a in range(n_trans):
        for g in range(n_seg):
            for r in range(n_rec):
                for d in range(n_states):
                    to_row[(a * n_seg + g) * n_rec + r, d] = (
                        (d * n_seg + g) * n_rec + min(r + is_expiry[a, d], n_rec - 1)) * horizon
    n_open = open_state.shape[0]
    for j in range(n_open):  # open leads with a known amount: alone
        q_key[nq], q_state[nq], q_dest[nq], q_day[nq] = open_key[j], open_state[j], -1, -1
        q_age[nq], q_seg[nq], q_rec[nq], q_amount[nq] = (open_age[j], open_seg[j], open_rec[j],
                                                         open_amount[j])
        nq += 1
        if nq == QUEUE or j == n_open - 1:
            run_alone(st, nq, q_key, q_lead, q_state, q_dest, q_day, q_age, q_seg, q_rec,
                      q_amount, mks, mst, total, cumdest, band_lo, kinds, winprob, deal_mean,
                      deal_mu, deal_sigma, amount_stage, qual, hazards, close_class, close_total,
                      close_mult, cmax, lam_flat, alone_plain, occ_diff, bookings, won, expired,
                      recaptured, lost_value, entered, no_events, no_amounts, no_count)
            nq = 0
    q_age[:] = 0  # the leavers queued below: age 0, no amount
    q_amount[:] = np.nan
    for day in range(horizon):  # the arrivals join the entry stage's cohorts
        wd = (weekday0 + day) % 7
        k = mks[epoch_of(day, mst)]
        for g in range(n_seg):
            n = draw_arrivals(rs, st, day, g, k, wd, arr_mean, arr_size, dow, arr_cal)
            arrivals[day] += n
            cohort[(entry * n_seg + g) * n_rec * horizon + day] += n
    sched_s, sched_r, sched_start = schedule  # cohort_schedule(kinds, n_rec)
    n_grp = grp_state.shape[0]
    for it in range(n_grp + horizon * n_trans * n_seg * n_rec):
        if it < n_grp:  # a group of the open pipeline, at risk from day 0 at its age
            n = grp_count[it]
            s, age, t, g, r = grp_state[it], grp_age[it], 0, grp_seg[it], grp_rec[it]
            ident = GROUP + ((age * n_trans + s) * n_seg + g) * n_rec + r
            occ_diff[0, s] += n
        else:  # the cohort entering state s on day `day`, at risk from the next
            # (pass, segment, day, node) of the next cohort (cohort_schedule), counted on like
            # an odometer (no divisions)
            if it == n_grp:
                o_p = o_g = day = o_i = 0
            else:
                o_i += 1
                if o_i == sched_start[o_p + 1]:
                    o_i = sched_start[o_p]
                    day += 1
                    if day == horizon:
                        day = 0
                        o_g += 1
                        if o_g == n_seg:
                            o_g = 0
                            o_p += 1
                            o_i = sched_start[o_p]
            s, g, r = sched_s[o_i], o_g, sched_r[o_i]
            n = cohort[((s * n_seg + g) * n_rec + r) * horizon + day]
            if n == 0:
                continue
            ident = ((day * n_trans + s) * n_seg + g) * n_rec + r
            entered[day, s] += n
            occ_diff[day, s] += n
            age = 0
            t = day + 1
        # Without a calendar: the cohort's (or group's) exit table row for the parameter set
        # in force on its first day at risk, built the first time a path of this set needs
        # it, read from the group's age on, up to `seg_end` (the horizon, or the first day a
        # scenario's date brings another set); then, for each later set, the row of that
        # set read from the age the cohort has then (segments `1..n_sg-1`: row, cumulative
        # probability at its start and end, day offset). Otherwise (groups too old for the
        # table), and past the last segment a table could read precisely (`tail`), the
        # stretches of constant hazard ahead (age bands cut at epoch starts and at the
        # horizon): their start day, length, epoch, row of destination shares, rate,
        # inverse rate and the cumulative hazard at their start, to the horizon: `cum`
        # (`cum_tail` for a tail).
        srow = (s * n_seg + g) * n_rec + r
        row = -1
        n_sg = 0
        tail = False
        tj, aj = t, age
        leaves = False
        p_stay = 1.0
        while plain:
            ej = epoch_of(tj, mst) if tj < horizon else 0
            rj = slot[ej] * n_nodes + srow
            if tab_k[rj] != mks[ej]:
                exit_table_row(tab_c, tab_guide, tab_ginv, rj, hazards, total, band_lo, dests,
                               mks[ej], s, g, r)
                tab_k[rj] = mks[ej]
            a_eff = min(aj, band_lo[n_bands - 1])
            clo = tab_c[rj, a_eff * width - 1] if a_eff > 0 else 0.0
            if 1.0 - clo < 1e-6:
                tail = n_sg > 0  # (a first segment this old: the stretches throughout)
                break
            end = min(horizon, mst[ej + 1]) if tj < horizon else horizon
            chi = tab_c[rj, (a_eff + end - tj) * width - 1] if tj < horizon else clo
            leaves |= chi > clo
            p_stay *= (1.0 - chi) / (1.0 - clo)
            if n_sg == 0:
                row, c_lo, c_hi, t_off = rj, clo, chi, tj - a_eff
            sg_row[n_sg], sg_clo[n_sg], sg_chi[n_sg], sg_off[n_sg] = rj, clo, chi, tj - a_eff
            n_sg += 1
            if end >= horizon:
                break
            aj += end - tj
            tj = end
        use_tab = n_sg > 0
        cum = cum_tail = 0.0
        n_x = 0
        if not use_tab or tail:
            tt = tj if use_tab else t
            aa = aj if use_tab else age
            b = _band_of(aa, band_lo)
            ep = epoch_of(tt, mst)
            xc = 0.0
            while tt < horizon:
                k = mks[ep]
                end = min(horizon, mst[ep + 1])
                if b < n_bands - 1:
                    end = min(end, tt + band_lo[b + 1] - aa)
                lam = lam_flat[(((k * n_st + s) * n_seg + g) * n_rec + r) * n_bands + b]
                x_start[n_x], x_span[n_x] = tt, end - tt
                x_dest[n_x] = (((((k * n_st + s) * n_bands + b) * n_seg + g) * n_rec + r)
                               * n_states)
                x_lam[n_x] = lam
                x_inv[n_x] = 1.0 / lam if lam > 0.0 else 0.0
                x_cum[n_x] = xc
                xc += lam * (end - tt)
                n_x += 1
                aa += end - tt
                tt = end
                if b < n_bands - 1 and aa >= band_lo[b + 1]:
                    b += 1
                if tt >= mst[ep + 1]:
                    ep += 1
            if use_tab:
                cum_tail = xc
                leaves |= xc > 0.0
                p_stay *= math.exp(-xc)
            else:
                cum = xc
                leaves = xc > 0.0
        if not leaves:
            continue
        # A draw from the first segment's row at or above `u_stay` stays to the horizon
        # (with one segment, exactly the draws at or above `c_hi`).
        u_stay = c_hi if n_sg == 1 and not tail else c_lo + (1.0 - c_lo) * (1.0 - p_stay)
        seed_substream(rs, st, KEY_COHORT + ident)
        us, usrow = np.uint64(s), np.uint64(srow)
        # expiries are counted by active stage: nurture has no column (and no expiry)
        ue = np.uint64(min(s, n_active - 1))
        # Every lead draws its exit, leavers and stayers alike, in the cohort's order: a lead
        # leaves before the horizon when its draw falls below `cum`, and the same draw gives
        # the same exit for any horizon that reaches it, so a longer run repeats a shorter
        # one's days bit for bit (a binomial count of the leavers, drawn to the horizon,
        # would not). Likewise the i-th lead of a cohort that goes on alone draws from its
        # own substream keyed by i. The leaver's stretch, day and destination are found by
        # counting, without data-dependent branches.
        for i in range(n):
            if use_tab:  # one uniform: below `c_hi`, a leaver, and its cell in the row
                u = c_lo + uniform(rs) * (1.0 - c_lo)
                if u >= u_stay:
                    continue  # stays to the end of the horizon
                if u < c_hi:
                    c = table_cell(tab_c, tab_guide, tab_ginv, row, u)
                    day_out = t_off + (c >> shift)
                    d = dests[us, np.uint64(c & (width - 1))]
                else:
                    # Still there at the end of a segment, where another parameter set takes
                    # over: the same draw, rescaled, is uniform given that, and is read in the
                    # next segment's row from the age the lead has then; past the last
                    # segment (`tail`) its exponential `-log(1 - v)` finds the stretch and the
                    # day as below, and given the day the position inside it, through its own
                    # distribution function, is uniform and independent of the day, and picks
                    # the destination. No other number is drawn, so the next lead's draws do
                    # not move: the days before a date are those of a run without it.
                    j = 0
                    v = 0.0
                    in_rows = True
                    while u >= sg_chi[j]:
                        v = (u - sg_chi[j]) / (1.0 - sg_chi[j])
                        if j + 1 == n_sg:
                            in_rows = False
                            break
                        j += 1
                        u = sg_clo[j] + v * (1.0 - sg_clo[j])
                    if in_rows:
                        c = table_cell(tab_c, tab_guide, tab_ginv, sg_row[j], u)
                        day_out = sg_off[j] + (c >> shift)
                        d = dests[us, np.uint64(c & (width - 1))]
                    else:
                        if not tail:
                            continue  # stays to the end of the horizon (rounding)
                        e = -math.log1p(-v)
                        if e >= cum_tail:
                            continue  # stays to the end of the horizon
                        j = 0
                        for x in range(1, n_x):
                            j += e >= x_cum[x]
                        pos = (e - x_cum[j]) * x_inv[j]
                        off = min(int(pos), x_span[j] - 1)
                        day_out = x_start[j] + off
                        w = min(math.expm1(-x_lam[j] * (pos - off)) / math.expm1(-x_lam[j]),
                                ONE_BELOW)
                        d = 0
                        for x in range(x_dest[j], x_dest[j] + n_states):
                            d += w >= dest_flat[x]
            else:
                e = exponential(rs)
                u = uniform(rs)  # drawn by stayers too: the next lead's draws do not move
                if e >= cum:
                    continue  # stays to the end of the horizon
                j = 0
                for x in range(1, n_x):
                    j += e >= x_cum[x]
                day_out = x_start[j] + min(int((e - x_cum[j]) * x_inv[j]), x_span[j] - 1)
                d = 0
                for x in range(x_dest[j], x_dest[j] + n_states):
                    d += u >= dest_flat[x]
            # Unsigned indices from here: numba wraps negative signed indices around,
            # which costs a few instructions per index (10-15% of a b2b run, here).
            ut, ud = np.uint64(day_out), np.uint64(d)
            occ_diff[ut, us] -= 1
            if alone[us, ud]:  # won, takes an amount, or went cold with a value pending
                q_key[nq] = KEY_ALONE + (ident << 24) + i
                q_state[nq], q_dest[nq], q_day[nq] = s, d, day_out
                q_seg[nq], q_rec[nq] = g, r
                nq += 1
                if nq == QUEUE:
                    run_alone(st, nq, q_key, q_lead, q_state, q_dest, q_day, q_age, q_seg,
                              q_rec, q_amount, mks, mst, total, cumdest, band_lo,
                              kinds, winprob, deal_mean, deal_mu, deal_sigma, amount_stage,
                              qual, hazards, close_class, close_total, close_mult, cmax,
                              lam_flat, alone_plain, occ_diff, bookings, won, expired, recaptured,
                              lost_value, entered, no_events, no_amounts, no_count)
                    nq = 0
            else:  # joins the cohort of its new state and day (lost: counted there)
                expired[ut, ue] += is_expiry[us, ud]
                recaptured[ut] += is_recapture[us, ud]
                cohort[np.uint64(to_row[usrow, ud] + day_out)] += 1
    run_alone(st, nq, q_key, q_lead, q_state, q_dest, q_day, q_age, q_seg, q_rec, q_amount, mks,
              mst, total, cumdest, band_lo, kinds, winprob, deal_mean, deal_mu, deal_sigma,
              amount_stage, qual, hazards, close_class, close_total, close_mult, cmax, lam_flat,
              alone_plain, occ_diff, bookings, won, expired, recaptured, lost_value, entered,
              no_events, no_amounts, no_count)
    for g in range(n_seg):  # the lost: counted, nothing more
        for r in range(n_rec):
            for day in range(horizon):
                n = cohort[((lost_state * n_seg + g) * n_rec + r) * horizon + day]
                entered[day, lost_state] += n
                occ_diff[day, lost_state] += n
    occupancy_from(occ_diff, occ_days, occupancy)


@njit(cache=True)
def work_buffers(horizon, n_states, n_seg, n_rec):
    """A thread's scratch arrays for one path at a time, reused from path to path (allocating
    them per path made the kernel's threads queue on the allocator's memory maps):
    ``occ_diff`` (day-by-day occupancy changes), ``cohort`` (the cohort table) and the queue
    of leads going alone."""
    q = (np.empty(QUEUE, dtype=np.int64), np.zeros(QUEUE, dtype=np.int64),
         np.empty(QUEUE, dtype=np.int64), np.full(QUEUE, -1, dtype=np.int64),
         np.empty(QUEUE, dtype=np.int64), np.zeros(QUEUE, dtype=np.int64),
         np.empty(QUEUE, dtype=np.int64), np.empty(QUEUE, dtype=np.int64),
         np.full(QUEUE, np.nan))
    return (np.zeros((horizon + 1, n_states), dtype=np.int64),
            np.zeros(n_states * n_seg * n_rec * horizon, dtype=np.int32), q)


@njit(cache=True, nogil=True)
def forecast_cohorts(rng_states, set_index, ep_start, weekday0, entry, qual, lead_args, total,
                     cumdest, band_lo, kinds, winprob, deal_mean, deal_mu, deal_sigma,
                     amount_stage, arr_mean, arr_size, dow, occ_days, hazards, close_class,
                     close_total, close_mult, cmax, arr_cal, lam_flat, plain, bookings, won,
                     expired, recaptured, lost_value, entered, arrivals, occupancy):
    """Paths ``0..len(rng_states)-1`` by cohorts (:func:`simulate_path_cohorts`), one after
    the other, without holding the GIL: the engine runs slices of the paths on threads.
    ``lead_args``: the open pipeline's leads with a known amount (``state, age, segment,
    recycle, amount``, substream ``key``) and its groups (``state, age, segment, recycle,
    count``)."""
    occ_diff, cohort, queue = work_buffers(bookings.shape[1], kinds.shape[1], arr_mean.shape[1],
                                           total.shape[4])
    tables = exit_tables(bookings.shape[1] + band_lo[-1] if plain else 0, kinds,
                         arr_mean.shape[1], total.shape[4], ep_start.shape[0] - 1)
    schedule = cohort_schedule(kinds, total.shape[4])
    for p in range(rng_states.shape[0]):
        simulate_path_cohorts(
            rng_states[p].copy(), set_index[p], ep_start, weekday0, entry, qual, *lead_args,
            total, cumdest, band_lo, kinds, winprob, deal_mean, deal_mu, deal_sigma,
            amount_stage, arr_mean, arr_size, dow, occ_days, hazards, close_class, close_total,
            close_mult, cmax, arr_cal, lam_flat, plain, bookings[p], won[p], expired[p],
            recaptured[p], lost_value[p], entered[p], arrivals[p], occupancy[p], occ_diff,
            cohort, queue, tables, schedule)


@njit(cache=True, nogil=True)
def forecast_leads(rng_states, set_index, ep_start, weekday0, entry, qual, lead_args, total,
                   cumdest, band_lo, kinds, winprob, deal_mean, deal_mu, deal_sigma,
                   amount_stage, arr_mean, arr_size, dow, occ_days, hazards, close_class,
                   close_total, close_mult, cmax, arr_cal, lam_flat, plain, bookings, won,
                   expired, recaptured, lost_value, entered, arrivals, occupancy):
    """:func:`forecast_cohorts` lead by lead (:func:`simulate_path`); ``lead_args``: the open
    pipeline's ``state, age, segment, recycle, amount``."""
    no_events = np.zeros((0, 4), dtype=np.int64)
    no_amounts = np.zeros(0)
    counter = np.zeros(1, dtype=np.int64)
    occ_diff, _, queue = work_buffers(bookings.shape[1], kinds.shape[1], 0, 0)
    for p in range(rng_states.shape[0]):
        simulate_path(
            rng_states[p].copy(), set_index[p], ep_start, weekday0, entry, qual, *lead_args,
            total, cumdest, band_lo, kinds, winprob, deal_mean, deal_mu, deal_sigma,
            amount_stage, arr_mean, arr_size, dow, occ_days, hazards, close_class, close_total,
            close_mult, cmax, arr_cal, lam_flat, plain, bookings[p], won[p], expired[p],
            recaptured[p], lost_value[p], entered[p], arrivals[p], occupancy[p], no_events,
            no_amounts, counter, occ_diff, queue)
