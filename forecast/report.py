"""`forecast report`: the funnel metrics revenue teams track, as one self-contained HTML page.

Everything is measured on the event log (``forecast.eventlog``) up to the as-of date; the page
then adds the latest forecast (from the ledger, or a fresh run) and, when a spend file is given,
the costs. Definitions (each is also stated on the page):

- A *stay* is a lead's time in one state: from the row that entered it to the lead's next row
  (a repeated row of the same stage is a no-op, as everywhere in the engine). A stay still
  going at the as-of date is *open* (right-censored there).
- *New leads* in a month: leads whose first row falls in it. *Reopened (recaptured)*: entries
  into an active stage from ``nurture``. *Entries* into a stage: rows entering it.
- The *MQL stage* is the model's stage named ``mql``, else the stage after the entry stage
  (the entry stage itself in a one-stage funnel). *MQL velocity*: month-over-month growth of
  its entries, ``n_m / n_{m-1} - 1``; a month only partly inside the history is flagged.
- *Conversion* from a stage: of the leads that entered it (counted once, at their first entry),
  the share that later entered any further stage (or won) within the history, with a 90%
  Wilson interval. Leads still open may yet convert, so recent entries pull the rate down
  (right-censoring): the *mature* rate counts only entries at least ``mature_days`` before the
  as-of date. With a posterior, the model's probability of ever reaching a further stage
  (no time limit; arrival-weighted across segments, 5%-95% across draws) is shown beside it.
- *Median days in stage*: Kaplan-Meier median of the stays' lengths in whole days, open stays
  censored at the as-of date. *Shelf life* of the qualified stage: the Kaplan-Meier median of
  the time to going cold (an expiry move), every other way out censored: the empirical twin of
  :func:`forecast.hazards.shelf_life`.
- *Cohorts*: leads by month of their first row; the share that ever reached each later stage.
- *Sticky points*: per active stage, how its stays ended: advanced (to any later stage or won),
  went cold (expiry), lost, or still open; an open stay is *stalled* once it is older than twice
  the stage's median days (90 days when the median is not reached).
- *Costs*: a spend file is a CSV with columns ``segment, month, spend`` (one row per segment
  and month, ``YYYY-MM``, a plain non-negative number; see :func:`read_spend`). Spend over the
  months of the file that the history covers is divided by the leads created and the first
  entries into each stage in those months; CAC is spend per won deal (entries into ``won`` in
  those months). LTV is the mean won deal (its first-year bookings: the engine has no
  retention data) times ``ltv_multiple``.

The page is deterministic: the same inputs give the same bytes (no clock is read; charts are
PNGs rendered with fixed settings and embedded as base64 data URIs; nothing is fetched).
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import io
import math
import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.eventlog import STALE_DAYS, EventLog, InputError, latest_date
from forecast.model import EXPIRY, LOST, NURTURE, WON, FunnelModel

INTERVAL = 0.90
Z = statistics.NormalDist().inv_cdf(0.5 + INTERVAL / 2)  # 1.645 for a 90% interval
MATURE_DAYS = 90
STALL_FALLBACK_DAYS = 90

# ---- stays -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stays:
    """One entry per stay: a lead's time in one state, from its entering row to its next row.

    Attributes
    ----------
    lead : numpy.ndarray of int64
        Lead number (0-based, leads in the log's order); stays of a lead are contiguous.
    state : numpy.ndarray of int64
        The state entered (``model.states`` index).
    segment : numpy.ndarray of int64
        The row's segment (``model.segment_names`` index).
    start : numpy.ndarray of datetime64[D]
        The day the state was entered.
    end : numpy.ndarray of datetime64[D]
        The day of the lead's next row, or the as-of date for the lead's last stay.
    dest : numpy.ndarray of int64
        The state of the next row; -1 for the lead's last stay (open unless won or lost).
    prev : numpy.ndarray of int64
        The state of the previous stay; -1 for the lead's first.
    amount : numpy.ndarray of float64
        The lead's last known amount up to and including this row (NaN: none yet).
    as_of : datetime.date
        The date open stays are censored at.
    """

    lead: np.ndarray
    state: np.ndarray
    segment: np.ndarray
    start: np.ndarray
    end: np.ndarray
    dest: np.ndarray
    prev: np.ndarray
    amount: np.ndarray
    as_of: dt.date

    @property
    def first(self) -> np.ndarray:
        """Mask of each lead's first stay."""
        return self.prev < 0

    @property
    def days(self) -> np.ndarray:
        """Whole days of each stay (to the next row, or to the as-of date when open)."""
        return (self.end - self.start).astype(np.int64)


def stays(log: EventLog, model: FunnelModel, as_of: dt.date | None = None) -> Stays:
    """The stays of a validated event log, up to ``as_of`` (default: its last date).

    Rows after ``as_of`` are left out; repeated rows of the same stage are dropped.
    """
    frame = log.frame
    if frame.empty:
        raise InputError(f"{log.path}: the event log has no rows")
    day = frame["entered_at"].to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
    if as_of is None:
        as_of = day.max().astype(dt.date)
    keep = day <= np.datetime64(as_of, "D")
    lead = pd.factorize(frame["lead_id"].to_numpy()[keep])[0].astype(np.int64)
    state = pd.Index(model.states).get_indexer(frame["stage"].to_numpy()[keep]).astype(np.int64)
    segment = pd.Index(model.segment_names).get_indexer(
        frame["segment"].to_numpy()[keep]).astype(np.int64)
    amount = pd.Series(frame["amount"].to_numpy(dtype=np.float64, na_value=np.nan)[keep])
    amount = amount.groupby(lead).ffill().to_numpy()
    day = day[keep]
    new_lead = np.r_[True, lead[1:] != lead[:-1]]
    changed = new_lead | np.r_[True, state[1:] != state[:-1]]
    lead, state, segment, day, amount = (x[changed] for x in (lead, state, segment, day, amount))
    first = np.r_[True, lead[1:] != lead[:-1]]
    last = np.r_[lead[1:] != lead[:-1], True]
    nxt = np.r_[state[1:], -1]
    end = np.where(last, np.datetime64(as_of, "D"), np.r_[day[1:], day[-1:]])
    return Stays(lead=lead, state=state, segment=segment, start=day, end=end,
                 dest=np.where(last, -1, nxt), prev=np.where(first, -1, np.r_[-1, state[:-1]]),
                 amount=amount, as_of=as_of)


def _month(days: np.ndarray) -> pd.PeriodIndex:
    return pd.PeriodIndex(pd.DatetimeIndex(days.astype("datetime64[ns]")), freq="M")


def _months(s: Stays) -> pd.PeriodIndex:
    """Every calendar month from the history's first day to the as-of date."""
    return pd.period_range(pd.Period(s.start.min().astype(dt.date), "M"),
                           pd.Period(s.as_of, "M"), freq="M")


def mql_stage(model: FunnelModel) -> str:
    """The stage reported as 'MQL': ``mql`` if the model has it, else the one after the entry."""
    if "mql" in model.stages:
        return "mql"
    i = model.stages.index(model.entry)
    return model.stages[min(i + 1, model.n_active - 1)]


def stage_label(stage: str) -> str:
    """How the page names a stage: acronyms (mql, sql) in capitals, other names as they are."""
    return stage.upper() if len(stage) <= 3 else stage


def stage_plural(stage: str) -> str:
    """'MQLs', or 'opportunity entries' for a name that is not an acronym."""
    return f"{stage.upper()}s" if len(stage) <= 3 else f"{stage} entries"


def _rank(model: FunnelModel, state: np.ndarray) -> np.ndarray:
    """Funnel progress of a state: active stage index, ``n_active`` for won, -1 otherwise."""
    rank = np.full(len(model.states), -1, dtype=np.int64)
    rank[:model.n_active] = np.arange(model.n_active)
    rank[model.state_index(WON)] = model.n_active
    return np.where(state >= 0, rank[np.maximum(state, 0)], -1)


def _kinds(model: FunnelModel) -> np.ndarray:
    """``kind[s, d]`` of every pair of states as a move kind name ('' for s == d or closed s)."""
    n = len(model.states)
    out = np.full((n, n), "", dtype=object)
    for i, s in enumerate(model.states[:model.n_transient]):
        for j, d in enumerate(model.states):
            if i != j:
                out[i, j] = model.move_kind(s, d)
    return out


# ---- monthly flow and velocity ---------------------------------------------------------------


def monthly_flow(s: Stays, model: FunnelModel) -> pd.DataFrame:
    """Per calendar month of the history: new leads, reopened leads and entries per stage.

    Returns
    -------
    pandas.DataFrame
        Indexed by month (``pandas.Period``), columns ``new_leads``, ``reopened``, one
        ``entered_<stage>`` per active stage, ``won``, ``days`` (days of the month inside the
        history) and ``complete`` (the whole month is inside it).
    """
    months = _months(s)
    month = _month(s.start)

    def count(mask: np.ndarray) -> np.ndarray:
        return pd.Series(1, index=month[mask]).groupby(level=0).sum() \
            .reindex(months, fill_value=0).to_numpy(dtype=np.int64)

    nurture = model.state_index(NURTURE)
    out = pd.DataFrame(index=months)
    out.index.name = "month"
    out["new_leads"] = count(s.first)
    out["reopened"] = count((s.prev == nurture) & (s.state < model.n_active))
    for i, stage in enumerate(model.stages):
        out[f"entered_{stage}"] = count(s.state == i)
    out["won"] = count(s.state == model.state_index(WON))
    first_day = s.start.min().astype(dt.date)
    starts = [max(p.start_time.date(), first_day) for p in months]
    ends = [min(p.end_time.date(), s.as_of) for p in months]
    out["days"] = [(b - a).days + 1 for a, b in zip(starts, ends, strict=True)]
    out["complete"] = out["days"] == [p.days_in_month for p in months]
    return out


def velocity(flow: pd.DataFrame, column: str) -> pd.Series:
    """Month-over-month growth of ``flow[column]``: ``n_m / n_{m-1} - 1`` (NaN after a 0)."""
    n = flow[column].astype(float)
    before = n.shift(1)
    return (n / before.where(before > 0) - 1.0).rename(f"{column}_growth")


# ---- intervals and survival ------------------------------------------------------------------


def wilson(k, n, z: float = Z) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion ``k / n`` (NaN where ``n == 0``)."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return np.where(n > 0, centre - half, np.nan), np.where(n > 0, centre + half, np.nan)


def km_median(days: np.ndarray, event: np.ndarray) -> float:
    """Kaplan-Meier median of whole-day durations, ``event`` False meaning right-censored.

    The smallest ``t`` with ``S(t) <= 0.5``; ``inf`` when the curve never gets there, NaN
    without data.
    """
    days = np.asarray(days, dtype=np.int64)
    event = np.asarray(event, dtype=bool)
    if days.size == 0:
        return float("nan")
    times = np.unique(days[event])
    if times.size == 0:
        return float("inf")
    at_risk = days.size - np.searchsorted(np.sort(days), times, side="left")
    deaths = np.bincount(np.searchsorted(times, days[event]), minlength=times.size)
    surv = np.cumprod(1.0 - deaths / at_risk)
    hit = np.flatnonzero(surv <= 0.5 + 1e-12)
    return float(times[hit[0]]) if hit.size else float("inf")


# ---- conversion, days in stage, shelf life ---------------------------------------------------


def conversion(s: Stays, model: FunnelModel, mature_days: int = MATURE_DAYS) -> pd.DataFrame:
    """Conversion from each active stage to any later one, per lead's first entry.

    Returns
    -------
    pandas.DataFrame
        One row per active stage: ``stage, next, entered, converted, open, rate, lo, hi`` (90%
        Wilson) and the same for entries at least ``mature_days`` old: ``mature_entered,
        mature_converted, mature_rate, mature_lo, mature_hi``.
    """
    rank = _rank(model, s.state)
    # The furthest stage a lead reaches after each stay: a reversed running max per lead.
    later = pd.Series(rank[::-1]).groupby(s.lead[::-1]).cummax().to_numpy()[::-1]
    after = np.r_[later[1:], -1]
    after = np.where(np.r_[s.lead[1:] != s.lead[:-1], True], -1, after)
    is_open = np.zeros(s.lead.max() + 1, dtype=bool)
    last = np.r_[s.lead[1:] != s.lead[:-1], True]
    is_open[s.lead[last]] = s.state[last] < model.n_transient
    age = (np.datetime64(s.as_of, "D") - s.start).astype(np.int64)
    rows = []
    for i, stage in enumerate(model.stages):
        mine = np.flatnonzero(s.state == i)
        mine = mine[np.r_[True, s.lead[mine][1:] != s.lead[mine][:-1]]] if mine.size else mine
        conv = after[mine] > i
        still = ~conv & is_open[s.lead[mine]]
        mature = age[mine] >= mature_days
        lo, hi = wilson(conv.sum(), mine.size)
        mlo, mhi = wilson(conv[mature].sum(), mature.sum())
        rows.append({
            "stage": stage, "next": model.stages[i + 1] if i + 1 < model.n_active else WON,
            "entered": int(mine.size), "converted": int(conv.sum()), "open": int(still.sum()),
            "rate": conv.sum() / mine.size if mine.size else np.nan, "lo": float(lo),
            "hi": float(hi), "mature_entered": int(mature.sum()),
            "mature_converted": int(conv[mature].sum()),
            "mature_rate": conv[mature].sum() / mature.sum() if mature.any() else np.nan,
            "mature_lo": float(mlo), "mature_hi": float(mhi)})
    return pd.DataFrame(rows)


def model_conversion(model: FunnelModel, params) -> pd.DataFrame:
    """The model's probability of ever reaching a further stage (or won) from each stage.

    Per parameter set, for a fresh unrecycled lead, mixed across segments by arrival rate; the
    median and the 5%-95% range across sets. Columns ``stage, model_median, model_lo,
    model_hi``. "A further stage" counts skips past the next one, as the empirical conversion
    does: every state past the stage is made to lead straight to ``won``, so the absorption
    probability into ``won`` (:func:`forecast.hazards.absorption`) is the probability of
    reaching any of them.
    """
    from forecast.describe import MAX_SETS
    from forecast.hazards import absorption

    if params.n_sets > MAX_SETS:
        params = params.take(np.linspace(0, params.n_sets - 1, MAX_SETS).round().astype(int))
    won = model.state_index(WON)
    values = np.zeros((params.n_sets, model.n_active))
    for k in range(params.n_sets):
        weight = params.arrivals_mean[k] / params.arrivals_mean[k].sum()
        for i in range(model.n_active):
            h = params.hazards[k].copy()  # [state, band, segment, recycle, destination]
            h[i + 1:model.n_active] = 0.0
            h[i + 1:model.n_active, ..., won] = 1.0
            values[k, i] = weight @ absorption(model, h).win[:, i, 0]
    q = np.quantile(values, [0.5, 0.05, 0.95], axis=0, method="inverted_cdf")
    return pd.DataFrame({"stage": list(model.stages), "model_median": q[0], "model_lo": q[1],
                         "model_hi": q[2]})


def days_in_stage(s: Stays, model: FunnelModel) -> pd.DataFrame:
    """Kaplan-Meier median days in each active stage and nurture, open stays censored.

    Columns ``stage, stays, finished, median_days``.
    """
    rows = []
    for i, stage in enumerate((*model.stages, NURTURE)):
        mine = s.state == i
        done = s.dest[mine] >= 0
        rows.append({"stage": stage, "stays": int(mine.sum()), "finished": int(done.sum()),
                     "median_days": km_median(s.days[mine], done)})
    return pd.DataFrame(rows)


def shelf_life_days(s: Stays, model: FunnelModel) -> dict:
    """Empirical shelf life of the qualified stage: KM median time to an expiry move.

    Every other exit (advance, lost) and open stays are censored. Returns ``stage, stays,
    expired, median_days``.
    """
    q = model.state_index(model.qualified_stage)
    kinds = _kinds(model)
    mine = np.flatnonzero(s.state == q)
    dest = s.dest[mine]
    expired = (dest >= 0) & (kinds[q, np.maximum(dest, 0)] == EXPIRY)
    return {"stage": model.qualified_stage, "stays": int(mine.size),
            "expired": int(expired.sum()), "median_days": km_median(s.days[mine], expired)}


# ---- cohorts and sticky points ---------------------------------------------------------------


def cohorts(s: Stays, model: FunnelModel) -> pd.DataFrame:
    """Leads by month of their first row: how many, and the share that reached each stage.

    Columns ``leads``, ``reached_<stage>`` for every active stage after the first one a lead
    can enter, ``reached_won``, ``open`` (share still in an active stage or nurture) and
    ``age_days`` (days from the month's start, or the history's, to the as-of date); indexed
    by month.
    """
    rank = _rank(model, s.state)
    best = pd.Series(rank).groupby(s.lead).max().to_numpy()
    last = np.r_[s.lead[1:] != s.lead[:-1], True]
    is_open = s.state[last] < model.n_transient
    born = _month(s.start[s.first])
    months = _months(s)
    frame = pd.DataFrame({"month": born, "best": best, "open": is_open})
    out = pd.DataFrame(index=months)
    out.index.name = "month"
    grouped = frame.groupby("month")
    out["leads"] = grouped.size().reindex(months, fill_value=0)
    for i, stage in enumerate((*model.stages, WON)):
        if i == 0:
            continue
        out[f"reached_{stage}"] = grouped["best"].apply(lambda b, i=i: (b >= i).mean()) \
            .reindex(months)
    out["open"] = grouped["open"].mean().reindex(months)
    first_day = s.start.min().astype(dt.date)
    out["age_days"] = [(s.as_of - max(p.start_time.date(), first_day)).days for p in months]
    return out


def sticky_points(s: Stays, model: FunnelModel, median_days: pd.Series) -> pd.DataFrame:
    """How the stays in each active stage ended, to find where leads drop out or stall.

    Parameters
    ----------
    median_days : pandas.Series
        Median days per stage (from :func:`days_in_stage`), to set the stall threshold: twice
        the median, or :data:`STALL_FALLBACK_DAYS` when it is not reached.

    Returns
    -------
    pandas.DataFrame
        One row per active stage: ``stage, stays, advanced, expired, lost, open_recent,
        stalled, stall_days``, and the shares ``drop_out`` ((expired + lost) / stays) and
        ``stall`` (stalled / stays).
    """
    rank = _rank(model, s.state)
    dest_rank = _rank(model, s.dest)
    kinds = _kinds(model)
    lost = model.state_index(LOST)
    rows = []
    for i, stage in enumerate(model.stages):
        mine = np.flatnonzero(s.state == i)
        dest = s.dest[mine]
        advanced = dest_rank[mine] > rank[mine]
        expired = (dest >= 0) & (kinds[i, np.maximum(dest, 0)] == EXPIRY)
        was_lost = dest == lost
        still = dest < 0
        med = float(median_days.get(stage, np.nan))
        stall_days = int(2 * med) if np.isfinite(med) and med > 0 else STALL_FALLBACK_DAYS
        stalled = still & (s.days[mine] > stall_days)
        n = max(mine.size, 1)
        rows.append({"stage": stage, "stays": int(mine.size), "advanced": int(advanced.sum()),
                     "expired": int(expired.sum()), "lost": int(was_lost.sum()),
                     "open_recent": int((still & ~stalled).sum()), "stalled": int(stalled.sum()),
                     "stall_days": stall_days,
                     "drop_out": (expired.sum() + was_lost.sum()) / n,
                     "stall": stalled.sum() / n})
    return pd.DataFrame(rows)


# ---- spend and costs -------------------------------------------------------------------------

SPEND_COLUMNS = ("segment", "month", "spend")
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def read_spend(path: str | Path, model: FunnelModel) -> pd.DataFrame:
    """Read a spend file: CSV with columns ``segment, month, spend`` (other columns ignored).

    ``segment`` is one of the model's segments (or a ``[segment_aliases]`` spelling, any
    case), ``month`` is ``YYYY-MM``, ``spend`` a non-negative number in the model's currency
    (no symbols or thousands separators). One row per segment and month; blank lines are
    skipped.

    Returns
    -------
    pandas.DataFrame
        ``segment`` (model segment name), ``month`` (``pandas.Period``), ``spend`` (float).

    Raises
    ------
    InputError
        Naming the file, the row (the header is row 1) and the column.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the spend file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: the spend file is not UTF-8 text") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or not any(c.strip() for c in rows[0]):
        raise InputError(f"{path}: the spend file is empty (expected a header row "
                         f"{','.join(SPEND_COLUMNS)})")
    header = [c.strip().casefold() for c in rows[0]]
    missing = [c for c in SPEND_COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}: row 1: missing column{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(repr(c) for c in missing)} (the header has "
                         f"{', '.join(repr(c) for c in rows[0])}; expected "
                         f"{', '.join(SPEND_COLUMNS)})")
    col = {c: header.index(c) for c in SPEND_COLUMNS}
    seen: dict[tuple[str, pd.Period], int] = {}
    out = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue

        def cell(name: str, row=row, number=number) -> str:
            if col[name] >= len(row):
                raise InputError(f"{path}: row {number}, column '{name}': missing (the row has "
                                 f"{len(row)} fields, the header {len(header)})")
            return row[col[name]].strip()

        at = f"{path}: row {{}}, column '{{}}'"
        name = cell("segment")
        segment = model.map_segment(name) if name else None
        if segment is None:
            raise InputError(at.format(number, "segment") + f": {name!r} is not a segment of "
                             f"model {model.name} ({', '.join(model.segment_names)})")
        month_text = cell("month")
        if not _MONTH.match(month_text):
            raise InputError(at.format(number, "month") + f": {month_text!r} is not a month "
                             "(expected YYYY-MM, e.g. 2026-03)")
        month = pd.Period(month_text, freq="M")
        spend_text = cell("spend")
        try:
            spend = float(spend_text)
        except ValueError:
            spend = float("nan")
        if not math.isfinite(spend) or spend < 0:
            raise InputError(at.format(number, "spend") + f": {spend_text!r} is not a "
                             "non-negative number (plain digits, e.g. 12500.50)")
        key = (segment, month)
        if key in seen:
            raise InputError(at.format(number, "segment") + f": {segment} {month} appears "
                             f"again (first on row {seen[key]}); give one row per segment and "
                             "month")
        seen[key] = number
        out.append({"segment": segment, "month": month, "spend": spend})
    if not out:
        raise InputError(f"{path}: the spend file has a header but no rows")
    return pd.DataFrame(out)


@dataclass(frozen=True)
class Costs:
    """Costs per funnel step over the months of the spend file inside the history.

    ``table`` has one row per segment with spend, then ``all``: ``segment, spend, leads,``
    one ``<stage>`` count per active stage after the entry stage, ``won``, ``cost_per_<x>``
    for each, ``cac``, ``mean_deal``, ``ltv``, ``ltv_cac``. ``months`` are the months used;
    ``ignored`` the spend file's months outside the history; ``partial`` the used months the
    history covers only in part.
    """

    table: pd.DataFrame
    months: tuple[pd.Period, ...]
    ignored: tuple[pd.Period, ...]
    partial: tuple[pd.Period, ...]
    ltv_multiple: float


def costs(s: Stays, model: FunnelModel, spend: pd.DataFrame, flow: pd.DataFrame,
          ltv_multiple: float = 1.0) -> Costs:
    """Cost per lead, per first entry into each stage, CAC and LTV:CAC per segment and overall.

    Counts are leads created and first entries into each stage (a lead counted once per
    stage) in the used months; won deals are entries into ``won`` in them. LTV is the mean
    known amount of all won deals in the history (per segment; overall for ``all``) times
    ``ltv_multiple``.
    """
    covered = set(flow.index)
    used = sorted(set(spend["month"]) & covered)
    ignored = sorted(set(spend["month"]) - covered)
    partial = [m for m in used if not flow.at[m, "complete"]]
    spend = spend[spend["month"].isin(used)]
    month = _month(s.start)
    in_months = np.asarray(month.isin(used))
    steps = [st for st in model.stages if st != model.entry]
    won = model.state_index(WON)
    firsts = {}
    for stage in steps:
        i = model.state_index(stage)
        idx = np.flatnonzero(s.state == i)
        firsts[stage] = idx[np.r_[True, s.lead[idx][1:] != s.lead[idx][:-1]]] if idx.size \
            else idx
    won_rows = np.flatnonzero(s.state == won)
    segs = sorted(spend["segment"].unique(), key=model.segment_names.index)
    rows = []
    for seg in [*segs, "all"]:
        seg_mask = np.ones(s.lead.size, dtype=bool) if seg == "all" else \
            s.segment == model.segment_names.index(seg)
        total = float(spend["spend"].sum() if seg == "all"
                      else spend.loc[spend["segment"] == seg, "spend"].sum())
        row = {"segment": seg, "spend": total,
               "leads": int((s.first & in_months & seg_mask).sum())}
        for stage in steps:
            idx = firsts[stage]
            row[stage] = int((in_months[idx] & seg_mask[idx]).sum())
        row["won"] = int((in_months[won_rows] & seg_mask[won_rows]).sum())
        for key in ("leads", *steps, "won"):
            row[f"cost_per_{key}"] = total / row[key] if row[key] else np.nan
        row["cac"] = row["cost_per_won"]
        deals = s.amount[won_rows][seg_mask[won_rows]]
        deals = deals[~np.isnan(deals)]
        row["mean_deal"] = float(deals.mean()) if deals.size else np.nan
        row["ltv"] = row["mean_deal"] * ltv_multiple
        row["ltv_cac"] = row["ltv"] / row["cac"] if row["cac"] and np.isfinite(row["cac"]) \
            else np.nan
        rows.append(row)
    return Costs(table=pd.DataFrame(rows), months=tuple(used), ignored=tuple(ignored),
                 partial=tuple(partial), ltv_multiple=ltv_multiple)


# ---- the latest forecast ---------------------------------------------------------------------


@dataclass(frozen=True)
class ForecastBands:
    """A forecast's stored-form bands (``forecast.ledger`` layout) and where they came from.

    ``bands`` maps a grain (``month``, ``quarter``) to the rows of :func:`forecast.ledger.
    read_bands`; ``run`` is the ``runs`` row (or its equivalent for a fresh run); ``note``, when
    set, is shown beside the forecast (a run of an earlier date than the page's).
    """

    run: dict
    bands: dict[str, pd.DataFrame]
    source: str
    note: str = ""


def ledger_forecast(path: str | Path, model_name: str, as_of: dt.date | None = None,
                    timeout: float = 30.0) -> ForecastBands:
    """The forecast of model ``model_name`` recorded in a ledger for a page as of ``as_of``:
    the latest-recorded run with that as-of date, else the latest one of an earlier date
    (with a note saying so), never one of a later date (it would know what the page's date
    does not). Without ``as_of``, the latest-recorded run. What-if runs of ``forecast
    scenario``, whose ``scenario`` is set, are not forecasts and are skipped.

    Raises
    ------
    forecast.ledger.LedgerError
        An unreadable ledger, or no forecast of that model in it (as of ``as_of`` or before).
    """
    from forecast import ledger as ledger_mod

    with ledger_mod.reading(path, timeout=timeout) as con:
        where, args = "model_name = ? AND scenario IS NULL", [model_name]
        latest = con.execute(f"SELECT max(run_id) FROM runs WHERE {where}", args).fetchone()[0]
        if latest is None:
            models = [r[0] for r in con.execute(
                "SELECT DISTINCT model_name FROM runs WHERE scenario IS NULL "
                "ORDER BY model_name").fetchall()]
            what_if = con.execute("SELECT count(*) FROM runs WHERE model_name = ? AND "
                                  "scenario IS NOT NULL", [model_name]).fetchone()[0]
            raise ledger_mod.LedgerError(
                f"no run of model {model_name} recorded"
                + (f" (runs of: {', '.join(models)})" if models else "")
                + (f"; only {what_if} what-if runs of `forecast scenario`, which are not "
                   "the forecast" if what_if else ""))
        if as_of is not None:
            row = con.execute(f"SELECT run_id FROM runs WHERE {where} AND as_of <= ? "
                              "ORDER BY as_of DESC, run_id DESC LIMIT 1",
                              [*args, as_of]).fetchone()
            if row is None:
                n, first = con.execute(f"SELECT count(*), min(as_of) FROM runs WHERE {where}",
                                       args).fetchone()
                raise ledger_mod.LedgerError(
                    f"no run of model {model_name} as of {as_of} or before (its {n} "
                    f"run{'s are' if n != 1 else ' is'} as of {first} or later, and a forecast "
                    "of a later date knows what the page's date does not); record one with "
                    f"`forecast run --as-of {as_of} --ledger`, or leave --ledger out for a "
                    "fresh forecast")
            latest = row[0]
        run = ledger_mod.find_run(con, int(latest))
        bands = {g: ledger_mod.read_bands(con, run["run_id"], g) for g in ("month", "quarter")}
    run_as_of = pd.Timestamp(run["as_of"]).date()
    which = f"the latest of model {model_name}" + (f" as of {as_of}" if as_of else "")
    note = ""
    if as_of is not None and run_as_of < as_of:
        which = f"the latest of model {model_name} before {as_of}"
        note = (f"No run of model {model_name} as of {as_of} in the ledger: the forecast "
                f"shown is run {run['run_id']}, as of {run_as_of} ({(as_of - run_as_of).days} "
                f"days earlier than this page).")
    return ForecastBands(run=run, bands=bands, note=note,
                         source=f"run {run['run_id']} of the ledger {Path(path).name} ({which})")


def fresh_forecast(model: FunnelModel, params, log: EventLog, as_of: dt.date, *, horizon: int,
                   paths: int, seed: int, parameters: str) -> ForecastBands:
    """Simulate a forecast from the open pipeline at ``as_of`` and keep its bands."""
    from forecast import ledger as ledger_mod
    from forecast.eventlog import open_pipeline
    from forecast.outlook import simulate_ahead

    pipeline = open_pipeline(log, model, as_of)
    result = simulate_ahead(model, params, pipeline, as_of, horizon, paths, seed,
                            occupancy_days=ledger_mod.occupancy_days(as_of, horizon))
    stored = ledger_mod.ledger_bands(result)
    stored.insert(0, "run_id", 0)
    stored["period_start"] = pd.to_datetime(stored["period_start"]).dt.date
    stored["period_end"] = pd.to_datetime(stored["period_end"]).dt.date
    bands = {g: stored[stored["grain"] == g].reset_index(drop=True)
             for g in ("month", "quarter")}
    run = {"run_id": 0, "model_name": model.name, "as_of": as_of, "currency": model.currency,
           "quantile_grid": list(ledger_mod.GRID), "horizon_days": horizon, "paths": paths,
           "seed": seed}
    return ForecastBands(run=run, bands=bands,
                         source=f"a fresh run (seed {seed}) with {parameters}")


# ---- charts ----------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _png(fig) -> bytes:
    """A figure's PNG bytes (no timestamp or software tag: same figure, same bytes); closes it."""
    plt = _pyplot()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    finally:
        plt.close(fig)
    return buf.getvalue()


def _month_labels(index) -> list[str]:
    return [str(p) for p in index]


def chart_flow(flow: pd.DataFrame, mql: str) -> bytes:
    """Grouped bars per month: new leads, reopened leads and MQL entries (partial months pale)."""
    plt = _pyplot()
    from matplotlib.patches import Patch

    fig, ax = plt.subplots(figsize=(9, 3.6), constrained_layout=True)
    x = np.arange(len(flow))
    series = [("new leads", flow["new_leads"], "tab:blue"),
              ("reopened (recaptured)", flow["reopened"], "tab:orange"),
              (stage_plural(mql), flow[f"entered_{mql}"], "tab:green")]
    width = 0.8 / len(series)
    alpha = np.where(flow["complete"], 1.0, 0.4)
    for k, (_, values, color) in enumerate(series):
        bars = ax.bar(x + (k - 1) * width, values, width, color=color)
        for bar, a in zip(bars, alpha, strict=True):
            bar.set_alpha(a)
    ax.set_xticks(x, _month_labels(flow.index), rotation=45, ha="right")
    ax.set_ylabel("leads per month")
    ax.legend(handles=[Patch(color=color, label=label) for label, _, color in series],
              frameon=False, ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def chart_velocity(growth: pd.Series, complete: pd.Series, mql: str) -> bytes:
    """Month-over-month growth of MQL entries, in percent (months next to a partial one pale)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3), constrained_layout=True)
    x = np.arange(len(growth))
    values = 100 * growth.fillna(0).to_numpy()
    ok = (complete & complete.shift(1, fill_value=False)).to_numpy()
    colors = np.where(values >= 0, "tab:green", "tab:red")
    bars = ax.bar(x, values, color=colors)
    for bar, good in zip(bars, ok, strict=True):
        bar.set_alpha(1.0 if good else 0.35)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, _month_labels(growth.index), rotation=45, ha="right")
    ax.set_ylabel("% vs previous month")
    ax.set_title(f"{stage_plural(mql)}: month-over-month growth", loc="left", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def chart_conversion(conv: pd.DataFrame) -> bytes:
    """Conversion per stage with 90% intervals: all entries, mature entries, and the model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.6 + 0.75 * len(conv)), constrained_layout=True)
    y = np.arange(len(conv))[::-1].astype(float)
    series = [("all entries", "rate", "lo", "hi", "tab:blue", 0.18),
              ("mature entries", "mature_rate", "mature_lo", "mature_hi", "tab:green", 0.0)]
    if "model_median" in conv.columns:
        series.append(("model (posterior)", "model_median", "model_lo", "model_hi",
                       "tab:purple", -0.18))
    for label, mid, lo, hi, color, dy in series:
        m = conv[mid].to_numpy(dtype=float)
        err = np.vstack([m - conv[lo].to_numpy(dtype=float), conv[hi].to_numpy(dtype=float) - m])
        ax.errorbar(100 * m, y + dy, xerr=100 * np.nan_to_num(err), fmt="o", color=color,
                    capsize=3, label=label)
    ax.set_yticks(y, [f"{a} -> {b}" for a, b in zip(conv["stage"], conv["next"], strict=True)])
    ax.set_ylim(-0.6, len(conv) - 0.4)
    ax.set_xlabel("% that reached the next stage or further (90% interval)")
    ax.set_xlim(0, 100)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(frameon=False, loc="lower right")
    return _png(fig)


def chart_days(days: pd.DataFrame, shelf: dict) -> bytes:
    """Median days in each stage (KM); the qualified stage's shelf life as a marker."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3), constrained_layout=True)
    x = np.arange(len(days))
    med = days["median_days"].to_numpy(dtype=float)
    finite = np.isfinite(med)
    top = np.nanmax(np.where(finite, med, np.nan)) if finite.any() else 1.0
    shown = np.where(finite, med, top * 1.1)
    bars = ax.bar(x, shown, color=np.where(finite, "tab:blue", "lightgray"))
    for bar, value, ok in zip(bars, med, finite, strict=True):
        ax.annotate(f"{value:,.0f}" if ok else "not reached", (bar.get_x() + bar.get_width() / 2,
                    bar.get_height()), ha="center", va="bottom", fontsize=8)
    if np.isfinite(shelf["median_days"]):
        i = list(days["stage"]).index(shelf["stage"])
        ax.plot([i], [shelf["median_days"]], marker="D", color="tab:red", ls="none",
                label=f"{shelf['stage'].upper()} shelf life {shelf['median_days']:,.0f} days")
        ax.legend(frameon=False, loc="upper left")
    ax.set_xticks(x, list(days["stage"]))
    ax.set_ylabel("median days in stage")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def chart_sticky(sticky: pd.DataFrame) -> bytes:
    """How stays in each stage ended, as shares: advanced, went cold, lost, open, stalled."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.6 + 0.6 * len(sticky)), constrained_layout=True)
    y = np.arange(len(sticky))[::-1]
    n = np.maximum(sticky["stays"].to_numpy(dtype=float), 1)
    left = np.zeros(len(sticky))
    parts = [("advanced", "advanced", "tab:green"), ("went cold", "expired", "tab:orange"),
             ("lost", "lost", "tab:red"), ("open", "open_recent", "lightsteelblue"),
             ("stalled", "stalled", "tab:gray")]
    for label, column, color in parts:
        share = 100 * sticky[column].to_numpy(dtype=float) / n
        ax.barh(y, share, left=left, color=color, label=label)
        left += share
    ax.set_yticks(y, list(sticky["stage"]))
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of stays in the stage")
    ax.legend(frameon=False, ncols=5, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    return _png(fig)


def chart_cohorts(table: pd.DataFrame) -> bytes:
    """Heat map: share of each month's new leads that reached each later stage."""
    plt = _pyplot()
    cols = [c for c in table.columns if c.startswith("reached_")]
    values = 100 * table[cols].to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(9, 0.8 + 0.28 * len(table)), constrained_layout=True)
    # Coloured by the square root of the share, so that the small shares deep in the funnel
    # (1% of leads won) still show against the large ones at its top.
    ax.imshow(np.sqrt(np.nan_to_num(values)), aspect="auto", cmap="Blues", vmin=0, vmax=10)
    for (r, c), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(c, r, f"{v:.1f}%", ha="center", va="center", fontsize=7,
                    color="white" if v > 36 else "black")
    ax.set_xticks(range(len(cols)), [c.removeprefix("reached_") for c in cols])
    ax.set_yticks(range(len(table)), _month_labels(table.index))
    ax.set_xlabel("reached (ever, by the as-of date)")
    ax.set_ylabel("month of first entry")
    return _png(fig)


def chart_costs(table: pd.DataFrame, steps: list[str], currency: str) -> bytes:
    """Cost per lead, per stage entry and per won deal (CAC), by segment, on a log scale."""
    from matplotlib.ticker import FuncFormatter

    from forecast.outputs import money

    plt = _pyplot()
    keys = ["leads", *steps, "won"]
    fig, ax = plt.subplots(figsize=(9, 3.4), constrained_layout=True)
    x = np.arange(len(keys))
    width = 0.8 / len(table)
    for k, row in enumerate(table.to_dict("records")):
        values = [row[f"cost_per_{key}"] for key in keys]
        ax.bar(x + (k - (len(table) - 1) / 2) * width, np.nan_to_num(values), width,
               label=row["segment"])
    ax.set_xticks(x, ["lead", *steps, "won (CAC)"])
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: money(v, currency)))
    ax.set_ylabel(f"cost per ({currency})")
    ax.legend(frameon=False, ncols=min(len(table), 6), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def chart_fan(fc: ForecastBands) -> bytes:
    """The forecast's bookings fan chart (``forecast.trend.fan_chart_png``), as PNG bytes."""
    import tempfile

    from forecast import ledger as ledger_mod
    from forecast.trend import FAN_QUANTILES, fan_chart_png

    stored = fc.bands["month"]
    frames = {cum: ledger_mod.select_bands(stored, fc.run, "bookings", FAN_QUANTILES, cum)
              for cum in (False, True)}
    run = dict(fc.run)
    if not run["run_id"]:
        run["run_id"] = "not recorded"
    _pyplot()
    with tempfile.TemporaryDirectory(prefix="forecast-report-") as tmp:
        path = Path(tmp) / "fan.png"
        fan_chart_png(path, frames[False], frames[True], run=run, metric="bookings", by="month")
        return path.read_bytes()


# ---- the page --------------------------------------------------------------------------------


@dataclass
class Report:
    """Everything the page shows; built by :func:`build`, rendered by :func:`render_html`."""

    model: FunnelModel
    history: str
    history_sha256: str
    as_of: dt.date
    first_day: dt.date
    last_day: dt.date  # of the history's last event (the as-of date can be later)
    n_leads: int
    mql: str
    flow: pd.DataFrame
    growth: pd.Series
    conversion: pd.DataFrame
    days: pd.DataFrame
    shelf: dict
    cohorts: pd.DataFrame
    sticky: pd.DataFrame
    mature_days: int
    parameters: str = "the history alone"
    costs: Costs | None = None
    spend_path: str | None = None
    forecast: ForecastBands | None = None
    described: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


def build(log: EventLog, model: FunnelModel, as_of: dt.date | None = None, *,
          mature_days: int = MATURE_DAYS, params=None, parameters: str = "the history alone",
          spend: pd.DataFrame | None = None, spend_path: str | None = None,
          ltv_multiple: float = 1.0, forecast: ForecastBands | None = None) -> Report:
    """Compute every metric of the page.

    Parameters
    ----------
    log : EventLog
        A validated event log (read with ``model``).
    model : FunnelModel
    as_of : datetime.date, optional
        Measure up to the end of this day. Default: the log's last date.
    mature_days : int
        Entries at least this old count as mature (see the module docstring).
    params : forecast.parameters.Parameters, optional
        A posterior's parameter sets: adds the model's conversion intervals and the
        ``describe`` table.
    spend : pandas.DataFrame, optional
        From :func:`read_spend`; adds the costs.
    ltv_multiple : float
        LTV = mean won deal x this.
    forecast : ForecastBands, optional
        The forecast to show.
    """
    s = stays(log, model, as_of)
    flow = monthly_flow(s, model)
    mql = mql_stage(model)
    conv = conversion(s, model, mature_days)
    described = None
    if params is not None:
        from forecast.describe import describe

        conv = conv.merge(model_conversion(model, params), on="stage", how="left")
        described = describe(model, params)
    days = days_in_stage(s, model)
    report = Report(
        model=model, history=str(log.path), history_sha256=log.sha256, as_of=s.as_of,
        first_day=s.start.min().astype(dt.date), last_day=latest_date(log),
        n_leads=int(s.lead.max() + 1), mql=mql,
        flow=flow, growth=velocity(flow, f"entered_{mql}"), conversion=conv, days=days,
        shelf=shelf_life_days(s, model), cohorts=cohorts(s, model),
        sticky=sticky_points(s, model, days.set_index("stage")["median_days"]),
        mature_days=mature_days, parameters=parameters, spend_path=spend_path,
        forecast=forecast, described=described, notes=list(log.notes))
    gap = (report.as_of - report.last_day).days
    if gap > STALE_DAYS and not log.recorded_after:  # (rows after a past as-of: not stale)
        report.notes.append(f"The history ends on {report.last_day}, {gap:,} days before the "
                            f"as-of date: the months after it show no activity, and the leads "
                            f"open then are taken as still open. Is the export stale?")
    if spend is not None:
        report.costs = costs(s, model, spend, flow, ltv_multiple)
    return report


def charts(report: Report) -> dict[str, bytes]:
    """Every chart of the page as PNG bytes, keyed by its id (``data-chart`` on the page)."""
    out = {
        "flow": chart_flow(report.flow, report.mql),
        "velocity": chart_velocity(report.growth, report.flow["complete"], report.mql),
        "conversion": chart_conversion(report.conversion),
        "days": chart_days(report.days, report.shelf),
        "sticky": chart_sticky(report.sticky),
        "cohorts": chart_cohorts(report.cohorts),
    }
    if report.costs is not None and report.costs.months:
        steps = [st for st in report.model.stages if st != report.model.entry]
        out["costs"] = chart_costs(report.costs.table, steps, report.model.currency)
    if report.forecast is not None:
        out["fan"] = chart_fan(report.forecast)
    return out


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _pct(x: float, digits: int = 1) -> str:
    return "&ndash;" if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f}%"


