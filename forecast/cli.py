"""The ``forecast`` command line. Each command parses, calls the library, and renders."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import click
import numpy as np

from forecast import __version__
from forecast.model import FunnelModel, ModelError, bundled_model_names, load_model
from forecast.parameters import default_parameters
from forecast.samples import sample_history_path

HORIZON_DEFAULT = 90
MAX_HORIZON = 3660  # days a forecast may run (--horizon's range)
PATHS_DEFAULT = 2000
_LEDGER_DEFAULT = "\0default-ledger"  # the value of a bare --ledger (no path given)


class Progress:
    """A progress bar on stderr, shown only on a terminal and only once a run passes 1 s."""

    def __init__(self, label: str, enabled: bool):
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()
        self.start = time.monotonic()
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or time.monotonic() - self.start < 1.0:
            return
        self.shown = True
        width = 30
        filled = int(width * done / total)
        elapsed = time.monotonic() - self.start
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                         f"{done}/{total} paths  {elapsed:.0f}s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


def fail(message: str) -> None:
    """Print a one-line error on stderr and exit with code 1."""
    click.echo(f"forecast: error: {message}", err=True)
    sys.exit(1)


def parse_date(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r} is not a date (expected YYYY-MM-DD)")


def parse_days(value: str | None, option: str) -> int | None:
    """'180' or '180d' -> 180 (days, 1 to 36600)."""
    if value is None:
        return None
    text = value.strip().lower().removesuffix("d")
    if not text.isdigit() or not 1 <= int(text) <= 36600:
        fail(f"{option} {value!r} is not a number of days (e.g. 180 or 180d)")
    return int(text)


# Column options of the CRM importers (forecast.importers) for commands that read a history.
_IMPORT_OPTIONS = (
    ("--id-column", "id_column", "Column of the lead / deal id."),
    ("--created-column", "created_column", "opportunities: column of the created date."),
    ("--closed-column", "closed_column", "opportunities: column of the closed date."),
    ("--status-column", "status_column", "opportunities: column of the won / lost / open status."),
    ("--stage-column", "stage_column", "salesforce: column of the stage name."),
    ("--date-column", "date_column", "salesforce: column of the stage change date."),
    ("--amount-column", "amount_column", "Column of the deal amount."),
    ("--segment-column", "segment_column", "Column of the segment (e.g. product or channel)."),
    ("--won-values", "won_values", "opportunities: status values meaning won, comma-separated "
     "(besides the model's [crm_stages])."),
    ("--lost-values", "lost_values", "opportunities: status values meaning lost, "
     "comma-separated (besides the model's [crm_stages])."),
    ("--open-values", "open_values", "opportunities: status values meaning open, comma-separated "
     "(besides the model's [crm_stages]; any other status is an error)."),
    ("--date-order", "date_order", "hubspot, salesforce, opportunities: how a date like 3/1/2017 "
     "reads: month-first (US: 1 March; the default) or day-first (3 January; also 03.01.2017)."),
)
_LIST_OPTIONS = ("won_values", "lost_values", "open_values")


def history_options(func, flags: tuple[str, ...] = ("--history-format",)):
    """Add the history layout option (``flags``) and the importers' column options."""
    for name, dest, text in reversed(_IMPORT_OPTIONS):
        kind = click.Choice(["month-first", "day-first"]) if dest == "date_order" else None
        func = click.option(name, dest, default=None, type=kind,
                            metavar=None if kind else "NAME", help=text)(func)
    return click.option(
        *flags, "history_format",
        type=click.Choice(["eventlog", "hubspot", "salesforce", "opportunities"]),
        default="eventlog", show_default=True, help="Layout of the history file.")(func)


def import_options(kwargs: dict) -> dict:
    """Pop the importer options given on the command line (unset ones keep their defaults)."""
    out = {}
    for _, dest, _ in _IMPORT_OPTIONS:
        value = kwargs.pop(dest, None)
        if value is not None:
            out[dest] = tuple(v.strip() for v in value.split(",")) if dest in _LIST_OPTIONS \
                else value
    return out


