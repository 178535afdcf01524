"""`forecast nightly`: refit when due, forecast, record in the ledger, one-line errors."""

from __future__ import annotations

import datetime as dt
import time

import duckdb
import pytest
from click.testing import CliRunner

from forecast.cli import main
from forecast.nightly import parse_age

pytestmark = pytest.mark.slow


def invoke(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)


def test_parse_age():
    assert parse_age("7d") == dt.timedelta(days=7)
    assert parse_age("12h") == dt.timedelta(hours=12)
    assert parse_age("2w") == dt.timedelta(days=14)
    assert parse_age("3") == dt.timedelta(days=3)
    with pytest.raises(ValueError, match="not an age like 7d"):
        parse_age("soon")


@pytest.fixture(scope="module")
def history(tmp_path_factory, two_stage):
    path = tmp_path_factory.mktemp("nightly") / "history.csv"
    out = invoke("simulate-history", "--model", two_stage.path, "--start", "2024-01-01",
                 "--days", 200, "--seed", 8, "--out", path)
    assert out.exit_code == 0, out.output
    return path


def test_nightly_refits_when_due_and_records_every_run(tmp_path, history, two_stage):
    ledger = tmp_path / "ledger.duckdb"
    args = ["nightly", history, "--model", two_stage.path, "--ledger", ledger, "--as-of",
            "2024-07-18", "--paths", 60, "--horizon", 120, "--draws", 60]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert "run 1 recorded" in first.stdout
    assert "refitted (no posterior at" in first.stdout
    assert "2024Q3 bookings" in first.stdout and "P50" in first.stdout
    assert "2024Q4" not in first.stdout  # 120 days cover it in part only: not summarised
    posterior = tmp_path / "two_stage.posterior.nc"
    assert posterior.is_file()

    second = invoke(*args, "--horizon", 200)  # to 2025-02-03: all of 2024Q4, part of 2025Q1
    assert second.exit_code == 0, second.output
    assert "run 2 recorded" in second.stdout and "posterior reused" in second.stdout
    assert "2024Q3 bookings (74 days)" in second.stdout
    assert "2024Q4 bookings (92 days)" in second.stdout and "2025Q1" not in second.stdout

    third = invoke(*args, "--refit-every", "0h")
    assert third.exit_code == 0, third.output
    assert "refitted (the posterior is" in third.stdout

    with duckdb.connect(str(ledger), read_only=True) as con:
        rows = con.execute("SELECT run_id, as_of, posterior_path FROM runs ORDER BY run_id")\
            .fetchall()
    assert [r[0] for r in rows] == [1, 2, 3]
    assert all(r[1] == dt.date(2024, 7, 18) and r[2] == str(posterior) for r in rows)


def test_nightly_refits_when_the_model_changed(tmp_path, history, two_stage):
    ledger = tmp_path / "ledger.duckdb"
    args = ["nightly", history, "--ledger", ledger, "--as-of", "2024-07-18", "--paths", 40,
            "--horizon", 60, "--draws", 40, "--tune", 60]  # --tune: what R-hat warnings advise
    assert invoke(*args, "--model", two_stage.path).exit_code == 0
    changed = tmp_path / "two_stage.toml"
    changed.write_text(open(two_stage.path).read().replace("deal_mean = 1000",
                                                           "deal_mean = 1100"))
    out = invoke(*args, "--model", changed)
    assert out.exit_code == 0, out.output
    assert "refitted (the model file changed" in out.stdout


def test_nightly_failures_are_one_line_and_record_nothing(tmp_path, history, two_stage):
    ledger = tmp_path / "ledger.duckdb"
    cases = [
        ([history, "--refit-every", "soon"], "not an age like 7d"),
        ([tmp_path / "missing.csv"], "missing.csv"),
        ([history, "--as-of", "2024-13-01"], "2024-13-01"),
        ([history, "--ledger", tmp_path / "no" / "l.duckdb"], "does not exist"),
        ([history, "--as-of", "2024-03-01"], "after"),
    ]
    for extra, message in cases:
        out = invoke("nightly", "--model", two_stage.path, "--ledger", ledger, *extra)
        assert out.exit_code == 1, (extra, out.output)
        assert message in out.stderr, (extra, out.stderr)
        assert out.stderr.count("\n") == 1, out.stderr
        # one prefix for a cron job's log to look for, whichever step failed
        assert out.stderr.startswith("forecast: error: "), out.stderr
    assert not ledger.exists()


