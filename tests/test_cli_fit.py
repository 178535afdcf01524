"""`forecast fit`, `forecast describe` and `forecast run --posterior` end to end.

One small fit (the two-stage model on a simulated history, the default sampler) is shared
by the module; it takes about half a minute, most of it compiling the model.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from forecast.cli import main

pytestmark = pytest.mark.slow

AS_OF = "2023-12-31"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def history(tmp_path_factory, two_stage):
    path = tmp_path_factory.mktemp("fit") / "history.csv"
    out = invoke("simulate-history", "--model", two_stage.path, "--start", "2023-03-01",
                 "--days", 306, "--seed", 4, "--out", path)
    assert out.exit_code == 0, out.output
    return path


@pytest.fixture(scope="module")
def posterior(history, two_stage):
    path = history.with_name("posterior.nc")
    out = invoke("fit", history, "--model", two_stage.path, "--out", path,
                 "--draws", 150, "--tune", 150, "--seed", 2, "--quiet")
    return path, out


def test_fit_writes_a_posterior_and_prints_what_it_learned(posterior, history):
    path, out = posterior
    assert out.exit_code == 0, out.output
    assert path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ["history.csv", "posterior.nc"]
    text = out.stdout
    assert f"fitted to {history} as of {AS_OF}" in text
    assert "diagnostics: max R-hat" in text
    for label in ("conversion to won", "median days in stage", "leaves by expiry",
                  "shelf life (days)", "recaptured from nurture", "arrivals per day",
                  "mean deal", "90% interval"):
        assert label in text


def test_describe_reads_the_posterior_in_three_formats(posterior, two_stage):
    path, _ = posterior
    table = invoke("describe", path)
    assert table.exit_code == 0, table.output
    assert "parameters: posterior" in table.stdout and "2023-12-31" in table.stdout
    assert "Drift:" not in table.stdout  # fitted without --drift
    csv = invoke("describe", path, "--format", "csv")
    frame = pd.read_csv(pd.io.common.StringIO(csv.stdout))
    assert list(frame.columns) == ["quantity", "stage", "segment", "median", "lo", "hi", "sets"]
    assert (frame["sets"] == 300).all()  # 2 chains x 150 draws
    assert (frame["lo"] <= frame["median"]).all() and (frame["median"] <= frame["hi"]).all()
    records = json.loads(invoke("describe", path, "--format", "json").stdout)
    assert len(records) == len(frame)
    # The fitted conversion of a fresh lead brackets the model's true one (defaults).
    truth = pd.read_csv(pd.io.common.StringIO(
        invoke("describe", "--model", two_stage.path, "--format", "csv").stdout))
    key = ["quantity", "stage", "segment"]
    both = frame.merge(truth[[*key, "median"]], on=key, suffixes=("", "_true"))
    row = both[(both.quantity == "conversion_to_won") & (both.stage == "a")
               & (both.segment == "all")].iloc[0]
    assert row["lo"] <= row["median_true"] <= row["hi"]


def test_run_with_the_posterior_carries_parameter_uncertainty(posterior, history, two_stage):
    path, _ = posterior
    args = ["run", "--model", two_stage.path, "--history", history, "--paths", 300,
            "--format", "json", "--quiet"]
    fitted = invoke(*args, "--posterior", path)
    assert fitted.exit_code == 0, fitted.output
    again = invoke(*args, "--posterior", path)
    summary = json.loads(fitted.stdout)
    assert summary["bands"] == json.loads(again.stdout)["bands"]  # same seed: same numbers
    assert summary["posterior"] == str(path)
    assert summary["parameters"].startswith(f"posterior {path} (300 draws")
    defaults = json.loads(invoke(*args).stdout)
    assert defaults["parameters"] == "model defaults"
    assert summary["bands"] != defaults["bands"]
    # a look back from an earlier as-of date with this posterior: its rates know the future
    back = invoke(*args[:-1], "--posterior", path, "--as-of", "2023-11-30")
    assert back.exit_code == 0, back.output
    assert ("note: the posterior was fitted as of 2023-12-31, after --as-of 2023-11-30: its "
            "rates know what happened in between") in back.stderr
    described = invoke("describe", path, "--history", history, "--as-of", "2023-11-30")
    assert described.exit_code == 0, described.output
    assert "the posterior was fitted as of 2023-12-31, after --as-of 2023-11-30" in \
        described.stderr


def test_run_refuses_a_posterior_of_another_model(posterior):
    path, _ = posterior
    out = invoke("run", "--posterior", path, "--paths", 10, "--quiet")
    assert out.exit_code == 1
    assert "fitted with model 'two_stage'" in out.stderr and "refit" in out.stderr


def test_bad_posterior_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.nc"
    bad.write_text("hello")
    for args in (["run", "--posterior", bad], ["describe", bad]):
        out = invoke(*args)
        assert out.exit_code == 1
        assert f"{bad}: not a readable posterior" in out.stderr


def test_fit_errors_leave_nothing_behind(tmp_path, history, two_stage):
    out_path = tmp_path / "p.nc"
    empty = tmp_path / "one.csv"
    empty.write_text("lead_id,stage,entered_at\nL1,a,2024-01-01\n")
    cases = [
        ([empty], "no moves between stages"),
        ([history, "--out", tmp_path / "p.txt"], "--out must end in .nc"),
        ([history, "--out", tmp_path / "nodir" / "p.nc"], "does not exist"),
        ([tmp_path / "missing.csv"], "missing.csv"),
        ([history, "--format", "hubspot"], "history.csv"),
        ([history, "--format", "eventlog", "--won-values", "W"],
         "--won-values: not an option of --format eventlog"),
    ]
    for extra, message in cases:
        args = ["fit", "--model", two_stage.path, "--out", out_path, *extra]
        out = invoke(*args)
        assert out.exit_code == 1, (extra, out.output)
        assert message in out.stderr, (extra, out.stderr)
    assert list(tmp_path.iterdir()) == [empty]


@pytest.mark.parametrize("window", ["0", "abc", "12w", "-5d"])
def test_bad_window_is_a_clear_error(history, window):
    out = invoke("fit", history, "--out", history.with_name("x.nc"), "--window", window)
    assert out.exit_code == 1 and "--window" in out.stderr and "number of days" in out.stderr



@pytest.mark.slow
def test_a_drift_fit_walks_on_over_the_forecast(history, two_stage):
    """`fit --drift`, then `run --posterior`: the walk goes on over the horizon (and the run
    says so), the same seed gives the same bands, and the spread of won deals is wider than
    with the same draws at rates held at the as-of level."""
    from forecast.eventlog import open_pipeline
    from forecast.fit import load_posterior, posterior_parameters
    from forecast.importers import read_history
    from forecast.outlook import simulate_ahead
    from forecast.simulate import simulate

    path = history.with_name("drift.nc")
    out = invoke("fit", history, "--model", two_stage.path, "--out", path, "--drift",
                 "--draws", 100, "--tune", 150, "--seed", 2, "--quiet")
    assert out.exit_code == 0, out.output
    args = ["run", "--model", two_stage.path, "--history", history, "--paths", 200,
            "--posterior", path, "--format", "json", "--quiet"]
    first, again = invoke(*args), invoke(*args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert "drift walk continued by month" in summary["parameters"]
    assert summary["bands"] == json.loads(again.stdout)["bands"]
    too_many = invoke("run", "--model", two_stage.path, "--history", history, "--paths", 30000,
                      "--horizon", 120, "--posterior", path, "--quiet")
    assert too_many.exit_code == 1
    assert "one parameter set per path and month" in too_many.stderr
    assert "use --paths 6,250 or fewer" in too_many.stderr  # 25,000 sets / 4 months
    # The planning commands walk too (their baseline is run's forecast: tests/test_planning.py)
    # and say so before any run when the walk is too large.
    more = history.with_name("more.toml")
    more.write_text('name = "more"\n[[change]]\nlever = "arrivals"\nmultiply = 1.2\n')
    plan = ["scenario", more, "--model", two_stage.path, "--history", history, "--posterior",
            path, "--quiet", "--horizon", 120]
    out = invoke(*plan, "--paths", 200)
    assert out.exit_code == 0, out.output
    assert "drift walk continued by month" in out.stdout
    out = invoke(*plan, "--paths", 30000)
    assert out.exit_code == 1 and "use --paths 6,250 or fewer" in out.stderr

    params = posterior_parameters(load_posterior(path), two_stage)
    assert params.has_walk
    as_of = dt.date.fromisoformat(AS_OF)
    pipe = open_pipeline(read_history(history, two_stage), two_stage, as_of)
    n, days = 2000, 180
    walked = simulate_ahead(two_stage, params, pipe, as_of, days, n, seed=0).won.sum(1)
    held = simulate(two_stage, params, pipe, as_of, days, n, seed=0).won.sum(1)
    spread = [np.quantile(x, 0.9) - np.quantile(x, 0.1) for x in (walked, held)]
    assert spread[0] > 1.1 * spread[1], spread


@pytest.mark.parametrize("command", ["fit", "backtest"])
def test_fit_and_backtest_take_the_seeds_run_takes(tmp_path, command):
    """--seed up to 2**63 - 1 as `run`, `nightly` and the others (it stopped at 2**32 - 1):
    the option is accepted, and the command goes on to its own work (here: a missing file)."""
    missing = tmp_path / "missing.csv"
    extra = (["--cutoffs", "2024-01-31"] if command == "backtest"
             else ["--out", str(tmp_path / "p.nc")])
    res = invoke(command, str(missing), "--seed", str(2**63 - 1), *extra)
    assert "--seed" not in res.output, res.output
    assert res.exit_code == 1 and "missing.csv" in res.output
    res = invoke(command, str(missing), "--seed", str(2**63), *extra)
    assert res.exit_code == 2 and "--seed" in res.output
