"""The planning commands: ``scenario``, ``sweep``, ``sensitivity`` and ``plan``.

Each resolves its inputs like ``forecast run`` (same options), then compares runs on common
random numbers (``forecast.planning``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import replace
from pathlib import Path

import click
import numpy as np
import pandas as pd

from forecast.cli import (
    MAX_HORIZON,
    Progress,
    check_png,
    fail,
    forecast_inputs,
    forecast_options,
    import_options,
    ledger_option,
    ledger_or_fail,
    notes,
)
from forecast.outputs import money, with_units


def _finite(ctx, param, value):
    """A click callback: ``nan`` (and ``inf`` where there is no upper bound) pass click's
    ranges, comparing false, so a value that is not a finite number is refused here, with
    click's usage message."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number.")
    return value


def _period_option(func):
    return click.option(
        "--period", "period_label", default=None, metavar="PERIOD",
        help="The period to plan for: 2027Q1, 2027-01 or 2027. The horizon then runs to its "
             "end. A period under way at the as-of date counts only its days after it. "
             "Default: the whole horizon from the as-of date.")(func)


def _under_way(w, as_of: dt.date) -> list[str]:
    """A line for the table when the period began on or before the as-of date: its bookings
    (and the chance of reaching a target) count only the days after it."""
    if not w.under_way:
        return []
    return [f"{w.label} began on {w.period_start}, before the as-of date {as_of}: only its "
            f"bookings from {w.start} to {w.end} ({w.days} days) are counted, not those "
            "already made in it"]


def _span(w) -> str:
    """The period with the days it counts: ``2027Q1 (2027-01-01 to 2027-03-31, 90 days)``."""
    return f"{w.label} ({w.start} to {w.end}, {w.days} days)"


def _span_meta(w) -> dict:
    """The period's span for the CSV/JSON metadata (the days counted, as in the table)."""
    return {"period": w.label, "start": w.start.isoformat(), "end": w.end.isoformat(),
            "days": w.days}


def _setting(inp, horizon: int, paths: int, seed: int, occupancy_days=None):
    from forecast.outlook import check_walk
    from forecast.planning import Setting

    try:  # a drift posterior's walk too large for the paths and horizon: say so before any run
        check_walk(inp.params, inp.as_of, horizon, paths)
    except ValueError as exc:
        fail(str(exc))
    return Setting(model=inp.model, params=inp.params, pipeline=inp.pipeline, as_of=inp.as_of,
                   horizon=horizon, paths=paths, seed=seed, occupancy_days=occupancy_days)


def _window(period_label: str | None, as_of: dt.date, horizon: int):
    """The planning window and the horizon that covers it."""
    from forecast.planning import window
    from forecast.trend import PeriodError, parse_period

    if period_label is None:
        end = as_of + dt.timedelta(days=horizon)
        label = f"the next {horizon} days"
        return window(label, as_of + dt.timedelta(days=1), end, as_of), horizon
    try:
        _, start, end = parse_period(period_label)
        w = window(period_label, start, end, as_of)
    except (PeriodError, ValueError) as exc:
        fail(str(exc))
    if w.last + 1 > MAX_HORIZON:
        fail(f"--period {period_label} ends {w.last + 1:,} days after the as-of date {as_of}: "
             f"more than the {MAX_HORIZON:,} days a forecast may run (as --horizon)")
    ctx = click.get_current_context(silent=True)
    if ctx is not None and horizon != w.last + 1 \
            and ctx.get_parameter_source("horizon") == click.core.ParameterSource.COMMANDLINE:
        click.echo(f"forecast: warning: --horizon {horizon} is not used: with --period "
                   f"{period_label} the horizon runs to the period's end ({w.last + 1} days)",
                   err=True)
    return w, w.last + 1


def _inputs(model_name, history, history_format, kwargs, as_of_text, posterior_path, paths,
            threads, quiet):
    note = notes(quiet)
    return forecast_inputs(model_name, history, history_format, import_options(kwargs),
                           as_of_text, posterior_path, paths, threads, note), note


def _header(inp, what: str, horizon: int, paths: int, seed: int) -> list[str]:
    return [f"{what}: model {inp.model.name} ({inp.model.path}), as of {inp.as_of}, "
            f"{horizon} days, {paths:,} paths, seed {seed}",
            f"Open pipeline from {inp.history_path}: {len(inp.pipeline):,} leads; parameters: "
            f"{inp.parameters_text}"]


