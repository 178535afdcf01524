"""Backtests: forecast from past cutoffs, compare with what happened, score against baselines.

For each cutoff date ``c`` the history is cut to what was known at the end of ``c``
(:func:`truncate`: every row dated after ``c`` is dropped, so a deal won later is an open deal
at ``c``, without the amount only its won row carries), the engine forecasts the horizon
``(c, c + H]`` and the truth is read from the whole history (:func:`forecast.trend.realized`).
Two metrics are scored: ``bookings`` and ``won_deals``, each summed over the horizon.

Forecasters
-----------
Every forecaster gives a *predictive sample* (one value per path), so every score is defined
for all of them:

``engine``
    The funnel simulator (``forecast.simulate``) from the open pipeline at ``c``, with the
    parameters the caller fitted on the truncated history (one posterior draw per path).
``weighted_pipeline``
    The CRM standard. Each deal open at ``c`` counts its amount times its stage's historical
    win probability (:func:`stage_win_rates`: of the deals that were ever in that stage and
    had closed by ``c``, the share won). Its predictive distribution: each open deal closes
    won independently with that probability (Bernoulli) and then books its amount: the last
    amount known at ``c``, else the mean won deal of its segment before ``c``
    (:func:`mean_deal_by_segment`). The weighted pipeline has no timing: every open deal is
    taken to close inside the horizon, as CRM roll-ups do. Plus new business at the trailing
    rate: deals created after ``c`` and won by ``c + H`` number Poisson(n), n being how many
    deals were created and won inside the ``H`` days up to ``c``; their amounts are drawn
    from those deals' amounts (bootstrap).
``run_rate``
    The trailing run-rate: won deals per week over the ``trailing`` days up to ``c`` (whole
    weeks counted back from ``c``), a negative binomial fitted to those weekly counts by the
    method of moments (Poisson when they are not over-dispersed), summed over the horizon's
    ``H / 7`` weeks (sizes add for a sum of independent NB with one success probability);
    bookings compound it with amounts drawn from the trailing won deals (bootstrap).

Scores (:func:`score`)
----------------------
Of a sample ``x`` (n values) against the truth ``y``:

- ``in50``, ``in80``, ``in90``: ``y`` inside the central band, ``[q((1-l)/2), q((1+l)/2)]``
  of the sample (linear-interpolated quantiles, ends included);
- ``pit``: the randomised probability integral transform ``P(X < y) + U·P(X = y)`` with
  ``U ~ Uniform(0, 1)``, uniform on [0, 1] for a calibrated forecaster even for counts;
- ``crps``: the continuous ranked probability score of the empirical distribution,
  ``E|X - y| - E|X - X'| / 2`` (lower is better; in the metric's unit);
- ``pinball``: the quantile (pinball) loss averaged over the levels of ``QUANTILES``;
- ``p50_error`` (``P50 - y``), ``p50_abs_error`` and ``p50_rel_error`` (``(P50 - y) / y``).

The overall rows (cutoff ``all``) are the mean of each score over the cutoffs: coverage
rates, mean PIT, mean CRPS and pinball loss, bias and mean absolute error of the P50.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

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
    open_pipeline,
)
from forecast.model import WON, FunnelModel
from forecast.parameters import Parameters

FORECASTERS = ("engine", "weighted_pipeline", "run_rate")
METRICS = ("bookings", "won_deals")
BAND_LEVELS = (0.5, 0.8, 0.9)
QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 .. 0.95: the coverage curve
PERCENTILES = tuple(round(0.01 * i, 2) for i in range(1, 100))  # the stored forecasts
TRAILING_DAYS = 91
SCORE_COLUMNS = ("in50", "in80", "in90", "pit", "crps", "pinball", "p50_error",
                 "p50_abs_error", "p50_rel_error")


# ---- the history as known at a cutoff ---------------------------------------------------------

def truncate(log: EventLog, cutoff: dt.date) -> EventLog:
    """The log as it was known at the end of ``cutoff``: rows dated after it are dropped.

    A lead with rows on both sides is open at the cutoff (in the stage of its last row on or
    before it, with only the amounts known then). Raises ``InputError`` when no row is left.
    """
    cutoff = _as_date(cutoff)
    frame = log.frame
    keep = frame["entered_at"].to_numpy(dtype="datetime64[ns]") \
        <= np.datetime64(cutoff, "D").astype("datetime64[ns]")
    if not keep.any():
        raise InputError(f"{log.path}: no rows on or before the cutoff {cutoff}")
    return replace(log, frame=frame[keep].reset_index(drop=True), as_of=cutoff,
                   pos=None if log.pos is None else log.pos[keep])


@dataclass(frozen=True)
class Wins:
    """One entry per won deal of a log: the day it was won, the day the lead first appeared
    (its creation), its segment index and its amount (NaN unknown)."""

    day: np.ndarray  # datetime64[D]
    created: np.ndarray  # datetime64[D]
    segment: np.ndarray  # int64
    amount: np.ndarray  # float64


@dataclass(frozen=True)
class _Leads:
    """A log's rows in lead order, as codes (the layout of ``forecast.eventlog``)."""

    lead: np.ndarray
    state: np.ndarray
    day: np.ndarray  # datetime64[D]
    amount: np.ndarray
    segment: np.ndarray
    first: np.ndarray
    start: np.ndarray


