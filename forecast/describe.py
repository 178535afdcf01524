"""What a parameter set says about the funnel, in the terms revenue teams use.

For each parameter set (one posterior draw, or the model file's defaults) the quantities below
are computed with ``forecast.hazards`` (the same functions the simulator's closed-form tests
use), then summarised across sets by the median and a 90% interval (the 5% and 95% quantiles).
A lead is taken to enter each stage fresh (age 0) and unrecycled, in each segment:

- ``conversion_to_won``: eventual probability of becoming a customer from the stage;
- ``median_days_in_stage``: median whole days before it leaves the stage, whatever the move;
- ``expiry_share``: probability that it leaves the stage by going cold (back or to nurture);
- ``shelf_life_days``: for the qualified stage, days until half of unworked leads go cold
  (only expiry moves acting); ``inf`` when they never do;
- ``recapture``: probability that a lead entering nurture (after its first expiry) comes back;
- ``arrivals_per_day``: mean new leads per day; ``mean_deal``: mean deal size;
- ``close_calendar`` / ``arrivals_calendar`` (models with calendar effects): the multipliers
  of the hazards of closing moves (won and lost, each its own; in the stage column) and of
  arrivals by weekday, month of the quarter and month end.

Rows with segment ``all`` mix the segments as the leads they describe mix, in each set: a
stage's rows by the segments' shares of the leads entering it (arrivals times the probability
that a fresh lead of the segment ever reaches the stage), the recapture by those entering
nurture, the mean deal by won deals (arrivals times the probability of winning). So the mean
deal of ``all`` is the mean won deal, and a stage's conversion that of its entrants: the
segments convert at different rates, so later stages' mix is not the arrivals' mix.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecast.calendar import CLOSES
from forecast.hazards import (
    absorption,
    median_days_in_stage,
    reach_probability,
    shelf_life,
    stage_exit,
)
from forecast.model import NURTURE, WON, FunnelModel
from forecast.parameters import Parameters

INTERVAL = (0.05, 0.95)
MAX_SETS = 4000  # more draws than this are thinned evenly: the summary does not need them


def describe(model: FunnelModel, params: Parameters) -> pd.DataFrame:
    """One row per quantity, stage and segment: ``median``, ``lo`` (5%), ``hi`` (95%), ``sets``.

    Columns: ``quantity, stage, segment, median, lo, hi, sets``.
    """
    n = params.n_sets
    if n > MAX_SETS:
        params = params.take(np.linspace(0, n - 1, MAX_SETS).round().astype(np.int64))
    values = _per_set(model, params)
    rows = []
    for (quantity, stage, segment), v in values.items():
        v = np.asarray(v, dtype=float)
        q = np.quantile(v, [0.5, *INTERVAL], method="inverted_cdf")
        rows.append({"quantity": quantity, "stage": stage, "segment": segment,
                     "median": q[0], "lo": q[1], "hi": q[2], "sets": v.size})
    table = pd.DataFrame(rows)
    order = {
        "quantity": list(_LABELS),
        "stage": [*model.states, "won/lost"],
        "segment": ["all", *model.segment_names, *_CLOSE_CAL],
    }
    keys = [table[c].map({v: i for i, v in enumerate(order[c])}) for c in order]
    return table.iloc[np.lexsort(keys[::-1])].reset_index(drop=True)


def _per_set(model: FunnelModel, params: Parameters) -> dict[tuple[str, str, str], list]:
    """Every quantity's value in every parameter set, keyed by (quantity, stage, segment)."""
    segs = list(model.segment_names)
    active = list(model.stages)
    nurture = model.state_index(NURTURE)
    expiry = model.move_kinds() == 2  # declared expiry moves only (kinds: forecast.model)
    qualified = model.state_index(model.qualified_stage)
    # Rows only for what the model has: a funnel without expiry has no shelf life.
    has_nurture = any(NURTURE in dests for dests in model.hazards.values())
    has_recapture = any(model.state_index(d) < model.n_active
                        for d in model.hazards.get(NURTURE, {}))
    out: dict[tuple[str, str, str], list] = {}

    def add(key, value):
        out.setdefault(key, []).append(float(value))

    mix = _mixes(model, params)
    for k in range(params.n_sets):
        h = params.hazards[k]
        win = absorption(model, h).win[:, :, 0]  # [g, state]
        days = median_days_in_stage(model, h)[:, :, 0]  # [state, g]
        exit_prob = stage_exit(h, model.age_bands).prob  # [state, g, r, dest]
        exp_share = (exit_prob[:, :, 0, :] * expiry[:, None, :]).sum(-1)  # [state, g]
        shelf = shelf_life(model, h, model.qualified_stage)[:, 0]  # [g]
        r1 = min(1, model.recycle_levels - 1)
        recap = exit_prob[nurture, :, r1, :model.n_active].sum(-1)  # [g]
        deal = params.deal_mean[k]
        for i, stage in enumerate(active):
            for j, seg in enumerate(segs):
                add(("conversion_to_won", stage, seg), win[j, i])
                add(("median_days_in_stage", stage, seg), days[i, j])
                if expiry[i].any():
                    add(("expiry_share", stage, seg), exp_share[i, j])
            add(("conversion_to_won", stage, "all"), mix[stage][k] @ win[:, i])
            if expiry[i].any():
                add(("expiry_share", stage, "all"), mix[stage][k] @ exp_share[i])
        for j, seg in enumerate(segs):
            if has_nurture:
                add(("median_days_in_stage", NURTURE, seg), days[nurture, j])
            if expiry[qualified].any():
                add(("shelf_life_days", model.qualified_stage, seg), shelf[j])
            if has_recapture:
                add(("recapture", NURTURE, seg), recap[j])
            add(("arrivals_per_day", model.entry, seg), params.arrivals_mean[k, j])
            add(("mean_deal", "won", seg), deal[j])
        if has_recapture:
            add(("recapture", NURTURE, "all"), mix[NURTURE][k] @ recap)
        add(("arrivals_per_day", model.entry, "all"), params.arrivals_mean[k].sum())
        add(("mean_deal", "won", "all"), mix[WON][k] @ deal)
        if params.has_calendar or model.calendar.declared:
            for close, values in zip(CLOSES, params.close_calendar[k], strict=True):
                for label, value in zip(_CLOSE_CAL, values, strict=True):
                    add(("close_calendar", close, label), value)
            for label, value in zip(_ARR_CAL, params.arrivals_calendar[k], strict=True):
                add(("arrivals_calendar", model.entry, label), value)
    return out