def _show(x: float, metric: str, currency: str) -> str:
    if metric in ("bookings", "lost_to_expiry"):
        return money(x, currency)
    text = f"{x:,.1f}" if abs(x) < 100 else f"{x:,.0f}"
    return "0.0" if text == "-0.0" else text  # a difference that rounds to nothing


def _show_se(x: float, metric: str, currency: str) -> str:
    """A standard error (none with a single path)."""
    return _show(x, metric, currency) if math.isfinite(x) else "n/a"


def _with_se(x: float, se: float, currency: str) -> str:
    """A change of mean bookings with its standard error: ``$341k ± $6.1k``."""
    return money(x, currency) + (f" ± {money(se, currency)}" if math.isfinite(se) else "")


def _cac(x: float, currency: str) -> str:
    """The cost of acquiring a customer; with no customer won in the window, it has none."""
    return money(x, currency) if math.isfinite(x) else "no wins"


def _emit_frame(frame: pd.DataFrame, fmt: str, table: str, meta: dict,
                currency: str | None = None) -> None:
    """The command's table, or its frame as CSV or JSON; with ``currency`` (the frame's
    amounts are money), a ``currency`` column in the CSV and a field in the JSON."""
    if currency is not None:
        meta = {**meta, "currency": currency}
    if fmt == "table":
        click.echo(table)
    elif fmt == "csv":
        out = frame.assign(currency=currency) if currency is not None else frame
        click.echo(out.to_csv(index=False), nl=False)
    else:
        click.echo(json.dumps({**meta, "rows": json.loads(frame.to_json(orient="records"))},
                              indent=2, default=str))


def _render(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)

    def fmt(r):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths, strict=True)))

    return "\n".join([fmt(header), line, *(fmt(r) for r in rows)])


# ---- scenario --------------------------------------------------------------------------------

@click.command("scenario")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--by", type=click.Choice(["week", "month", "quarter"]), default="month",
              show_default=True, help="Period of the bands.")
@click.option("--metric", default="bookings", show_default=True,
              help="A metric forecast run reports: bookings, won_deals, expired_<qualified "
                   "stage> (expired_sql), lost_to_expiry, expired_all, recaptured, arrivals, "
                   "or in_<state> (leads in a state at each period's end).")
@click.option("--quantiles", default="0.1,0.5,0.9", show_default=True,
              help="Quantiles of the bands, comma-separated.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Write scenarios.csv and summary.json there.")
@click.option("--no-arrivals", is_flag=True,
              help="Start every run from no new leads: the baseline is what the open "
                   "pipeline alone yields. A scenario's arrivals change applies on top of "
                   "zero: add or set gives that scenario new leads the baseline does not "
                   "have, and multiply scales only leads an earlier add or set gave, so "
                   "alone it changes nothing; a warning says which.")
