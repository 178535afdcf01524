"""`forecast nightly`: the one command for cron. Refit when due, forecast, record, summarise.

Every night revenue-ops runs::

    forecast nightly crm_export.csv --model b2b --refit-every 7d

which reads the history, refits the posterior when it is missing, older than ``--refit-every``
(by the time it was fitted), fitted with another model file or fitted as of a later date than
the forecast's (a missed night run afterwards: its forecast must not know what came later),
forecasts as of today (or
``--as-of``) with the posterior, records the run and its bands in the ledger, and prints a short
summary: the bookings P10 / P50 / P90 of the current quarter and of each later quarter the
horizon covers in full. Any failure is one line on stderr (``forecast: error: ...``, as for
every command; fit for a log file) and exit code 1; nothing is recorded for a run that failed.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import click

from forecast.model import FunnelModel, ModelError, load_model

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([hdw]?)\s*$")


def parse_age(text: str) -> dt.timedelta:
    """``7d``, ``12h``, ``2w`` or a plain number of days -> a timedelta."""
    m = _AGE.match(text)
    if not m:
        raise ValueError(f"--refit-every {text!r} is not an age like 7d, 12h or 2w")
    value, unit = float(m.group(1)), m.group(2) or "d"
    return dt.timedelta(hours=value) if unit == "h" else \
        dt.timedelta(days=value * (7 if unit == "w" else 1))


def refit_reason(posterior: Path, model: FunnelModel, max_age: dt.timedelta,
                 now: dt.datetime, as_of: dt.date) -> str | None:
    """Why the posterior must be refitted (``None``: it can be used as it is) for a forecast
    as of ``as_of``, at ``now`` (an aware datetime; the fit's ``fitted_at`` is in UTC)."""
    from forecast.cli import fitted_after
    from forecast.fit import PosteriorError, load_posterior, provenance

    if not posterior.exists():
        return f"no posterior at {posterior}"
    try:
        info = provenance(load_posterior(posterior))
    except PosteriorError as exc:
        return f"the posterior is unusable ({exc})"
    if info["model_sha256"] != model.sha256:
        return f"the model file changed since the fit ({model.path})"
    later = fitted_after(info, as_of)
    if later is not None:  # e.g. a night missed and run later: it must not use later data
        return f"the posterior was fitted as of {later}, after --as-of {as_of}"
    if info["carried_bands"] is None:
        return ("the posterior predates the fit's rule for age bands the history never reached "
                f"(fitted by forecast {info['forecast_version']})")
    fitted = info.get("fitted_at")
    if not fitted:
        return "the posterior does not say when it was fitted"
    age = now - dt.datetime.fromisoformat(fitted)
    if age > max_age:
        return f"the posterior is {age.total_seconds() / 86400:.1f} days old (--refit-every " \
               f"{max_age.total_seconds() / 86400:g} days)"
    return None


def _options(func):
    from forecast.cli import _fit_history_options, undeclared_option

    decorators = [
        click.command("nightly"),
        click.argument("history", type=click.Path(dir_okay=False, path_type=Path)),
        click.option("--model", "model_name", default=None, metavar="MODEL",
                     help="Funnel model file or bundled name. Default: b2b."),
        click.option("--refit-every", "refit_every", default="7d", show_default=True,
                     metavar="AGE", help="Refit when the posterior is older (7d, 12h, 2w)."),
        click.option("--posterior", "posterior_path", default=None,
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="The posterior file to reuse and refresh. Default: "
                          "<model name>.posterior.nc beside the ledger."),
        click.option("--ledger", "ledger_file", default=None,
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="The ledger. Default: $FORECAST_LEDGER, else ./forecasts.duckdb."),
        click.option("--as-of", "as_of_text", default=None, metavar="DATE",
                     help="Forecast as of this day. Default: today (the local date)."),
        click.option("--horizon", type=click.IntRange(1, 3660), default=370,
                     show_default=True, help="Days to simulate (the default covers the "
                                             "current quarter and the next three)."),
        click.option("--paths", type=click.IntRange(1, 10_000_000), default=4000,
                     show_default=True),
        click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
                     help="Root seed of the forecast (and the sampler's when refitting); the "
                          "same seed gives the same numbers."),
        click.option("--window", type=click.IntRange(1, 36600), default=None, metavar="DAYS",
                     help="Fit on the last DAYS days only."),
        undeclared_option,
        click.option("--draws", type=click.IntRange(10, 100_000), default=1000,
                     show_default=True, help="Posterior draws per chain when refitting."),
        click.option("--tune", type=click.IntRange(10, 100_000), default=None,
                     help="Tuning steps per chain when refitting. Default: --draws."),
        click.option("--ledger-timeout", type=click.FloatRange(0, 86400), default=300.0,
                     show_default=True, metavar="SECONDS",
                     help="How long to wait for another process holding the ledger."),
        _fit_history_options,
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def _fail(message: str) -> None:
    click.echo(f"forecast: error: {message}", err=True)  # the prefix of every command
    raise SystemExit(1)


@_options
def nightly(history, model_name, refit_every, posterior_path, ledger_file, as_of_text, horizon,
            paths, seed, window, undeclared, draws, tune, ledger_timeout, history_format,
            **kwargs):
    """Cron's command: refit when due, forecast as of today, record it in the ledger.

    HISTORY is an event log or a CRM export (--format). Prints a short summary; on any
    failure one line on stderr and exit code 1, and nothing is recorded.
    """
    from forecast import fit as fit_mod
    from forecast import ledger as ledger_mod
    from forecast import summarize
    from forecast.cli import import_options, read_history_or_fail, writable_ledger_or_fail
    from forecast.eventlog import InputError, open_pipeline
    from forecast.outlook import simulate_ahead
    from forecast.statistics import sufficient_statistics

    started = time.perf_counter()
    now = dt.datetime.now(dt.UTC)  # for the posterior's age (its fitted_at is in UTC)
    try:
        max_age = parse_age(refit_every)
    except ValueError as exc:
        _fail(str(exc))
    try:
        # today where the job runs, as for run, actuals and the checks of the history's dates
        as_of = dt.date.fromisoformat(as_of_text) if as_of_text else dt.date.today()
    except ValueError:
        _fail(f"--as-of {as_of_text!r} is not a date (expected YYYY-MM-DD)")
    try:
        model: FunnelModel = load_model(model_name)
        fit_mod.priors_of(model)
    except (ModelError, fit_mod.PosteriorError) as exc:
        _fail(str(exc))
    ledger_path = writable_ledger_or_fail(ledger_file)
    posterior = posterior_path or ledger_path.with_name(f"{model.name}.posterior.nc")
    options = import_options(kwargs)
    # As everywhere, a row dated after the as-of date is an error (a future event is bad data).
    # (its notes, e.g. deals reopened after a close, go to the cron job's log)
    log = read_history_or_fail(history, model, history_format, options, as_of, flag="--format",
                               note=lambda text: click.echo(f"forecast nightly: {text}",
                                                            err=True))

    reason = refit_reason(posterior, model, max_age, now, as_of)
    if reason is not None:
        since = as_of - dt.timedelta(days=window) if window else None
        try:
            stats = sufficient_statistics(log, model, as_of, since=since,
                                          on_undeclared=undeclared)
        except (InputError, ValueError) as exc:
            _fail(str(exc))
        if stats.events.sum() == 0:
            _fail(f"{history}: no moves between stages on or before {as_of}; nothing to fit")
        result = fit_mod.fit(stats, model, draws=draws, tune=tune or draws, chains=2, seed=seed,
                             progress=False, history_path=str(history),
                             history_sha256=log.sha256)
        try:
            fit_mod.save_posterior(result.idata, posterior)
        except OSError as exc:
            _fail(f"{posterior}: could not write the posterior ({exc})")
        fit_text = (f"refitted ({reason}): max R-hat {result.diagnostics['max_rhat']:.3f}, "
                    f"{result.diagnostics['divergences']} divergences")
        for warning in result.diagnostics["warnings"]:
            click.echo(f"forecast nightly: warning: {warning}", err=True)
        for line in fit_mod.carried_notes(result.diagnostics["carried_bands"]):
            click.echo(f"forecast nightly: note: {line}", err=True)
    else:
        fit_text = "posterior reused"

    from forecast.cli import posterior_or_fail

    params, fitted = posterior_or_fail(posterior, model, paths)
    pipeline = open_pipeline(log, model, as_of)
    occupancy = ledger_mod.occupancy_days(as_of, horizon)
    try:
        sim = simulate_ahead(model, params, pipeline, as_of, horizon, paths, seed,
                             occupancy_days=occupancy)
    except ValueError as exc:  # a drift walk too large for the paths and horizon asked
        _fail(str(exc))
    record = ledger_mod.RunRecord(
        as_of=as_of, model_name=model.name, model_path=str(model.path),
        model_sha256=model.sha256, history_path=str(history), history_sha256=log.sha256,
        seed=seed, paths=paths, horizon_days=horizon, currency=model.currency,
        posterior_path=str(posterior), posterior_sha256=fitted["sha256"])
    try:
        run_id = ledger_mod.record(ledger_path, record, ledger_mod.ledger_bands(sim),
                                   timeout=ledger_timeout)
    except ledger_mod.LedgerError as exc:
        _fail(str(exc))
    quarters = summarize.bands(sim, by="quarter", quantiles=(0.1, 0.5, 0.9))
    rows = quarters[(quarters["metric"] == "bookings") & (quarters["period"] != "total")]
    import numpy as np
    import pandas as pd

    from forecast.outputs import money

    lines = [f"forecast nightly: run {run_id} recorded in {ledger_path}: model {model.name}, "
             f"as of {as_of}, {len(pipeline):,} open leads, {paths:,} paths; {fit_text}; "
             f"{time.perf_counter() - started:.0f} s"]
    for i, r in enumerate(rows.itertuples(index=False)):
        quarter = pd.Period(r.period, freq="Q")
        if i > 0 and r.days < (quarter.end_time - quarter.start_time).days + 1:
            continue  # a later quarter the horizon covers only in part

        line = (f"  {r.period} bookings ({r.days} days): P10 {money(r.p10, model.currency)}"
                f"  P50 {money(r.p50, model.currency)}  P90 {money(r.p90, model.currency)}")
        start = quarter.start_time.date()
        if i == 0 and start <= as_of:  # the current quarter: what it lands at, booked + ahead
            booked, whole = landing(log, model, start, as_of, sim.bookings[:, :r.days])
            p10, p50, p90 = np.quantile(whole, [0.1, 0.5, 0.9])
            line += (f"; the whole quarter, with {money(booked, model.currency)} booked "
                     f"{start} to {as_of}: P10 {money(p10, model.currency)}  "
                     f"P50 {money(p50, model.currency)}  P90 {money(p90, model.currency)}")
        lines.append(line)
    click.echo("\n".join(lines))


def landing(log, model: FunnelModel, start: dt.date, as_of: dt.date, ahead):
    """What a period under way lands at: the bookings of the history from ``start`` to
    ``as_of`` (won deals on their won row's date, as ``forecast actuals`` counts them;
    unknown amounts 0), and that plus each path's bookings ahead (``ahead``: per path and
    day, the period's days after ``as_of``). Returns ``(booked, per-path totals)``."""
    import numpy as np

    from forecast.trend import realized

    real = realized(log, model, through=as_of)
    inside = (real.days.date >= start) & (real.days.date <= as_of)
    booked = float(real.bookings[inside].sum())
    return booked, booked + np.asarray(ahead).sum(axis=1)