def _num(x: float) -> str:
    if x is None or not np.isfinite(x):
        return "&ndash;"
    return f"{x:,.0f}" if abs(x - round(x)) < 1e-9 else f"{x:,.1f}"


def _days(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "&ndash;"
    return "not reached" if not np.isfinite(x) else f"{x:,.0f}"


def _money(x: float, currency: str) -> str:
    from forecast.outputs import money

    return "&ndash;" if x is None or not np.isfinite(x) else _e(money(x, currency))


def _table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    """An HTML table; cells are HTML already (escape text with :func:`_e`)."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _img(name: str, png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img data-chart="{name}" alt="{_e(alt)}" '
            f'src="data:image/png;base64,{data}"></figure>')


def _section(anchor: str, title: str, explain: str, *body: str) -> str:
    return (f'<section id="{anchor}"><h2>{_e(title)}</h2><p class="explain">{explain}</p>'
            + "".join(body) + "</section>")


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;
background:#f6f7f9;line-height:1.45}
header{background:#1d2330;color:#fff;padding:18px 28px}
header h1{margin:0 0 6px;font-size:22px}header p{margin:2px 0;font-size:13px;color:#cdd3df}
nav{padding:8px 28px;background:#e9ecf1;font-size:13px}nav a{margin-right:14px;color:#1d4f91}
main{max-width:1000px;margin:0 auto;padding:8px 20px 40px}
section{background:#fff;border-radius:6px;padding:14px 20px;margin:16px 0;
box-shadow:0 1px 2px rgba(0,0,0,.08)}
h2{font-size:18px;margin:4px 0 6px}.explain{font-size:13px;color:#4a5262;margin:0 0 10px}
figure{margin:8px 0}figure img{max-width:100%;height:auto}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0;width:100%}
th,td{border-bottom:1px solid #e3e6eb;padding:4px 8px;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}th{background:#f0f2f5}
.note{font-size:12.5px;color:#7a4b00;background:#fff7e6;padding:6px 10px;border-radius:4px}
.key{font-size:15px;font-weight:600}
""".strip()


def render_html(report: Report, chart_png: dict[str, bytes] | None = None) -> str:
    """The page: a header, a table of contents, and one section per metric.

    Self-contained: styles inline, charts as data URIs, no script and no external reference.
    """
    r = report
    m = r.model
    png = chart_png if chart_png is not None else charts(r)
    cur = m.currency
    mql = stage_label(r.mql)
    sections = [
        _flow_section(r, png, mql),
        _velocity_section(r, png, mql),
        _conversion_section(r, png),
        _days_section(r, png),
        _cohort_section(r, png),
        _sticky_section(r, png),
        _cost_section(r, png, cur),
        _forecast_section(r, png, cur),
    ]
    if r.described is not None:
        sections.append(_described_section(r))
    nav = "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in (
        ("flow", "leads"), ("velocity", f"{mql} velocity"), ("conversion", "conversion"),
        ("days", "days in stage"), ("cohorts", "cohorts"), ("sticky", "sticky points"),
        ("costs", "costs"), ("forecast", "forecast"),
        *((("model", "fitted rates"),) if r.described is not None else ())))
    from forecast import __version__

    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in r.notes)
    header = (
        f"<header><h1>Funnel report: model {_e(m.name)}</h1>"
        f"<p>History {_e(r.history)} (SHA-256 {_e(r.history_sha256[:12])}&hellip;): "
        f"{r.n_leads:,} leads, {r.first_day} to {r.last_day}</p>"
        f"<p>As of {r.as_of} &middot; model file {_e(m.path)} &middot; rates: "
        f"{_e(r.parameters)} &middot; forecast {_e(__version__)}</p></header>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>Funnel report: {_e(m.name)} as of {r.as_of}</title>"
            f"<style>{_CSS}</style></head><body>{header}<nav>{nav}</nav><main>{notes}"
            + "".join(sections) + "</main></body></html>\n")