@ledger_option
@forecast_options
def scenario_cmd(files, by, metric, quantiles, fmt, out_dir, no_arrivals, ledger_file,
                 ledger_timeout,
                 model_name, history, as_of_text, horizon, paths, seed, threads, quiet,
                 posterior_path, history_format, **kwargs):
    """Baseline and each scenario FILE on common random numbers: bands of each, of the
    difference, and the probability that the scenario does better."""
    from forecast import ledger as ledger_mod
    from forecast import outputs, summarize
    from forecast.planning import compare, run_scenarios
    from forecast.scenario import ScenarioError, load_scenario, scenario_notes

    try:
        qs = summarize.parse_quantiles(quantiles)
    except ValueError as exc:
        fail(str(exc))
    ledger_path = ledger_or_fail(ledger_file) if ledger_file is not None else None
    inp, note = _inputs(model_name, history, history_format, kwargs, as_of_text, posterior_path,
                        paths, threads, quiet)
    known = summarize.model_metric_names(inp.model)  # those `run` reports
    if metric not in known:
        raise click.BadParameter(f"{metric!r} is not one of {', '.join(known)}.",
                                 param_hint="'--metric'")
    try:
        scenarios = [load_scenario(f, inp.model) for f in files]
    except ScenarioError as exc:
        fail(str(exc))
    _check_names(scenarios, ledger_path is not None)
    for sc in scenarios:  # what reads as more than it does in this run (even with --quiet)
        texts = scenario_notes(inp.model, sc, inp.pipeline, inp.as_of, horizon)
        if no_arrivals:
            texts += _no_arrivals_notes(sc)
        for text in texts:
            click.echo(f"forecast: warning: {text}", err=True)
    if no_arrivals:
        inp = replace(inp, params=inp.params.with_arrivals_scaled(0.0),
                      parameters_text=inp.parameters_text + ", no new leads")
    per = summarize.periods(inp.as_of, horizon, by)
    occ = per.last_day if ledger_path is None else \
        ledger_mod.occupancy_days(inp.as_of, horizon, also=per.last_day)
    progress = Progress("simulating", enabled=not quiet)
    try:
        results = run_scenarios(_setting(inp, horizon, paths, seed, occ), scenarios)
    except ScenarioError as exc:
        fail(str(exc))
    finally:
        progress.close()
    frames = []
    for sc, res in zip(scenarios, results[1:], strict=True):
        f = compare(results[0], res, per, metric, qs)
        f.insert(0, "scenario", sc.name)
        frames.append(f)
    frame = with_units(pd.concat(frames, ignore_index=True), inp.model.currency)
    meta = {"model": inp.model.name, "currency": inp.model.currency,
            "as_of": inp.as_of.isoformat(), "horizon_days": horizon,
            "paths": paths, "seed": seed, "metric": metric, "history": str(inp.history_path),
            "parameters": inp.parameters_text,
            "scenarios": [{"name": s.name, "file": s.path, "sha256": s.sha256,
                           "changes": [c.describe() for c in s.changes]} for s in scenarios]}
    if ledger_path is not None:  # first: a locked ledger leaves --out untouched (the runs
        # are recorded one by one, so a failure writing --out after them leaves them recorded)
        meta["run_ids"] = _record(ledger_mod, ledger_path, inp, scenarios, results, horizon,
                                  paths, seed, ledger_timeout)
        note(f"recorded runs {', '.join(map(str, meta['run_ids']))} in {ledger_path}")
    if out_dir is not None:
        def csv(path):
            frame.to_csv(path, index=False)

        def summary(path):
            path.write_text(json.dumps({**meta, "rows": json.loads(
                frame.to_json(orient="records"))}, indent=2, default=str))

        try:
            outputs.write_outputs(out_dir, {"scenarios.csv": csv, "summary.json": summary})
        except OSError as exc:
            fail(f"{out_dir}: could not write outputs ({exc}); nothing was changed there"
                 + (f" (runs {', '.join(map(str, meta['run_ids']))} are in {ledger_path})"
                    if ledger_path is not None else ""))
        note(f"wrote {out_dir}/scenarios.csv, summary.json")
    # the centre is the median when it was asked for; else, with one quantile, that one (it
    # was asked for: it shows); else the mean (never an edge quantile), with the band from the
    # lowest quantile to the highest
    lo, hi = summarize.quantile_label(qs[0]), summarize.quantile_label(qs[-1])
    if 0.5 in qs:
        mid = summarize.quantile_label(0.5)
    elif len(qs) == 1:
        mid = lo
    else:
        mid = "mean"
    has_band = len(qs) > 1

    def cell(r, n):
        text = _show(r[f"{n}_{mid}"], metric, inp.model.currency)
        if has_band:
            text += (f" [{_show(r[f'{n}_{lo}'], metric, inp.model.currency)} to "
                     f"{_show(r[f'{n}_{hi}'], metric, inp.model.currency)}]")
        return text

    first = f"baseline {mid.upper() if mid != 'mean' else 'mean'}" + (
        f" [{lo.upper()} to {hi.upper()}]" if has_band else "")
    blocks = _header(inp, "Scenarios", horizon, paths, seed)
    for sc, f in zip(scenarios, frames, strict=True):
        blocks.append("")
        blocks.append(f"{sc.name}" + (f" ({sc.path})" if sc.path else "") + ": "
                      + ("; ".join(c.describe() for c in sc.changes) or "no change"))
        rows = []
        for _, r in f.iterrows():
            rows.append([r["period"], str(r["days"])]
                        + [cell(r, n) for n in ("baseline", "scenario", "delta")]
                        + [_show(r["delta_mean"], metric, inp.model.currency),
                           _show_se(r["delta_mean_se"], metric, inp.model.currency),
                           f"{r['p_better']:.0%}"])
        blocks.append(_render(rows, ["period", "days", first, "scenario", "difference",
                                     "mean difference", "s.e.", "P(better)"]))
    blocks.append("")
    better = frame["better"].iloc[0]
    when = "at each period's end" if metric.startswith("in_") else "per period"
    blocks.append(f"{metric} {when}; days = the period's days inside the horizon (a first "
                  "or last period may be partial); difference = scenario - baseline on the same "
                  "path "
                  "(common random numbers); s.e. = Monte Carlo standard error of the mean "
                  "difference (sd of the per-path differences / sqrt(paths)); P(better) = share "
                  f"of paths where the scenario is strictly {better}: for {metric}, {better} is "
                  "better.")
    _emit_frame(frame, fmt, "\n".join(blocks), meta)