def write_file_or_fail(path: Path, write) -> None:
    """Write ``path`` by ``write(tmp)`` on a temporary file beside it, moved into place only
    once written: a failure (a directory without write permission, a full disk) is a
    one-line error, and ``path`` is as it was."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        fail(f"{path}: could not write ({exc}); nothing was changed")
    finally:
        tmp.unlink(missing_ok=True)


def read_history_or_fail(path: Path, model: FunnelModel, history_format: str,
                         options: dict, as_of: dt.date | None,
                         flag: str = "--history-format", *, stale: bool = True, note=None,
                         past: bool = False):
    """Read a history in the given layout; any problem is a one-line error and exit code 1.
    A row after ``as_of`` is such a problem, unless ``past``: then the history is read whole
    and cut to what was known at the end of ``as_of`` (:func:`forecast.backtest.truncate`: a
    deal closed later is open then), with a note of how much was left out; that is what an
    ``--as-of`` in the past asks of ``run``, ``fit`` and the others (a one-row-per-deal
    export cannot be cut by dropping rows: its deals open then and closed later would go).
    With ``stale``, a history that ends well before ``as_of`` is warned about
    (:func:`warn_stale`). ``note``, when given, is called with each of the importer's notes
    (rows folded or skipped, closes undone) as ``"note: ..."``."""
    import inspect

    from forecast import importers
    from forecast.backtest import truncate
    from forecast.eventlog import InputError, read_event_log

    reader = {"eventlog": read_event_log, "hubspot": importers.read_hubspot,
              "salesforce": importers.read_salesforce,
              "opportunities": importers.read_opportunities}[history_format]
    accepted = inspect.signature(reader).parameters
    unknown = [k for k in options if k not in accepted]
    if unknown:
        fail(f"{', '.join('--' + k.replace('_', '-') for k in unknown)}: not an option of "
             f"{flag} {history_format}")
    cut = past and as_of is not None
    if cut and "known_at" in accepted:  # a history of changes: only those recorded by then
        options = {**options, "known_at": as_of}
    try:
        log = reader(path, model, as_of=None if cut else as_of, **options)
    except InputError as exc:
        fail(str(exc))
    for line in log.notes if note is not None else ():
        note(f"note: {line}")
    if stale and not log.recorded_after:  # on the whole file: rows after a past as-of
        warn_stale(log, as_of)  # (left out by the importer or cut below) show it is not stale
    if cut:
        n = len(log.frame)
        first = log.frame["entered_at"].min().date()
        if first > as_of:
            fail(f"{path}: every row is after --as-of {as_of} (the history starts on {first})")
        log = truncate(log, as_of)
        left = n - len(log.frame)
        if left:  # said now, and kept with the log's notes (the report's page shows them)
            text = (f"left out {left:,} event{'s' if left != 1 else ''} of {path.name} dated "
                    f"after --as-of {as_of}: the history as it was known at the end of that "
                    "day (a deal closed later is open on it)")
            if note is not None:
                note(f"note: {text}")
            log = replace(log, notes=(*log.notes, text),
                          recorded_after=max(log.recorded_after, left))
    return log


def fitted_after(fitted: dict | None, as_of: dt.date) -> dt.date | None:
    """The as-of date of a posterior (its :func:`forecast.fit.provenance`) fitted as of a later
    date than ``as_of``, else ``None``: a look back with it uses rates learned from what
    happened in between."""
    if fitted is not None and fitted.get("as_of_date") and fitted["as_of_date"] > as_of:
        return fitted["as_of_date"]
    return None


def note_posterior_after(fitted: dict | None, as_of: dt.date, note) -> None:
    """Note a posterior fitted as of a later date than ``as_of`` (:func:`fitted_after`)."""
    later = fitted_after(fitted, as_of)
    if later is not None:
        note(f"note: the posterior was fitted as of {later}, after --as-of "
             f"{as_of}: its rates know what happened in between (fit as of {as_of} for a "
             "forecast that does not)")


def warn_stale(log, as_of: dt.date | None) -> None:
    """Warn on stderr (even with --quiet) when ``as_of`` is well after the history's last event:
    the leads open then are taken as still open, and nothing since is known (a stale export)."""
    from forecast.eventlog import STALE_DAYS, latest_date

    if as_of is None or log.frame.empty:
        return
    last = latest_date(log)
    if (as_of - last).days > STALE_DAYS:
        click.echo(f"forecast: warning: {Path(log.path).name} ends on {last}, "
                   f"{(as_of - last).days:,} days before the as-of date {as_of}: the leads open "
                   f"then are taken as still open and nothing since is known; is the export "
                   f"stale?", err=True)


def last_date_as_of(log) -> dt.date:
    """The default as-of date: the history's last date; warned about on stderr (even with
    --quiet) when it is after today: a mistyped year (2099) would otherwise quietly move the
    forecast to start then."""
    from forecast.eventlog import latest_date

    last = latest_date(log)
    if last > dt.date.today():
        click.echo(f"forecast: warning: the last date in {Path(log.path).name} is {last}, after "
                   f"today ({dt.date.today()}); the forecast starts from it (a mistyped date? "
                   "pass --as-of to choose)", err=True)
    return last


def check_png(path: Path) -> None:
    """A --chart path must end in .png and sit in an existing directory."""
    if path.suffix.lower() != ".png":
        fail(f"{path}: --chart must end in .png")
    if not path.resolve().parent.is_dir():
        fail(f"{path}: directory {path.parent} does not exist")


def writable_ledger_or_fail(ledger_file) -> Path:
    """The ledger to record in (``--ledger``, ``$FORECAST_LEDGER`` or the default); its
    directory must exist."""
    from forecast import ledger as ledger_mod

    path = ledger_mod.ledger_path(ledger_file)
    if not path.parent.is_dir():
        fail(f"{path}: --ledger directory {path.parent} does not exist")
    try:  # before any work: a file that is no ledger fails now, not after a fit
        ledger_mod.check_file(path)
    except ledger_mod.LedgerError as exc:
        fail(str(exc))
    return path


def ledger_or_fail(ledger_file) -> Path:
    """The writable ledger of a ``--ledger [PATH]`` option (bare: the default ledger)."""
    return writable_ledger_or_fail(None if ledger_file == _LEDGER_DEFAULT else ledger_file)


def undeclared_option(func):
    """``--undeclared raise|censor`` of the commands that fit (fit, nightly, backtest)."""
    return click.option(
        "--undeclared", type=click.Choice(["raise", "censor"]), default="raise",
        show_default=True,
        help="A move the model does not declare: an error, or end that stay there.")(func)


def ledger_option(func):
    """``--ledger [PATH]`` (record the run) and ``--ledger-timeout``."""
    func = _ledger_timeout_option(func)
    return click.option(
        "--ledger", "ledger_file", is_flag=False, flag_value=_LEDGER_DEFAULT, default=None,
        metavar="[PATH]",
        help="Record the run and its bands in the ledger (a DuckDB file) once it succeeds. "
             "Bare --ledger: $FORECAST_LEDGER, else ./forecasts.duckdb.")(func)


def _ledger_timeout_option(func):
    return click.option(
        "--ledger-timeout", type=click.FloatRange(0, 86400), default=30.0, show_default=True,
        metavar="SECONDS",
        help="How long to wait while another forecast process holds the ledger.")(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="forecast")
def main() -> None:
    """Monte Carlo pipeline forecasts: bands, not point estimates."""


@dataclass(frozen=True)
class ForecastInputs:
    """Everything a forecast starts from, resolved from the command line."""

    model: FunnelModel
    params: object  # forecast.parameters.Parameters
    parameters_text: str
    fitted: dict | None
    log: object  # forecast.eventlog.EventLog
    history_path: Path
    as_of: dt.date
    pipeline: object  # forecast.simulate.Pipeline
    posterior_path: Path | None


def forecast_options(func):
    """The options every forecasting command shares (`run`, `scenario`, `sweep`, ...)."""
    options = [
        click.option("--model", "model_name", default=None, metavar="MODEL",
                     help="Funnel model file, or a bundled model name "
                          f"({', '.join(bundled_model_names())}). Default: b2b."),
        click.option("--history", type=click.Path(dir_okay=False, path_type=Path),
                     default=None,
                     help="Event log (CSV / Parquet); the open pipeline at --as-of is taken "
                          "from it. Default: the bundled sample history."),
        click.option("--as-of", "as_of_text", default=None, metavar="DATE",
                     help="Forecast from the end of this day. Default: the last date in the "
                          "history."),
        click.option("--horizon", type=click.IntRange(1, MAX_HORIZON), default=HORIZON_DEFAULT,
                     show_default=True, help="Days to simulate after --as-of."),
        click.option("--paths", type=click.IntRange(1, 10_000_000), default=PATHS_DEFAULT,
                     show_default=True, help="Monte Carlo paths."),
        click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
                     help="Root seed; the same seed gives the same numbers, bit for bit."),
        click.option("--threads", type=click.IntRange(1, 512), default=None,
                     help="Threads for the simulation (results do not depend on it)."),
        click.option("--quiet", is_flag=True, help="No progress bar or notes on stderr."),
        click.option("--posterior", "posterior_path",
                     type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="A posterior from `forecast fit`: each path uses its own draw "
                          "(path p takes draw p mod the number of draws)."),
    ]
    func = history_options(func)
    for option in reversed(options):
        func = option(func)
    return func


def notes(quiet: bool):
    """A function printing a note on stderr, or doing nothing with --quiet."""
    return (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))


def fittable_model_or_fail(model_name) -> FunnelModel:
    """A model file to fit: it loads and its ``[priors]`` are valid, or a one-line error."""
    from forecast.fit import PosteriorError, priors_of

    try:
        model: FunnelModel = load_model(model_name)
        priors_of(model)
    except (ModelError, PosteriorError) as exc:
        fail(str(exc))
    return model


def model_and_history_or_fail(model_name, history, history_format: str
                              ) -> tuple[FunnelModel, Path]:
    """The model, and the history to read: ``--history``, else the model's bundled sample."""
    try:
        model: FunnelModel = load_model(model_name)
    except ModelError as exc:
        fail(str(exc))
    history_path = history if history is not None else sample_history_path(model)
    if history_path is None:
        fail(f"model {model.name!r} has no bundled sample history; pass --history")
    if history is None and history_format != "eventlog":
        fail("--history-format needs --history")
    return model, history_path


