"""`forecast backtest`: fit at past cutoffs, forecast, compare with what happened.

::

    forecast backtest HISTORY --model M --cutoffs 2017-05-31,2017-06-30 --horizon 90

For each cutoff the history is cut to what was known then, the model is fitted on it (or, with
``--no-fit``, the model file's defaults are used), the engine forecasts bookings and won deals
over the horizon, the two baselines (weighted pipeline, trailing run-rate) forecast the same,
and all three are scored against the truth (``forecast.backtest``). Prints a table (or CSV /
JSON); ``--out DIR`` writes ``backtest.csv`` (scores), ``forecasts.csv`` (each forecast's
percentiles), ``calibration.png`` (PIT histogram, coverage against nominal) and
``summary.json``, all or nothing; the fits are cached in ``DIR/fits/`` so a rerun with the same
inputs and fit settings only simulates. The history layout flag is ``--history-format`` (as in
``run``), since ``--format`` chooses what is printed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from pathlib import Path

import click

from forecast.model import FunnelModel


def _options(func):
    from forecast.cli import history_options, undeclared_option

    decorators = [
        click.command("backtest"),
        click.argument("history", type=click.Path(dir_okay=False, path_type=Path)),
        click.option("--model", "model_name", default=None, metavar="MODEL",
                     help="Funnel model file or bundled name. Default: b2b."),
        click.option("--cutoffs", "cutoffs_text", required=True, metavar="D1,D2,...",
                     help="Cutoff dates: forecast from the end of each, with the history known "
                          "then."),
        click.option("--horizon", type=click.IntRange(1, 3660), default=90, show_default=True,
                     help="Days forecast after each cutoff."),
        click.option("--paths", type=click.IntRange(10, 10_000_000), default=2000,
                     show_default=True, help="Monte Carlo paths per forecast."),
        click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
                     help="Seed of the fits, the simulations and the baselines."),
        click.option("--draws", type=click.IntRange(10, 100_000), default=1000,
                     show_default=True, help="Posterior draws per chain of each fit."),
        click.option("--tune", type=click.IntRange(10, 100_000), default=1000,
                     show_default=True, help="Tuning steps per chain of each fit."),
        click.option("--chains", type=click.IntRange(1, 64), default=2, show_default=True),
        click.option("--sampler", type=click.Choice(["pymc", "nutpie"]), default="pymc",
                     show_default=True, help="NUTS implementation of the fits (as in `fit`)."),
        click.option("--window", type=click.IntRange(1, 36600), default=None, metavar="DAYS",
                     help="Fit on the last DAYS days before each cutoff only."),
        click.option("--drift", is_flag=True,
                     help="Fit with drift (as `fit --drift`): a random walk on conversion "
                          "and arrivals, by month (by quarter with a [calendar] table), "
                          "continued over the horizon."),
        undeclared_option,
        click.option("--no-fit", "no_fit", is_flag=True,
                     help="Forecast with the model file's default parameters instead of a fit "
                          "at each cutoff (beware: defaults set from the whole history know "
                          "the future)."),
        click.option("--trailing", type=click.IntRange(7, 3660), default=91, show_default=True,
                     metavar="DAYS", help="Trailing window of the run-rate baseline."),
        click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
                     default=None, help="Write backtest.csv, forecasts.csv, calibration.png, "
                                        "summary.json; cache the fits in DIR/fits/."),
        click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]),
                     default="table", show_default=True, help="What to print on stdout."),
        click.option("--quiet", is_flag=True, help="No progress notes on stderr."),
        history_options,
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def fit_key(model: FunnelModel, history_sha256: str, cutoff: dt.date, since: dt.date | None,
            settings: dict) -> str:
    """The cache key of a fit: everything its posterior depends on, the fitting code included
    (the sources of ``forecast.fit`` and ``forecast.statistics``: a fix there must not leave
    the old fits in a reused ``--out`` looking valid)."""
    from forecast import __version__, statistics
    from forecast import fit as fit_mod

    code = hashlib.sha256(b"".join(Path(m.__file__).read_bytes()
                                   for m in (fit_mod, statistics))).hexdigest()
    text = json.dumps({"model": model.sha256, "history": history_sha256,
                       "cutoff": cutoff.isoformat(), "since": str(since), "version": __version__,
                       "code": code, **settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def make_fitter(model: FunnelModel, history: Path, history_sha256: str, *, draws: int,
                tune: int, chains: int, seed: int, window: int | None, cache: Path | None,
                note, sampler: str = "pymc", drift: bool = False,
                undeclared: str = "raise"):
    """``fitter(known log, cutoff)`` -> parameter sets: a PyMC fit on the history known at the
    cutoff, read from / written to ``cache`` (``fit-<cutoff>-<key>.nc``) when given."""
    from forecast import fit as fit_mod
    from forecast.statistics import sufficient_statistics

    settings = {"draws": draws, "tune": tune, "chains": chains, "seed": seed,
                "sampler": sampler}
    if drift:  # only then in the key, so fits cached before --drift existed stay valid
        settings["drift"] = True
    if undeclared != "raise":  # likewise
        settings["undeclared"] = undeclared

    def fitter(known, cutoff: dt.date):
        since = cutoff - dt.timedelta(days=window) if window else None
        path = None
        if cache is not None:
            key = fit_key(model, history_sha256, cutoff, since, settings)
            path = cache / f"fit-{cutoff}-{key}.nc"
            if path.is_file():
                note(f"cutoff {cutoff}: reusing the fit in {path}")
                return fit_mod.posterior_parameters(fit_mod.load_posterior(path), model,
                                                    str(path))
        stats = sufficient_statistics(known, model, cutoff, since=since,
                                      on_undeclared=undeclared)
        if stats.events.sum() == 0:
            raise fit_mod.PosteriorError(f"{history}: no moves between stages on or before the "
                                         f"cutoff {cutoff}; nothing to fit (pick a later cutoff)")
        note(f"cutoff {cutoff}: fitting {stats.n_rows:,} rows ({stats.n_leads:,} leads), "
             f"{chains} chains x ({tune} tune + {draws} draws)")
        result = fit_mod.fit(stats, model, draws=draws, tune=tune, chains=chains, seed=seed,
                             sampler=sampler, progress=False, history_path=str(history),
                             history_sha256=history_sha256, drift=drift)
        for warning in result.diagnostics["warnings"]:
            note(f"cutoff {cutoff}: warning: {warning}")
        for line in fit_mod.carried_notes(result.diagnostics["carried_bands"]):
            note(f"cutoff {cutoff}: note: {line}")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fit_mod.save_posterior(result.idata, path)
        return fit_mod.posterior_parameters(result.idata, model)

    return fitter


@_options
def backtest(history, model_name, cutoffs_text, horizon, paths, seed, draws, tune, chains,
             sampler, window, drift, undeclared, no_fit, trailing, out_dir, fmt, quiet,
             history_format, **kwargs):
    """Backtest: fit at each cutoff, forecast the horizon, score against what happened.

    HISTORY is an event log or a CRM export (--history-format). The engine is scored against
    the weighted pipeline and the trailing run-rate on the same cutoffs: coverage of the
    50/80/90% bands, PIT, CRPS, pinball loss and the P50's error.
    """
    from forecast import backtest as bt
    from forecast import fit as fit_mod
    from forecast import outputs
    from forecast.cli import (
        fail,
        fittable_model_or_fail,
        import_options,
        notes,
        read_history_or_fail,
    )
    from forecast.eventlog import InputError
    from forecast.parameters import default_parameters

    note = notes(quiet)
    started = time.perf_counter()
    try:
        cutoffs = bt.parse_cutoffs(cutoffs_text)
    except ValueError as exc:
        fail(str(exc))
    options = import_options(kwargs)
    model = fittable_model_or_fail(model_name)
    log = read_history_or_fail(history, model, history_format, options, None, note=note)
    if no_fit:
        defaults = default_parameters(model)

        def fitter(known, cutoff):
            return defaults
        fit_text = "model defaults (--no-fit)"
    else:
        fitter = make_fitter(model, history, log.sha256, draws=draws, tune=tune, chains=chains,
                             seed=seed, window=window, sampler=sampler, drift=drift,
                             undeclared=undeclared, note=note,
                             cache=None if out_dir is None else out_dir / "fits")
        fit_text = (f"fitted at each cutoff ({sampler}, {chains} chains x {draws} draws, "
                    f"{tune} tune"
                    + (f", window {window} days" if window else "")
                    + (", drift" if drift else "") + ")")
    try:
        table, forecasts = bt.backtest(log, model, cutoffs, horizon, paths, seed, fitter,
                                       trailing, progress=note)
    except (InputError, fit_mod.PosteriorError, ValueError) as exc:
        fail(str(exc))
    elapsed = time.perf_counter() - started
    n_cut = f"{len(cutoffs)} cutoff{'s' if len(cutoffs) != 1 else ''}"
    header = [
        f"Backtest: model {model.name} ({model.path}), history {history}, {n_cut} "
        f"{cutoffs[0]} to {cutoffs[-1]}, horizon {horizon} days, {paths:,} paths, "
        f"seed {seed}",
        f"engine parameters: {fit_text}; baselines: weighted pipeline, run rate (trailing "
        f"{trailing} days); {elapsed:.0f} s",
    ]
    meta = {"model": model.name, "model_path": str(model.path), "model_sha256": model.sha256,
            "history": str(history), "history_sha256": log.sha256,
            "cutoffs": [c.isoformat() for c in cutoffs], "horizon_days": horizon,
            "paths": paths, "seed": seed, "parameters": fit_text, "trailing_days": trailing,
            "currency": model.currency}
    if out_dir is not None:
        title = f"{model.name}: {n_cut}, horizon {horizon} days"
        writers = {
            "backtest.csv": lambda p: table.to_csv(p, index=False),
            "forecasts.csv": lambda p: forecasts.to_csv(p, index=False),
            "calibration.png": lambda p: bt.calibration_chart(p, table, title),
            "summary.json": lambda p: p.write_text(_json(meta, table)),
        }
        try:
            outputs.write_outputs(out_dir, writers)
        except OSError as exc:
            fail(f"{out_dir}: could not write outputs ({exc}); nothing was changed there")
        note(f"wrote {out_dir}/backtest.csv, forecasts.csv, calibration.png, summary.json")
    if fmt == "table":
        click.echo(bt.render_table(table, header, model.currency))
    elif fmt == "csv":
        click.echo(table.to_csv(index=False), nl=False)
    else:
        click.echo(_json(meta, table))


def _json(meta: dict, table) -> str:
    records = json.loads(table.to_json(orient="records", double_precision=15))
    return json.dumps({**meta, "scores": records}, indent=2) + "\n"