def _check_names(scenarios, ledger: bool) -> None:
    """Each scenario's name tells its rows apart in the table, the CSV, the JSON and the
    ledger: two scenarios of one name (or, with a ledger, one named like the baseline run)
    are an error naming the file and its ``name`` key."""
    seen = {"baseline": "the baseline run of the ledger"} if ledger else {}
    for sc in scenarios:
        if sc.name in seen and seen[sc.name] == sc.path:
            fail(f"{sc.path}: the scenario file is given twice")
        if sc.name in seen:
            fail(f"{sc.path}: name {sc.name!r} is also the name of {seen[sc.name]}: give each "
                 "scenario a name of its own (its rows in the output are told apart by it)")
        seen[sc.name] = sc.path


def _no_arrivals_notes(scenario) -> list[str]:
    """With ``--no-arrivals``, what an ``arrivals`` change does: ``multiply`` scales no new
    leads, so nothing (unless an earlier ``add`` or ``set`` gave some); ``add`` and ``set``
    give the scenario new leads that the baseline does not have (``set`` spreads them evenly
    over the segments, there being no mix to keep)."""
    out, some = [], False
    for c in scenario.changes:
        if c.lever != "arrivals":
            continue
        if (not some and (c.op == "multiply" or c.value == 0)) \
                or (c.op == "add" and c.value == 0):
            out.append(f"{c.where}: {c.op} {c.value:g}, but --no-arrivals runs without new "
                       "leads: it changes nothing in this run")
        elif c.op != "multiply" and c.value > 0:
            some = True
            out.append(f"{c.where}: {c.op} {c.value:g} with --no-arrivals gives this scenario "
                       "new leads and the baseline none: the difference is those leads")
    return out


def _record(ledger_mod, path, inp, scenarios, results, horizon, paths, seed, timeout):
    """Record the baseline and each scenario as runs (``scenario`` names them)."""
    ids = []
    for name, res in zip(["baseline", *[s.name for s in scenarios]], results, strict=True):
        record = ledger_mod.RunRecord(
            as_of=inp.as_of, model_name=inp.model.name, model_path=str(inp.model.path),
            model_sha256=inp.model.sha256, history_path=str(inp.history_path),
            history_sha256=inp.log.sha256, seed=seed, paths=paths, horizon_days=horizon,
            currency=inp.model.currency,
            posterior_path=str(inp.posterior_path) if inp.posterior_path else None,
            posterior_sha256=inp.fitted["sha256"] if inp.fitted else None, scenario=name)
        try:
            ids.append(ledger_mod.record(path, record, ledger_mod.ledger_bands(res),
                                         timeout=timeout))
        except ledger_mod.LedgerError as exc:
            fail(str(exc))
    return ids


# ---- sweep -----------------------------------------------------------------------------------

@click.command("sweep")
@click.option("--lever", required=True,
              type=click.Choice(["win_rate", "conversion", "velocity", "expiry", "recapture",
                                 "arrivals", "deal_size"]),
              help="The lever (defined in the README). win_rate is the opportunity -> won rate "
                   "(about 55% on b2b), not SQL -> won: +0.05 moves b2b's SQL -> won from "
                   "25.1% to 27.3%. arrivals' add and set are new leads per day.")
@click.option("--op", default=None, type=click.Choice(["add", "multiply", "set"]),
              help="How the values act (default: add for win_rate and conversion, in "
                   "probability points; multiply for the others).")
@click.option("--stage", default=None, help="The stage (conversion, velocity, expiry).")
@click.option("--segment", default=None, help="Only this segment.")
@click.option("--from", "start", type=float, required=True, callback=_finite,
              help="First value.")
@click.option("--to", "stop", type=float, required=True, callback=_finite, help="Last value.")
@click.option("--steps", type=click.IntRange(2, 101), default=9, show_default=True)
@_period_option
@click.option("--target", type=click.FloatRange(0, None), default=None, metavar="AMOUNT",
              callback=_finite,
              help="Also the probability that bookings in the period reach AMOUNT.")
