"""The run ledger: schema and migrations, round trip, atomicity, locking between processes."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from forecast import ledger, summarize
from forecast.simulate import simulate

AS_OF = dt.date(2024, 11, 20)  # the horizon crosses a month, a quarter and a year end
HORIZON = 75
PATHS = 200
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def result(two_stage, two_stage_params, two_stage_pipeline):
    return simulate(two_stage, two_stage_params, two_stage_pipeline, AS_OF, HORIZON, PATHS,
                    seed=3, occupancy_days=ledger.occupancy_days(AS_OF, HORIZON))


@pytest.fixture(scope="module")
def stored(result):
    return ledger.ledger_bands(result)


def run_record(result, **changes) -> ledger.RunRecord:
    fields = dict(as_of=result.as_of, model_name=result.model.name,
                  model_path=str(result.model.path), model_sha256=result.model.sha256,
                  history_path="history.csv", history_sha256="0" * 64, seed=result.seed,
                  paths=result.n_paths, horizon_days=result.horizon,
                  currency=result.model.currency)
    return ledger.RunRecord(**{**fields, **changes})


def count(path, table: str) -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


# ---- schema and migrations -------------------------------------------------------------------


def test_grid_is_the_percentiles():
    assert len(ledger.GRID) == 99
    assert ledger.GRID[0] == 0.01 and ledger.GRID[49] == 0.5 and ledger.GRID[-1] == 0.99
    assert np.allclose(np.diff(ledger.GRID), 0.01)


def test_first_record_creates_a_ledger_at_the_latest_schema(tmp_path, result, stored):
    path = tmp_path / "l.duckdb"
    run_id = ledger.record(path, run_record(result), stored)
    assert run_id == 1
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert ledger.schema_version(con) == ledger.MIGRATIONS[-1].version == 2
        tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
        assert tables == {"schema_version", "runs", "bands", "actuals"}
        run = con.execute("SELECT * FROM runs").df().iloc[0]
    finally:
        con.close()
    assert pd.Timestamp(run["as_of"]).date() == AS_OF
    assert run["seed"] == 3 and run["paths"] == PATHS and run["horizon_days"] == HORIZON
    assert run["posterior_sha256"] is None or pd.isna(run["posterior_sha256"])
    assert list(run["quantile_grid"]) == list(ledger.GRID)
    # Paths are stored absolute, so that the ledger reads the same from any directory.
    assert run["history_path"] == os.path.abspath("history.csv")
    assert run["model_path"] == str(result.model.path)
    assert run["posterior_path"] is None or pd.isna(run["posterior_path"])
    ledger.record(path, run_record(result, posterior_path="fits/p.nc", model_path="m.toml"),
                  stored)
    again = ledger.list_runs(path).iloc[-1]
    assert again["posterior_path"] == os.path.abspath("fits/p.nc")
    assert again["model_path"] == os.path.abspath("m.toml")
    assert abs(pd.Timestamp(run["recorded_at"]) - pd.Timestamp.now("UTC").tz_localize(None)) \
        < pd.Timedelta(minutes=5)  # UTC
    assert ledger.record(path, run_record(result), stored) == 3


def test_empty_database_is_migrated_to_the_latest_schema(tmp_path):
    path = tmp_path / "empty.duckdb"
    duckdb.connect(str(path)).close()  # a database at "version 0": no tables
    con = ledger.open_for_reading(path)
    try:
        assert ledger.schema_version(con) == ledger.MIGRATIONS[-1].version
    finally:
        con.close()
    with pytest.raises(ledger.LedgerError, match="no runs recorded yet"):
        con = ledger.open_for_reading(path)
        try:
            ledger.find_run(con)
        finally:
            con.close()


def test_older_ledger_is_migrated_forward_keeping_its_runs(tmp_path, monkeypatch, result,
                                                           stored):
    path = tmp_path / "old.duckdb"
    ledger.record(path, run_record(result), stored)  # written at the latest: now "older"
    latest = ledger.MIGRATIONS[-1].version

    def fill(con):
        con.execute("UPDATE runs SET note = 'before next'")

    nxt = ledger.Migration(latest + 1, "runs.note",
                           ("ALTER TABLE runs ADD COLUMN note VARCHAR", fill))
    monkeypatch.setattr(ledger, "MIGRATIONS", [*ledger.MIGRATIONS, nxt])
    con = ledger.open_for_reading(path)
    try:
        versions = con.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        assert [v[0] for v in versions] == list(range(1, latest + 2))
        assert con.execute("SELECT run_id, note FROM runs").fetchall() == [(1, "before next")]
        assert len(ledger.read_bands(con, 1, "month")) > 0
    finally:
        con.close()
    assert ledger.record(path, run_record(result), stored) == 2  # and it keeps working


def test_failed_migration_leaves_the_file_as_it_was(tmp_path, monkeypatch, result, stored):
    path = tmp_path / "old.duckdb"
    ledger.record(path, run_record(result), stored)
    latest = ledger.MIGRATIONS[-1].version
    bad = ledger.Migration(latest + 1, "broken",
                           ("ALTER TABLE runs ADD COLUMN note VARCHAR",
                            "ALTER TABLE no_such_table ADD COLUMN x INTEGER"))
    monkeypatch.setattr(ledger, "MIGRATIONS", [*ledger.MIGRATIONS, bad])
    with pytest.raises(ledger.LedgerError,
                       match=f"migrating the ledger from schema version {latest}"):
        ledger.record(path, run_record(result), stored)
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert ledger.schema_version(con) == latest
        columns = {r[0] for r in con.execute("DESCRIBE runs").fetchall()}
        assert "note" not in columns
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    finally:
        con.close()


def test_newer_schema_and_foreign_database_are_refused(tmp_path, result, stored):
    path = tmp_path / "new.duckdb"
    ledger.record(path, run_record(result), stored)
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO schema_version VALUES (99, now()::TIMESTAMP, 'future')")
    con.close()
    with pytest.raises(ledger.LedgerError, match="schema version 99 is newer"):
        ledger.record(path, run_record(result), stored)
    with pytest.raises(ledger.LedgerError, match="newer"):
        ledger.open_for_reading(path)
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE sales (x INTEGER)")
    con.close()
    with pytest.raises(ledger.LedgerError, match="not a forecast ledger"):
        ledger.record(other, run_record(result), stored)
    # A file that is no database at all (a CSV given by mistake), read or written: said so.
    text = tmp_path / "runs.csv"
    text.write_text("run_id,as_of\n1,2026-09-30\n")
    for attempt in (lambda: ledger.open_for_reading(text),
                    lambda: ledger.record(text, run_record(result), stored)):
        with pytest.raises(ledger.LedgerError, match=r"runs\.csv: not a ledger \(a ledger is a "
                                                     r"DuckDB database file"):
            attempt()
    assert text.read_text() == "run_id,as_of\n1,2026-09-30\n"


def test_ledger_path_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv(ledger.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    assert ledger.ledger_path() == tmp_path / "forecasts.duckdb"
    monkeypatch.setenv(ledger.ENV_VAR, str(tmp_path / "env.duckdb"))
    assert ledger.ledger_path() == tmp_path / "env.duckdb"
    assert ledger.ledger_path("x.duckdb") == Path("x.duckdb")


# ---- what is recorded ------------------------------------------------------------------------


def test_round_trip_equals_the_bands_computed_directly(tmp_path, result, stored):
    path = tmp_path / "l.duckdb"
    run_id = ledger.record(path, run_record(result), stored)
    con = ledger.open_for_reading(path)
    try:
        run = ledger.find_run(con)
        for grain in ledger.GRAINS:
            back = ledger.read_bands(con, run_id, grain)
            for cumulative in (False, True):
                direct = summarize.bands(result, by=grain, quantiles=ledger.GRID,
                                         cumulative=cumulative)
                direct = direct[direct["period"] != "total"]
                if cumulative:  # occupancy is a level: stored once
                    direct = direct[~direct["metric"].str.startswith("in_")]
                got = back[back["cumulative"] == cumulative]
                got = got.set_index(["metric", "period"]).loc[
                    list(zip(direct["metric"], direct["period"], strict=True))]
                assert len(got) == len(direct) > 0
                np.testing.assert_array_equal(got["mean"], direct["mean"])
                np.testing.assert_array_equal(got["sd"], direct["sd"])
                qcols = [summarize.quantile_label(q) for q in ledger.GRID]
                np.testing.assert_array_equal(np.stack(got["quantiles"].to_list()),
                                              direct[qcols].to_numpy())
                assert list(got["period_end"]) == list(direct["end"])
                assert list(got["days"]) == list(direct["days"])
        # a question asked later: the P10 / P50 / P90 of the run, and an off-grid level
        month = ledger.read_bands(con, run_id, "month", metric="bookings")
    finally:
        con.close()
    direct = summarize.bands(result, by="month", quantiles=(0.1, 0.5, 0.9))
    direct = direct[(direct["metric"] == "bookings") & (direct["period"] != "total")]
    shown = ledger.select_bands(month, run, "bookings", (0.1, 0.125, 0.5, 0.9))
    for col in ("p10", "p50", "p90"):
        np.testing.assert_allclose(shown[col], direct[col], rtol=1e-12)
    assert np.all((shown["p10"] <= shown["p12.5"]) & (shown["p12.5"] <= shown["p50"]))
    assert list(shown["period"]) == ["2024-11", "2024-12", "2025-01", "2025-02"]


def test_grains_and_labels(stored):
    labels = {g: list(stored[(stored["grain"] == g) & (stored["metric"] == "bookings")
                             & ~stored["cumulative"]]["period"]) for g in ledger.GRAINS}
    assert labels == {"month": ["2024-11", "2024-12", "2025-01", "2025-02"],
                      "quarter": ["2024Q4", "2025Q1"], "year": ["2024", "2025"]}
    assert not stored[stored["cumulative"] & stored["metric"].str.startswith("in_")].size
    per_grain = stored[stored["cumulative"] & (stored["metric"] == "bookings")]
    last = per_grain.groupby("grain")["mean"].last()
    assert np.allclose(last, last.iloc[0])  # every grain's last cumulative period is the total


def test_target_probability_matches_the_paths(result, stored):
    per = summarize.periods(result.as_of, result.horizon, "month")
    cum = np.cumsum(summarize.per_period(result, per)["bookings"], axis=1)
    rows = stored[(stored["grain"] == "month") & stored["cumulative"]
                  & (stored["metric"] == "bookings")].reset_index(drop=True)
    checked = 0
    for j, row in rows.iterrows():
        x = cum[:, j]
        targets = [*np.quantile(x, [0.03, 0.2, 0.5, 0.77, 0.95]), x.min() - 1, x.max() + 1]
        for t in targets:
            p = ledger.probability_at_least(t, row["quantiles"], ledger.GRID, row["min"],
                                            row["max"])
            direct = float(np.mean(x >= t))
            # the grid's resolution (0.01) plus the step of one path's share of the ECDF
            assert p == pytest.approx(direct, abs=0.01 + 1.0 / PATHS), (row["period"], t)
            checked += 1
        assert ledger.probability_at_least(x.min() - 1, row["quantiles"], ledger.GRID,
                                           row["min"], row["max"]) == 1.0
        assert ledger.probability_at_least(x.max() + 1, row["quantiles"], ledger.GRID,
                                           row["min"], row["max"]) == 0.0
    assert checked == 7 * len(rows)


def test_target_probability_is_over_the_rows_days_as_the_bands(result, stored):
    """Beside within-period bands, the probability that the period's own bookings reach the
    target (it was the cumulative total's, beside a quarter's P10 / P50 / P90); with
    cumulative bands, the cumulative total's."""
    per = summarize.periods(result.as_of, result.horizon, "quarter")
    within = summarize.per_period(result, per)["bookings"]
    run = {"run_id": 1, "quantile_grid": list(ledger.GRID)}
    quarters = stored[stored["grain"] == "quarter"].reset_index(drop=True).assign(run_id=1)
    target = float(np.median(within[:, 1]))  # 2025Q1's own median: P about 0.5
    for cumulative, paths in ((False, within), (True, np.cumsum(within, axis=1))):
        shown = ledger.select_bands(quarters, run, "bookings", (0.1, 0.5, 0.9), cumulative,
                                    target)
        direct = np.mean(paths >= target, axis=0)
        np.testing.assert_allclose(shown[ledger.TARGET_COLUMN], direct,
                                   atol=0.01 + 1.0 / PATHS)
    header = ["bookings by quarter"]
    table = ledger.render_table(ledger.select_bands(quarters, run, "bookings", (0.5,),
                                                    False, target), header, "USD", target)
    from forecast.outputs import money

    assert f"P(in period >= {money(target, 'USD')})" in table
    assert "within the period (its days in the horizon, as the bands)" in table