def _flow_section(r: Report, png: dict, mql: str) -> str:
    f = r.flow
    head = ["month", "days", "new leads", "reopened", *(st for st in r.model.stages
                                                          if st != r.model.entry), "won"]
    rows = []
    for p, row in f.iterrows():
        label = _e(p) + ("" if row["complete"] else " (partial)")
        rows.append([label, str(row["days"]), _num(row["new_leads"]), _num(row["reopened"]),
                     *(_num(row[f"entered_{st}"]) for st in r.model.stages
                       if st != r.model.entry), _num(row["won"])])
    return _section(
        "flow", f"New leads, reopened leads and {stage_plural(r.mql)} per month",
        f"<b>New leads</b>: leads whose first row falls in the month. <b>Reopened</b>: leads "
        f"recaptured from nurture into an active stage. Stage columns count entries into the "
        f"stage ({stage_plural(r.mql)} are entries into {_e(r.mql)}; a lead re-entering "
        "counts again). Months only partly inside the history are pale in the chart and "
        "marked partial.",
        _img("flow", png["flow"], "new leads, reopened leads and MQLs per month"),
        _table(head, rows))


def _velocity_section(r: Report, png: dict, mql: str) -> str:
    g = r.growth
    complete = r.flow["complete"]
    ok = complete & complete.shift(1, fill_value=False)
    full = g[ok & g.notna()]
    key = (f'<p class="key">Latest full month {_e(full.index[-1])}: '
           f"{_pct(full.iloc[-1])} vs the month before; mean month-over-month growth "
           f"{_pct(full.mean())} over {len(full)} full months.</p>") if len(full) else \
        '<p class="key">No two consecutive full months yet.</p>'
    rows = [[_e(p) + ("" if complete[p] else " (partial)"), _num(r.flow.at[p, f"entered_{r.mql}"]),
             _pct(v)] for p, v in g.items()]
    return _section(
        "velocity", f"{mql} velocity",
        f"Month-over-month growth of {mql} entries: this month's count divided by the "
        "previous month's, minus one. A comparison touching a partial month is pale and "
        "marked; the summary uses full months only.",
        key, _img("velocity", png["velocity"], "MQL month-over-month growth"),
        _table(["month", stage_plural(r.mql), "growth"], rows))