def test_nightly_checks_the_ledger_before_fitting(tmp_path, history, two_stage):
    """A --ledger that is no ledger fails at once: no fit, no posterior written."""
    bad = tmp_path / "bad.duckdb"
    bad.write_text("not a database\n")
    out = invoke("nightly", history, "--model", two_stage.path, "--ledger", bad, "--as-of",
                 "2024-07-18", "--paths", 20, "--draws", 20)
    assert out.exit_code == 1
    assert "not a ledger" in out.stderr and out.stderr.count("\n") == 1
    assert not (tmp_path / "two_stage.posterior.nc").exists()
    assert bad.read_text() == "not a database\n"


def test_nightly_censors_undeclared_moves_when_asked(tmp_path, history, two_stage):
    """The undeclared-move error tells the user to pass --undeclared censor: nightly takes it."""
    odd = tmp_path / "odd.csv"
    odd.write_text(history.read_text() + "ZZZ,a,2024-07-01,,x\nZZZ,won,2024-07-10,5,x\n")
    args = ["nightly", odd, "--model", two_stage.path, "--ledger", tmp_path / "l.duckdb",
            "--as-of", "2024-07-18", "--paths", 20, "--draws", 20, "--horizon", 30]
    out = invoke(*args)
    assert out.exit_code == 1 and "--undeclared censor" in out.stderr
    out = invoke(*args, "--undeclared", "censor")
    assert out.exit_code == 0, out.output
    assert "run 1 recorded" in out.stdout


def test_nightly_refits_a_posterior_from_before_the_carry_of_unseen_bands(tmp_path, history,
                                                                           two_stage):
    """A posterior saved before unseen age bands took the band before's hazards (no
    ``carried_bands`` attribute) may hold prior-driven rates there: nightly refits it."""
    import arviz as az

    from forecast.fit import save_posterior

    ledger = tmp_path / "ledger.duckdb"
    args = ["nightly", history, "--model", two_stage.path, "--ledger", ledger, "--as-of",
            "2024-07-18", "--paths", 40, "--horizon", 60, "--draws", 40, "--tune", 60]
    assert invoke(*args).exit_code == 0
    posterior = tmp_path / "two_stage.posterior.nc"
    idata = az.from_netcdf(posterior)
    assert idata.posterior.attrs["carried_bands"] == "{}"  # written even when none carried
    del idata.posterior.attrs["carried_bands"]
    old = tmp_path / "old.nc"
    save_posterior(idata, old)
    out = invoke(*args, "--posterior", old)
    assert out.exit_code == 0, out.output
    assert "refitted (the posterior predates the fit's rule for age bands" in out.stdout


def test_nightly_refits_a_posterior_fitted_after_the_as_of_date(tmp_path, history, two_stage):
    """A missed night run afterwards (--as-of in the past) must not forecast with rates fitted
    on later data: a posterior fitted as of a later date is refitted, however young."""
    from forecast.fit import load_posterior, provenance

    ledger = tmp_path / "ledger.duckdb"
    posterior = tmp_path / "two_stage.posterior.nc"
    args = ["nightly", history, "--model", two_stage.path, "--ledger", ledger, "--paths", 40,
            "--horizon", 60, "--draws", 40, "--tune", 60]
    assert invoke(*args, "--as-of", "2024-07-18").exit_code == 0
    # the night of 2024-07-10, run later from that night's export
    rows = history.read_text().splitlines()
    then = tmp_path / "export_2024-07-10.csv"
    then.write_text("\n".join([rows[0], *(r for r in rows[1:]
                                           if r.split(",")[2] <= "2024-07-10")]) + "\n")
    args[1] = then
    backfill = invoke(*args, "--as-of", "2024-07-10")
    assert backfill.exit_code == 0, backfill.output
    assert ("refitted (the posterior was fitted as of 2024-07-18, after --as-of 2024-07-10)"
            in backfill.stdout)
    assert provenance(load_posterior(posterior))["as_of"] == "2024-07-10"
    after = invoke(*args, "--as-of", "2024-07-11")  # fitted as of an earlier date: reused
    assert after.exit_code == 0, after.output
    assert "posterior reused" in after.stdout