def _mixes(model: FunnelModel, params: Parameters) -> dict[str, np.ndarray]:
    """``[set, g]`` per active stage, nurture and won: the segments' shares of the fresh
    leads that ever reach it (arrivals times the reach probability from the entry stage at
    recycle level 0), every set at once."""
    entry = model.state_index(model.entry)
    return {target: _shares(params.arrivals_mean
                            * reach_probability(model, params.hazards, target)[..., entry, 0])
            for target in (*model.stages, NURTURE, WON)}


def _shares(w: np.ndarray) -> np.ndarray:
    total = w.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, w / np.where(total > 0, total, 1.0), 1.0 / w.shape[-1])


_CLOSE_CAL = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "quarter month 1",
              "quarter month 2", "quarter month 3", "month end")
_ARR_CAL = ("quarter month 1", "quarter month 2", "quarter month 3", "month end")


_LABELS = {
    "conversion_to_won": "conversion to won",
    "median_days_in_stage": "median days in stage",
    "expiry_share": "leaves by expiry",
    "shelf_life_days": "shelf life (days)",
    "recapture": "recaptured from nurture",
    "arrivals_per_day": "arrivals per day",
    "mean_deal": "mean deal",
    "close_calendar": "closing x (calendar)",
    "arrivals_calendar": "arrivals x (calendar)",
}


def _fmt(quantity: str, value: float, currency: str) -> str:
    if not np.isfinite(value):
        return "never"
    if quantity in ("conversion_to_won", "expiry_share", "recapture"):
        return f"{value:.1%}" if value >= 0.001 else f"{value:.3%}"
    if quantity == "mean_deal":
        return f"{value:,.0f} {currency}"
    if quantity == "arrivals_per_day":
        return f"{value:,.1f}"
    if quantity in ("close_calendar", "arrivals_calendar"):
        return f"x{value:.2f}"
    return f"{value:,.0f}"