def _conversion_section(r: Report, png: dict) -> str:
    c = r.conversion
    has_model = "model_median" in c.columns
    head = ["from", "to (or further)", "entered", "converted", "still open",
            "conversion [90%]", f"entered &ge; {r.mature_days} d ago", "mature conversion [90%]"]
    if has_model:
        head.append("model [5%-95%]")
    rows = []
    for row in c.to_dict("records"):
        cells = [_e(row["stage"]), _e(row["next"]), _num(row["entered"]),
                 _num(row["converted"]), _num(row["open"]),
                 f"{_pct(row['rate'])} [{_pct(row['lo'])}&ndash;{_pct(row['hi'])}]",
                 _num(row["mature_entered"]),
                 f"{_pct(row['mature_rate'])} [{_pct(row['mature_lo'])}&ndash;"
                 f"{_pct(row['mature_hi'])}]"]
        if has_model:
            cells.append(f"{_pct(row['model_median'])} [{_pct(row['model_lo'])}&ndash;"
                         f"{_pct(row['model_hi'])}]")
        rows.append(cells)
    model_text = " Give <code>--posterior</code> to add the fitted model's intervals."
    if has_model:
        model_text = (" The model column is the posterior's probability that a fresh lead "
                      "entering the stage ever reaches a further one, with no time limit "
                      "(segments mixed by arrivals; 5%-95% across draws): compare it with the "
                      "mature column.")
    return _section(
        "conversion", "Conversion between stages",
        "Of the leads that entered a stage (each lead once, at its first entry), the share "
        "that later entered a further stage or won by the as-of date, with a 90% Wilson "
        "interval. Leads still open may yet convert (right-censoring), so recent entries pull "
        f"the rate down; the mature columns count only entries at least {r.mature_days} days "
        "old." + model_text,
        _img("conversion", png["conversion"], "conversion between stages with intervals"),
        _table(head, rows))