def _leads(log: EventLog, model: FunnelModel) -> _Leads:
    frame = log.frame
    lead, order = _lead_groups(_as_string(_arrow(frame["lead_id"])))
    state = _frame_codes(frame["stage"], model.states, "stage", log.path)[order]
    day = frame["entered_at"].to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")[order]
    amount = frame["amount"].to_numpy(dtype=np.float64, na_value=np.nan)[order]
    segment = _frame_codes(frame["segment"], model.segment_names, "segment", log.path)[order]
    first, start, _ = _lead_starts(lead)
    return _Leads(lead, state, day, amount, segment, first, start)


def wins(log: EventLog, model: FunnelModel) -> Wins:
    """Every won deal of ``log``, priced as :func:`forecast.trend.realized` prices it (the
    amount on the won row, else the lead's last known amount before it)."""
    if log.frame.empty:
        return Wins(*(np.zeros(0, t) for t in ("datetime64[D]", "datetime64[D]", np.int64,
                                               np.float64)))
    rows = _leads(log, model)
    won = rows.state == model.state_index(WON)
    entered = won & (rows.first | np.r_[True, rows.state[1:] != rows.state[:-1]])
    at = np.flatnonzero(entered)
    known = _last_where(~np.isnan(rows.amount), rows.start)[at]
    amount = np.where(known >= 0, rows.amount[np.maximum(known, 0)], np.nan)
    default = model.segment_names.index(model.default_segment)
    seg = np.where(rows.segment[at] >= 0, rows.segment[at], default)
    return Wins(day=rows.day[at], created=rows.day[rows.start[at]], segment=seg.astype(np.int64),
                amount=amount)


def actuals(log: EventLog, model: FunnelModel, cutoff: dt.date, horizon: int) -> dict:
    """What happened in ``(cutoff, cutoff + horizon]``: bookings and won deals.

    Raises ``InputError`` when the log ends before ``cutoff + horizon`` (the truth is not
    known yet), naming the log and its last date.
    """
    cutoff = _as_date(cutoff)
    end = cutoff + dt.timedelta(days=horizon)
    last = log.frame["entered_at"].max()
    if pd.isna(last) or last.date() < end:
        shown = "no rows" if pd.isna(last) else f"its last date is {last.date()}"
        raise InputError(f"{log.path}: cutoff {cutoff} + {horizon} days = {end} is after the end "
                         f"of the history ({shown}); pick an earlier cutoff or a shorter "
                         "--horizon")
    w = wins(log, model)
    inside = (w.day > np.datetime64(cutoff, "D")) & (w.day <= np.datetime64(end, "D"))
    return {"bookings": float(np.nan_to_num(w.amount[inside], nan=0.0).sum()),
            "won_deals": float(inside.sum())}