def render(table: pd.DataFrame, model: FunnelModel, header: list[str]) -> str:
    """A plain-text table: quantity, stage, segment, median [5% - 95%]."""
    lines = [*header, ""]
    single = table["sets"].max() == 1
    rows = []
    for r in table.itertuples(index=False):
        med = _fmt(r.quantity, r.median, model.currency)
        band = "" if single else \
            f"[{_fmt(r.quantity, r.lo, model.currency)} - {_fmt(r.quantity, r.hi, model.currency)}]"
        rows.append((_LABELS[r.quantity], r.stage, r.segment, med, band))
    heads = ("quantity", "stage", "segment", "median", "" if single else "90% interval")
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(heads)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines.append(fmt.format(*heads).rstrip())
    lines.append(fmt.format(*("-" * w for w in widths)).rstrip())
    previous = None
    for row in rows:
        if previous is not None and row[:2] != previous:
            lines.append("")
        lines.append(fmt.format(*row).rstrip())
        previous = row[:2]
    return "\n".join(lines)


# ---- stale open deals ------------------------------------------------------------------------

STALE_QUANTILE = 0.95  # open longer than 95% of stays in the stage last: stale


def stale_threshold(model: FunnelModel, params: Parameters) -> np.ndarray:
    """``[active stage, g]``: days in stage beyond which an open lead is stale, the 95th
    percentile of the time in stage of a fresh, unrecycled lead (median over parameter sets);
    ``inf`` where 95% never leave."""
    from forecast.hazards import survival_quantile

    per_set = [survival_quantile(np.moveaxis(params.hazards[k].sum(-1), 1, -1),
                                 model.age_bands, STALE_QUANTILE)[:model.n_active, :, 0]
               for k in range(min(params.n_sets, 200))]
    return np.median(np.stack(per_set), axis=0)