def _days_section(r: Report, png: dict) -> str:
    rows = [[_e(row["stage"]), _num(row["stays"]), _num(row["finished"]),
             _days(row["median_days"])] for row in r.days.to_dict("records")]
    sh = r.shelf
    life = _days(sh["median_days"])
    life += " days" if life[0].isdigit() else ""  # "not reached" or a dash: no unit
    key = (f'<p class="key">{_e(sh["stage"].upper())} shelf life: {life} '
           f"({sh['expired']:,} of {sh['stays']:,} stays went cold).</p>")
    return _section(
        "days", f"Median days in stage and {stage_label(sh['stage'])} shelf life",
        "Median whole days a lead stays in each stage, whatever the way out (Kaplan-Meier: "
        "stays still open at the as-of date count as censored, not as finished). "
        f"<b>Shelf life</b> of the qualified stage ({_e(sh['stage'])}): the median time until "
        "an unworked lead goes cold, i.e. the Kaplan-Meier median of the time to an expiry "
        "move (back or to nurture), every other exit censored.",
        key, _img("days", png["days"], "median days in stage"),
        _table(["stage", "stays", "finished", "median days"], rows))


def _cohort_section(r: Report, png: dict) -> str:
    t = r.cohorts
    cols = [c for c in t.columns if c.startswith("reached_")]
    rows = [[_e(p), _num(row["leads"]), *(_pct(row[c]) for c in cols), _pct(row["open"]),
             _num(row["age_days"])] for p, row in t.iterrows()]
    return _section(
        "cohorts", "Cohorts: conversion by month of entry",
        "Leads grouped by the month of their first row, and the share of each group that "
        "ever reached each later stage by the as-of date. Young cohorts have had less time to "
        "convert (see their age and the share still open): compare cohorts of similar age.",
        _img("cohorts", png["cohorts"], "cohort conversion heat map"),
        _table(["cohort", "leads", *(_e(c.removeprefix("reached_")) for c in cols),
                "still open", "age (days)"], rows))


