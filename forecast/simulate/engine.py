"""The Python side of the simulator: build the kernel's arrays, seed the paths, run in chunks.

Everything the kernels need is derived here from a :class:`~forecast.model.FunnelModel`, a
:class:`~forecast.parameters.Parameters` and a :class:`Pipeline`; the kernels see only arrays.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd

from forecast.calendar import (
    CLOSES,
    arrival_multipliers,
    close_multipliers,
    close_vector_multipliers,
)
from forecast.hazards import absorption, transition_tables
from forecast.model import MAX_ARRIVALS_PER_DAY, FunnelModel
from forecast.parameters import Parameters
from forecast.simulate import kernels
from forecast.simulate.rng import path_states

MAX_TABLE_EPOCHS = 8  # a run cut at more scenario dates draws its cohorts by stretches
MIN_CHUNK = 256  # paths per kernel call at least; about 20 calls per run otherwise
EPOCH_END = 2**62  # the start of the epoch after the last: never reached


def epoch_starts(switch_days: np.ndarray) -> np.ndarray:
    """The kernels' ``ep_start``: 0, each day a new parameter set takes over, a sentinel."""
    return np.concatenate([[0], np.asarray(switch_days, dtype=np.int64), [EPOCH_END]]
                          ).astype(np.int64)


@dataclass(frozen=True)
class Pipeline:
    """Open leads at the as-of date, one entry per lead (all arrays of equal length).

    ``state``: index of the active stage or nurture; ``age``: whole days in that state as of
    the as-of date (0 if it entered that day); ``segment``, ``recycle``: indices; ``amount``:
    the known deal amount, NaN where not known yet.
    """

    state: np.ndarray
    age: np.ndarray
    segment: np.ndarray
    recycle: np.ndarray
    amount: np.ndarray

    @classmethod
    def empty(cls) -> Pipeline:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                   np.zeros(0, np.int64), np.zeros(0))

    def __len__(self) -> int:
        return int(self.state.shape[0])


@dataclass(frozen=True)
class SimulationResult:
    """Per-path outputs of a run. Day ``t`` of the horizon is the date ``as_of + 1 + t``.

    Daily arrays are ``[path, day]``; ``entered`` is ``[path, day, state]``, the leads entering
    each state each day (new arrivals in the entry stage included); ``expired`` is
    ``[path, day, active stage]``; ``set_index[path, epoch]`` is the parameter set each path
    used in each epoch, the epochs starting on day 0 and on each of ``switch_days``;
    ``occupancy`` is ``[path, occupancy day, state]``: how many leads are in each state (won and
    lost count cumulatively) at the end of each day in ``occupancy_days``.
    """

    model: FunnelModel
    as_of: dt.date
    seed: int
    set_index: np.ndarray
    switch_days: np.ndarray
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
        """``[path, day]``: transitions of any kind (entries that are not new arrivals)."""
        return self.entered.sum(axis=2, dtype=np.int64) - self.arrivals

    @property
    def dates(self) -> pd.DatetimeIndex:
        return pd.date_range(self.as_of + dt.timedelta(days=1), periods=self.horizon, freq="D")