def stale_deals(model: FunnelModel, params: Parameters, pipeline, as_of, *, horizon: int = 90,
                paths: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Open leads older than the stage's :func:`stale_threshold`, per active stage: how many,
    the oldest, the amounts on them, what the CRM's weighted pipeline counts them for (the
    stage's eventual win probability of a fresh lead × amount, or the mean deal), and what the
    model expects them to book within ``horizon`` days at their real age (a simulation of
    each stage's stale leads alone, no new arrivals): the gap is what cleaning them up changes.
    """
    from forecast.simulate import Pipeline, simulate

    limit = stale_threshold(model, params)  # [stage, g]
    st = pipeline.state
    active = st < model.n_active
    stale = np.zeros(len(st), dtype=bool)
    stale[active] = pipeline.age[active] >= limit[st[active], pipeline.segment[active]]
    sets = params.take(np.arange(min(params.n_sets, 200)))
    win = np.median(absorption(model, sets.hazards).win, axis=0)
    deal = np.median(params.deal_mean, axis=0)  # [g]
    quiet = params.with_arrivals_scaled(0.0)
    rows = []
    for i, stage in enumerate(model.stages):
        mine = stale & (st == i)
        n = int(mine.sum())
        amount = pipeline.amount[mine]
        g, r = pipeline.segment[mine], pipeline.recycle[mine]
        value = np.where(np.isnan(amount), deal[g], amount)
        # The threshold is per segment: the table shows the range (its smallest alone would
        # suggest deals of that age in every segment are stale).
        row = {"stage": stage, "threshold_days": float(np.min(limit[i])),
               "threshold_max_days": float(np.max(limit[i])),
               "open": int((st == i).sum()), "stale_open": n,
               "oldest_days": int(pipeline.age[mine].max()) if n else 0,
               "amount_known": float(np.nansum(amount)),
               "crm_weighted": float((win[g, i, r] * value).sum()),
               "expected_bookings": 0.0, "expected_won": 0.0}
        if n:
            sub = Pipeline(*(getattr(pipeline, f)[mine] for f in
                             ("state", "age", "segment", "recycle", "amount")))
            res = simulate(model, quiet, sub, as_of, horizon, paths, seed)
            row["expected_bookings"] = float(res.bookings.sum(1).mean())
            row["expected_won"] = float(res.won.sum(1).mean())
        rows.append(row)
    return pd.DataFrame(rows)


def render_stale(table: pd.DataFrame, currency: str, horizon: int) -> str:
    """The stale-deal table as text."""
    from forecast.outputs import money

    head = ("stage", "stale after (days, by segment)", "stale / open", "oldest (days)",
            "CRM weighted value", f"expected bookings in {horizon} d", "expected deals")
    def days(low: float, high: float) -> str:
        shown = ["never" if not np.isfinite(v) else f"{v:,.0f}" for v in (low, high)]
        return shown[0] if shown[0] == shown[1] else f"{shown[0]}-{shown[1]}"

    rows = [(r.stage, days(r.threshold_days, getattr(r, "threshold_max_days", r.threshold_days)),
             f"{r.stale_open:,} / {r.open:,}", f"{r.oldest_days:,}" if r.stale_open else "-",
             money(r.crm_weighted, currency), money(r.expected_bookings, currency),
             f"{r.expected_won:,.1f}") for r in table.itertuples(index=False)]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths)),
                      *(fmt.format(*row) for row in rows)])


# ---- drift -----------------------------------------------------------------------------------

def drift_table(posterior, as_of) -> pd.DataFrame | None:
    """How conversion (moves towards won, by the stage they leave) and arrivals moved month by
    month, relative to the as-of month, from a posterior fitted with ``--drift``: one row per
    quantity and month with the median multiplier and its 90% interval. None when the
    posterior has no drift."""
    if "drift_by_month" not in posterior:
        return None
    rows = []
    n = posterior["drift_by_month"].shape[-1]
    series = []
    conv = posterior["drift_by_month"]
    if "drift_stage" in conv.dims:  # a walk per stage: "conversion lead", ... (the stage left)
        for stage in conv["drift_stage"].values:
            series.append((f"conversion {stage}", conv.sel(drift_stage=stage).values))
    else:  # a posterior fitted with one walk for every stage
        series.append(("conversion", conv.values))
    if "arrivals_drift_by_month" in posterior:
        series.append(("arrivals", posterior["arrivals_drift_by_month"].values))
    for name, values in series:
        values = np.exp(values.reshape(-1, n))  # [draw, months back]
        q = np.quantile(values, [0.5, *INTERVAL], axis=0)
        for j in range(n):
            month = (pd.Period(as_of, "M") - (j + 1)).strftime("%Y-%m")
            rows.append({"quantity": name, "month": month, "median": q[0, j], "lo": q[1, j],
                         "hi": q[2, j]})
    return pd.DataFrame(rows)


def render_drift(table: pd.DataFrame, as_of, params=None) -> str:
    """Text: each month's multiplier of conversion and arrivals against the as-of month, and,
    given the posterior's ``params``, the walk's step sizes that forecasts continue it with."""
    lines = [f"Drift: rates of each month relative to {pd.Period(as_of, 'M')} (x1.00), median "
             "[90% interval]:"]
    months = list(dict.fromkeys(table["month"]))[::-1]
    head = ["month", *dict.fromkeys(table["quantity"])]
    rows = []
    for m in months:
        cells = [m]
        for qty in head[1:]:
            r = table[(table["month"] == m) & (table["quantity"] == qty)].iloc[0]
            cells.append(f"x{r['median']:.2f} [{r['lo']:.2f}-{r['hi']:.2f}]")
        rows.append(cells)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines += [fmt.format(*head), fmt.format(*("-" * w for w in widths)),
              *(fmt.format(*row) for row in rows)]
    if params is not None and params.has_walk:
        period = "quarter" if int(params.walk_months.max()) == 3 else "month"
        q = np.quantile(params.walk_sd, [0.5, *INTERVAL], axis=0)  # [stat, conversion/arrivals]
        nu = float(np.min(params.walk_nu))
        law = "normal steps" if np.isinf(nu) else f"Student-t steps with {nu:g} d.o.f."
        lines.append(f"Forecasts continue the walk, one step a {period} (forecast.outlook), "
                     f"{law}: step size (scale of the log rate) {q[0, 0]:.0%} "
                     f"[{q[1, 0]:.0%}-{q[2, 0]:.0%}] for conversion, {q[0, 1]:.0%} "
                     f"[{q[1, 1]:.0%}-{q[2, 1]:.0%}] for arrivals.")
    return "\n".join(lines)