def _sticky_section(r: Report, png: dict) -> str:
    t = r.sticky
    leak = t.loc[t["drop_out"].idxmax()] if len(t) else None
    stall = t.loc[t["stall"].idxmax()] if len(t) else None
    key = ""
    if leak is not None:
        key = (f'<p class="key">Biggest leak: {_e(leak["stage"])} ({_pct(leak["drop_out"])} '
               f"of its stays went cold or were lost). Most stalled: {_e(stall['stage'])} "
               f"({_pct(stall['stall'])} of its stays are open and older than "
               f"{stall['stall_days']} days).</p>")
    rows = [[_e(row["stage"]), _num(row["stays"]), _pct(row["advanced"] / max(row["stays"], 1)),
             _pct(row["expired"] / max(row["stays"], 1)),
             _pct(row["lost"] / max(row["stays"], 1)), _pct(row["drop_out"]),
             _num(row["stall_days"]), _pct(row["stall"])] for row in t.to_dict("records")]
    return _section(
        "sticky", "Sticky points: where leads drop out or stall",
        "How the stays in each stage ended. <b>Drop-out</b>: the stay went cold (back to an "
        "earlier stage or to nurture) or was lost. <b>Stalled</b>: still open at the as-of "
        "date and older than twice the stage's median days (90 days when that median is not "
        "reached).",
        key, _img("sticky", png["sticky"], "how stays in each stage ended"),
        _table(["stage", "stays", "advanced", "went cold", "lost", "drop-out",
                "stall after (days)", "stalled"], rows))


