"""`forecast report`: the funnel metrics of a history, and the latest forecast, as one HTML page.

::

    forecast report --out report.html [--history LOG --history-format ...] [--model M]
                    [--as-of DATE] [--posterior post.nc] [--spend spend.csv]
                    [--ltv-multiple 1] [--ledger forecasts.duckdb | --no-forecast]
                    [--paths 1000] [--horizon 90] [--seed 0] [--mature-days 90]

The page is one file with everything inside (charts as data URIs, no scripts, nothing fetched),
written atomically. Without ``--ledger`` the forecast is a fresh run from the history's open
pipeline; with it, the ledger's latest run as of the page's as-of date (else the latest of an
earlier date, noted on the page; never one of a later date). Metric definitions are in
``forecast.report``.
"""

from __future__ import annotations

from pathlib import Path

import click


def _options(func):
    from forecast.cli import history_options

    decorators = [
        click.command("report"),
        click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
                     required=True, help="The HTML page to write (.html)."),
        click.option("--model", "model_name", default=None, metavar="MODEL",
                     help="Funnel model file or bundled name. Default: b2b."),
        click.option("--history", type=click.Path(dir_okay=False, path_type=Path),
                     default=None, help="Event log or CRM export. Default: the bundled sample "
                                        "history."),
        click.option("--as-of", "as_of_text", default=None, metavar="DATE",
                     help="Measure up to the end of this day. Default: the history's last date."),
        click.option("--posterior", "posterior_path", default=None,
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="A posterior from `forecast fit`: adds the model's conversion "
                          "intervals and fitted rates, and drives a fresh forecast."),
        click.option("--spend", "spend_path", default=None,
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="CSV with columns segment,month,spend (month YYYY-MM): adds cost "
                          "per lead / stage, CAC and LTV:CAC."),
        click.option("--ltv-multiple", type=click.FloatRange(0, None, min_open=True),
                     default=1.0, show_default=True,
                     help="LTV = mean won deal (first-year bookings) x this."),
        click.option("--ledger", "ledger_file", default=None,
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="Show the latest forecast of the model recorded in this ledger "
                          "as of --as-of (else the latest of an earlier date, with a note; "
                          "what-if runs of `forecast scenario` are skipped) instead of a "
                          "fresh forecast."),
        click.option("--no-forecast", is_flag=True, help="Leave the forecast out."),
        click.option("--paths", type=click.IntRange(1, 1_000_000), default=1000,
                     show_default=True, help="Paths of the fresh forecast."),
        click.option("--horizon", type=click.IntRange(1, 3660), default=90, show_default=True,
                     help="Days of the fresh forecast."),
        click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
                     help="Seed of the fresh forecast."),
        click.option("--mature-days", type=click.IntRange(0, 36600), default=90,
                     show_default=True,
                     help="Entries at least this old count as mature in the conversion table."),
        history_options,
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


@_options
def report(out_path, model_name, history, as_of_text, posterior_path, spend_path, ltv_multiple,
           ledger_file, no_forecast, paths, horizon, seed, mature_days, history_format,
           **kwargs):
    """Write the funnel report: leads, velocity, conversion, days in stage, cohorts, sticky
    points, costs and the latest forecast, as one self-contained HTML page."""
    from forecast import report as rep
    from forecast.cli import (
        fail,
        import_options,
        last_date_as_of,
        model_and_history_or_fail,
        note_posterior_after,
        notes,
        parse_date,
        posterior_or_fail,
        read_history_or_fail,
    )
    from forecast.eventlog import InputError
    from forecast.parameters import default_parameters

    if out_path.suffix.lower() not in (".html", ".htm"):
        fail(f"{out_path}: --out must end in .html")
    if not out_path.resolve().parent.is_dir():
        fail(f"{out_path}: directory {out_path.parent} does not exist")
    if ledger_file is not None and no_forecast:
        fail("give --ledger or --no-forecast, not both")
    if ledger_file is not None and not ledger_file.exists():
        fail(f"{ledger_file}: --ledger: no such file")
    as_of = parse_date(as_of_text, "--as-of")
    options = import_options(kwargs)
    model, history_path = model_and_history_or_fail(model_name, history, history_format)
    spend = None
    if spend_path is not None:
        try:
            spend = rep.read_spend(spend_path, model)
        except InputError as exc:
            fail(str(exc))
    params, parameters = None, "the history alone"
    if posterior_path is not None:
        params, info = posterior_or_fail(posterior_path, model)
        parameters = (f"posterior {posterior_path} ({info['draws']:,} draws, fitted as of "
                      f"{info['as_of']})")
    log = read_history_or_fail(history_path, model, history_format, options, as_of,
                               note=notes(False), past=True)  # notes on stderr too
    if as_of is None:
        as_of = last_date_as_of(log)
    if posterior_path is not None:
        note_posterior_after(info, as_of, notes(False))
    forecast = None
    if ledger_file is not None:
        from forecast.ledger import LedgerError

        try:
            forecast = rep.ledger_forecast(ledger_file, model.name, as_of)
        except LedgerError as exc:
            fail(f"{ledger_file}: {exc}" if not str(exc).startswith(str(ledger_file))
                 else str(exc))
        if forecast.note:
            notes(False)(f"note: {forecast.note}")
    elif not no_forecast:
        sim_params = params if params is not None else default_parameters(model)
        try:
            forecast = rep.fresh_forecast(
                model, sim_params, log, as_of, horizon=horizon, paths=paths, seed=seed,
                parameters=parameters if params is not None else "model defaults")
        except ValueError as exc:  # a drift walk too large for the paths and horizon asked
            fail(str(exc))
    try:
        result = rep.build(log, model, as_of, mature_days=mature_days, params=params,
                           parameters=parameters, spend=spend,
                           spend_path=str(spend_path) if spend_path else None,
                           ltv_multiple=ltv_multiple, forecast=forecast)
    except InputError as exc:
        fail(str(exc))
    page = rep.render_html(result)
    try:
        rep.write_html(out_path, page)
    except OSError as exc:
        fail(f"{out_path}: could not write ({exc})")
    click.echo(f"wrote {out_path} ({len(page.encode()) / 1024:,.0f} kB)", err=True)