@dataclass(frozen=True)
class KernelTables:
    """The parameter-derived arrays the kernels read (one row per parameter set)."""

    total: np.ndarray
    cumdest: np.ndarray
    band_lo: np.ndarray
    kinds: np.ndarray
    winprob: np.ndarray
    deal_mean: np.ndarray
    deal_mu: np.ndarray
    deal_sigma: np.ndarray
    arr_mean: np.ndarray
    arr_size: np.ndarray
    dow: np.ndarray
    entry: int
    amount_stage: int
    qualified: int
    hazards: np.ndarray
    close_class: np.ndarray
    close_total: np.ndarray
    close_calendar: np.ndarray
    arrivals_calendar: np.ndarray
    month_end_days: int

    @property
    def closing_calendar(self) -> bool:
        """Whether any set's won or lost hazard has a multiplier other than 1 on any kind of
        day: then the run goes lead by lead (the cohort kernel has no calendar). A multiplier
        below 1 counts too (with every multiplier at most 1, a month-end slowdown alone, the
        run went by cohorts and ignored it)."""
        return bool(np.any(close_vector_multipliers(self.close_calendar) != 1.0))

    def calendar(self, start: dt.date, days: int):
        """``(total, close_mult, cmax, arr_cal)`` for the days from ``start``: the dominating
        total hazard the kernels sample with, the multiplier of each closing move
        (``close_class``) for each set and day, its largest value per set on any kind of day
        (at least 1), and the arrivals multiplier of each set and day.

        ``cmax`` is the largest on any of the 42 kinds of day, not on the horizon's days: the
        thinning's candidates (and the choice of kernel) then do not depend on the horizon,
        and a longer run repeats a shorter one's days (a month-end effect that only the
        longer horizon reached used to change both)."""
        close_mult = np.ascontiguousarray(close_multipliers(
            self.close_calendar, start, days, self.month_end_days))  # [set, day, close]
        cmax = np.ascontiguousarray(np.maximum(
            close_vector_multipliers(self.close_calendar).max(axis=2), 1.0))  # [set, close]
        extra = np.einsum("kc,ksbgrc->ksbgr", cmax - 1.0, self.close_total)
        total = np.where(np.all(cmax == 1.0, axis=1)[:, None, None, None, None], self.total,
                         self.total + extra)  # the plain total wherever nothing changes
        arr_cal = np.ascontiguousarray(arrival_multipliers(
            self.arrivals_calendar, start, days, self.month_end_days))
        return np.ascontiguousarray(total), close_mult, np.ascontiguousarray(cmax), arr_cal


def plain_tables(total: np.ndarray, closing: bool, plain: bool
                 ) -> tuple[np.ndarray, bool]:
    """The kernels' fast path: ``total`` as ``[set, state, segment, recycle, band]``,
    flattened, and whether the run can use it (``plain``, and no closing calendar on any
    set: ``KernelTables.closing_calendar``)."""
    return (np.ascontiguousarray(np.moveaxis(total, 2, 4)).ravel(),
            bool(plain and not closing))


def open_groups(pipeline: Pipeline) -> tuple[np.ndarray, ...]:
    """The open pipeline as the cohort kernel takes it: the leads with a known amount one by
    one (``state, age, segment, recycle, amount`` and their index as substream key), then
    the others as groups of equal ``state, age, segment, recycle`` with their ``count``."""
    alone = ~np.isnan(pipeline.amount)
    keys = np.flatnonzero(alone).astype(np.int64)
    rows = np.stack([pipeline.state, pipeline.age, pipeline.segment, pipeline.recycle],
                    axis=1).astype(np.int64)[~alone].reshape(-1, 4)
    groups, counts = np.unique(rows, axis=0, return_counts=True)
    groups = groups.reshape(-1, 4)

    def col(a):
        return np.ascontiguousarray(a, dtype=np.int64)

    return (col(pipeline.state[keys]), col(pipeline.age[keys]), col(pipeline.segment[keys]),
            col(pipeline.recycle[keys]), np.ascontiguousarray(pipeline.amount[keys], dtype=float),
            keys, col(groups[:, 0]), col(groups[:, 1]), col(groups[:, 2]), col(groups[:, 3]),
            col(counts))


