"""Stress tests and planning on the simulator: scenarios against a baseline, sweeps of one
lever, the sensitivity of bookings to every lever, and the probabilistic reverse funnel.

Every comparison here uses common random numbers: the baseline and each variant run the same
paths with the same root seed (so the same per-path random streams) and the same parameter set
(posterior draw) on each path. A variant that changes nothing therefore gives exactly the
baseline, and the per-path difference is much less noisy than the difference of two
independent runs.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecast.hazards import reach_probability
from forecast.model import WON, FunnelModel
from forecast.outlook import MAX_SETS, walk_ahead
from forecast.parameters import Parameters
from forecast.scenario import (
    Change,
    Scenario,
    ScenarioError,
    apply_changes,
    closing_stages,
    needed_band_edges,
    parse_change,
    scenario_run,
    split_bands,
    switch_days,
)
from forecast.simulate import Pipeline, SimulationResult, simulate
from forecast.summarize import Periods, per_period, quantile_label


@dataclass(frozen=True)
class Setting:
    """The common ground of a family of runs: model, parameters, pipeline, dates, paths."""

    model: FunnelModel
    params: Parameters
    pipeline: Pipeline
    as_of: dt.date
    horizon: int
    paths: int
    seed: int
    occupancy_days: np.ndarray | None = None


def run_scenarios(setting: Setting, scenarios: Sequence[Scenario],
                  progress: Callable[[int, int], None] | None = None, *,
                  baseline: bool = True) -> list[SimulationResult]:
    """The baseline (unless ``baseline`` is false), then each scenario, on common random
    numbers.

    Age-band edges that any scenario needs (``expiry within_days``) are added for all runs,
    the baseline included, so every run is the same process on the same bands. Likewise every
    run is cut into epochs at every scenario's dates (a run unchanged on a date keeps its
    parameter set there): the simulator's cohorts draw per epoch, so runs cut alike draw alike
    up to the first date where they differ.

    With a drift fit's posterior the walk goes on over the horizon as in ``forecast run``
    (:func:`forecast.outlook.walk_ahead`): every run takes the same path of the walk on the
    same path, and a scenario's changes apply to the walked rates of each period.
    """
    edges = sorted({e for sc in scenarios for e in needed_band_edges(setting.model, sc.changes)})
    model, params = split_bands(setting.model, setting.params, edges)
    ahead = walk_ahead(model, params, setting.as_of, setting.horizon, setting.paths,
                       setting.seed)
    if ahead is None:  # one set per path all along
        walk_index = (np.arange(setting.paths, dtype=np.int64) % params.n_sets)[:, None]
        walk_days = np.zeros(0, dtype=np.int64)
    else:  # one set per path and period of the walk
        params, walk_index, walk_days = ahead.params, ahead.set_index, ahead.switch_days
    todo = [Scenario.empty(), *scenarios] if baseline else list(scenarios)
    dated = [switch_days(sc, setting.as_of, setting.horizon) for sc in todo]
    if ahead is not None:  # each block of changes copies every walked set
        blocks = max(1 + len(d) for d in dated)
        if params.n_sets * blocks > MAX_SETS:
            per_path = params.n_sets // setting.paths * blocks
            raise ScenarioError(
                f"a drift fit's walk makes a parameter set per path and period, and a scenario "
                f"with {blocks - 1} dates copies them {blocks} times: {params.n_sets * blocks:,} "
                f"sets, more than {MAX_SETS:,}; use --paths {MAX_SETS // per_path:,} or fewer")
    days = np.array(sorted({*walk_days.tolist(), *(d for ds in dated for d in ds)}),
                    dtype=np.int64)
    starts = np.concatenate([[0], days])  # the first day of each epoch of the common cut
    walk_set = walk_index[:, np.searchsorted(walk_days, starts, side="right")]
    out = []
    for i, sc in enumerate(todo):
        plan = scenario_run(model, params, setting.pipeline, sc, setting.as_of,
                            setting.horizon, setting.paths, setting.seed,
                            np.zeros(setting.paths, dtype=np.int64))
        # The plan's block of changes in force at the start of each epoch of the common cut
        # (its sets ``block * n_sets + set``), and the walk's set there.
        block = np.searchsorted(plan.switch_days, starts, side="right")
        out.append(simulate(model, plan.params, plan.pipeline, setting.as_of, setting.horizon,
                            setting.paths, setting.seed,
                            set_index=plan.set_index[:, block] + walk_set,
                            switch_days=days, occupancy_days=setting.occupancy_days,
                            epochs=ahead is not None))  # a walk draws as `run` does
        if progress is not None:
            progress(i + 1, len(todo))
    return out


# ---- comparing a scenario with the baseline --------------------------------------------------

def metric_values(result: SimulationResult, per: Periods, metric: str) -> np.ndarray:
    """``[path, period + total]``: the metric per period, then over the whole horizon."""
    daily = {"bookings": result.bookings, "won_deals": result.won,
             "lost_to_expiry": result.lost_to_expiry, "recaptured": result.recaptured,
             "expired_all": result.expired.sum(axis=2), "arrivals": result.arrivals}
    if metric in daily:  # a flow: no need for occupancy at the period ends
        x = np.add.reduceat(daily[metric], per.first_day, axis=1).astype(float)
    else:
        values = per_period(result, per)
        if metric not in values:
            raise ValueError(f"unknown metric {metric!r} (one of {', '.join(values)})")
        x = values[metric].astype(float)
    total = x[:, -1:] if metric.startswith("in_") else x.sum(1, keepdims=True)
    return np.concatenate([x, total], axis=1)


def lower_is_better(metric: str) -> bool:
    """Which way of a :func:`metric_values` metric is better: lower for what is lost (money
    lost to expiry, leads gone cold: ``lost_to_expiry``, ``expired_all``, ``expired_<stage>``;
    leads in ``nurture`` or ``lost`` at a period's end), higher for the rest (bookings, won
    deals, recaptured leads, new leads (``arrivals``), leads in the funnel's stages or won)."""
    return metric in ("lost_to_expiry", "expired_all", "in_nurture", "in_lost") \
        or metric.startswith("expired_")


def mean_se(x: np.ndarray) -> float:
    """The Monte Carlo standard error of the mean of ``x`` (one value per path):
    ``sd(x) / sqrt(paths)`` (NaN with fewer than two paths). For a per-path difference on
    common random numbers it is small for a change of rates (win rate: the paths that win
    anyway still win) and nearly that of two independent runs for a change of timing (days in
    stage, going cold: every exit day moves)."""
    return float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan


def compare(base: SimulationResult, other: SimulationResult, per: Periods, metric: str,
            quantiles: Sequence[float]) -> pd.DataFrame:
    """Per period (and ``total``), with its span inside the horizon (``start``, ``end``,
    ``days``): bands of the baseline, of the scenario and of their per-path difference, and
    the probability that the scenario does better (or worse) than the baseline on the same
    path: strictly higher, or strictly lower for a metric where lower is better
    (:func:`lower_is_better`; the ``better`` column says which). ``delta_mean_se`` is the
    Monte Carlo standard error of ``delta_mean`` (:func:`mean_se` of the per-path
    differences)."""
    b, s = metric_values(base, per, metric), metric_values(other, per, metric)
    d = s - b
    gain = -d if lower_is_better(metric) else d  # > 0: the scenario does better on the path
    rows = []
    # Each period's span inside the horizon, as `forecast run` gives it (a first or last
    # period may be partial: 28 days of a quarter); the total spans the whole horizon.
    starts, ends = [*per.start, per.start[0]], [*per.end, per.end[-1]]
    days = [*(per.last_day - per.first_day + 1).tolist(), int(per.last_day[-1] + 1)]
    for j, label in enumerate([*per.labels, "total"]):
        row = {"period": label, "start": starts[j].isoformat(), "end": ends[j].isoformat(),
               "days": int(days[j]), "metric": metric}
        for name, x in (("baseline", b[:, j]), ("scenario", s[:, j]), ("delta", d[:, j])):
            row[f"{name}_mean"] = x.mean()
            for q, v in zip(quantiles, np.quantile(x, quantiles), strict=True):
                row[f"{name}_{quantile_label(q)}"] = v
        row["delta_mean_se"] = mean_se(d[:, j])
        row["better"] = "lower" if lower_is_better(metric) else "higher"
        row["p_better"] = float(np.mean(gain[:, j] > 0))
        row["p_worse"] = float(np.mean(gain[:, j] < 0))
        rows.append(row)
    return pd.DataFrame(rows)


# ---- one period inside the horizon -----------------------------------------------------------

@dataclass(frozen=True)
class Window:
    """Days ``first .. last`` (indices of the horizon) of a calendar period."""

    label: str
    start: dt.date
    end: dt.date
    first: int
    last: int
    period_start: dt.date | None = None  # the calendar period's first day (before ``start``
    # when the period was under way at the as-of date)

    @property
    def days(self) -> int:
        return self.last - self.first + 1

    @property
    def under_way(self) -> bool:
        """The period began on or before the as-of date: only its days after it count."""
        return self.period_start is not None and self.period_start < self.start


def window(label: str, start: dt.date, end: dt.date, as_of: dt.date) -> Window:
    """The part of the period ``start .. end`` after ``as_of`` (an error if none is)."""
    if end <= as_of:
        raise ValueError(f"period {label} ({start} to {end}) ended on or before the as-of "
                         f"date {as_of}: nothing to forecast")
    first = max((start - as_of).days - 1, 0)
    return Window(label=label, start=max(start, as_of + dt.timedelta(days=1)), end=end,
                  first=first, last=(end - as_of).days - 1, period_start=start)


def in_window(x: np.ndarray, w: Window) -> np.ndarray:
    """Per path: the daily array ``x[path, day]`` summed over the window's days."""
    return x[:, w.first:w.last + 1].sum(axis=1)


# ---- sweep ----------------------------------------------------------------------------------

DEFAULT_OPS = {"win_rate": "add", "conversion": "add", "velocity": "multiply",
               "expiry": "multiply", "recapture": "multiply", "arrivals": "multiply",
               "deal_size": "multiply", "neglect": "share"}


def lever_change(model: FunnelModel, lever: str, op: str, value: float,
                 stage: str | None = None, segment: str | None = None,
                 where: str | None = None) -> Change:
    """A change built from the command line (validated like a scenario file's); ``where``
    names it in messages (default: the ``--lever`` option that made it)."""
    raw = {"lever": lever, op: value}
    if stage is not None:
        raw["stage"] = stage
    if segment is not None:
        raw["segment"] = segment
    return parse_change(raw, model, where or f"--lever {lever} {op} {value:g}")


def changed_sets(setting: Setting) -> Parameters:
    """The parameter sets the runs of ``setting`` change: with a drift posterior, its walk's
    (a change that fits the as-of rates may not fit a path's walked ones: a win rate pushed
    past 1)."""
    ahead = walk_ahead(setting.model, setting.params, setting.as_of, setting.horizon,
                       setting.paths, setting.seed)
    return setting.params if ahead is None else ahead.params


def sweep(setting: Setting, changes: Sequence[Change], w: Window, quantiles: Sequence[float],
          target: float | None = None,
          progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Bookings (and won deals) in the window for each change, on common random numbers.

    A change the parameters cannot take (a win rate pushed past 1) is left out, before any
    run, and listed with the reason in ``frame.attrs["skipped"]``; when none can be taken,
    the first one's error is raised."""
    sets, kept, skipped, errors = changed_sets(setting), [], [], []
    for c in changes:
        try:
            apply_changes(setting.model, sets, [c])
        except ScenarioError as exc:
            errors.append(exc)
            skipped.append(f"{exc}; left out")
            continue
        kept.append(c)
    if not kept and errors:
        raise errors[0]
    changes = kept
    scenarios = [Scenario(name=c.describe(), description="", changes=(c,)) for c in changes]
    results = run_scenarios(setting, scenarios, progress, baseline=False)
    rows = []
    for c, res in zip(changes, results, strict=True):
        booked = in_window(res.bookings, w)
        row = {"value": c.value, "op": c.op, "bookings_mean": booked.mean()}
        for q, v in zip(quantiles, np.quantile(booked, quantiles), strict=True):
            row[f"bookings_{quantile_label(q)}"] = v
        row["won_deals_mean"] = in_window(res.won, w).mean()
        if target is not None:
            row["p_target"] = float(np.mean(booked >= target))
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs["skipped"] = skipped
    return frame


# ---- sensitivity ----------------------------------------------------------------------------

# A lever whose change of mean bookings is within this many standard errors of zero both ways
# is lost in the Monte Carlo noise (sensitivity says so).
NOISE_SE = 2.0

@dataclass(frozen=True)
class Lever:
    """One lever of the sensitivity analysis: a name, and its change for a step of ``x``
    (positive: the direction that helps bookings)."""

    name: str
    make: Callable[[float], Change]
    segment: str | None = None  # arrivals of one segment: its spend scales with them


def levers(model: FunnelModel) -> list[Lever]:
    """Every lever of the model, each moved by a relative amount ``x`` in its helpful
    direction: probabilities and volumes times ``1 + x``, days in stage and going cold times
    ``1 - x`` (``x`` negative moves the other way). Messages name the lever (``win rate``)."""
    closing = set(closing_stages(model))

    def change(name: str, lever: str, factor: float, **where) -> Change:
        return lever_change(model, lever, "multiply", factor, where=name, **where)

    out = [Lever("win rate", lambda x: change("win rate", "win_rate", 1 + x))]
    for s in model.stages:
        if s in closing:
            continue
        if any(model.move_kind(s, d) in ("advance", "skip") for d in model.hazards.get(s, {})):
            out.append(Lever(f"conversion {s}", lambda x, s=s: change(
                f"conversion {s}", "conversion", 1 + x, stage=s)))
    for s in model.stages:
        if model.hazards.get(s):
            out.append(Lever(f"days in {s}", lambda x, s=s: change(
                f"days in {s}", "velocity", 1 - x, stage=s)))
    for s in model.stages:
        if any(model.move_kind(s, d) == "expiry" for d in model.hazards.get(s, {})):
            out.append(Lever(f"going cold from {s}", lambda x, s=s: change(
                f"going cold from {s}", "expiry", 1 - x, stage=s)))
    if any(model.move_kind("nurture", d) == "recapture" for d in model.hazards.get("nurture", {})):
        out.append(Lever("recapture", lambda x: change("recapture", "recapture", 1 + x)))
    for g in model.segment_names:
        out.append(Lever(f"arrivals {g}", lambda x, g=g: change(
            f"arrivals {g}", "arrivals", 1 + x, segment=g), segment=g))
    out.append(Lever("deal size", lambda x: change("deal size", "deal_size", 1 + x)))
    return out


def sensitivity(setting: Setting, change: float, w: Window, target: float | None,
                spend: dict[str, float] | None = None, ltv_multiple: float = 1.0,
                progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Each lever moved by the relative step ``change`` both ways: mean and P50 bookings in
    the window and the probability of reaching ``target``, against the baseline; ranked by
    the change in mean bookings the helpful way. With ``spend`` (per segment, in currency per
    day of the window), the cost of acquiring a customer (CAC: spend / won deals) and LTV:CAC
    (LTV = mean won deal times ``ltv_multiple``) under each lever; spend on a segment scales
    with its arrivals.

    The mean, not the P50, measures and orients the effect: on common random numbers the
    mean of the per-path differences is sharp, while the P50 of bookings (lumpy sums of a few
    large deals) jumps by a deal's size either way for a small change.

    Columns are named by direction, not by the sign of the lever's move: ``*_helpful`` is the
    lever moved the way that raises mean bookings, ``*_harmful`` the other way. That is
    probabilities, recapture, arrivals and deal size up and days in stage and going cold down,
    unless the runs find the other way raises the mean more (a lever whose effect in the
    window is within the Monte Carlo noise of the paired difference, as for days in a stage
    far from closing). ``helpful_factor`` and
    ``harmful_factor`` are the multipliers applied to the lever (``days in sql`` helpful: 0.9,
    10% fewer days). So ``delta_mean_helpful >= delta_mean_harmful`` on every row.
    ``delta_mean_se_*`` are their Monte Carlo standard errors (:func:`mean_se` of the per-path
    differences), and ``lost_in_noise`` marks a lever whose two changes are both within
    ``NOISE_SE`` standard errors of zero: its helpful way is the one the runs happened to
    favour. Levers of timing (days in stage, going cold) are noisy even on common random
    numbers: every exit day moves, so the per-path differences are nearly as spread as those
    of independent runs.

    A lever that cannot be moved by ``change`` (a probability pushed past 1, or past what its
    age bands can reach) is left out, both ways, and listed in ``frame.attrs["skipped"]`` with
    the reason: the two directions of a row are compared to orient and rank it, and one
    direction alone would be a half row the others cannot be ranked against."""
    all_levers = levers(setting.model)
    scenarios, skipped, factors = [], [], {}
    sets = changed_sets(setting)
    for lv in all_levers:
        try:
            up, down = lv.make(change), lv.make(-change)
            # A move the parameters cannot take fails here, before any simulation (as
            # run_scenarios would apply it, on every parameter set).
            for c in (up, down):
                apply_changes(setting.model, sets, [c])
        except ScenarioError as exc:
            skipped.append(f"{exc}; left out at a change of {change:.0%}")
            continue
        factors[lv.name] = (up.value, down.value)
        scenarios += [Scenario(name=f"{lv.name} up", description="", changes=(up,)),
                      Scenario(name=f"{lv.name} down", description="", changes=(down,))]
    results = run_scenarios(setting, scenarios, progress)
    base = results[0]

    def stats(res: SimulationResult, lv: Lever | None, sign: float) -> dict:
        booked = in_window(res.bookings, w)
        won = in_window(res.won, w)
        out = {"p50": float(np.median(booked)), "mean": float(booked.mean())}
        if target is not None:
            out["p_target"] = float(np.mean(booked >= target))
        if spend is not None:
            cost = sum(v * w.days * ((1 + sign * change) if lv is not None
                                     and lv.segment == g else 1.0)
                       for g, v in spend.items())
            deals = won.mean()
            out["cac"] = cost / deals if deals > 0 else math.inf
            mean_deal = booked.sum() / won.sum() if won.sum() > 0 else math.nan
            out["ltv_cac"] = mean_deal * ltv_multiple / out["cac"] if deals > 0 else 0.0
        return out

    b = stats(base, None, 0.0)
    base_booked = in_window(base.bookings, w)

    def se(res: SimulationResult) -> float:
        """The standard error of the change of mean bookings against the baseline."""
        return mean_se(in_window(res.bookings, w) - base_booked)

    rows = []
    named = {sc.name: res for sc, res in zip(scenarios, results[1:], strict=True)}
    for lv in all_levers:
        if lv.name not in factors:
            continue
        up, down = named[f"{lv.name} up"], named[f"{lv.name} down"]
        good, bad = stats(up, lv, 1.0), stats(down, lv, -1.0)
        good["se"], bad["se"] = se(up), se(down)
        helpful, harmful = factors[lv.name]
        if bad["mean"] > good["mean"]:  # the other way raises mean bookings here
            good, bad, helpful, harmful = bad, good, harmful, helpful
        noise = all(abs(x["mean"] - b["mean"]) <= NOISE_SE * x["se"] for x in (good, bad))
        row = {"lever": lv.name, "helpful_factor": helpful, "harmful_factor": harmful,
               "mean_base": b["mean"], "mean_harmful": bad["mean"],
               "mean_helpful": good["mean"],
               "delta_mean_harmful": bad["mean"] - b["mean"],
               "delta_mean_helpful": good["mean"] - b["mean"],
               "delta_mean_se_harmful": bad["se"], "delta_mean_se_helpful": good["se"],
               "lost_in_noise": noise,
               "p50_base": b["p50"], "p50_harmful": bad["p50"], "p50_helpful": good["p50"],
               "delta_p50_harmful": bad["p50"] - b["p50"],
               "delta_p50_helpful": good["p50"] - b["p50"]}
        if target is not None:
            row.update(p_target_base=b["p_target"], p_target_harmful=bad["p_target"],
                       p_target_helpful=good["p_target"],
                       delta_p_target_helpful=good["p_target"] - b["p_target"])
        if spend is not None:
            row.update(cac_base=b["cac"], cac_helpful=good["cac"], ltv_cac_base=b["ltv_cac"],
                       ltv_cac_helpful=good["ltv_cac"])
        rows.append(row)
    frame = pd.DataFrame(rows)
    if len(frame):
        key = frame["delta_mean_helpful"].to_numpy()
        frame = frame.iloc[np.argsort(-key, kind="stable")].reset_index(drop=True)
    frame.attrs["skipped"] = skipped
    return frame


# ---- the probabilistic reverse funnel --------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """The arrivals multiplier that reaches the target with the wanted confidence."""

    factor: float
    probability: float  # P(bookings in the window >= target) at ``factor`` (this run's paths)
    result: SimulationResult
    current_probability: float  # the same at today's arrivals
    evaluations: int


def arrivals_scenario(factor: float) -> Scenario:
    """All arrivals times ``factor`` (the segment mix kept)."""
    return Scenario(name=f"arrivals x{factor:g}", description="", changes=(
        Change(lever="arrivals", op="multiply", value=factor, where="plan"),))


# New leads' wins (over all paths, in the window, at today's arrivals) needed before `plan`
# trusts their mean bookings enough to refuse a target early (see plan).
EARLY_REFUSAL_MIN_WINS = 100


def plan(setting: Setting, target: float, w: Window, confidence: float,
         rel_tol: float = 0.01, max_factor: float = 1024.0,
         progress: Callable[[int, int], None] | None = None) -> Plan:
    """The smallest multiplier ``m`` of all arrivals (segment mix kept) with
    ``P(bookings in the window >= target) >= confidence``, by a deterministic search on common
    random numbers: bracketing by doubling (or halving from 1), then bisection on ``log m``
    to a relative precision ``rel_tol``. The same seed gives the same plan.

    Raises ``ValueError`` when even ``max_factor`` times today's arrivals does not reach it
    (leads arriving now cannot close within the window). A target far out of reach is
    refused after the first two runs (0 and 1 times today's arrivals): expected bookings are
    linear in the multiplier (every new lead adds its own expected bookings), so they are
    known at ``max_factor``, and by Markov's inequality ``P(X >= target) <= E[X] / target``
    for bookings ``X >= 0``. The slope is a Monte Carlo estimate (on common random numbers,
    the bookings of the wins the new leads add), so this is done only when those runs hold
    at least ``EARLY_REFUSAL_MIN_WINS`` such wins (its relative error then about 0.15) and
    with the expectation at ``max_factor`` doubled; the bound below ``confidence`` then
    means the search would fail. It used to take a dozen runs at up to 1,024 times the leads
    (minutes) to say so.
    """
    cache: dict[float, tuple[float, SimulationResult]] = {}

    def prob(m: float) -> float:
        if m not in cache:
            res = run_scenarios(setting, [arrivals_scenario(m)], baseline=False)[0]
            cache[m] = (float(np.mean(in_window(res.bookings, w) >= target)), res)
            if progress is not None:
                progress(len(cache), 0)
        return cache[m][0]

    def in_window_of(m: float, name: str) -> np.ndarray:
        """Per path, the run at ``m``'s ``bookings`` or ``won`` over the window."""
        prob(m)
        return in_window(getattr(cache[m][1], name), w)

    now = prob(1.0)
    mean_bookings = [float(np.mean(in_window_of(m, "bookings"))) for m in (0.0, 1.0)]
    expected_at_max = mean_bookings[0] + max_factor * max(mean_bookings[1] - mean_bookings[0],
                                                          0.0)
    new_wins = int(in_window_of(1.0, "won").sum() - in_window_of(0.0, "won").sum())
    if prob(0.0) < confidence and new_wins >= EARLY_REFUSAL_MIN_WINS \
            and 2.0 * expected_at_max < confidence * target:
        raise ValueError(
            f"even {max_factor:g} times today's arrivals would book about "
            f"{expected_at_max:,.0f} in {w.label} on average, too little to reach "
            f"{target:,.0f} with probability {confidence:.2f}: leads arriving from now on do "
            "not close within the period often enough (lower the target or the confidence, "
            "or plan a later period)")
    if prob(0.0) >= confidence:
        lo = hi = 0.0
    elif now >= confidence:
        lo, hi = 0.0, 1.0
    else:
        lo, hi = 1.0, 2.0
        while prob(hi) < confidence:
            if hi >= max_factor:
                raise ValueError(
                    f"even {max_factor:g} times today's arrivals reach the target with "
                    f"probability {prob(hi):.2f} only: leads arriving from now on do not close "
                    f"within {w.label} often enough (lower the target or the confidence, or "
                    "plan a later period)")
            lo, hi = hi, hi * 2
    while hi > 0 and (lo == 0 or hi / lo > 1 + rel_tol):
        mid = math.sqrt(lo * hi) if lo > 0 else hi / 2
        if lo == 0 and hi < 1e-3:
            break
        if prob(mid) >= confidence:
            hi = mid
        else:
            lo = mid
    return Plan(factor=hi, probability=prob(hi), result=cache[hi][1], current_probability=now,
                evaluations=len(cache))


def stage_rates(model: FunnelModel, params: Parameters) -> dict[str, float]:
    """The rates of the classic reverse funnel, as a CRM report shows them: of the new leads
    that ever reach stage ``a``, the share that ever reaches the next stage ``b`` (eventual
    probabilities of fresh arrivals, summed over segments by their arrivals and averaged
    over parameter sets). ``"mean_deal"``: the mean deal weighted by expected wins."""
    entry = model.state_index(model.entry)
    path = [*model.stages, WON]
    # [set, g]: expected new leads a day that ever reach b (every set in one solve)
    reach = {b: reach_probability(model, params.hazards, b)[..., entry, 0] * params.arrivals_mean
             for b in path}
    out = {}
    for a, b in itertools.pairwise(path):
        num, den = np.sum(reach[b]), np.sum(reach[a])
        out[f"{a}->{b}"] = float(num / den) if den > 0 else 0.0
    wins = reach[WON]  # [set, g]
    out["mean_deal"] = float((wins * params.deal_mean).sum() / wins.sum()) if wins.sum() > 0 \
        else float(params.deal_mean.mean())
    return out


def classic_reverse_funnel(model: FunnelModel, params: Parameters, target: float,
                           w: Window) -> dict[str, float]:
    """Target / mean deal / win rate / ... : the deterministic arithmetic every planner knows
    (no timing, no variance, no open pipeline): how many of each stage the period needs,
    and the new leads a week over the period that would feed it."""
    rates = stage_rates(model, params)
    need = {WON: target / rates["mean_deal"]}
    path = [*model.stages, WON]
    for a, b in reversed(list(itertools.pairwise(path))):
        need[a] = need[b] / rates[f"{a}->{b}"] if rates[f"{a}->{b}"] > 0 else math.inf
    need["leads_per_week"] = need[model.entry] / (w.days / 7.0)
    need["mean_deal"] = rates["mean_deal"]
    return need
