"""Realized bookings from a history, and how a period's forecast moved across recorded runs.

Actuals
-------
:func:`realized` reads what actually closed from an event log (or a CRM export read into one):
a *won deal* is a lead's entry into ``won`` (a row whose stage is ``won`` and whose previous
row for the lead is not: a repeated ``won`` row is a no-op, as everywhere else in the engine);
its *booking* is the amount on that row, or else the lead's last known amount before it (as
:func:`forecast.statistics.sufficient_statistics` prices deals); a won deal with no known
amount counts as a won deal with a booking of 0 (and is counted in ``unpriced``).

:func:`actuals_frame` turns the daily series into the rows of the ledger's ``actuals`` table:
one per day of the history (``grain = 'day'``, zeros included, so that the ledger knows which
days are covered) and one per calendar month, quarter and year the history touches, with
``complete`` true when the whole calendar period lies inside the history's first and last
dates.

Trend
-----
:func:`trend_frame` reads, for one period label ('2027-01', '2027Q1', '2027'), the within-period
band of every recorded run whose horizon covers the whole period. A run whose horizon covers
only part of it (it starts after the period's first day or ends before its last) forecast a
different quantity and is skipped. :func:`trend_chart` draws the result.

Fan chart
---------
:func:`fan_chart_png` draws a run's stored bands of one metric (``forecast bands --chart``):
cumulative and per period, with the target and the actuals.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.eventlog import (
    EventLog,
    _arrow,
    _as_string,
    _frame_codes,
    _last_where,
    _lead_groups,
    _lead_starts,
)
from forecast.model import WON, FunnelModel

_PANDAS_FREQ = {"month": "M", "quarter": "Q", "year": "Y"}


class PeriodError(ValueError):
    """A period label that is not a month, quarter or year."""


@dataclass(frozen=True)
class Realized:
    """What closed, per day of a history.

    Attributes
    ----------
    days : pandas.DatetimeIndex
        Every day from the history's first to its last date.
    bookings : numpy.ndarray of float64
        Sum of the won deals' amounts per day (unknown amounts count 0).
    won_deals : numpy.ndarray of int64
        Won deals per day.
    unpriced : int
        Won deals without a known amount.
    """

    days: pd.DatetimeIndex
    bookings: np.ndarray
    won_deals: np.ndarray
    unpriced: int

    @property
    def first(self) -> dt.date:
        """The history's first date."""
        return self.days[0].date()

    @property
    def last(self) -> dt.date:
        """The history's last date."""
        return self.days[-1].date()


def realized(log: EventLog, model: FunnelModel, through: dt.date | None = None) -> Realized:
    """Won deals and bookings per day of an event log.

    Parameters
    ----------
    log : EventLog
        A validated log, read with ``model``.
    model : FunnelModel
        Names the states.
    through : datetime.date, optional
        The export's date, when known (``actuals --as-of``): the days after the log's last
        date up to it are known too, without a win. Default: the log's last date.

    Returns
    -------
    Realized
        Days from the log's first date to its last (or ``through``, if later); days without
        wins hold 0.

    Raises
    ------
    forecast.eventlog.InputError
        The log has no rows.
    """
    from forecast.eventlog import InputError

    frame = log.frame
    if frame.empty:
        raise InputError(f"{log.path}: the event log has no rows")
    epoch = np.datetime64("1970-01-01", "D")
    ids = _as_string(_arrow(frame["lead_id"]))
    lead, order = _lead_groups(ids)
    state = _frame_codes(frame["stage"], model.states, "stage", log.path)[order]
    day = (frame["entered_at"].to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
           - epoch).astype(np.int64)[order]
    amount = frame["amount"].to_numpy(dtype=np.float64, na_value=np.nan)[order]
    first, start, _ = _lead_starts(lead)
    won = state == model.state_index(WON)
    entered = won & (first | np.r_[True, state[1:] != state[:-1]])
    wins = np.flatnonzero(entered)
    known = _last_where(~np.isnan(amount), start)[wins]
    value = np.where(known >= 0, amount[np.maximum(known, 0)], np.nan)
    d0, d1 = int(day.min()), int(day.max())
    if through is not None:
        d1 = max(d1, int((np.datetime64(through, "D") - epoch).astype(np.int64)))
    n = d1 - d0 + 1
    offset = day[wins] - d0
    bookings = np.bincount(offset, weights=np.nan_to_num(value, nan=0.0), minlength=n)
    won_deals = np.bincount(offset, minlength=n).astype(np.int64)
    days = pd.date_range((epoch + d0).astype(dt.date), periods=n, freq="D")
    return Realized(days=days, bookings=bookings.astype(np.float64), won_deals=won_deals,
                    unpriced=int(np.isnan(value).sum()))