@click.option("--quantiles", default="0.1,0.5,0.9", show_default=True)
@click.option("--chart", "chart_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="FILE.png", help="Draw the bands against the lever.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
@forecast_options
def sweep_cmd(lever, op, stage, segment, start, stop, steps, period_label, target, quantiles,
              chart_path, fmt, model_name, history, as_of_text, horizon, paths, seed, threads,
              quiet, posterior_path, history_format, **kwargs):
    """Bookings in a period (P10/P50/P90) against one lever, on common random numbers."""
    from forecast import planning, summarize
    from forecast.scenario import ScenarioError

    try:
        qs = summarize.parse_quantiles(quantiles)
    except ValueError as exc:
        fail(str(exc))
    if chart_path is not None:
        check_png(chart_path)
    with np.errstate(all="ignore"):  # finite ends a step apart past the largest float
        values = np.linspace(start, stop, steps)
    if not np.isfinite(values).all():
        raise click.UsageError(f"--from {start:g} --to {stop:g}: the values between them are "
                               "not finite numbers")
    inp, note = _inputs(model_name, history, history_format, kwargs, as_of_text, posterior_path,
                        paths, threads, quiet)
    w, horizon = _window(period_label, inp.as_of, horizon)
    op = op or planning.DEFAULT_OPS[lever]
    changes, invalid = [], []  # a value the lever does not take is left out, as below
    for v in values:
        try:
            changes.append(planning.lever_change(inp.model, lever, op, float(v), stage,
                                                 segment))
        except ScenarioError as exc:
            invalid.append(exc)
    if not changes:
        fail(str(invalid[0]))
    try:
        frame = planning.sweep(_setting(inp, horizon, paths, seed), changes, w, qs, target)
    except ScenarioError as exc:
        fail(str(exc))
    skipped = [f"{exc}; left out" for exc in invalid] + frame.attrs["skipped"]
    if fmt != "table":  # the table lists them under it
        for text in skipped:
            note(f"skipped {text}")
    cur = inp.model.currency
    what = f"{lever}" + (f" {stage}" if stage else "") + (f" [{segment}]" if segment else "")
    labels = [summarize.quantile_label(q) for q in qs]  # a column each, as asked
    rows = [[f"{op} {r['value']:+.4g}" if op == "add" else f"{op} {r['value']:.4g}",
             *(money(r[f"bookings_{q}"], cur) for q in labels), money(r["bookings_mean"], cur),
             f"{r['won_deals_mean']:.1f}"]
            + ([f"{r['p_target']:.0%}"] if target is not None else [])
            for _, r in frame.iterrows()]
    table = "\n".join([*_header(inp, f"Sweep of {what} over bookings in {_span(w)}", horizon,
                                paths, seed), *_under_way(w, inp.as_of), "",
                       _render(rows, [what, *(q.upper() for q in labels), "mean",
                                      "won deals"] + ([f"P(>= {money(target, cur)})"]
                                                      if target is not None else [])),
                       *([""] + [f"skipped {text}" for text in skipped] if skipped else [])])
    if chart_path is not None:
        _sweep_chart(chart_path, frame, what, op, labels, w.label, cur, target)
        note(f"wrote {chart_path}")
    _emit_frame(frame, fmt, table, {"lever": lever, "op": op, "stage": stage,
                                    "segment": segment, **_span_meta(w),
                                    "as_of": inp.as_of.isoformat(), "paths": paths,
                                    "seed": seed, "skipped": skipped}, currency=cur)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    """Write a figure atomically (``trend._save_png``); a failure is a one-line error."""
    from forecast.trend import _save_png

    try:
        _save_png(fig, path)
    except OSError as exc:
        fail(f"{path}: could not write ({exc})")


def _sweep_chart(path, frame, what, op, labels, period, currency, target) -> None:
    """The band from the lowest quantile to the highest (when there are two), and the median,
    or the mean when the median was not asked for."""
    from matplotlib.ticker import FuncFormatter

    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    x = frame["value"]
    lo, hi = labels[0], labels[-1]
    if len(labels) > 1:
        ax.fill_between(x, frame[f"bookings_{lo}"], frame[f"bookings_{hi}"], color="tab:blue",
                        alpha=0.25, lw=0, label=f"{lo.upper()}-{hi.upper()}")
    mid = "p50" if "p50" in labels else "mean"
    ax.plot(x, frame[f"bookings_{mid}"], color="tab:blue", lw=2, marker="o",
            label=mid.upper() if mid != "mean" else "mean")
    if target is not None:
        ax.axhline(target, color="tab:red", ls="--", lw=1, label="target")
    ax.set_xlabel(f"{what} ({op})")
    ax.set_ylabel(f"bookings in {period} ({currency})")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: money(v, currency)))
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    ax.set_title(f"Bookings in {period} against {what}", loc="left")
    _save(fig, path)


# ---- sensitivity -----------------------------------------------------------------------------