def _cost_section(r: Report, png: dict, cur: str) -> str:
    if r.costs is None:
        return _section(
            "costs", "Cost per lead, MQL, SQL, opportunity; CAC and LTV:CAC",
            "Give <code>--spend FILE</code>: a CSV with columns <code>segment,month,spend"
            "</code> (one row per segment and month, month as YYYY-MM, spend a plain number "
            f"in {_e(cur)}) to see the costs per funnel step per segment.")
    c = r.costs
    steps = [st for st in r.model.stages if st != r.model.entry]
    head = ["segment", "spend", "leads", *(_e(s) for s in steps), "won", "per lead",
            *(f"per {_e(s)}" for s in steps), "CAC", "LTV", "LTV:CAC"]
    rows = []
    for row in c.table.to_dict("records"):
        rows.append([_e(row["segment"]), _money(row["spend"], cur), _num(row["leads"]),
                     *(_num(row[s]) for s in steps), _num(row["won"]),
                     _money(row["cost_per_leads"], cur),
                     *(_money(row[f"cost_per_{s}"], cur) for s in steps),
                     _money(row["cac"], cur), _money(row["ltv"], cur),
                     "&ndash;" if not np.isfinite(row["ltv_cac"]) else f"{row['ltv_cac']:.1f}"])
    notes = []
    if c.ignored:
        notes.append(f"Spend months outside the history, not used: "
                     f"{', '.join(str(p) for p in c.ignored)}.")
    if c.partial:
        notes.append(f"Months the history covers only in part (their spend is counted whole): "
                     f"{', '.join(str(p) for p in c.partial)}.")
    months = f"{c.months[0]} to {c.months[-1]}" if c.months else "none"
    body = [_img("costs", png["costs"], "cost per funnel step by segment")] if c.months else []
    return _section(
        "costs", "Cost per lead, MQL, SQL, opportunity; CAC and LTV:CAC",
        f"Spend from {_e(r.spend_path)} over the months it shares with the history ({months}), "
        "divided by the leads created and the first entries into each stage in those months; "
        "<b>CAC</b> is spend per won deal. <b>LTV</b> is the mean won deal (its first-year "
        f"bookings, since the history has no retention data) times {c.ltv_multiple:g} "
        "(<code>--ltv-multiple</code>).",
        *(f'<p class="note">{_e(n)}</p>' for n in notes), *body, _table(head, rows))