@pytest.fixture(params=["east", "west"])
def zone_off_utc(request, monkeypatch):
    """A local time zone whose date is not UTC's now: east of UTC already tomorrow (1 a.m.),
    west of it still yesterday (10 p.m.). POSIX TZ strings: no tz database needed."""
    hour = dt.datetime.now(dt.UTC).hour
    monkeypatch.setenv("TZ", f"LOC-{min(24, 25 - hour)}" if request.param == "east"
                       else f"LOC+{min(24, hour + 2)}")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_nightly_forecasts_as_of_the_local_date(tmp_path, history, two_stage, zone_off_utc):
    """Without --as-of, nightly forecasts as of today where it runs, as run and actuals date
    things: east of UTC an export with a row of the local day failed as after --as-of, west
    of UTC an evening job forecast as of tomorrow."""
    today = dt.date.today()
    assert today != dt.datetime.now(dt.UTC).date()
    export = tmp_path / "today.csv"
    export.write_text(history.read_text() + f"TODAY,a,{today},,x\n")
    out = invoke("nightly", export, "--model", two_stage.path, "--ledger",
                 tmp_path / "l.duckdb", "--paths", 20, "--horizon", 30, "--draws", 20)
    assert out.exit_code == 0, out.output
    assert f"as of {today}," in out.stdout


def test_nightly_takes_the_seeds_run_takes(tmp_path, history, two_stage):
    """--seed up to 2**63 - 1, as `run`: the fit and the forecast both take it."""
    from forecast.fit import load_posterior, provenance

    seed = 2**63 - 1
    out = invoke("nightly", history, "--model", two_stage.path, "--ledger",
                 tmp_path / "l.duckdb", "--as-of", "2024-07-18", "--paths", 20, "--horizon", 30,
                 "--draws", 20, "--seed", seed)
    assert out.exit_code == 0, out.output
    assert provenance(load_posterior(tmp_path / "two_stage.posterior.nc"))["seed"] == seed
    with duckdb.connect(str(tmp_path / "l.duckdb"), read_only=True) as con:
        assert con.execute("SELECT seed FROM runs").fetchone()[0] == seed


def test_nightly_says_what_the_current_quarter_lands_at(tmp_path, history, two_stage):
    """As of 2024-07-18 the forecast covers 2024Q3's last 74 days; finance asks what the
    quarter lands at: the history's bookings from 2024-07-01 to the as-of date (counted as
    `forecast actuals` counts them) plus each path's 74 days. A constant shift: the whole
    quarter's percentiles are the booked amount plus the remainder's, exactly."""
    import numpy as np

    from forecast.eventlog import read_event_log
    from forecast.nightly import landing
    from forecast.outputs import money
    from forecast.trend import realized

    out = invoke("nightly", history, "--model", two_stage.path, "--ledger",
                 tmp_path / "l.duckdb", "--as-of", "2024-07-18", "--paths", 60, "--horizon",
                 120, "--draws", 60)
    assert out.exit_code == 0, out.output
    log = read_event_log(history, two_stage)
    real = realized(log, two_stage)
    days = np.array([d.date() for d in real.days])
    want = float(real.bookings[(days >= dt.date(2024, 7, 1))
                               & (days <= dt.date(2024, 7, 18))].sum())
    assert want > 0
    line = next(s for s in out.stdout.splitlines() if s.startswith("  2024Q3 bookings"))
    assert f"the whole quarter, with {money(want, 'USD')} booked 2024-07-01 to 2024-07-18" \
        in line
    ahead = np.arange(12.0).reshape(4, 3)  # 4 paths, 3 days ahead
    booked, whole = landing(log, two_stage, dt.date(2024, 7, 1), dt.date(2024, 7, 18), ahead)
    assert booked == want
    np.testing.assert_array_equal(whole, want + ahead.sum(axis=1))
    # a quarter that starts after the as-of date (as of its eve) has nothing booked to add
    import pandas as pd

    frame = pd.read_csv(history)
    cut = tmp_path / "to_june.csv"
    frame[frame["entered_at"].str[:10] <= "2024-06-30"].to_csv(cut, index=False)
    eve = invoke("nightly", cut, "--model", two_stage.path, "--ledger",
                 tmp_path / "l.duckdb", "--as-of", "2024-06-30", "--paths", 20, "--horizon",
                 100, "--draws", 60)
    assert eve.exit_code == 0, eve.output
    assert "whole quarter" not in eve.stdout