def period_label(period: pd.Period, grain: str) -> str:
    """The ledger's label of a pandas period: '2027-01', '2027Q1', '2027'."""
    if grain == "quarter":
        return f"{period.year}Q{period.quarter}"
    return str(period)


def actuals_frame(real: Realized) -> pd.DataFrame:
    """The ``actuals`` rows of a realized series (without the provenance columns).

    Returns
    -------
    pandas.DataFrame
        ``grain, period, period_start, period_end, metric, value, complete``: one row per day
        (``grain = 'day'``, label 'YYYY-MM-DD'), and per calendar month, quarter and year that
        the history touches, each for ``bookings`` and ``won_deals``. ``period_start`` and
        ``period_end`` are the calendar period's first and last days (not clipped to the
        history); ``complete`` says the history covers all of them.
    """
    first, last = real.first, real.last
    series = {"bookings": pd.Series(real.bookings, index=real.days),
              "won_deals": pd.Series(real.won_deals.astype(np.float64), index=real.days)}
    frames = []
    for metric, s in series.items():
        dates = [d.date() for d in real.days]
        frames.append(pd.DataFrame({
            "grain": "day", "period": [d.isoformat() for d in dates], "period_start": dates,
            "period_end": dates, "metric": metric, "value": s.to_numpy(), "complete": True}))
        for grain, freq in _PANDAS_FREQ.items():
            per = real.days.to_period(freq)
            sums = s.groupby(per).sum()
            starts = [p.start_time.date() for p in sums.index]
            ends = [p.end_time.date() for p in sums.index]
            frames.append(pd.DataFrame({
                "grain": grain, "period": [period_label(p, grain) for p in sums.index],
                "period_start": starts, "period_end": ends, "metric": metric,
                "value": sums.to_numpy(dtype=float),
                "complete": [a >= first and b <= last for a, b in zip(starts, ends,
                                                                       strict=True)]}))
    return pd.concat(frames, ignore_index=True)