def spend_per_day(path: Path, model) -> dict[str, float]:
    """Spend per segment per day from a spend file (the format of ``forecast report``: CSV
    ``segment,month,spend``): each segment's mean monthly spend over the months it lists,
    a month counted as 365.25 / 12 days. Segments not listed spend nothing."""
    from forecast.eventlog import InputError
    from forecast.report import read_spend

    try:
        frame = read_spend(path, model)
    except InputError as exc:
        fail(str(exc))
    monthly = frame.groupby("segment")["spend"].mean()
    return {g: float(v) / (365.25 / 12) for g, v in monthly.items()}


@click.command("sensitivity")
@click.option("--change", type=click.FloatRange(0.001, 0.9), default=0.10, show_default=True,
              callback=_finite,
              help="Relative step of every lever (0.10: each moved 10% up and 10% down).")
@click.option("--target", type=click.FloatRange(0, None), default=None, metavar="AMOUNT",
              callback=_finite,
              help="Also the change in the probability of booking AMOUNT in the period.")
@_period_option
@click.option("--spend", "spend_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None,
              help="Marketing spend, CSV segment,month,spend (as for `forecast report`): "
                   "adds CAC and LTV:CAC, from each segment's mean monthly spend.")
@click.option("--ltv-multiple", type=click.FloatRange(0, None, min_open=True), default=1.0,
              callback=_finite,
              show_default=True,
              help="LTV = mean won deal times this (1: first-deal bookings only).")
@click.option("--chart", "chart_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="FILE.png", help="Draw a tornado chart.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
@forecast_options
def sensitivity_cmd(change, target, period_label, spend_path, ltv_multiple, chart_path, fmt,
                    model_name, history, as_of_text, horizon, paths, seed, threads, quiet,
                    posterior_path, history_format, **kwargs):
    """Every lever moved by the same relative amount both ways: the change in mean bookings
    (and P50, and the chance of reaching a target), ranked by the mean change; a tornado
    chart."""
    from forecast import planning
    from forecast.scenario import ScenarioError

    if chart_path is not None:
        check_png(chart_path)
    inp, note = _inputs(model_name, history, history_format, kwargs, as_of_text, posterior_path,
                        paths, threads, quiet)
    spend = spend_per_day(spend_path, inp.model) if spend_path is not None else None
    w, horizon = _window(period_label, inp.as_of, horizon)
    progress = Progress("simulating levers", enabled=not quiet)
    try:
        frame = planning.sensitivity(_setting(inp, horizon, paths, seed), change, w, target,
                                     spend, ltv_multiple)
    except ScenarioError as exc:
        fail(str(exc))
    finally:
        progress.close()
    skipped = frame.attrs.get("skipped", [])
    if fmt != "table":  # the table lists them under it
        for text in skipped:
            note(f"skipped {text}")
    cur = inp.model.currency
    pct = f"{change:.0%}"
    # Columns by direction (helpful / harmful for bookings, by the mean), as in the CSV and
    # JSON: a lever whose helpful way is down (days in stage, going cold) says so in
    # "helpful way". The mean change is the sharp statistic on common random numbers; the
    # P50s are shown for reference (a P50 of lumpy deal sums moves by a deal either way).
    head = ["lever", "helpful way", "change of mean helpful", "change of mean harmful",
            "P50 helpful", "P50 harmful"]
    if target is not None:
        head += ["P(target) helpful", "change of P(target)"]
    if spend is not None:
        head += ["CAC helpful", "LTV:CAC helpful"]
    rows = []
    for _, r in frame.iterrows():
        row = [r["lever"], ("+" if r["helpful_factor"] > 1 else "-") + pct
               + (" (noise)" if r["lost_in_noise"] else ""),
               _with_se(r["delta_mean_helpful"], r["delta_mean_se_helpful"], cur),
               _with_se(r["delta_mean_harmful"], r["delta_mean_se_harmful"], cur),
               money(r["p50_helpful"], cur), money(r["p50_harmful"], cur)]
        if target is not None:
            row += [f"{r['p_target_helpful']:.0%}", f"{r['delta_p_target_helpful']:+.1%}"]
        if spend is not None:
            row += [_cac(r["cac_helpful"], cur), f"{r['ltv_cac_helpful']:.2f}"]
        rows.append(row)
    lines = _header(inp, f"Sensitivity of bookings in {_span(w)}, each lever moved {pct}",
                    horizon, paths, seed) + _under_way(w, inp.as_of)
    if len(frame):
        base = frame.iloc[0]
        lines.append(f"Baseline mean {money(base['mean_base'], cur)}, P50 "
                     f"{money(base['p50_base'], cur)}"
                     + (f"; P(>= {money(target, cur)}) {base['p_target_base']:.0%}"
                        if target is not None else "")
                     + (f"; CAC {_cac(base['cac_base'], cur)}, LTV:CAC "
                        f"{base['ltv_cac_base']:.2f}" if spend is not None else ""))
    lines += ["", _render(rows, head) if rows else "(no lever can move this much)", "",
              f"helpful: each lever moved {pct} the way that raises mean bookings "
              "(probabilities, recapture, arrivals and deal size up; days in stage and going "
              f"cold down: the \"helpful way\" column); harmful: {pct} the other way. Changes "
              "against the baseline on the same paths (common random numbers), ± their Monte "
              "Carlo standard error (sd of the per-path differences / sqrt(paths)); ranked by "
              "the change of mean bookings the helpful way. (noise): both changes within "
              f"{planning.NOISE_SE:g} standard errors of zero: the runs cannot tell which way "
              "helps (the way shown is the one they happened to favour; more --paths may)."]
    lines += [f"skipped {text}" for text in skipped]
    if chart_path is not None:
        _tornado(chart_path, frame, pct, w.label, cur)
        note(f"wrote {chart_path}")
    _emit_frame(frame, fmt, "\n".join(lines), {**_span_meta(w), "change": change,
                                               "as_of": inp.as_of.isoformat(),
                                               "paths": paths, "seed": seed,
                                               "skipped": skipped}, currency=cur)


def _tornado(path, frame, pct, period, currency) -> None:
    from matplotlib.ticker import FuncFormatter

    plt = _plt()
    n = len(frame)
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.38 * max(n, 1)), constrained_layout=True)
    y = np.arange(n)[::-1]
    base = frame["mean_base"].iloc[0] if n else 0.0
    ax.barh(y, frame["delta_mean_helpful"], left=base, color="tab:green",
            label=f"{pct} the helpful way")
    ax.barh(y, frame["delta_mean_harmful"], left=base, color="tab:red", alpha=0.7,
            label=f"{pct} the harmful way")
    ax.axvline(base, color="black", lw=1)
    ax.set_yticks(y, frame["lever"])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: money(v, currency)))
    ax.set_xlabel(f"mean bookings in {period} ({currency})")
    ax.set_title(f"What moves bookings in {period}: each lever {pct} either way", loc="left")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(frameon=False, loc="lower right")
    _save(fig, path)