def kernel_tables(model: FunnelModel, params: Parameters) -> KernelTables:
    """Derive the simulator's tables from the hazard table (``forecast.hazards``)."""
    kinds = model.move_kinds()
    stray = np.any(params.hazards > 0, axis=(0, 2, 3, 4)) & (kinds == 0)
    if stray.any():
        s, d = np.argwhere(stray)[0]
        raise ValueError(f"the parameters give a hazard to {model.states[s]} -> "
                         f"{model.states[d]}, which is not a move of model {model.name}")
    total, cumdest = transition_tables(params.hazards)
    # [set, state, g, r], every set in one call: a loop cost 1.6 ms a set (b2b), seconds a posterior
    winprob = np.transpose(absorption(model, params.hazards).win, (0, 2, 1, 3))
    # "Bookings lost to expiry" counts leads that went cold from the qualified stage (the SQL)
    # or later, valued at their eventual win probability there: earlier stages weigh nothing.
    winprob[:, :model.state_index(model.qualified_stage)] = 0.0
    amount_stage = model.state_index(model.amount_stage) if model.amount_stage else -1
    # Each state's closing move with a calendar (its index in CLOSES), -1 for the others.
    closes = [model.state_index(c) for c in CLOSES]
    close_class = np.full(len(model.states), -1, dtype=np.int64)
    close_class[closes] = np.arange(len(CLOSES))
    hazards = np.ascontiguousarray(params.hazards, dtype=np.float64)
    return KernelTables(
        total=np.ascontiguousarray(total), cumdest=np.ascontiguousarray(cumdest),
        band_lo=np.asarray(model.age_bands, dtype=np.int64), kinds=kinds,
        winprob=np.ascontiguousarray(winprob), deal_mean=params.deal_mean,
        deal_mu=params.deal_mu, deal_sigma=params.deal_sigma,
        arr_mean=params.arrivals_mean, arr_size=params.arrivals_dispersion,
        dow=params.day_of_week, entry=model.state_index(model.entry), amount_stage=amount_stage,
        qualified=model.state_index(model.qualified_stage),
        hazards=hazards, close_class=close_class,
        close_total=np.ascontiguousarray(hazards[..., closes]),
        close_calendar=params.close_calendar, arrivals_calendar=params.arrivals_calendar,
        month_end_days=model.calendar.month_end_days,
    )