_LABELS = (
    ("year", re.compile(r"^(\d{4})$")),
    ("quarter", re.compile(r"^(\d{4})Q([1-4])$")),
    ("month", re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")),
)


def parse_period(label: str) -> tuple[str, dt.date, dt.date]:
    """The grain and calendar bounds of a period label.

    Parameters
    ----------
    label : str
        '2027' (a year), '2027Q1' (a quarter) or '2027-01' (a month).

    Returns
    -------
    tuple
        ``(grain, first day, last day)``.

    Raises
    ------
    PeriodError
        Any other label.
    """
    text = label.strip()
    for grain, pattern in _LABELS:
        m = pattern.match(text)
        if m is None:
            continue
        year = int(m.group(1))
        if grain == "year":
            return grain, dt.date(year, 1, 1), dt.date(year, 12, 31)
        if grain == "quarter":
            p = pd.Period(year=year, quarter=int(m.group(2)), freq="Q")
        else:
            p = pd.Period(year=year, month=int(m.group(2)), freq="M")
        return grain, p.start_time.date(), p.end_time.date()
    raise PeriodError(f"--period {label!r} is not a period label: give a year (2027), a "
                      "quarter (2027Q1) or a month (2027-01)")


def trend_chart(path: Path, frame: pd.DataFrame, *, columns=("p10", "p50", "p90"),
                period: str, metric: str, currency: str, actual: float | None) -> None:
    """A period's P10-P90 band and P50 over the runs' as-of dates, as a PNG (atomically).

    Parameters
    ----------
    path : Path
        The PNG to write; a temporary file beside it is renamed into place once complete.
    frame : pandas.DataFrame
        From :func:`forecast.ledger.trend`: ``as_of`` and the quantile columns.
    columns : sequence of str
        The band's low end, middle and high end columns of ``frame``.
    period, metric : str
        For the title and axis.
    currency : str
        Labels the y axis when the metric is money.
    actual : float, optional
        Drawn as a horizontal line when known.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    from forecast.ledger import MONEY_METRICS
    from forecast.outputs import money

    is_money = metric in MONEY_METRICS
    lo, mid, hi = columns
    x = pd.to_datetime(frame["as_of"])
    fig, ax = plt.subplots(figsize=(10, 5), constrained_layout=True)
    ax.fill_between(x, frame[lo], frame[hi], color="tab:blue", alpha=0.25, lw=0,
                    label=f"{lo.upper()}-{hi.upper()}")
    ax.plot(x, frame[mid], color="tab:blue", lw=2, marker="o", ms=4, label=mid.upper())
    if actual is not None and np.isfinite(actual):
        text = money(actual, currency) if is_money else f"{actual:,.0f}"
        ax.axhline(actual, color="black", lw=1.5, ls="--", label=f"actual {text}")
    unit = f" ({currency})" if is_money else ""
    ax.set_ylabel(f"{metric} in {period}{unit}")
    ax.set_xlabel("forecast as of")
    if is_money:
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: money(v, currency)))
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    if len(x) == 1:
        ax.set_xlim(x.iloc[0] - pd.Timedelta(days=7), x.iloc[0] + pd.Timedelta(days=7))
    ax.set_title(f"{metric} forecast for {period}: how it moved across {len(frame)} run"
                 f"{'s' if len(frame) != 1 else ''}", loc="left", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", frameon=False)
    _save_png(fig, path)


def _save_png(fig, path: Path) -> None:
    """Write a figure as a PNG atomically (a temporary file beside it, then a rename); close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fig.savefig(tmp, dpi=110, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)


#: The levels :func:`fan_chart_png` draws: the P10-P90 and P25-P75 bands and the P50.
FAN_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


_PERIOD_FREQ = {"month": "M", "quarter": "Q", "year": "Y"}


def partial_periods(frame: pd.DataFrame, by: str) -> tuple[np.ndarray, np.ndarray]:
    """For the rows of a per-period fan (columns ``end`` and ``days``): the calendar length of
    each row's period, and whether to draw it within each period. A period the horizon covers
    only in part (the as-of one, or the last) is drawn, labelled with its days; a last period
    covered for less than a quarter of its days is left out: its few days would read as a
    collapse of the metric (a 370-day horizon leaves 5 days of a quarter), and they are in
    the cumulative panel anyway."""
    periods = [pd.Period(e, freq=_PERIOD_FREQ[by]) for e in pd.to_datetime(frame["end"])]
    full = np.array([(q.end_time.normalize() - q.start_time).days + 1 for q in periods],
                    dtype=np.int64)
    days = frame["days"].to_numpy(dtype=np.int64)
    keep = np.ones(len(frame), dtype=bool)
    if len(frame) > 1 and 4 * days[-1] < full[-1]:
        keep[-1] = False
    return full, keep


def fan_chart_png(path: Path, per_period: pd.DataFrame, cumulative: pd.DataFrame | None, *,
                  run: dict, metric: str, by: str, target: float | None = None) -> None:
    """A fan chart of one metric from a run's stored bands, as a PNG (atomically).

    Two panels side by side: the metric cumulative from the as-of date to each period's end
    (starting from 0 at the as-of date), and within each period; each with the P10-P90 and
    P25-P75 bands shaded and the P50 as a line with markers over the period end dates, and the
    actuals (where known) as black markers. The target, if any, is a dashed horizontal line on
    the cumulative panel, labelled with the probability of reaching it by the last period end.

    Parameters
    ----------
    path : Path
        The PNG to write; a temporary file beside it is renamed into place once complete.
    per_period, cumulative : pandas.DataFrame
        From :func:`forecast.ledger.select_bands` at :data:`FAN_QUANTILES` (columns ``end``,
        ``p10, p25, p50, p75, p90``, optionally ``actual`` and ``p_reach_target``), within each
        period and cumulative. ``cumulative=None`` (a level such as occupancy, which does not
        accumulate) draws the per-period panel alone, with the target on it.
    run : dict
        The run's ``runs`` row: ``run_id``, ``model_name``, ``as_of``, ``currency``.
    metric, by : str
        The metric and the grain (month, quarter, year), for the title and axes.
    target : float, optional
        The target amount.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    from forecast.ledger import ACTUAL_COLUMN, MONEY_METRICS, TARGET_COLUMN
    from forecast.outputs import money

    currency = run.get("currency") or "USD"
    is_money = metric in MONEY_METRICS

    def fmt(v: float) -> str:
        if is_money:
            return money(v, currency)
        return f"{v:,.0f}" if abs(v - round(v)) < 1e-9 else f"{v:,.1f}"

    as_of = pd.Timestamp(run["as_of"])
    panels = [(cumulative, True)] if cumulative is not None else []
    panels.append((per_period, False))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5.2), squeeze=False,
                             constrained_layout=True)
    unit = f" ({currency})" if is_money else ""
    for ax, (frame, cum) in zip(axes[0], panels, strict=True):
        dropped = ""
        if not cum and "days" in frame.columns and by in _PERIOD_FREQ and len(frame):
            full, keep = partial_periods(frame, by)
            if not keep.all():
                last = frame.iloc[-1]
                dropped = (f" ({last['period']}: {int(last['days'])} of {full[-1]} days, "
                           "not shown)")
            short = (frame["days"].to_numpy() < full)[keep]
            frame, full = frame[keep].reset_index(drop=True), full[keep]
        else:
            short = np.zeros(len(frame), dtype=bool)
        x = pd.to_datetime(frame["end"]).reset_index(drop=True)
        cols = {c: frame[c].to_numpy(dtype=float) for c in ("p10", "p25", "p50", "p75", "p90")}
        bx = x
        if cum:  # the fan opens from 0 at the as-of date
            bx = pd.Series([as_of, *x])
            cols = {c: np.r_[0.0, v] for c, v in cols.items()}
        if len(bx) == 1:  # one period: a narrow band around its end date
            bx = pd.Series([bx.iloc[0] - pd.Timedelta(days=3), bx.iloc[0] + pd.Timedelta(days=3)])
            cols = {c: np.repeat(v, 2) for c, v in cols.items()}
        ax.fill_between(bx, cols["p10"], cols["p90"], color="tab:blue", alpha=0.18, lw=0,
                        label="P10-P90")
        ax.fill_between(bx, cols["p25"], cols["p75"], color="tab:blue", alpha=0.35, lw=0,
                        label="P25-P75")
        ax.plot(x, frame["p50"].to_numpy(dtype=float), color="tab:blue", lw=2, marker="o",
                ms=5, label="P50")
        for i in np.flatnonzero(short):  # a period the horizon covers in part: say so
            ax.plot(x.iloc[i], frame["p50"].iloc[i], marker="o", ms=7, mfc="white",
                    color="tab:blue", zorder=4)
            ax.annotate(f"{int(frame['days'].iloc[i])} of {full[i]} d",
                        (x.iloc[i], frame["p50"].iloc[i]), textcoords="offset points",
                        xytext=(0, 8), fontsize=8, color="tab:blue",  # inside the axes:
                        ha="left" if i == 0 else "right" if i == len(x) - 1 else "center")
        if ACTUAL_COLUMN in frame.columns:
            actual = frame[ACTUAL_COLUMN].to_numpy(dtype=float)
            known = np.isfinite(actual)
            if known.any():
                ax.plot(x[known], actual[known], ls="none", marker="D", ms=6, color="black",
                        label="actual", zorder=5)
        if target is not None and (cum or cumulative is None):
            text = f"target {fmt(target)}"
            if TARGET_COLUMN in frame.columns and len(frame):
                p = float(frame[TARGET_COLUMN].iloc[-1])
                when = "by" if cum else "at"  # a level is reached at the date, not by it
                text += f": P(reach {when} {x.iloc[-1]:%Y-%m-%d}) = {100 * p:.0f}%"
            ax.axhline(target, color="tab:red", lw=1.5, ls="--", label=text)
        if cum:
            ax.set_ylabel(f"{metric}, cumulative from {as_of:%Y-%m-%d}{unit}")
            ax.set_title(f"cumulative to each {by}'s end", loc="left", fontsize=10)
        else:
            level = metric.startswith("in_")
            ax.set_ylabel(f"{metric} {'at' if level else 'per'} {by}{' end' if level else ''}"
                          f"{unit}")
            ax.set_title(f"{'at each' if level else 'within each'} {by}{dropped}", loc="left",
                         fontsize=10)
        ax.set_xlabel(f"{by} end" if not cum else f"as of, then {by} end")
        if is_money:
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: money(v, currency)))
        else:
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ticks = [as_of, *x] if cum else list(x)
        step = max(1, -(-len(ticks) // 12))  # at most 12 labelled dates
        shown = ticks[::step]
        if len(shown) > 2 and (shown[-1] - shown[-2]) * 15 < shown[-1] - shown[0]:
            shown = [*shown[:-2], shown[-1]]  # a short last period: its end's label alone
        ax.set_xticks(shown, [f"{t:%Y-%m-%d}" for t in shown], rotation=30, ha="right",
                      fontsize=8)
        ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
        ax.grid(alpha=0.3)
        ax.legend(loc="best", frameon=False, fontsize=9)
    fig.suptitle(f"{metric} by {by}: model {run['model_name']}, as of "
                 f"{pd.Timestamp(run['as_of']):%Y-%m-%d}, run {run['run_id']}", fontsize=12)
    _save_png(fig, path)