def forecast_inputs(model_name, history, history_format, options: dict, as_of_text,
                    posterior_path, paths: int, threads, note) -> ForecastInputs:
    """Load the model, the parameters (defaults or posterior) and the open pipeline."""
    from forecast.eventlog import open_pipeline

    as_of = parse_date(as_of_text, "--as-of")
    model, history_path = model_and_history_or_fail(model_name, history, history_format)
    params, parameters_text = default_parameters(model), "model defaults"
    fitted = None
    if posterior_path is not None:
        params, fitted = posterior_or_fail(posterior_path, model, paths)
        parameters_text = (f"posterior {posterior_path} ({fitted['draws']:,} draws, fitted as of "
                           f"{fitted['as_of']})")
        if params.has_walk:  # forecast.outlook: the drift fit's walk goes on over the horizon
            period = "quarter" if int(params.walk_months.max()) == 3 else "month"
            conv, arr = np.median(params.walk_sd, axis=0)
            parameters_text += (f"; drift walk continued by {period} (median step "
                                f"{conv:.0%} conversion, {arr:.0%} arrivals)")
    log = read_history_or_fail(history_path, model, history_format, options, as_of, note=note,
                               past=True)
    if as_of is None:
        as_of = last_date_as_of(log)
        note(f"as of {as_of} (the last date in {history_path.name})")
    if fitted is not None and fitted["history_sha256"] != log.sha256:
        note(f"note: the posterior was fitted on {fitted['history_path']}, not on this history")
    note_posterior_after(fitted, as_of, note)
    if threads is not None:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    return ForecastInputs(model=model, params=params, parameters_text=parameters_text,
                          fitted=fitted, log=log, history_path=history_path, as_of=as_of,
                          pipeline=open_pipeline(log, model, as_of),
                          posterior_path=posterior_path)


@main.command()
@click.option("--by", type=click.Choice(["day", "week", "month", "quarter"]), default="month",
              show_default=True, help="Period of the bands.")