# ---- the baselines ----------------------------------------------------------------------------

def stage_win_rates(log: EventLog, model: FunnelModel) -> tuple[np.ndarray, np.ndarray]:
    """Per transient state: the share of deals ever in it that closed won, among those closed.

    ``log`` is the history as known at the cutoff (:func:`truncate`); deals still open are
    left out (the CRM standard). Returns ``(rate, closed)``: the rate (NaN where no deal that
    was in the state has closed) and the number of closed deals behind it.
    """
    n_t = model.n_transient
    if log.frame.empty:
        return np.full(n_t, np.nan), np.zeros(n_t, np.int64)
    rows = _leads(log, model)
    ends = np.flatnonzero(np.r_[rows.lead[1:] != rows.lead[:-1], True])
    final = rows.state[ends]
    lead_no = np.cumsum(rows.first) - 1
    visited = np.zeros((ends.size, n_t), dtype=bool)
    transient = rows.state < n_t
    visited[lead_no[transient], rows.state[transient]] = True
    closed = final >= model.state_index(WON)
    won = final == model.state_index(WON)
    n_closed = (visited & closed[:, None]).sum(0)
    n_won = (visited & won[:, None]).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n_closed > 0, n_won / np.maximum(n_closed, 1), np.nan)
    return rate, n_closed.astype(np.int64)


def mean_deal_by_segment(won: Wins, n_segments: int) -> np.ndarray:
    """The mean known amount of the won deals per segment; segments without one take the
    mean over all segments (0 when no won deal has an amount)."""
    known = ~np.isnan(won.amount)
    overall = float(won.amount[known].mean()) if known.any() else 0.0
    total = np.bincount(won.segment[known], weights=won.amount[known], minlength=n_segments)
    count = np.bincount(won.segment[known], minlength=n_segments)
    return np.where(count > 0, total / np.maximum(count, 1), overall)


