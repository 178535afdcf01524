"""Sufficient statistics of an event log for the fit: events and exposure per hazard cell.

The model is the piecewise-exponential competing-risks model of ``forecast.hazards`` and the
simulator: its likelihood depends on the log only through, per cell (source state, age band,
segment, recycle level), the lead-days at risk and the number of moves to each destination,
plus the daily arrivals per segment and the won deals' amounts. :func:`sufficient_statistics`
computes them in one vectorised pass over the rows (no Python loop over rows or leads);
:func:`crude_hazards` turns them into per-cell maximum-likelihood hazards.

Conventions (those of the simulator, ``forecast.simulate.kernels``):

- A *spell* is a lead's stay in one state, from the row that entered it to the lead's next row
  with a different stage. A row repeating the lead's current stage is a no-op (as in
  :func:`forecast.eventlog.open_pipeline`): the spell keeps its original entry day, segment and
  recycle level.
- A spell entered on day ``e`` is at risk on days ``e+1, e+2, ...``, with age ``t - e - 1`` on
  day ``t``. If the next row is on day ``x > e``, the spell spent ``D = x - e`` days at risk
  (ages ``0 .. D-1``): one exposure day in the age band of each of those ages, and one event
  ``s -> d`` in the band of age ``D - 1``.
- A move on the day the state was entered (``x == e``, common in CRM data) counts as ``D = 1``:
  one day at risk at age 0, with the event at age 0. Its one day at risk is taken to be the
  move day ``x`` itself (so the event always falls on its calendar day, which matters for
  ``since``).
- A lead whose last row on or before ``as_of`` is an active stage or nurture is right-censored:
  exposure for days ``e+1 .. as_of`` (none if it entered on ``as_of``), no event. Won and lost
  are absorbing. Rows after ``as_of`` are ignored.
- ``since`` (a trailing window): only days at risk ``t > since`` count, with the ages they have
  (a spell that began before the window is left-truncated); arrivals and won deals count only
  on days after ``since`` too.
- A spell's segment is the segment of the row that started it; its recycle level is the
  number of expiry moves of the lead so far, that row's included (into nurture from an active
  stage, or back to an earlier active stage), capped at ``model.recycle_levels - 1``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from forecast.calendar import day_types
from forecast.eventlog import (
    EventLog,
    InputError,
    _arrow,
    _as_date,
    _as_string,
    _frame_codes,
    _last_where,
    _lead_groups,
    _lead_starts,
    _recycle_counts,
)
from forecast.model import WON, FunnelModel

ON_UNDECLARED = ("raise", "censor")


@dataclass(frozen=True)
class Statistics:
    """Sufficient statistics of an event log for the piecewise-exponential model.

    Attributes
    ----------
    events : numpy.ndarray of float64, shape (n_transient, n_bands, n_segments, n_recycle, n_states)
        Observed moves ``s -> d`` that happened while the lead was in age band ``b``, segment
        ``g`` and recycle level ``r``.
    exposure : numpy.ndarray of float64, shape (n_transient, n_bands, n_segments, n_recycle)
        Lead-days at risk per cell (the day of a move included).
    arrivals : numpy.ndarray of int64, shape (n_days, n_segments)
        New leads per calendar day and segment, days ``first_day .. as_of`` inclusive.
    first_day : datetime.date
        The date of the first row of ``arrivals``.
    weekday : numpy.ndarray of int64, shape (n_days,)
        Day of the week of each ``arrivals`` row, Monday = 0.
    deal_amounts : numpy.ndarray of float64
        One per won deal with a known amount > 0, in lead order.
    deal_segment : numpy.ndarray of int64
        The segment index of each deal amount.
    unpriced_wins : int
        Won deals without a known amount > 0 (not used for the deal-size fit).
    undeclared : int
        Observed moves the model does not declare, counted as censored spells
        (``on_undeclared="censor"``).
    n_leads : int
        Leads with at least one row on or before ``as_of``.
    n_rows : int
        Rows on or before ``as_of`` (repeated-stage rows included).
    as_of : datetime.date
        The last day counted.
    since : datetime.date or None
        Only days after it count (None: the whole log).
    daily_events, daily_exposure : numpy.ndarray of float64
        ``events`` and ``exposure`` split by the calendar day the lead was at risk on (an extra
        axis before the destination, days from ``calendar_start`` to ``as_of``); they sum to
        ``events`` and ``exposure``. The fit groups them by kind of day or by month
        (:meth:`grouped`).
    quarter_month, month_end : numpy.ndarray
        Of each ``arrivals`` row: the month's place in its quarter (0, 1, 2), and whether it
        is one of the month's last ``model.calendar.month_end_days`` days.
    """

    events: np.ndarray
    exposure: np.ndarray
    arrivals: np.ndarray
    first_day: dt.date
    weekday: np.ndarray
    deal_amounts: np.ndarray
    deal_segment: np.ndarray
    unpriced_wins: int
    undeclared: int
    n_leads: int
    n_rows: int
    as_of: dt.date
    since: dt.date | None
    daily_events: np.ndarray | None = None
    daily_exposure: np.ndarray | None = None
    calendar_start: dt.date | None = None
    quarter_month: np.ndarray | None = None
    month_end: np.ndarray | None = None

    def grouped(self, group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
        """``(events, exposure)`` with the days summed by ``group[day]`` (0 .. n_groups-1)
        into a last axis (before the destination for events)."""
        ev = np.moveaxis(self.daily_events, -2, 0)  # [day, ..., dest]
        ex = np.moveaxis(self.daily_exposure, -1, 0)  # [day, ...]
        out_ev = np.zeros((n_groups, *ev.shape[1:]))
        out_ex = np.zeros((n_groups, *ex.shape[1:]))
        np.add.at(out_ev, group, ev)
        np.add.at(out_ex, group, ex)
        return np.moveaxis(out_ev, 0, -2), np.moveaxis(out_ex, 0, -1)


def sufficient_statistics(log: EventLog, model: FunnelModel, as_of: dt.date, *,
                          since: dt.date | None = None,
                          on_undeclared: str = "raise") -> Statistics:
    """Events and exposure per hazard cell, daily arrivals and deal amounts of a log.

    See the module docstring for the conventions (days at risk, ages, censoring, ``since``).

    Parameters
    ----------
    log : EventLog
        A validated log, read with ``model``; rows after ``as_of`` are ignored.
    model : FunnelModel
        Gives the states, age bands, segments, recycle levels and declared moves.
    as_of : datetime.date
        Leads still open on this day are censored at its end.
    since : datetime.date, optional
        A trailing window: only days after it count (exposure, events, arrivals, deals).
        Must be before ``as_of``.
    on_undeclared : {"raise", "censor"}
        What to do with an observed move ``s -> d`` the model does not declare (no hazard for
        it): raise :class:`~forecast.eventlog.InputError`, or count the spell as censored on
        the move day (its exposure counts, no event; the lead goes on in its new state) and
        count it in ``undeclared``. Only moves on days that count (after ``since``) are
        checked.

    Returns
    -------
    Statistics

    Raises
    ------
    InputError
        When the log has no row on or before ``as_of``, or (``on_undeclared="raise"``) for the
        first undeclared move in the file, naming the row that made it (file, row and stage
        column, when the log knows them: :meth:`EventLog.where`), the lead, the move and its
        date.
    ValueError
        For a bad ``on_undeclared``, or ``since`` not before ``as_of``.
    """
    if on_undeclared not in ON_UNDECLARED:
        raise ValueError(f"on_undeclared must be one of {', '.join(ON_UNDECLARED)}, "
                         f"got {on_undeclared!r}")
    as_of = _as_date(as_of)
    since = None if since is None else _as_date(since)
    if since is not None and since >= as_of:
        raise ValueError(f"since ({since}) must be before as_of ({as_of})")

    epoch = np.datetime64("1970-01-01", "D")
    cut = (np.datetime64(as_of, "D") - epoch).astype(np.int64)
    frame = log.frame
    days_all = (frame["entered_at"].to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
                - epoch).astype(np.int64)
    keep = days_all <= cut
    if not keep.any():
        raise InputError(f"{log.path}: the event log has no rows on or before {as_of}")
    kept = None  # the rows of log.frame left, when some are dropped
    if not keep.all():
        kept = np.flatnonzero(keep)
        frame = frame[keep]
        days_all = days_all[keep]
    ids = pc.fill_null(_as_string(_arrow(frame["lead_id"])), "")
    lead, order = _lead_groups(ids)
    state = _frame_codes(frame["stage"], model.states, "stage", log.path)[order]
    day = days_all[order]
    amount = frame["amount"].to_numpy(dtype=np.float64, na_value=np.nan)[order]
    segment = _frame_codes(frame["segment"], model.segment_names, "segment", log.path)[order]
    segment = np.where(segment >= 0, segment,
                       model.segment_names.index(model.default_segment))
    n_rows = lead.size
    first, start, _ = _lead_starts(lead)
    # Days t > lo count: with no window, lo is before any plausible date (no overflow below).
    lo = -(2**40) if since is None else (np.datetime64(since, "D") - epoch).astype(np.int64)

    # ---- spells: rows that change the lead's state ------------------------------------------
    recycle = _recycle_counts(state, first, model)
    changes = first | np.r_[True, state[1:] != state[:-1]]
    rows = np.flatnonzero(changes)
    s, e, g, r = state[rows], day[rows], segment[rows], recycle[rows]
    lead_of = lead[rows]
    has_next = np.r_[lead_of[1:] == lead_of[:-1], False]
    d = np.where(has_next, np.r_[s[1:], 0], -1)            # destination, -1 if none
    x = np.where(has_next, np.r_[e[1:], 0], cut)            # move day (or as_of)
    transient = s < model.n_transient
    moved = transient & has_next
    n_at_risk = np.where(moved, np.maximum(x - e, 1), np.maximum(x - e, 0))
    n_at_risk = np.where(transient, n_at_risk, 0)
    # Days at risk are x - D + 1 .. x (ages 0 .. D-1); only days after lo count.
    age_from = np.maximum(lo + 1 - (x - n_at_risk + 1), 0)
    event = moved & (x > lo)
    kinds = model.move_kinds()
    undeclared = event & (kinds[np.minimum(s, model.n_transient - 1), np.maximum(d, 0)] == 0)
    if undeclared.any():
        if on_undeclared == "raise":
            hits = np.flatnonzero(undeclared)
            # The row that made each move (the next spell's first row), as a row of log.frame.
            made = order[rows[hits + 1]]
            if kept is not None:
                made = kept[made]
            # The first in the file when the log knows where its rows are, else in lead order.
            k = int(np.argmin(log.pos[made])) if log.located else 0
            i = int(hits[k])
            name = ids.take([int(order[rows[i]])])[0].as_py()
            when = (epoch + x[i]).astype(dt.date)
            src, dst = model.states[s[i]], model.states[d[i]]
            raise InputError(
                f"{log.where(made[k], 'stage')}: lead {name} moves {src} -> {dst} on {when}, "
                f"a move the model {model.name} does not declare; declare it in "
                f"[moves.{src}] or pass --undeclared censor")
        event &= ~undeclared

    # ---- exposure and events per cell -------------------------------------------------------
    bands = np.asarray(model.age_bands, dtype=np.int64)
    n_t, n_b, n_g, n_r = model.n_transient, bands.size, len(model.segment_names), \
        model.recycle_levels
    n_s = len(model.states)
    shape = (n_t, n_b, n_g, n_r)
    sel = transient & (n_at_risk > age_from)
    cs, cg, cr = s[sel], g[sel], r[sel]
    dur, a0 = n_at_risk[sel], age_from[sel]
    size = n_t * n_b * n_g * n_r
    exposure = np.zeros(size)
    # Leads at risk per cell and calendar day (a difference array over each band's stretch of
    # days, summed up), so the fit can group days as it needs (kinds of day, months).
    dmin = int(min(day.min(), cut))
    n_cal = int(cut) - dmin + 1
    diff = np.zeros(size * (n_cal + 1))
    first_at_risk = (x - n_at_risk + 1)[sel] - dmin  # calendar index of age 0
    for b in range(n_b):
        hi = dur if b == n_b - 1 else np.minimum(dur, bands[b + 1])
        start_age = np.maximum(a0, bands[b])
        overlap = np.maximum(hi - start_age, 0)
        cell = np.ravel_multi_index((cs, np.full(cs.size, b), cg, cr), shape)
        exposure += np.bincount(cell, weights=overlap, minlength=size)
        some = overlap > 0
        u = first_at_risk[some] + start_age[some]
        base = cell[some] * (n_cal + 1)
        diff += np.bincount(base + u, minlength=diff.size)
        diff -= np.bincount(base + u + overlap[some], minlength=diff.size)
    daily_exposure = np.cumsum(diff.reshape(size, n_cal + 1), axis=1)[:, :n_cal]
    ev = np.flatnonzero(event)
    band = np.searchsorted(bands, n_at_risk[ev] - 1, side="right") - 1
    cell = np.ravel_multi_index((s[ev], band, g[ev], r[ev], d[ev]), (*shape, n_s))
    events = np.bincount(cell, minlength=size * n_s).astype(np.float64).reshape(*shape, n_s)
    cell = np.ravel_multi_index((s[ev], band, g[ev], r[ev], x[ev] - dmin, d[ev]),
                                (*shape, n_cal, n_s))
    daily_events = np.bincount(cell, minlength=size * n_cal * n_s).astype(np.float64)

    # ---- arrivals ---------------------------------------------------------------------------
    first_rows = np.flatnonzero(first)
    day0 = int(day.min()) if since is None else int(lo) + 1
    n_days = int(cut) - day0 + 1
    arrived = first_rows[day[first_rows] >= day0]
    arrivals = np.bincount((day[arrived] - day0) * n_g + segment[arrived],
                           minlength=n_days * n_g).reshape(n_days, n_g).astype(np.int64)
    first_day = (epoch + day0).astype(dt.date)
    weekday = (first_day.weekday() + np.arange(n_days, dtype=np.int64)) % 7
    _, quarter_month, month_end = day_types(first_day, n_days, model.calendar.month_end_days)

    # ---- won deals --------------------------------------------------------------------------
    wins = np.flatnonzero((state == model.state_index(WON)) & (day > lo))
    known = _last_where(~np.isnan(amount), start)[wins]
    value = np.where(known >= 0, amount[np.maximum(known, 0)], np.nan)
    priced = value > 0  # False for NaN
    return Statistics(
        events=events, exposure=exposure.reshape(shape), arrivals=arrivals, first_day=first_day,
        weekday=weekday, deal_amounts=value[priced].astype(np.float64),
        deal_segment=segment[wins][priced].astype(np.int64),
        unpriced_wins=int((~priced).sum()), undeclared=int(undeclared.sum()),
        n_leads=int(first.sum()), n_rows=int(n_rows), as_of=as_of, since=since,
        daily_events=daily_events.reshape(*shape, n_cal, n_s),
        daily_exposure=daily_exposure.reshape(*shape, n_cal),
        calendar_start=(epoch + dmin).astype(dt.date),
        quarter_month=quarter_month, month_end=month_end)


def crude_hazards(stats: Statistics) -> np.ndarray:
    """Per-cell maximum-likelihood hazards of the daily competing-risks process.

    On each day at risk a lead leaves with probability ``1 - exp(-Λ)``, to ``d`` with
    probability ``λ_d / Λ``. With ``Y`` the cell's events (all destinations) and ``E`` its
    exposure (exit days included), the maximum-likelihood estimates are
    ``Λ̂ = -log(1 - Y/E)`` and ``λ̂_d = Λ̂ · y_d / Y``. (A plain ``y_d / E`` is biased down by
    about ``Λ/2`` in relative terms.)

    Parameters
    ----------
    stats : Statistics

    Returns
    -------
    numpy.ndarray of float64, shape (n_transient, n_bands, n_segments, n_recycle, n_states)
        ``λ̂``: 0 where the cell has exposure but no events, NaN where it has no exposure,
        ``inf`` for the destinations of a cell where every day at risk ended in a move
        (``Y == E``, e.g. only same-day moves).
    """
    y = stats.events
    total = y.sum(axis=-1)
    e = stats.exposure
    with np.errstate(invalid="ignore", divide="ignore"):
        lam = -np.log1p(-total / e)
        share = np.where(total[..., None] > 0, y / total[..., None], 0.0)
        out = np.where(share > 0, lam[..., None] * share, 0.0)
    return np.where(e[..., None] > 0, out, np.nan)