@click.option("--quantiles", default="0.1,0.5,0.9", show_default=True,
              help="Quantiles of the bands, comma-separated.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Write bands.csv, bands.parquet, summary.json, fan_chart.png.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True, help="What to print on stdout.")
@ledger_option
@forecast_options
def run(model_name, history, as_of_text, horizon, paths, seed, by, quantiles, out_dir, fmt,
        threads, quiet, posterior_path, ledger_file, ledger_timeout, history_format, **kwargs):
    """Forecast bookings: bands per period over a horizon, from an open pipeline."""
    from forecast import ledger as ledger_mod
    from forecast import outputs, summarize
    from forecast.outlook import simulate_ahead

    note = notes(quiet)
    try:
        qs = summarize.parse_quantiles(quantiles)
    except ValueError as exc:
        fail(str(exc))
    options = import_options(kwargs)
    ledger_path = None
    if ledger_file is not None:  # checked before simulating: a bad path fails fast
        ledger_path = ledger_or_fail(ledger_file)
    inp = forecast_inputs(model_name, history, history_format, options, as_of_text,
                          posterior_path, paths, threads, note)
    model, params, fitted, log = inp.model, inp.params, inp.fitted, inp.log
    as_of, pipeline, history_path = inp.as_of, inp.pipeline, inp.history_path
    parameters_text = inp.parameters_text
    per = summarize.periods(as_of, horizon, by)
    occupancy_days = per.last_day if ledger_path is None else \
        ledger_mod.occupancy_days(as_of, horizon, also=per.last_day)
    progress = Progress("simulating", enabled=not quiet)
    try:
        result = simulate_ahead(model, params, pipeline, as_of, horizon, paths, seed,
                                occupancy_days=occupancy_days, progress=progress)
    except ValueError as exc:  # a drift walk too large for the paths and horizon asked
        fail(str(exc))
    finally:
        progress.close()
    bands = summarize.bands(result, by=by, quantiles=qs)
    counts = np.bincount(pipeline.state, minlength=model.n_transient)
    open_text = ", ".join(f"{s} {counts[i]:,}" for i, s in enumerate((*model.stages, "nurture")))
    header = [
        f"Bookings forecast: model {model.name} ({model.path}), as of {as_of}, "
        f"{horizon} days, {paths:,} paths, seed {seed}",
        f"Open pipeline from {history_path}: {len(pipeline):,} leads ({open_text}); "
        f"parameters: {parameters_text}",
    ]
    meta = {
        "version": __version__, "model": model.name, "model_path": model.path,
        "model_sha256": model.sha256, "history": str(history_path), "history_sha256": log.sha256,
        "as_of": as_of.isoformat(), "horizon_days": horizon, "paths": paths, "seed": seed,
        "by": by, "quantiles": list(qs), "currency": model.currency,
        "open_leads": len(pipeline), "parameters": parameters_text,
        "posterior": str(posterior_path) if posterior_path else None,
        "posterior_sha256": fitted["sha256"] if fitted else None,
    }  # no wall-clock time in it: the same inputs and seed give the same bytes
    if ledger_path is None and out_dir is not None:
        _write_run_outputs(out_dir, result, bands, meta, qs, model)
        note(f"wrote {out_dir}/bands.csv, bands.parquet, summary.json, fan_chart.png")
    if ledger_path is not None:
        # The outputs are written inside the ledger's transaction, with the run id in
        # summary.json: a ledger that is locked or fails leaves --out untouched, and outputs
        # that cannot be written leave the ledger without the run.
        def with_outputs(run_id: int) -> None:
            meta["ledger"], meta["run_id"] = str(ledger_path), run_id
            if out_dir is not None:
                _write_run_outputs(out_dir, result, bands, meta, qs, model)

        record = ledger_mod.RunRecord(
            as_of=as_of, model_name=model.name, model_path=str(model.path),
            model_sha256=model.sha256, history_path=str(history_path),
            history_sha256=log.sha256, seed=seed, paths=paths, horizon_days=horizon,
            currency=model.currency,
            posterior_path=str(posterior_path) if posterior_path else None,
            posterior_sha256=fitted["sha256"] if fitted else None)
        try:
            run_id = ledger_mod.record(ledger_path, record, ledger_mod.ledger_bands(result),
                                       timeout=ledger_timeout, before_commit=with_outputs)
        except ledger_mod.LedgerError as exc:
            fail(str(exc) + (f"; nothing was written to {out_dir}" if out_dir else ""))
        if out_dir is not None:
            note(f"wrote {out_dir}/bands.csv, bands.parquet, summary.json, fan_chart.png")
        note(f"recorded run {run_id} in {ledger_path}")
    if fmt == "table":
        click.echo(outputs.render_table(bands, header, model.currency, model.qualified_stage))
    elif fmt == "csv":
        click.echo(outputs.wide_bands(bands, model.currency).to_csv(index=False), nl=False)
    else:
        click.echo(outputs.summary_json(meta, bands))


@main.command("bands")
@click.option("--ledger", "ledger_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="PATH",
              help="The ledger to read. Default: $FORECAST_LEDGER, else ./forecasts.duckdb.")
@click.option("--run", "run_ref", default="latest", show_default=True, metavar="latest|ID",
              help="Which recorded run: the latest, or a run id.")
@click.option("--as-of", "as_of_text", default=None, metavar="DATE",
              help="The latest run with this as-of date (instead of --run).")
@click.option("--model", "model_name", default=None, metavar="NAME",
              help="Only runs of this model (its name in the model file), for a ledger that "
                   "holds several. Default: any model.")
@click.option("--by", type=click.Choice(["month", "quarter", "year"]), default="month",
              show_default=True, help="Period of the bands.")
@click.option("--quantiles", default="0.1,0.5,0.9", show_default=True,
              help="Quantiles, comma-separated, within [0.01, 0.99]. The ledger stores "
                   "0.01, 0.02, ..., 0.99; levels between them are interpolated linearly.")
@click.option("--metric", default="bookings", show_default=True,
              help="bookings, won_deals, expired_<qualified stage>, lost_to_expiry, "
                   "expired_all, recaptured, arrivals, or in_<state> (leads in a state at "
                   "each period's end).")
@click.option("--cumulative", is_flag=True,
              help="From the as-of date to each period's end instead of within each period "
                   "(occupancy in_<state> is a level either way).")
@click.option("--target", type=click.FloatRange(0, None), default=None, metavar="AMOUNT",
              help="Add the probability that the metric reaches AMOUNT over each row's days, "
                   "as the bands: within the period, or with --cumulative from the as-of date "
                   "to the period's end (interpolated from the stored quantiles).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]),
              default="table", show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="FILE",
              help="Write to FILE instead of stdout (needed for --format parquet).")
@click.option("--chart", "chart_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="FILE.png",
              help="Also draw a fan chart of the metric (cumulative and per period, P10-P90 "
                   "and P25-P75, P50, actuals, the target) as a PNG.")
@_ledger_timeout_option
def bands_cmd(ledger_file, run_ref, as_of_text, model_name, by, quantiles, metric, cumulative,
              target, fmt, out_path, chart_path, ledger_timeout):
    """Bands of a recorded run, read from the ledger (nothing is re-run)."""
    import json

    from forecast import ledger as ledger_mod
    from forecast.outputs import with_units
    from forecast.summarize import parse_quantiles

    try:
        qs = parse_quantiles(quantiles)
    except ValueError as exc:
        fail(str(exc))
    as_of = parse_date(as_of_text, "--as-of")
    if as_of is not None and run_ref != "latest":
        fail("give --run ID or --as-of DATE, not both")
    if fmt == "parquet" and out_path is None:
        fail("--format parquet needs --out FILE")
    if out_path is not None and not out_path.resolve().parent.is_dir():
        fail(f"{out_path}: directory {out_path.parent} does not exist")
    if chart_path is not None:
        check_png(chart_path)
    path = ledger_mod.ledger_path(ledger_file)
    try:
        with ledger_mod.reading(path, timeout=ledger_timeout) as con:
            run = ledger_mod.find_run(con, run_ref, as_of, model=model_name)
            stored = ledger_mod.read_bands(con, run["run_id"], by, metric=metric)
            if stored.empty:  # say which metrics there are
                stored = ledger_mod.read_bands(con, run["run_id"], by)
            actual_days = ledger_mod.read_actual_days(
                con, run["model_name"], metric, run["as_of"],
                run["as_of"] + dt.timedelta(days=int(run["horizon_days"])))
        frame = ledger_mod.select_bands(stored, run, metric, qs, cumulative, target,
                                        actual_days=actual_days)
        if chart_path is not None:
            from forecast import trend as trend_mod

            fan = {cum: ledger_mod.select_bands(stored, run, metric, trend_mod.FAN_QUANTILES,
                                                cum, target, actual_days=actual_days)
                   for cum in (False, True)}
    except ledger_mod.LedgerError as exc:
        fail(f"{path}: {exc}" if not str(exc).startswith(str(path)) else str(exc))
    info = {k: (v.isoformat() if isinstance(v, dt.date | dt.datetime) else v)
            for k, v in run.items() if k != "quantile_grid"}
    if fmt == "table":
        scope = (f"cumulative from {run['as_of']} to each period's end" if cumulative
                 and not metric.startswith("in_") else "within each period")
        header = [
            f"{metric} by {by}, {scope}: run {run['run_id']} of {path} (recorded "
            f"{run['recorded_at']:%Y-%m-%d %H:%M} UTC)",
            f"model {run['model_name']} ({run['model_path']}), as of {run['as_of']}, "
            f"{run['horizon_days']} days, {run['paths']:,} paths, seed {run['seed']}",
        ]
        if run.get("scenario"):  # a what-if run of `forecast scenario`, not the forecast
            header.append(f"what-if run: scenario {run['scenario']!r} (recorded by "
                          "`forecast scenario`), not the forecast")
        text = ledger_mod.render_table(frame, header, run["currency"], target) + "\n"
    if fmt != "table":
        frame = with_units(frame, run["currency"])
    if run.get("scenario") and fmt != "table":  # every row says it is a what-if, not a forecast
        frame.insert(0, "scenario", run["scenario"])
    if fmt == "csv":
        text = frame.to_csv(index=False)
    elif fmt == "json":
        records = json.loads(frame.to_json(orient="records", date_format="iso",
                                             double_precision=15))
        for r in records:
            r["start"], r["end"] = r["start"][:10], r["end"][:10]
        text = json.dumps({"ledger": str(path), "run": info, "metric": metric, "by": by,
                           "cumulative": bool(cumulative), "target": target,
                           "bands": records}, indent=2, default=str) + "\n"
    if chart_path is not None:
        try:
            trend_mod.fan_chart_png(
                chart_path, fan[False], None if metric.startswith("in_") else fan[True],
                run=run, metric=metric, by=by, target=target)
        except OSError as exc:
            fail(f"{chart_path}: could not write ({exc})")
        click.echo(f"wrote {chart_path}", err=True)
    if out_path is None:
        click.echo(text, nl=False)
        return
    write_file_or_fail(out_path, (lambda tmp: frame.to_parquet(tmp, index=False))
                       if fmt == "parquet" else (lambda tmp: tmp.write_text(text)))
    click.echo(f"wrote {len(frame)} rows to {out_path}", err=True)


@main.command("actuals")
@click.argument("history", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", "model_name", default=None, metavar="MODEL",
              help="Funnel model file or bundled name (reads the stages; actuals are kept per "
                   "model, like runs). Default: b2b.")
@click.option("--ledger", "ledger_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="PATH",
              help="The ledger to record in. Default: $FORECAST_LEDGER, else "
                   "./forecasts.duckdb.")
@click.option("--as-of", "as_of_text", default=None, metavar="DATE",
              help="The export's date: a row dated after it is an error (a mistyped year "
                   "would record future periods as closed with nothing), and the days after "
                   "the last row up to it count as known, without a win (a month ending on a "
                   "quiet weekend is complete). Default: today, and the history's last date "
                   "ends what is known (an old export records no days it cannot know).")
@click.option("--quiet", is_flag=True, help="No notes on stderr.")
@_ledger_timeout_option
@lambda f: history_options(f, flags=("--format", "--history-format"))
def actuals_cmd(history, model_name, ledger_file, as_of_text, quiet, ledger_timeout,
                history_format, **kwargs):
    """Record what actually closed in HISTORY: bookings and won deals per period.

    HISTORY is an event log (CSV / Parquet) or a CRM export read with --format. A won deal is
    a lead's entry into won, dated by its row; its booking is the amount on that row, else the
    lead's last known amount before it (no known amount: the deal counts, with 0). Every day,
    month, quarter and year the history touches is recorded, months, quarters and years with
    a complete flag (the history covers the whole period). Recording again replaces the
    earlier actuals of the periods this history covers (a complete period is never replaced
    by an incomplete one, nor an incomplete one by a history covering fewer of its days).
    `forecast bands` and `forecast trend` then show the actuals
    beside the forecasts.
    """
    from forecast import ledger as ledger_mod
    from forecast import trend as trend_mod
    from forecast.eventlog import InputError
    from forecast.outputs import money

    note = notes(quiet)
    options = import_options(kwargs)
    path = writable_ledger_or_fail(ledger_file)
    try:
        model: FunnelModel = load_model(model_name)
    except ModelError as exc:
        fail(str(exc))
    as_of = parse_date(as_of_text, "--as-of") or dt.date.today()
    # (an old export is fine here: it records what closed, and says up to when)
    log = read_history_or_fail(history, model, history_format, options, as_of, flag="--format",
                               stale=False, note=note)
    try:
        # an export dated by --as-of knows the days after its last row up to then: no win
        real = trend_mod.realized(log, model, through=as_of if as_of_text else None)
    except InputError as exc:
        fail(str(exc))
    frame = trend_mod.actuals_frame(real)
    try:
        counts = ledger_mod.record_actuals(path, model.name, frame, history_path=str(history),
                                           history_sha256=log.sha256, timeout=ledger_timeout,
                                           currency=model.currency)
    except ledger_mod.LedgerError as exc:
        fail(str(exc))
    if real.unpriced:
        note(f"note: {real.unpriced:,} won deals without a known amount count 0 in bookings")
    if counts["kept"]:
        note(f"note: kept {counts['kept']} period rows recorded from a history that covers "
             "more of them than this one")
    months = frame[(frame["grain"] == "month") & (frame["metric"] == "bookings")]
    click.echo(f"recorded actuals of {history} ({real.first} to {real.last}) in {path} for "
               f"model {model.name}: {int(real.won_deals.sum()):,} won deals, "
               f"{money(float(real.bookings.sum()), model.currency)} bookings; "
               f"{len(months)} months ({int(months['complete'].sum())} complete); "
               f"replaced {counts['replaced']} earlier rows")


@main.command("trend")
@click.option("--period", required=True, metavar="LABEL",
              help="A month (2027-01), quarter (2027Q1) or year (2027); the grain follows.")
@click.option("--metric", default="bookings", show_default=True,
              help="bookings, won_deals, lost_to_expiry, expired_all, ... (totals over the "
                   "period), or in_<state> (leads in a state at the period's end).")
@click.option("--last", type=click.IntRange(1, None), default=None, metavar="N",
              help="Only the last N runs (by as-of date, then run id).")
@click.option("--model", "model_name", default=None, metavar="NAME",
              help="Only runs of this model (needed when runs of several models cover the "
                   "period).")
@click.option("--quantiles", default="0.1,0.5,0.9", show_default=True,
              help="Three quantiles, comma-separated: the band's low end, middle and high end.")
@click.option("--ledger", "ledger_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="PATH",
              help="The ledger to read. Default: $FORECAST_LEDGER, else ./forecasts.duckdb.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
@click.option("--chart", "chart_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="FILE.png",
              help="Also draw the band and P50 over the as-of dates, with the actual, as a PNG.")
@_ledger_timeout_option
def trend_cmd(period, metric, last, model_name, quantiles, ledger_file, fmt, chart_path,
              ledger_timeout):
    """How the forecast for one period moved across the recorded runs.

    One row per run whose horizon covers the whole period, by as-of date: the period's
    within-period band, and its actual once recorded with `forecast actuals` (and complete).
    A run whose horizon covers only part of the period (it starts inside it, or ends before
    its last day) forecast fewer days, so it is not comparable and is skipped (the count is
    noted on stderr).
    """
    import json

    from forecast import ledger as ledger_mod
    from forecast import trend as trend_mod
    from forecast.outputs import money
    from forecast.summarize import parse_quantiles, quantile_label

    try:
        qs = parse_quantiles(quantiles)
    except ValueError as exc:
        fail(str(exc))
    if len(qs) != 3:
        fail(f"--quantiles takes three levels (low, middle, high), got {quantiles!r}")
    if chart_path is not None:
        check_png(chart_path)
    try:
        trend_mod.parse_period(period)
    except trend_mod.PeriodError as exc:
        fail(str(exc))
    path = ledger_mod.ledger_path(ledger_file)
    try:
        with ledger_mod.reading(path, timeout=ledger_timeout) as con:
            frame, info = ledger_mod.trend(con, period, metric, quantiles=qs, last=last,
                                           model_name=model_name)
    except ledger_mod.LedgerError as exc:
        fail(f"{path}: {exc}" if not str(exc).startswith(str(path)) else str(exc))
    period = period.strip()
    if info["partial"]:
        click.echo(f"note: skipped {info['partial']} runs whose horizon covers only part of "
                   f"{period}", err=True)
    labels = [quantile_label(q) for q in qs]
    currency = info["currency"]
    is_money = metric in ledger_mod.MONEY_METRICS

    def pd_isna(x) -> bool:
        return x is None or (isinstance(x, float) and x != x)

    def show(x: float) -> str:
        if pd_isna(x):
            return ""
        return money(x, currency) if is_money else f"{x:,.1f}"

    if fmt == "table":
        actual = "" if pd_isna(info["actual"]) else f"; actual {show(info['actual'])}"
        header = [f"{metric} in {period} ({info['start']} to {info['end']}), model "
                  f"{info['model_name']}: {len(frame)} of {info['runs']} runs covering it"
                  f"{actual}"]
        cols = ["run", "as of", "recorded (UTC)", "mean", *(c.upper() for c in labels),
                "actual"]
        rows = [[str(r["run_id"]), str(r["as_of"]), f"{r['recorded_at']:%Y-%m-%d %H:%M}",
                 show(r["mean"]), *(show(r[c]) for c in labels), show(r["actual"])]
                for r in frame.to_dict("records")]
        widths = [max(len(x) for x in col) for col in zip(cols, *rows, strict=True)]
        line = "  ".join(f"{{:{'<' if i < 3 else '>'}{w}}}" for i, w in enumerate(widths))
        out = [*header, "", line.format(*cols), "  ".join("-" * w for w in widths)]
        click.echo("\n".join(out + [line.format(*r) for r in rows]))
    elif fmt == "csv":  # each row its unit, as the bands' CSV
        click.echo(frame.assign(unit=currency if is_money else "count").to_csv(index=False),
                   nl=False)
    else:
        records = json.loads(frame.to_json(orient="records", date_format="iso",
                                             double_precision=15))
        for r in records:
            r["as_of"] = r["as_of"][:10]
        meta = {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in info.items()}
        meta["actual"] = None if pd_isna(info["actual"]) else info["actual"]
        click.echo(json.dumps({"ledger": str(path), "period": period, "metric": metric,
                               **meta, "trend": records}, indent=2))
    if chart_path is not None:
        try:
            trend_mod.trend_chart(chart_path, frame, columns=labels, period=period,
                                  metric=metric, currency=currency,
                                  actual=None if pd_isna(info["actual"]) else info["actual"])
        except OSError as exc:
            fail(f"{chart_path}: could not write ({exc})")
        click.echo(f"wrote {chart_path}", err=True)


def _write_run_outputs(out_dir, result, bands, meta, qs, model) -> None:
    import pandas as pd

    from forecast import outputs

    def csv(path):
        outputs.wide_bands(bands, model.currency).to_csv(path, index=False)

    def parquet(path):  # dates as dates (date32), as `forecast bands --format parquet` has them
        frame = outputs.wide_bands(bands, model.currency)
        for col in ("start", "end"):
            frame[col] = pd.to_datetime(frame[col]).dt.date
        frame.to_parquet(path, index=False)

    def summary(path):
        path.write_text(outputs.summary_json(meta, bands))

    def chart(path):
        title = (f"{model.name}: bookings from {meta['as_of']} over {meta['horizon_days']} days "
                 f"({meta['paths']:,} paths)")
        outputs.fan_chart(path, result.dates, np.cumsum(result.bookings, axis=1), bands, qs,
                          title, model.currency)

    try:
        outputs.write_outputs(out_dir, {"bands.csv": csv, "bands.parquet": parquet,
                                        "summary.json": summary, "fan_chart.png": chart})
    except OSError as exc:
        fail(f"{out_dir}: could not write outputs ({exc}); nothing was changed there")


def posterior_or_fail(path: Path, model: FunnelModel, paths: int | None = None):
    """The posterior's parameter sets (the first ``paths`` draws suffice) and its provenance."""
    import hashlib

    from forecast.fit import PosteriorError, load_posterior, posterior_parameters, provenance

    try:
        idata = load_posterior(path)
        params = posterior_parameters(idata, model, str(path))
    except PosteriorError as exc:
        fail(str(exc))
    info = provenance(idata)
    info["draws"] = params.n_sets
    info["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    if paths is not None and paths < params.n_sets:  # path p uses draw p mod n: same result
        params = params.take(np.arange(paths))
    return params, info


def _fit_history_options(func):
    # `fit` reads nothing but the history, so its layout is plain --format (as the issue's
    # command line has it); --history-format, as `run` spells it, works too.
    return history_options(func, flags=("--format", "--history-format"))


@main.command()
@click.argument("history", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", "model_name", default=None, metavar="MODEL",
              help="Funnel model file or bundled name (its structure and [priors]). Default: b2b.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="Posterior file to write (netCDF, e.g. posterior.nc).")
@click.option("--as-of", "as_of_text", default=None, metavar="DATE",
              help="Fit on the history up to the end of this day. Default: its last date.")
@click.option("--window", "window_text", default=None, metavar="DAYS",
              help="Learn only from the last DAYS days before --as-of (e.g. 180 or 180d).")
@click.option("--drift", is_flag=True,
              help="Let conversion and arrivals drift: a random walk by month (by quarter "
                   "when the model has a [calendar] table). Forecasts start from the last "
                   "period's rates, not the history's average, and the walk goes on over "
                   "their horizon.")
@undeclared_option
@click.option("--draws", type=click.IntRange(10, 100_000), default=1000, show_default=True,
              help="Posterior draws per chain.")
@click.option("--tune", type=click.IntRange(10, 100_000), default=1000, show_default=True,
              help="Tuning steps per chain (discarded).")
@click.option("--chains", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="Sampler seed; the same seed gives the same posterior.")
@click.option("--sampler", type=click.Choice(["pymc", "nutpie"]), default="pymc",
              show_default=True,
              help="NUTS implementation; nutpie (optional extra) samples faster but compiles "
                   "for ~40 s every run.")
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
@_fit_history_options
def fit(history, model_name, out_path, as_of_text, window_text, drift, undeclared, draws, tune,
        chains, seed, sampler, quiet, history_format, **kwargs):
    """Learn the funnel's rates from HISTORY: a posterior for `run --posterior`.

    HISTORY is an event log (CSV / Parquet) or a CRM export read with --format.
    """
    from forecast import describe as describe_mod
    from forecast import fit as fit_mod
    from forecast.eventlog import InputError
    from forecast.statistics import sufficient_statistics

    note = notes(quiet)
    as_of = parse_date(as_of_text, "--as-of")
    window = parse_days(window_text, "--window")
    options = import_options(kwargs)
    model = fittable_model_or_fail(model_name)
    if out_path.suffix not in (".nc", ".netcdf", ".h5"):
        fail(f"{out_path}: --out must end in .nc")
    if not out_path.parent.is_dir():
        fail(f"{out_path}: directory {out_path.parent} does not exist")
    t0 = time.perf_counter()
    log = read_history_or_fail(history, model, history_format, options, as_of, flag="--format",
                               note=note, past=True)
    if as_of is None:
        as_of = last_date_as_of(log)
        note(f"as of {as_of} (the last date in {history.name})")
    since = as_of - dt.timedelta(days=window) if window else None
    try:
        stats = sufficient_statistics(log, model, as_of, since=since, on_undeclared=undeclared)
    except (InputError, ValueError) as exc:
        fail(str(exc))
    read_s = time.perf_counter() - t0
    if stats.events.sum() == 0:
        fail(f"{history}: no moves between stages on or before {as_of}"
             + (f" in the last {window} days" if window else "") + "; nothing to fit")
    if stats.undeclared:
        note(f"note: {stats.undeclared:,} moves the model does not declare were censored")
    if stats.unpriced_wins:
        note(f"note: {stats.unpriced_wins:,} won deals without an amount (not used for deal size)")
    note(f"fitting {model.name} to {stats.n_rows:,} rows ({stats.n_leads:,} leads), "
         f"{int(stats.events.sum()):,} moves, {int(stats.arrivals.sum()):,} arrivals, "
         f"{stats.deal_amounts.size:,} deal amounts; {chains} chains x ({tune} tune + {draws} "
         f"draws) with {sampler}")
    try:
        result = fit_mod.fit(stats, model, draws=draws, tune=tune, chains=chains, seed=seed,
                             sampler=sampler, progress=not quiet, history_path=str(history),
                             history_sha256=log.sha256, drift=drift)
    except fit_mod.PosteriorError as exc:
        fail(str(exc))
    try:
        fit_mod.save_posterior(result.idata, out_path)
    except OSError as exc:
        fail(f"{out_path}: could not write the posterior ({exc}); nothing was written")
    diag, tm = result.diagnostics, result.timings
    for warning in diag["warnings"]:
        click.echo(f"forecast: warning: {warning}", err=True)
    for line in fit_mod.carried_notes(diag["carried_bands"]):
        note(f"note: {line}")
    params = fit_mod.posterior_parameters(result.idata, model, str(out_path))
    window_text = (f", window {window} days" if window else "") + (", drift" if drift else "")
    header = [
        f"Posterior: model {model.name} ({model.path}) fitted to {history} as of {as_of}"
        f"{window_text}; wrote {out_path}",
        f"{stats.n_rows:,} rows read and summarised in {read_s:.1f} s; sampling "
        f"({sampler}, {chains} chains x {draws} draws, seed {seed}) {tm['compile_s']:.0f} s "
        f"compile + {tm['sampling_s']:.0f} s",
        f"diagnostics: max R-hat {diag['max_rhat']:.3f}, min bulk ESS "
        f"{diag['min_ess_bulk']:.0f}, {diag['divergences']} divergences",
    ]
    click.echo(describe_mod.render(describe_mod.describe(model, params), model, header))
    drift_rows = describe_mod.drift_table(result.idata.posterior, as_of)
    if drift_rows is not None:
        click.echo("\n" + describe_mod.render_drift(drift_rows, as_of, params))


@main.command()
@click.argument("posterior_path", type=click.Path(dir_okay=False, path_type=Path),
                required=False)
@click.option("--model", "model_name", default=None, metavar="MODEL",
              help="Funnel model file or bundled name. Default: the one the posterior was "
                   "fitted with, or b2b without a posterior.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
@click.option("--history", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also count the stale open deals of this history at --as-of (open longer "
                   "than 95% of stays in their stage last) and what they are worth.")
@click.option("--as-of", "as_of_text", default=None, metavar="DATE",
              help="With --history: the date of the open pipeline (default: its last date).")
@click.option("--horizon", type=click.IntRange(1, 3660), default=HORIZON_DEFAULT,
              show_default=True, help="With --history: days over which stale deals are valued.")
@history_options
def describe(posterior_path, model_name, fmt, history, as_of_text, horizon, history_format,
             **kwargs):
    """Conversion, days in stage, shelf life, recapture, arrivals and deal size, with ranges.

    From a posterior (median and 90% interval over its draws) or, without one, from the
    model file's defaults. With --history, also the stale open deals.
    """
    from forecast import describe as describe_mod
    from forecast.fit import PosteriorError, load_posterior, provenance

    if as_of_text is not None and history is None:
        fail("--as-of dates the open deals of --history (the stale-deal table); give --history "
             "too, or leave --as-of out")
    if posterior_path is not None and model_name is None:
        try:
            model_name = provenance(load_posterior(posterior_path))["model_path"]
        except PosteriorError as exc:
            fail(str(exc))
    try:
        model = load_model(model_name)
    except ModelError as exc:
        fail(str(exc))
    if posterior_path is None:
        params, source = default_parameters(model), "model defaults"
    else:
        params, info = posterior_or_fail(posterior_path, model)
        source = (f"posterior {posterior_path}: {info['draws']:,} draws, fitted to "
                  f"{info['history_path']} as of {info['as_of']}")
    table = describe_mod.describe(model, params)
    stale = None
    if history is not None:
        from forecast.eventlog import open_pipeline

        as_of = parse_date(as_of_text, "--as-of")
        log = read_history_or_fail(history, model, history_format, import_options(kwargs),
                                   as_of, note=notes(False), past=True)
        as_of = as_of or last_date_as_of(log)
        if posterior_path is not None:
            note_posterior_after(info, as_of, notes(False))
        stale = describe_mod.stale_deals(model, params, open_pipeline(log, model, as_of), as_of,
                                         horizon=horizon)
    if fmt == "table":
        header = [f"Model {model.name} ({model.path}); parameters: {source}"]
        click.echo(describe_mod.render(table, model, header))
        if posterior_path is not None:
            idata = load_posterior(posterior_path)
            drift_rows = describe_mod.drift_table(idata.posterior, provenance(idata)["as_of_date"])
            if drift_rows is not None:
                click.echo("\n" + describe_mod.render_drift(
                    drift_rows, provenance(idata)["as_of_date"], params))
        if stale is not None:
            click.echo(f"\nStale open deals in {history} as of {as_of} (open longer than 95% of "
                       "stays in the stage last):\n"
                       + describe_mod.render_stale(stale, model.currency, horizon)
                       + "\nCRM weighted value: what a weighted pipeline counts them for (the "
                         "stage's win rate x amount); expected: what the model expects them to "
                         "book at their age.")
    elif fmt == "csv":
        click.echo(table.to_csv(index=False), nl=False)
        if stale is not None:
            click.echo("\n" + stale.to_csv(index=False), nl=False)
    else:
        out = {"describe": json.loads(table.to_json(orient="records"))}
        if stale is not None:
            out["stale_deals"] = json.loads(stale.to_json(orient="records"))
        click.echo(json.dumps(out, indent=2) if stale is not None
                   else table.to_json(orient="records", indent=2))


def _planted(model, params, paths, start: dt.date, days: int):
    """The model, parameters, set per epoch and epoch starts of a history with the changes
    of the scenario files planted, each from its date (``forecast.scenario.scenario_run`` with
    the history as the horizon)."""
    from forecast.scenario import (
        Scenario,
        ScenarioError,
        load_scenario,
        needed_band_edges,
        scenario_notes,
        scenario_run,
        split_bands,
    )
    from forecast.simulate import Pipeline

    try:
        scenarios = [load_scenario(p, model) for p in paths]
    except ScenarioError as exc:
        fail(str(exc))
    changes = tuple(c for sc in scenarios for c in sc.changes)
    for c in changes:
        if c.lever == "neglect":
            fail(f"{c.where}: neglect acts on open leads, and a simulated history starts "
                 "with none; plant expiry or conversion changes instead")
    planted = Scenario(name=", ".join(sc.name for sc in scenarios), description="",
                       changes=changes)
    as_of = start - dt.timedelta(days=1)  # day 0 of the "horizon" is the history's first day
    texts = [text for sc in scenarios if not sc.changes  # each file that plants nothing
             for text in scenario_notes(model, sc, Pipeline.empty(), as_of, days)]
    if changes:
        texts += scenario_notes(model, planted, Pipeline.empty(), as_of, days)
    for text in texts:
        click.echo(f"forecast: warning: {text}", err=True)
    model, params = split_bands(model, params, needed_band_edges(model, changes))
    try:
        run = scenario_run(model, params, Pipeline.empty(), planted, as_of, days, 1, 0)
    except ScenarioError as exc:
        fail(str(exc))
    return model, run.params, tuple(int(k) for k in run.set_index[0]), \
        tuple(int(d) for d in run.switch_days)


@main.command("simulate-history")
@click.option("--model", "model_name", default=None, metavar="MODEL",
              help="Funnel model file or bundled name. Default: b2b.")
@click.option("--start", "start_text", required=True, metavar="DATE",
              help="First day of the history (the funnel starts empty).")
@click.option("--days", type=click.IntRange(1, 36600), required=True, help="Days of history.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="Event log to write (.csv, .csv.gz or .parquet).")
@click.option("--scenario", "scenario_paths", multiple=True,
              type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.toml",
              help="Plant a scenario's changes in the history, each from its date (`from`; "
                   "undated: from the first day): a history whose rates change on known "
                   "dates, e.g. to backtest drift. Repeatable.")
def simulate_history_cmd(model_name, start_text, days, seed, out_path, scenario_paths):
    """Simulate an event log from a model's defaults (synthetic CRM history)."""
    from forecast.simulate import simulate_history

    start = parse_date(start_text, "--start")
    try:
        model = load_model(model_name)
    except ModelError as exc:
        fail(str(exc))
    lower = out_path.name.lower()
    suffix = next((x for x in (".csv.gz", ".csv", ".parquet") if lower.endswith(x)), None)
    if suffix is None:
        fail(f"{out_path}: --out must end in .csv, .csv.gz or .parquet")
    if not out_path.resolve().parent.is_dir():
        fail(f"{out_path}: directory {out_path.parent} does not exist")
    params, set_index, switch = default_parameters(model), 0, ()
    if scenario_paths:
        model, params, set_index, switch = _planted(model, params, scenario_paths, start, days)
    log = simulate_history(model, params, start, days, seed, set_index=set_index,
                           switch_days=switch)

    def write(tmp: Path) -> None:
        if suffix == ".parquet":
            log.to_parquet(tmp, index=False)
        elif suffix == ".csv.gz":  # no name and no time in the gzip header: the same bytes
            tmp.write_bytes(gzip.compress(log.to_csv(index=False, float_format="%.2f")
                                          .encode(), mtime=0))
        else:
            log.to_csv(tmp, index=False, float_format="%.2f")

    write_file_or_fail(out_path, write)
    click.echo(f"wrote {len(log):,} rows for {log['lead_id'].nunique():,} leads to {out_path}",
               err=True)


# `forecast nightly` lives in its own module (it strings fit, run and the ledger together).
from forecast.nightly import nightly as _nightly  # noqa: E402 - needs the helpers above

main.add_command(_nightly)
from forecast import planning_cli as _planning  # noqa: E402

for _command in (_planning.scenario_cmd, _planning.sweep_cmd, _planning.sensitivity_cmd,
                 _planning.plan_cmd):
    main.add_command(_command)
from forecast.report_cli import report as _report; main.add_command(_report)  # noqa: E402,E702,I001
from forecast.backtest_cli import backtest as _backtest; main.add_command(_backtest)  # noqa: E402,E702,I001