def simulate(model: FunnelModel, params: Parameters, pipeline: Pipeline, as_of: dt.date,
             horizon: int, n_paths: int, seed: int, *, set_index: np.ndarray | None = None,
             switch_days=(), occupancy_days: np.ndarray | None = None,
             chunk_size: int | None = None, parallel: bool = True,
             progress: Callable[[int, int], None] | None = None,
             epochs: bool = False) -> SimulationResult:
    """Run ``n_paths`` Monte Carlo paths of the funnel over ``horizon`` days after ``as_of``.

    Path ``p`` uses parameter set ``set_index[p]`` (default: ``p % n_sets``) and its own
    random stream from ``(seed, p)``, so the result does not depend on ``chunk_size``, on
    ``parallel`` or on the number of threads. ``occupancy_days`` (sorted day indices) default
    to the last day of the horizon.

    Parameters may change on dates (a scenario's effective dates): ``switch_days`` (increasing
    day indices inside the horizon) start new epochs, and ``set_index[p, e]`` is then the set
    path ``p`` uses in epoch ``e`` (days from ``0`` or ``switch_days[e - 1]`` on). Hazards
    switch for the leads already in a stage too, from that day on.

    The cohorts draw their exits from exit tables, one per epoch (epochs in a row with the
    same set count as one): a lead still there when the set changes goes on from the same
    draw, so the days before a date are those of the run without it, path by path.
    ``epochs=True`` (a drift fit's walk: a set per path and period) and runs with more than
    :data:`MAX_TABLE_EPOCHS` epochs draw by stretches of constant hazard instead: the same
    law, other draws; with ``epochs=True`` even when the horizon holds one epoch, so that a
    walk's run repeats the days of a longer one exactly whatever its horizon reaches.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 day, got {horizon}")
    if n_paths < 1:
        raise ValueError(f"paths must be at least 1, got {n_paths}")
    switch_days = np.asarray(switch_days, dtype=np.int64).reshape(-1)
    if np.any(np.diff(switch_days) <= 0) or np.any(switch_days < 1) \
            or np.any(switch_days >= horizon):
        raise ValueError("switch_days must be increasing day indices from 1 to horizon - 1")
    n_epochs = len(switch_days) + 1
    if set_index is None:
        set_index = np.arange(n_paths, dtype=np.int64) % params.n_sets
    set_index = np.asarray(set_index, dtype=np.int64)
    if set_index.ndim == 1:
        set_index = np.repeat(set_index[:, None], n_epochs, axis=1)
    if set_index.shape != (n_paths, n_epochs) or set_index.min() < 0 \
            or set_index.max() >= params.n_sets:
        raise ValueError("set_index needs one parameter-set index per path and epoch")
    set_index = np.ascontiguousarray(set_index)
    ep_start = epoch_starts(switch_days)
    if occupancy_days is None:
        occupancy_days = np.array([horizon - 1], dtype=np.int64)
    occupancy_days = np.asarray(occupancy_days, dtype=np.int64)
    if np.any(np.diff(occupancy_days) <= 0) or occupancy_days.min() < 0 \
            or occupancy_days.max() >= horizon:
        raise ValueError("occupancy_days must be increasing day indices inside the horizon")

    if not np.all(params.arrivals_mean <= MAX_ARRIVALS_PER_DAY):  # (nan and inf too)
        raise ValueError(f"arrivals of more than {MAX_ARRIVALS_PER_DAY:,.0f} leads a day in a "
                         "segment (or not a number): more than the simulator can count")
    if chunk_size is None:  # few kernel calls (each has a fixed cost), enough for a progress bar
        chunk_size = max(MIN_CHUNK, -(-n_paths // 20))
    tab = kernel_tables(model, params)
    n_active, n_states = model.n_active, len(model.states)
    bookings = np.zeros((n_paths, horizon))
    won = np.zeros((n_paths, horizon), dtype=np.int64)
    expired = np.zeros((n_paths, horizon, n_active), dtype=np.int64)
    recaptured = np.zeros((n_paths, horizon), dtype=np.int64)
    lost = np.zeros((n_paths, horizon))
    entered = np.zeros((n_paths, horizon, n_states), dtype=np.int32)
    arrivals = np.zeros((n_paths, horizon), dtype=np.int64)
    occupancy = np.zeros((n_paths, len(occupancy_days), n_states), dtype=np.int64)
    weekday0 = (as_of + dt.timedelta(days=1)).weekday()
    total, close_mult, cmax, arr_cal = tab.calendar(as_of + dt.timedelta(days=1), horizon)
    closing = tab.closing_calendar
    # Exit tables for the cohorts (a slot per epoch) unless the run's sets change by period
    # (a drift walk: tables per path and period would cost more than they save) or it has
    # more epochs than slots are kept for. (With a closing calendar, lead by lead: not plain.)
    lam_flat, plain = plain_tables(total, closing,
                                   not epochs and n_epochs <= MAX_TABLE_EPOCHS)
    # Without calendar effects on closing, the cohort kernel; with them, lead by lead.
    if not closing:
        run = kernels.forecast_cohorts
        lead_args = open_groups(pipeline)
    else:
        run = kernels.forecast_leads
        pl = pipeline
        lead_args = (pl.state.astype(np.int64), pl.age.astype(np.int64),
                     pl.segment.astype(np.int64), pl.recycle.astype(np.int64),
                     pl.amount.astype(np.float64))

    def paths(start: int, stop: int) -> None:
        sl = slice(start, stop)
        run(path_states(seed, start, stop), set_index[sl], ep_start, weekday0, tab.entry,
            tab.qualified, lead_args, total, tab.cumdest, tab.band_lo, tab.kinds, tab.winprob,
            tab.deal_mean, tab.deal_mu, tab.deal_sigma, tab.amount_stage, tab.arr_mean,
            tab.arr_size, tab.dow, occupancy_days, tab.hazards, tab.close_class, tab.close_total,
            close_mult, cmax, arr_cal, lam_flat, plain, bookings[sl], won[sl], expired[sl],
            recaptured[sl], lost[sl], entered[sl], arrivals[sl], occupancy[sl])

    # The kernels run without the GIL: each chunk of paths is split over numba's thread count
    # (numba's own parallel loops compiled for minutes on this code, threads cost nothing).
    threads = max(1, min(numba.get_num_threads(), n_paths)) if parallel else 1
    with ThreadPoolExecutor(threads) as pool:
        for start in range(0, n_paths, chunk_size):
            stop = min(start + chunk_size, n_paths)
            cuts = np.linspace(start, stop, threads + 1).round().astype(int)
            for f in [pool.submit(paths, int(a), int(b)) for a, b in itertools.pairwise(cuts)
                      if b > a]:
                f.result()
            if progress is not None:
                progress(stop, n_paths)
    return SimulationResult(
        model=model, as_of=as_of, seed=seed, set_index=set_index, switch_days=switch_days,
        bookings=bookings, won=won,
        expired=expired, recaptured=recaptured, lost_to_expiry=lost, entered=entered,
        arrivals=arrivals,
        occupancy=occupancy, occupancy_days=occupancy_days, n_open=len(pipeline),
    )


def simulate_history(model: FunnelModel, params: Parameters, start: dt.date, days: int,
                     seed: int, *, set_index: int | tuple[int, ...] = 0,
                     switch_days: tuple[int, ...] = ()) -> pd.DataFrame:
    """Simulate an event log from an empty funnel: ``days`` days of arrivals from ``start``.

    ``set_index`` may give one parameter set per epoch, the epochs starting on day 0 and on
    each of ``switch_days`` (a history whose rates change on known dates).

    Returns the event-log contract's columns (``lead_id, stage, entered_at, amount,
    segment``), one row per stage entered, in time order per lead. Amounts appear on rows of
    the model's ``amount_stage`` and on ``won`` rows. Same seed, same log.
    """
    tab = kernel_tables(model, params)
    ks = np.atleast_1d(np.asarray(set_index, dtype=np.int64))
    if len(ks) != len(switch_days) + 1:
        raise ValueError("set_index needs one parameter set per epoch")
    expected = float(params.arrivals_mean[ks].sum(1).max()) * days
    capacity = int(expected * 4 + 1000)
    h, n_active, n_states = days, model.n_active, len(model.states)
    total, close_mult, cmax, arr_cal = tab.calendar(start, days)
    e = Pipeline.empty()
    occ_diff, _, queue = kernels.work_buffers(h, n_states, 0, 0)
    while True:  # retried with the exact size if the first guess of the event count was short
        events = np.zeros((capacity, 4), dtype=np.int64)
        amounts = np.zeros(capacity)
        counter = np.zeros(1, dtype=np.int64)
        st = path_states(seed, 0, 1)[0]  # a fresh stream on every try: the kernel consumes it
        kernels.simulate_path(
            st, ks, epoch_starts(np.asarray(switch_days, dtype=np.int64)),
            start.weekday(), tab.entry, tab.qualified, e.state, e.age, e.segment, e.recycle,
            e.amount, total, tab.cumdest, tab.band_lo, tab.kinds, tab.winprob, tab.deal_mean,
            tab.deal_mu, tab.deal_sigma, tab.amount_stage, tab.arr_mean, tab.arr_size, tab.dow,
            np.array([h - 1], dtype=np.int64), tab.hazards, tab.close_class, tab.close_total,
            close_mult, cmax, arr_cal, *plain_tables(total, tab.closing_calendar, len(ks) == 1),
            np.zeros(h), np.zeros(h, np.int64),
            np.zeros((h, n_active), np.int64), np.zeros(h, np.int64), np.zeros(h),
            np.zeros((h, n_states), np.int32), np.zeros(h, np.int64),
            np.zeros((1, n_states), np.int64),
            events, amounts, counter, occ_diff, queue)
        if counter[0] <= capacity:
            break
        capacity = int(counter[0]) + 1000
    n = int(counter[0])
    ev = events[:n]
    frame = pd.DataFrame({
        "lead_id": ev[:, 0],
        "stage": np.asarray(model.states, dtype=object)[ev[:, 1]],
        "entered_at": pd.Timestamp(start) + pd.to_timedelta(ev[:, 2], unit="D"),
        "amount": amounts[:n],
        "segment": np.asarray(model.segment_names, dtype=object)[ev[:, 3]],
    })
    frame = frame.sort_values(["lead_id", "entered_at"], kind="stable").reset_index(drop=True)
    width = len(str(max(int(frame["lead_id"].max()) if n else 0, 1)))
    frame["lead_id"] = "L" + frame["lead_id"].astype(str).str.zfill(max(width, 6))
    frame["entered_at"] = frame["entered_at"].dt.date
    return frame