def _forecast_section(r: Report, png: dict, cur: str) -> str:
    if r.forecast is None:
        return _section("forecast", "Latest forecast",
                        "No forecast on this page (<code>--no-forecast</code>).")
    from forecast import ledger as ledger_mod

    fc = r.forecast
    cur = fc.run.get("currency") or cur  # the run's own currency (the fan chart's too)
    parts = []
    for grain in ("month", "quarter"):
        stored = fc.bands[grain]
        frame = ledger_mod.select_bands(stored, fc.run, "bookings", (0.1, 0.5, 0.9))
        won = ledger_mod.select_bands(stored, fc.run, "won_deals", (0.1, 0.5, 0.9))
        rows = [[_e(b["period"]), _num(b["days"]), _money(b["mean"], cur),
                 _money(b["p10"], cur), _money(b["p50"], cur), _money(b["p90"], cur),
                 f"{w['p50']:.0f} [{w['p10']:.0f}&ndash;{w['p90']:.0f}]"]
                for b, w in zip(frame.to_dict("records"), won.to_dict("records"), strict=True)]
        parts.append(f"<h3>by {grain}</h3>" + _table(
            ["period", "days", "bookings mean", "P10", "P50", "P90", "won deals P50 [P10-P90]"],
            rows))
    run = fc.run
    if fc.note:
        parts.insert(0, f'<p class="note">{_e(fc.note)}</p>')
    return _section(
        "forecast", "Latest forecast: bookings fan chart and bands",
        f"From {_e(fc.source)}: as of {_e(pd.Timestamp(run['as_of']).date())}, "
        f"{int(run['horizon_days'])} days, {int(run['paths']):,} paths. Left: bookings "
        "cumulative from the as-of date; right: within each month; shaded P10-P90 and "
        "P25-P75, the line the P50.",
        _img("fan", png["fan"], "bookings fan chart"), *parts)


def _described_section(r: Report) -> str:
    from forecast.describe import _LABELS, _fmt

    rows = [[_e(_LABELS[d["quantity"]]), _e(d["stage"]), _e(d["segment"]),
             _e(_fmt(d["quantity"], d["median"], r.model.currency)),
             _e(f"{_fmt(d['quantity'], d['lo'], r.model.currency)} - "
                f"{_fmt(d['quantity'], d['hi'], r.model.currency)}")]
            for d in r.described.to_dict("records")]
    return _section(
        "model", "What the fitted rates say",
        f"From {_e(r.parameters)}, as <code>forecast describe</code> prints it: a fresh, "
        "unrecycled lead entering each stage; median and 90% interval across draws.",
        _table(["quantity", "stage", "segment", "median", "90% interval"], rows))


def write_html(path: str | Path, page: str) -> None:
    """Write the page atomically: a temporary file beside it, renamed into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(page.encode("utf-8"))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