def _compound(counts: np.ndarray, amounts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per path, the sum of ``counts[p]`` amounts drawn with replacement from ``amounts``."""
    if amounts.size == 0 or counts.sum() == 0:
        return np.zeros(counts.size)
    draws = rng.choice(amounts, size=int(counts.sum()), replace=True)
    path = np.repeat(np.arange(counts.size), counts)
    return np.bincount(path, weights=draws, minlength=counts.size)


def _known(amount: np.ndarray) -> np.ndarray:
    return np.nan_to_num(amount[~np.isnan(amount)], nan=0.0)


def weighted_pipeline(log: EventLog, model: FunnelModel, cutoff: dt.date, horizon: int,
                      n_paths: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The weighted pipeline's predictive sample of bookings and won deals (see the module
    docstring): open deals Bernoulli(stage win rate) × amount, plus new business created and
    won within the horizon at the trailing rate. ``log`` is the history known at ``cutoff``.
    """
    cutoff = _as_date(cutoff)
    pipe = open_pipeline(log, model, cutoff)
    rate, _ = stage_win_rates(log, model)
    rate = np.nan_to_num(rate, nan=0.0)
    won = wins(log, model)
    deal = mean_deal_by_segment(won, len(model.segments))
    amount = np.where(np.isnan(pipe.amount), deal[pipe.segment], pipe.amount)
    p = rate[pipe.state]
    closes = rng.random((n_paths, len(pipe))) < p[None, :]
    c = np.datetime64(cutoff, "D")
    recent = (won.created > c - np.timedelta64(horizon, "D")) & (won.day <= c)
    new = rng.poisson(float(recent.sum()), size=n_paths)
    new_amounts = _known(won.amount[recent])
    return {"bookings": closes @ amount + _compound(new, new_amounts, rng),
            "won_deals": (closes.sum(1) + new).astype(np.float64)}


def nb_moments(counts: np.ndarray) -> tuple[float, float]:
    """Method-of-moments negative binomial of ``counts``: ``(mean, size)``; size ``inf``
    (Poisson) when the counts are not over-dispersed."""
    mean = float(np.mean(counts)) if counts.size else 0.0
    var = float(np.var(counts, ddof=1)) if counts.size > 1 else mean
    return mean, (mean**2 / (var - mean) if var > mean > 0 else np.inf)


def run_rate(log: EventLog, model: FunnelModel, cutoff: dt.date, horizon: int, n_paths: int,
             rng: np.random.Generator, trailing: int = TRAILING_DAYS) -> dict[str, np.ndarray]:
    """The trailing run-rate's predictive sample (see the module docstring): weekly won-deal
    counts over the ``trailing`` days up to ``cutoff``, NB by moments, over ``horizon / 7``
    weeks; bookings with amounts bootstrapped from the trailing won deals."""
    cutoff = _as_date(cutoff)
    weeks = max(trailing // 7, 1)
    won = wins(log, model)
    back = (np.datetime64(cutoff, "D") - won.day).astype(np.int64)  # 0 = won on the cutoff
    inside = (back >= 0) & (back < 7 * weeks)
    weekly = np.bincount(back[inside] // 7, minlength=weeks)
    mean, size = nb_moments(weekly)
    scale = horizon / 7.0
    if mean == 0:
        counts = np.zeros(n_paths, dtype=np.int64)
    elif np.isinf(size):
        counts = rng.poisson(mean * scale, size=n_paths)
    else:  # numpy's NB(n, p) has mean n (1 - p) / p
        n = size * scale
        counts = rng.negative_binomial(n, n / (n + mean * scale), size=n_paths)
    return {"bookings": _compound(counts, _known(won.amount[inside]), rng),
            "won_deals": counts.astype(np.float64)}


def engine(model: FunnelModel, params: Parameters, log: EventLog, cutoff: dt.date, horizon: int,
           n_paths: int, seed: int) -> dict[str, np.ndarray]:
    """The engine's predictive sample: the simulator from the open pipeline at ``cutoff``."""
    from forecast.outlook import simulate_ahead

    cutoff = _as_date(cutoff)
    result = simulate_ahead(model, params, open_pipeline(log, model, cutoff), cutoff, horizon,
                            n_paths, seed)
    return {"bookings": result.bookings.sum(1),
            "won_deals": result.won.sum(1).astype(np.float64)}


# ---- scores -------------------------------------------------------------------------------------

def crps(sample: np.ndarray, y: float) -> float:
    """CRPS of the empirical distribution of ``sample`` at ``y``: ``E|X-y| - E|X-X'|/2``.

    ``E|X-X'|`` from the sorted sample: ``2/n² Σ_i (2i - n - 1) x_(i)`` (i = 1..n).
    """
    x = np.sort(np.asarray(sample, dtype=np.float64))
    n = x.size
    spread = 2.0 * np.dot(2.0 * np.arange(1, n + 1) - n - 1, x) / n**2
    return float(np.mean(np.abs(x - y)) - 0.5 * spread)


def pinball(sample: np.ndarray, y: float, levels=QUANTILES) -> float:
    """The pinball (quantile) loss of the sample's quantiles at ``levels``, averaged."""
    q = np.quantile(sample, levels)
    tau = np.asarray(levels)
    return float(np.mean(np.maximum(tau * (y - q), (tau - 1.0) * (y - q))))


def pit(sample: np.ndarray, y: float, u: float) -> float:
    """Randomised PIT: ``P(X < y) + u·P(X = y)`` under the sample (``u`` uniform on [0, 1])."""
    return float(np.mean(sample < y) + u * np.mean(sample == y))


def score(sample: np.ndarray, y: float, u: float) -> dict:
    """Every score of one predictive sample against the truth (module docstring)."""
    sample = np.asarray(sample, dtype=np.float64)
    out = {"actual": y, "mean": float(sample.mean())}
    out.update({_label(q): float(v) for q, v in zip(GRID, np.quantile(sample, GRID),
                                                   strict=True)})
    for level in BAND_LEVELS:
        lo, hi = np.quantile(sample, [(1 - level) / 2, (1 + level) / 2])
        out[f"in{round(level * 100)}"] = float(lo <= y <= hi)
    p50 = out["p50"]
    out.update({"pit": pit(sample, y, u), "crps": crps(sample, y), "pinball": pinball(sample, y),
                "p50_error": p50 - y, "p50_abs_error": abs(p50 - y),
                "p50_rel_error": (p50 - y) / y if y else np.nan})
    return out


def _label(q: float) -> str:
    from forecast.summarize import quantile_label

    return quantile_label(q)


# ---- one cutoff, all cutoffs ------------------------------------------------------------------

Fitter = Callable[[EventLog, dt.date], Parameters]
"""``fitter(history known at the cutoff, cutoff)`` -> the engine's parameter sets."""


def backtest_cutoff(log: EventLog, model: FunnelModel, cutoff: dt.date, horizon: int,
                    n_paths: int, seed: int, fitter: Fitter,
                    trailing: int = TRAILING_DAYS) -> tuple[list[dict], list[dict]]:
    """Forecast from ``cutoff`` with the engine and both baselines and score them.

    ``log`` is the whole history: only :func:`truncate` of it reaches the forecasters (and
    ``fitter``); the truth comes from the whole. Returns one row per forecaster and metric.
    Same inputs and seed, same rows. Also returns the forecasts themselves: per forecaster
    and metric the mean and the percentiles 1..99 of the predictive sample.
    """
    cutoff = _as_date(cutoff)
    truth = actuals(log, model, cutoff, horizon)
    known = truncate(log, cutoff)
    samples = {
        "engine": engine(model, fitter(known, cutoff), known, cutoff, horizon, n_paths, seed),
        "weighted_pipeline": weighted_pipeline(known, model, cutoff, horizon, n_paths,
                                               _rng(seed, cutoff, 1)),
        "run_rate": run_rate(known, model, cutoff, horizon, n_paths, _rng(seed, cutoff, 2),
                             trailing),
    }
    u = _rng(seed, cutoff, 3).random((len(FORECASTERS), len(METRICS)))
    rows, percentiles = [], []
    for i, name in enumerate(FORECASTERS):
        for j, metric in enumerate(METRICS):
            key = {"cutoff": cutoff.isoformat(), "forecaster": name, "metric": metric}
            rows.append({**key, **score(samples[name][metric], truth[metric], u[i, j])})
            levels = np.quantile(samples[name][metric], PERCENTILES)
            percentiles.append({**key, "actual": truth[metric],
                                "mean": float(samples[name][metric].mean()),
                                **{_label(q): float(v) for q, v in zip(PERCENTILES, levels,
                                                                       strict=True)}})
    return rows, percentiles


def _rng(seed: int, cutoff: dt.date, stream: int) -> np.random.Generator:
    """A generator of its own per (seed, cutoff, use): results do not depend on the order."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(cutoff.toordinal(),
                                                                        stream)))


def backtest(log: EventLog, model: FunnelModel, cutoffs: list[dt.date], horizon: int,
             n_paths: int, seed: int, fitter: Fitter, trailing: int = TRAILING_DAYS,
             progress: Callable[[str], None] | None = None
             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`backtest_cutoff` for each cutoff: the scores with the overall rows (cutoff
    ``all``) appended, and the forecasts (percentiles per cutoff, forecaster and metric)."""
    import time

    rows, percentiles = [], []
    for cutoff in cutoffs:
        started = time.perf_counter()
        r, p = backtest_cutoff(log, model, cutoff, horizon, n_paths, seed, fitter, trailing)
        rows += r
        percentiles += p
        if progress is not None:
            progress(f"cutoff {cutoff}: done in {time.perf_counter() - started:.0f} s")
    return with_overall(pd.DataFrame(rows)), pd.DataFrame(percentiles)


def with_overall(table: pd.DataFrame) -> pd.DataFrame:
    """Append per forecaster and metric the mean of every score over the cutoffs."""
    per = table[table["cutoff"] != "all"]
    overall = per.groupby(["forecaster", "metric"], sort=False)[list(SCORE_COLUMNS)].mean()
    overall = overall.reset_index()
    overall.insert(0, "cutoff", "all")
    return pd.concat([per, overall], ignore_index=True)


def parse_cutoffs(text: str) -> list[dt.date]:
    """``2017-05-31,2017-06-30`` -> sorted distinct dates; ``ValueError`` naming a bad one."""
    out = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.add(dt.date.fromisoformat(part))
        except ValueError:
            raise ValueError(f"--cutoffs: {part!r} is not a date (expected YYYY-MM-DD)") \
                from None
    if not out:
        raise ValueError("--cutoffs: give at least one date, e.g. 2017-05-31,2017-06-30")
    return sorted(out)


# ---- rendering ----------------------------------------------------------------------------------

def coverage_curve(table: pd.DataFrame) -> pd.DataFrame:
    """Per forecaster and metric, the share of cutoffs whose truth is inside the central band
    of each nominal level 0.1, 0.2, ..., 0.9 (from the stored quantile grid)."""
    per = table[table["cutoff"] != "all"]
    rows = []
    for (name, metric), g in per.groupby(["forecaster", "metric"], sort=False):
        for level in np.round(np.arange(0.1, 0.91, 0.1), 1):
            lo, hi = _label(round((1 - level) / 2, 2)), _label(round((1 + level) / 2, 2))
            inside = (g[lo] <= g["actual"]) & (g["actual"] <= g[hi])
            rows.append({"forecaster": name, "metric": metric, "nominal": level,
                         "coverage": float(inside.mean())})
    return pd.DataFrame(rows)


def calibration_chart(path, table: pd.DataFrame, title: str) -> None:
    """PIT histograms (left) and coverage against nominal (right), one row per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per = table[table["cutoff"] != "all"]
    curve = coverage_curve(table)
    colors = {"engine": "tab:blue", "weighted_pipeline": "tab:orange", "run_rate": "tab:green"}
    fig, axes = plt.subplots(len(METRICS), 2, figsize=(11, 4 * len(METRICS)),
                             constrained_layout=True, squeeze=False)
    bins = np.linspace(0, 1, 6)
    width = 0.2 / (len(FORECASTERS) + 1)
    for row, metric in enumerate(METRICS):
        ax, ax2 = axes[row]
        for k, name in enumerate(FORECASTERS):
            values = per[(per["forecaster"] == name) & (per["metric"] == metric)]["pit"]
            counts, _ = np.histogram(values, bins=bins)
            ax.bar(bins[:-1] + width * (k + 0.5), counts, width=width, color=colors[name],
                   label=name.replace("_", " "), align="edge")
            c = curve[(curve["forecaster"] == name) & (curve["metric"] == metric)]
            ax2.plot(c["nominal"], c["coverage"], "o-", color=colors[name], zorder=3 - k,
                     markersize=9 - 2.5 * k, label=name.replace("_", " "))  # overlaps visible
        n = per["cutoff"].nunique()
        ax.axhline(n / (len(bins) - 1), color="black", ls="--", lw=1, label="uniform")
        ax.set_xlim(0, 1)
        ax.set_xlabel("PIT of the actual")
        ax.set_ylabel("cutoffs")
        plural = "s" if n != 1 else ""
        ax.set_title(f"{metric}: PIT histogram ({n} cutoff{plural})", loc="left", fontsize=10)
        ax.legend(frameon=False, fontsize=8)
        ax2.plot([0, 1], [0, 1], color="black", ls="--", lw=1, label="ideal")
        ax2.set_xlim(0, 1)
        ax2.set_ylim(-0.02, 1.02)
        ax2.set_xlabel("nominal coverage of the central band")
        ax2.set_ylabel("share of cutoffs inside")
        ax2.set_title(f"{metric}: coverage against nominal", loc="left", fontsize=10)
        ax2.grid(alpha=0.3)
        ax2.legend(frameon=False, fontsize=8, loc="upper left")
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_table(table: pd.DataFrame, header: list[str], currency: str) -> str:
    """The stdout table: per metric, one row per cutoff and forecaster, then the overall."""
    from forecast.outputs import money

    def show(metric, x):
        if pd.isna(x):
            return ""
        return money(x, currency) if metric == "bookings" else f"{x:,.0f}"

    lines = list(header)
    per = table[table["cutoff"] != "all"]
    overall = table[table["cutoff"] == "all"]
    for metric in METRICS:
        m = per[per["metric"] == metric]
        cols = ["cutoff", "forecaster", "actual", "P10", "P50", "P90", "in 50/80/90", "PIT",
                "CRPS", "pinball", "P50 error"]
        rows = [[r.cutoff, r.forecaster.replace("_", " "), show(metric, r.actual),
                 show(metric, r.p10), show(metric, r.p50), show(metric, r.p90),
                 "/".join("y" if v else "n" for v in (r.in50, r.in80, r.in90)),
                 f"{r.pit:.2f}", show(metric, r.crps), show(metric, r.pinball),
                 _signed(metric, r.p50_error, r.p50_rel_error, currency)]
                for r in m.itertuples(index=False)]
        lines += ["", f"{metric.replace('_', ' ')}, each horizon:", *_grid(cols, rows, 2)]
        o = overall[overall["metric"] == metric]
        cols = ["overall", "forecaster", "in 50%", "in 80%", "in 90%", "mean PIT", "CRPS",
                "pinball", "P50 MAE", "P50 bias", "P50 MAPE"]
        rows = [["all", r.forecaster.replace("_", " "), f"{r.in50:.0%}", f"{r.in80:.0%}",
                 f"{r.in90:.0%}", f"{r.pit:.2f}", show(metric, r.crps), show(metric, r.pinball),
                 show(metric, r.p50_abs_error),
                 ("+" if r.p50_error >= 0 else "-") + show(metric, abs(r.p50_error)),
                 "" if pd.isna(r.p50_rel_error) else _mape(per, r.forecaster, metric)]
                for r in o.itertuples(index=False)]
        lines += ["", *_grid(cols, rows, 2)]
    return "\n".join(lines)


def _mape(per: pd.DataFrame, name: str, metric: str) -> str:
    g = per[(per["forecaster"] == name) & (per["metric"] == metric)]
    return f"{g['p50_rel_error'].abs().mean():.0%}"


def _signed(metric: str, error: float, rel: float, currency: str) -> str:
    from forecast.outputs import money

    text = money(abs(error), currency) if metric == "bookings" else f"{abs(error):,.0f}"
    rel_text = "" if pd.isna(rel) else f" ({rel:+.0%})"
    return ("+" if error >= 0 else "-") + text + rel_text


def _grid(cols: list[str], rows: list[list[str]], left: int) -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(cols, *rows, strict=True)]
    line = "  ".join(f"{{:{'<' if i < left else '>'}{w}}}" for i, w in enumerate(widths))
    return [line.format(*cols), "  ".join("-" * w for w in widths),
            *(line.format(*r) for r in rows)]