# ---- plan ------------------------------------------------------------------------------------

@click.command("plan")
@click.option("--target", type=click.FloatRange(0, None, min_open=True), required=True,
              callback=_finite,
              metavar="AMOUNT", help="Bookings to reach in the period.")
@click.option("--period", "period_label", required=True, metavar="PERIOD",
              help="The period: 2027Q1, 2027-01 or 2027.")
@click.option("--confidence", type=click.FloatRange(0.01, 0.99), default=0.8,
              callback=_finite,
              show_default=True, help="Wanted probability of reaching the target.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@forecast_options
def plan_cmd(target, period_label, confidence, fmt, model_name, history, as_of_text, horizon,
             paths, seed, threads, quiet, posterior_path, history_format, **kwargs):
    """The new leads per week needed so that bookings in the period reach the target with the
    given probability; next to the classic reverse-funnel arithmetic."""
    from forecast import planning
    from forecast.summarize import periods

    inp, _ = _inputs(model_name, history, history_format, kwargs, as_of_text, posterior_path,
                     paths, threads, quiet)
    w, horizon = _window(period_label, inp.as_of, horizon)
    progress = Progress("searching", enabled=not quiet)
    try:
        p = planning.plan(_setting(inp, horizon, paths, seed), target, w, confidence)
    except ValueError as exc:
        fail(str(exc))
    finally:
        progress.close()
    model, params, cur = inp.model, inp.params, inp.model.currency
    classic = planning.classic_reverse_funnel(model, params, target, w)
    now_per_day = params.arrivals_mean.mean(0)  # [segment], averaged over parameter sets
    # What the classic number of leads a week achieves, on the same paths.
    classic_factor = classic["leads_per_week"] / (now_per_day.sum() * 7)
    classic_p = float(np.mean(planning.in_window(planning.run_scenarios(
        _setting(inp, horizon, paths, seed), [planning.arrivals_scenario(classic_factor)],
        baseline=False)[0].bookings, w) >= target)) if math.isfinite(classic_factor) else 0.0
    need_per_week = now_per_day * p.factor * 7
    res = p.result
    per = periods(inp.as_of, horizon, "month")
    monthly = []
    for i, label in enumerate(per.labels):
        sl = slice(per.first_day[i], per.last_day[i] + 1)
        row = {"month": label, "new_leads": res.entered[:, sl, model.state_index(model.entry)]
               .sum(1).mean()}
        for s in model.stages[1:]:
            row[s] = res.entered[:, sl, model.state_index(s)].sum(1).mean()
        row["won_deals"] = res.won[:, sl].sum(1).mean()
        row["bookings"] = res.bookings[:, sl].sum(1).mean()
        monthly.append(row)
    booked = planning.in_window(res.bookings, w)
    summary = {
        "target": target, "currency": cur, **_span_meta(w), "confidence": confidence,
        "as_of": inp.as_of.isoformat(), "paths": paths, "seed": seed,
        "arrivals_factor": p.factor, "probability": p.probability,
        "probability_at_current_arrivals": p.current_probability,
        "leads_per_week": float(need_per_week.sum()),
        "leads_per_week_now": float(now_per_day.sum() * 7),
        "leads_per_week_by_segment": dict(zip(model.segment_names,
                                              map(float, need_per_week), strict=True)),
        "bookings_p10_p50_p90": [float(v) for v in np.quantile(booked, [0.1, 0.5, 0.9])],
        "classic": classic, "probability_with_classic_leads": classic_p,
        "monthly": monthly, "evaluations": p.evaluations,
        # the plan as a scenario file's change (arrivals' add and set are leads per day)
        "scenario_change": {"lever": "arrivals", "multiply": p.factor},
        "leads_per_day": float(need_per_week.sum() / 7),
    }
    if fmt == "json":
        click.echo(json.dumps(summary, indent=2, default=float))
        return
    lines = _header(inp, f"Plan: {money(target, cur)} of bookings in {_span(w)} with "
                         f"probability {confidence:.0%}", horizon, paths, seed)
    lines += _under_way(w, inp.as_of)
    lines += [
        "",
        f"New leads needed: {need_per_week.sum():,.0f} a week from {inp.as_of + dt.timedelta(1)}"
        f" ({p.factor:.2f}x today's {now_per_day.sum() * 7:,.0f}); P(bookings >= target) "
        f"= {p.probability:.0%} with them, {p.current_probability:.0%} at today's volume.",
        "  by segment: " + ", ".join(f"{g} {v:,.0f}" for g, v in
                                     zip(model.segment_names, need_per_week, strict=True)),
        f"  bookings in {w.label} with the plan: "
        + ", ".join(f"{n} {money(v, cur)}" for n, v in
                    zip(("P10", "P50", "P90"), summary["bookings_p10_p50_p90"], strict=True)),
        f"  as a scenario change: lever = \"arrivals\", multiply = {p.factor:.4g} (all "
        f"segments, mix kept; add and set take leads per day: {need_per_week.sum() / 7:,.1f} "
        "a day)",
        "",
        "Implied flow per month (means over paths):",
    ]
    head = ["month", "new leads", *model.stages[1:], "won deals", "bookings"]
    rows = [[m["month"], f"{m['new_leads']:,.0f}", *(f"{m[s]:,.1f}" for s in model.stages[1:]),
             f"{m['won_deals']:,.1f}", money(m["bookings"], cur)] for m in monthly]
    lines += [_render(rows, head), ""]
    path = [*model.stages, "won"]
    rows = [["leads per week", f"{classic['leads_per_week']:,.0f}",
             f"{need_per_week.sum():,.0f}"]]
    for s in path[1:]:
        sl = slice(w.first, w.last + 1)
        sim = (res.won[:, sl].sum(1).mean() if s == "won"
               else res.entered[:, sl, model.state_index(s)].sum(1).mean())
        rows.append([f"{s} in {w.label}", f"{classic[s]:,.1f}", f"{sim:,.1f}"])
    lines += ["Classic reverse funnel (target / mean deal / win rate / ...) against the plan:",
              _render(rows, ["", "classic arithmetic", "Monte Carlo plan"]),
              "",
              f"The classic arithmetic divides by the mean won deal "
              f"({money(classic['mean_deal'], cur)}) and the eventual stage-to-stage rates; it "
              "ignores the time leads take to close (leads arriving late in the period close "
              "after it), the open pipeline and the spread. With its "
              f"{classic['leads_per_week']:,.0f} leads a week, P(bookings >= target) = "
              f"{classic_p:.0%} on the same paths."]
    click.echo("\n".join(lines))