def test_quantiles_outside_the_grid_are_refused():
    with pytest.raises(ledger.LedgerError, match="outside the recorded grid"):
        ledger.interpolate_quantiles(np.zeros((1, 99)), ledger.GRID, [0.005])


# ---- atomicity -------------------------------------------------------------------------------


def test_a_run_that_fails_midway_records_nothing(tmp_path, monkeypatch, result, stored):
    path = tmp_path / "l.duckdb"
    ledger.record(path, run_record(result), stored)
    real = ledger._insert_bands

    def half_then_fail(con, run_id, bands, n_grid):
        real(con, run_id, bands.iloc[: len(bands) // 2], n_grid)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ledger, "_insert_bands", half_then_fail)
    with pytest.raises(ledger.LedgerError, match=r"disk on fire.*nothing was recorded"):
        ledger.record(path, run_record(result, seed=99), stored)
    monkeypatch.undo()
    assert count(path, "runs") == 1 and count(path, "bands") == len(stored)
    # a database-level failure (a NOT NULL metric) halfway through the bands, likewise
    broken = stored.copy()
    broken.loc[len(broken) - 1, "metric"] = None
    with pytest.raises(ledger.LedgerError, match="nothing was recorded"):
        ledger.record(path, run_record(result, seed=98), broken)
    assert count(path, "runs") == 1 and count(path, "bands") == len(stored)
    assert ledger.record(path, run_record(result), stored) >= 2  # the ledger still works
    assert count(path, "runs") == 2 and count(path, "bands") == 2 * len(stored)


# ---- two processes ---------------------------------------------------------------------------

# A writer process: records N runs of small synthetic bands as fast as it can, once the start
# file exists; it counts the lock conflicts it met (and retried).
WRITER = textwrap.dedent("""
    import datetime as dt, os, sys, time
    import duckdb, numpy as np, pandas as pd
    from forecast import ledger
    path, n, tag, start = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    real, conflicts = duckdb.connect, [0]
    def counting(*args, **kwargs):
        try:
            return real(*args, **kwargs)
        except duckdb.IOException:
            conflicts[0] += 1
            raise
    duckdb.connect = counting
    periods = ["2027-01", "2027-02", "2027-03"]
    bands = pd.DataFrame({
        "grain": "month", "cumulative": False, "period": periods,
        "period_start": [dt.date(2027, m, 1) for m in (1, 2, 3)],
        "period_end": [dt.date(2027, m, 28) for m in (1, 2, 3)], "days": 28,
        "metric": "bookings", "mean": 1.0, "sd": 0.5, "min": 0.0, "max": 2.0,
        "quantiles": [np.linspace(0.1, 1.9, 99)] * 3})
    print("ready", flush=True)
    while not os.path.exists(start):
        time.sleep(0.01)
    for i in range(n):
        run = ledger.RunRecord(as_of=dt.date(2026, 12, 31), model_name=tag, model_path="m",
                               model_sha256="0" * 64, history_path="h",
                               history_sha256="0" * 64, seed=i, paths=1, horizon_days=90,
                               currency="USD")
        ledger.record(path, run, bands, timeout=60)
    print("done", conflicts[0], flush=True)
""")

# A process that opens the ledger for writing, says so, and keeps it open for a while.
HOLDER = textwrap.dedent("""
    import sys, time
    from forecast import ledger
    con = ledger.connect(sys.argv[1])
    ledger.migrate(con)
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
    con.close()
""")


def spawn(script: str, *args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=REPO)


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    path = tmp_path / "shared.duckdb"
    start = tmp_path / "go"
    n = 15
    procs = [spawn(WRITER, path, n, tag, start) for tag in ("a", "b")]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        start.touch()  # both start writing together
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    conflicts = 0
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        word, number = out.split()
        assert word == "done"
        conflicts += int(number)
    assert conflicts > 0  # they did collide, and waited
    con = duckdb.connect(str(path), read_only=True)
    try:
        per_tag = dict(con.execute(
            "SELECT model_name, count(*) FROM runs GROUP BY model_name").fetchall())
        assert per_tag == {"a": n, "b": n}
        assert con.execute("SELECT count(DISTINCT run_id) FROM runs").fetchone()[0] == 2 * n
        assert con.execute("SELECT count(*) FROM bands").fetchone()[0] == 2 * n * 3
    finally:
        con.close()


def test_a_writer_waits_for_the_lock_then_records(tmp_path, result, stored):
    path = tmp_path / "held.duckdb"
    holder = spawn(HOLDER, path, 1.5)
    try:
        assert holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        run_id = ledger.record(path, run_record(result), stored, timeout=30)
        waited = time.monotonic() - started
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert run_id == 1 and waited > 0.5
    assert count(path, "bands") == len(stored)


def test_lock_held_too_long_is_a_clear_error(tmp_path, result, stored):
    path = tmp_path / "held.duckdb"
    holder = spawn(HOLDER, path, 30)
    try:
        assert holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        with pytest.raises(ledger.LedgerLockedError) as info:
            ledger.record(path, run_record(result), stored, timeout=0.3)
        assert 0.25 < time.monotonic() - started < 5
        assert str(info.value) == (f"{path}: the ledger is locked by another forecast process; "
                                   "waited 0.3 s (set a longer --ledger-timeout, or retry "
                                   "later)")
        with pytest.raises(ledger.LedgerLockedError, match=r"waited 0\.2 s"):
            ledger.open_for_reading(path, timeout=0.2)  # readers wait for a writer too
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert count(path, "runs") == 0


# ---- a run's --out and its ledger record: both or neither ------------------------------------

def test_before_commit_failing_records_nothing_and_its_error_passes(tmp_path, result, stored):
    path = tmp_path / "l.duckdb"
    seen = []

    def explode(run_id):
        seen.append(run_id)
        raise OSError("no space left")

    with pytest.raises(OSError, match="no space left"):
        ledger.record(path, run_record(result), stored, before_commit=explode)
    assert seen == [1] and count(path, "runs") == 0 and count(path, "bands") == 0
    run_id = ledger.record(path, run_record(result), stored, before_commit=seen.append)
    assert seen == [1, run_id] and count(path, "runs") == 1  # (ids need not be dense)


def _run(*args):
    from click.testing import CliRunner

    from forecast.cli import main

    return CliRunner().invoke(main, ["run", "--paths", "30", "--horizon", "20", "--quiet",
                                     *map(str, args)], catch_exceptions=False)


def test_run_out_and_ledger_are_written_together(tmp_path, monkeypatch):
    """A --ledger that is no ledger, or locked, leaves --out untouched (checked before the
    simulation, or rolled back); --out that cannot be written leaves the ledger without the
    run; when both succeed, summary.json carries the run id."""
    bad = tmp_path / "bad.duckdb"
    bad.write_text("not a database\n")
    res = _run("--ledger", bad, "--out", tmp_path / "out1")
    assert res.exit_code == 1 and "not a ledger" in res.stderr
    assert not (tmp_path / "out1").exists()

    path = tmp_path / "l.duckdb"
    from forecast import outputs

    def full_disk(out_dir, writers):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs, "write_outputs", full_disk)
    res = _run("--ledger", path, "--out", tmp_path / "out0")
    monkeypatch.undo()
    assert res.exit_code == 1 and "could not write outputs" in res.stderr
    assert count(path, "runs") == 0

    res = _run("--ledger", path, "--out", tmp_path / "out2")
    assert res.exit_code == 0, res.output
    import json
    summary = json.loads((tmp_path / "out2" / "summary.json").read_text())
    assert summary["ledger"] == str(path)
    with duckdb.connect(str(path), read_only=True) as con:
        ids = [r[0] for r in con.execute("SELECT run_id FROM runs").fetchall()]
    assert ids == [summary["run_id"]]

    holder = spawn(HOLDER, path, 30)
    try:
        assert holder.stdout.readline().strip() == "holding"
        res = _run("--ledger", path, "--ledger-timeout", "0.3", "--out", tmp_path / "out3")
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert res.exit_code == 1 and "locked" in res.stderr
    assert not (tmp_path / "out3").exists()
    assert count(path, "runs") == 1


def test_readme_sql_reads_the_forecast_not_a_what_if_run(tmp_path):
    """The README's SQL for the latest bands skips scenario runs recorded after the forecast
    (as `forecast bands` does)."""
    import re

    from click.testing import CliRunner

    from forecast.cli import main

    path = tmp_path / "l.duckdb"
    common = ["--paths", "40", "--horizon", "100", "--quiet", "--ledger", str(path)]
    assert CliRunner().invoke(main, ["run", *common]).exit_code == 0
    res = CliRunner().invoke(main, ["scenario", str(REPO / "scenarios" /
                                                   "win_rate_plus_5_points.toml"), *common])
    assert res.exit_code == 0, res.output
    sql = re.findall(r"```sql\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert len(sql) >= 2
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 3
        want = con.execute("SELECT period, quantiles[50] FROM bands WHERE run_id = 1 AND "
                           "grain = 'quarter' AND NOT cumulative AND metric = 'bookings' "
                           "ORDER BY period_start").fetchall()
        for query in sql[:2]:
            got = con.execute(query).fetchdf()
            assert list(zip(got["period"], got["p50"], strict=True)) == want
    what_if = CliRunner().invoke(main, ["bands", "--ledger", str(path), "--run", "3"])
    assert "what-if run: scenario 'Win rate +5 points'" in what_if.stdout
    assert "what-if" not in CliRunner().invoke(main, ["bands", "--ledger", str(path)]).stdout


def test_bands_target_on_a_level_reads_at_the_period_end(tmp_path):
    """Occupancy (`in_<state>`) is a level at the period's end, not a running total: its
    target column and footnote say so; flows say `P(in period >= X)`."""
    from click.testing import CliRunner

    from forecast.cli import main

    path = tmp_path / "l.duckdb"
    run = CliRunner().invoke(main, ["run", "--paths", "40", "--horizon", "100", "--quiet",
                                    "--ledger", str(path)])
    assert run.exit_code == 0, run.output
    level = CliRunner().invoke(main, ["bands", "--ledger", str(path), "--metric", "in_sql",
                                      "--by", "quarter", "--target", "40"]).stdout
    assert "P(end >= 40)" in level and "cum." not in level
    assert "the leads in sql at the period's end number 40 or more" in level
    flow = CliRunner().invoke(main, ["bands", "--ledger", str(path), "--by", "quarter",
                                     "--target", "1000000"]).stdout
    assert "P(in period >= $1M)" in flow and "cum." not in flow


def test_a_lock_conflict_inside_the_transaction_is_retried(tmp_path, monkeypatch, result,
                                                           stored):
    """DuckDB can report a lock conflict at COMMIT (on the write-ahead log of a writer that
    has just closed), past connect()'s wait; two test-suite runs under load met it once. The
    whole transaction is rolled back and tried again; other errors are not retried."""
    path = tmp_path / "l.duckdb"
    real, calls = ledger._insert_run, []

    def flaky(con, run, grid):
        calls.append(1)
        if len(calls) == 1:
            raise duckdb.TransactionException(
                f'Failed to commit: Could not set lock on file "{path}.wal": Conflicting lock '
                "is held in python3.11 (PID 1)")
        return real(con, run, grid)

    monkeypatch.setattr(ledger, "_insert_run", flaky)
    assert ledger.record(path, run_record(result), stored) == 1
    assert len(calls) == 2 and count(path, "runs") == 1 and count(path, "bands") > 0

    def broken(con, run, grid):
        calls.append(1)
        raise duckdb.ConversionException("not a lock")

    monkeypatch.setattr(ledger, "_insert_run", broken)
    calls.clear()
    with pytest.raises(ledger.LedgerError, match="not a lock"):
        ledger.record(path, run_record(result), stored)
    assert len(calls) == 1 and count(path, "runs") == 1
