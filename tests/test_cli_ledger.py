"""`forecast run --ledger` then `forecast bands`, through click's CliRunner."""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner

from forecast import ledger
from forecast.cli import main

FAST = ["--paths", "100", "--horizon", "100", "--quiet"]  # 2026-10-01 .. 2027-01-08
REPO = Path(__file__).resolve().parents[1]


def invoke(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, env=env)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A ledger with two runs (seeds 0 and 1) and the first run's own CSV output."""
    path = tmp_path_factory.mktemp("ledger") / "runs.duckdb"
    first = invoke("run", *FAST, "--ledger", path, "--format", "csv")
    assert first.exit_code == 0, first.output
    second = invoke("run", *FAST, "--seed", "1", "--ledger", path, "--format", "json")
    assert second.exit_code == 0, second.output
    return path, first.stdout, json.loads(second.stdout)


def test_run_prints_the_same_bands_with_and_without_the_ledger(recorded):
    _, with_ledger, _ = recorded
    without = invoke("run", *FAST, "--format", "csv")
    assert without.stdout == with_ledger


def test_run_json_names_the_recorded_run(recorded):
    path, _, second = recorded
    assert second["ledger"] == str(path) and second["run_id"] == 2
    runs = ledger.list_runs(path)
    assert list(runs["run_id"]) == [1, 2] and list(runs["seed"]) == [0, 1]
    assert runs["history_sha256"].str.len().eq(64).all()
    assert runs["model_name"].eq("b2b").all() and runs["horizon_days"].eq(100).all()


def test_bands_target_is_not_negative(recorded):
    res = invoke("bands", "--ledger", recorded[0], "--target", "-5")
    assert res.exit_code == 2 and "-5.0 is not in the range x>=0" in res.output


def test_bands_csv_equals_the_runs_own_bands(recorded):
    path, run_csv, _ = recorded
    own = pd.read_csv(io.StringIO(run_csv))
    own = own[(own["metric"] == "bookings") & (own["period"] != "total")].reset_index(drop=True)
    res = invoke("bands", "--ledger", path, "--run", "1", "--format", "csv")
    assert res.exit_code == 0, res.output
    got = pd.read_csv(io.StringIO(res.stdout))
    assert list(got["period"]) == ["2026-10", "2026-11", "2026-12", "2027-01"]
    for col in ("mean", "sd", "p10", "p50", "p90"):
        assert got[col].to_numpy() == pytest.approx(own[col].to_numpy(), rel=1e-12), col


def test_bands_table_latest_by_quarter_with_target(recorded):
    path, _, _ = recorded
    res = invoke("bands", "--ledger", path, "--by", "quarter", "--cumulative",
                 "--target", "3000000", "--quantiles", "0.05,0.5,0.95")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "run 2 of" in out and "seed 1" in out and "cumulative from 2026-09-30" in out
    for text in ("P5", "P50", "P95", "P(cum. >= $3M)", "2026Q4", "2027Q1", "$",
                 "P(cum. >= $3M): the probability that the bookings from the as-of date to "
                 "the period's end reach $3M."):
        assert text in out
    # the cumulative span starts on the horizon's first day and grows
    assert "2027Q1  2026-10-01  2027-01-08   100" in out


def test_bands_json_and_parquet_agree(recorded, tmp_path):
    path, _, _ = recorded
    args = ["bands", "--ledger", path, "--metric", "won_deals", "--by", "month",
            "--cumulative", "--target", "20", "--quantiles", "0.125,0.5"]
    js = invoke(*args, "--format", "json")
    assert js.exit_code == 0, js.output
    payload = json.loads(js.stdout)
    assert payload["run"]["run_id"] == 2 and payload["metric"] == "won_deals"
    assert "quantile_grid" not in payload["run"]
    frame = pd.DataFrame(payload["bands"])
    out = tmp_path / "b.parquet"
    pq = invoke(*args, "--format", "parquet", "--out", out)
    assert pq.exit_code == 0, pq.output
    back = pd.read_parquet(out)
    assert list(back.columns) == list(frame.columns)
    for col in ("mean", "p12.5", "p50", ledger.TARGET_COLUMN):
        assert back[col].to_numpy() == pytest.approx(frame[col].to_numpy(), rel=1e-12)
    probs = back[ledger.TARGET_COLUMN].to_numpy()
    assert all(a <= b for a, b in itertools.pairwise(probs))  # cumulative grows
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_run_out_and_bands_write_parquet_dates_alike(recorded, tmp_path):
    """`run --out` and `bands --format parquet` both write start and end as date32 (run's
    were strings); CSV and JSON keep ISO text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path, run_csv, _ = recorded
    assert invoke("run", *FAST, "--out", tmp_path / "out").exit_code == 0
    res = invoke("bands", "--ledger", path, "--run", "1", "--format", "parquet", "--out",
                 tmp_path / "b.parquet")
    assert res.exit_code == 0, res.output
    for name in ("out/bands.parquet", "b.parquet"):
        schema = pq.read_schema(tmp_path / name)
        assert schema.field("start").type == schema.field("end").type == pa.date32(), name
    assert "2026-10-01,2026-10-31" in (tmp_path / "out" / "bands.csv").read_text()
    assert "2026-10-01,2026-10-31" in run_csv
    assert '"start": "2026-10-01"' in (tmp_path / "out" / "summary.json").read_text()


def test_bands_occupancy_is_a_level(recorded):
    path, _, _ = recorded
    plain = invoke("bands", "--ledger", path, "--metric", "in_sql", "--format", "csv")
    cumul = invoke("bands", "--ledger", path, "--metric", "in_sql", "--format", "csv",
                   "--cumulative")
    assert plain.exit_code == 0 and plain.stdout == cumul.stdout


def test_bands_as_of_picks_the_latest_run_of_that_date(recorded):
    path, _, _ = recorded
    res = invoke("bands", "--ledger", path, "--as-of", "2026-09-30", "--format", "json")
    assert json.loads(res.stdout)["run"]["run_id"] == 2


def test_bare_ledger_flag_uses_the_environment_then_the_working_directory(tmp_path,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    env_file = tmp_path / "env.duckdb"
    short = ["--paths", "20", "--horizon", "40", "--quiet"]
    res = invoke("run", *short, "--ledger", "--format", "csv",
                 env={ledger.ENV_VAR: str(env_file)})
    assert res.exit_code == 0, res.output
    assert env_file.exists() and not (tmp_path / "forecasts.duckdb").exists()
    monkeypatch.delenv(ledger.ENV_VAR, raising=False)
    res = invoke("run", *short, "--ledger", env={ledger.ENV_VAR: None})
    assert res.exit_code == 0, res.output
    assert (tmp_path / "forecasts.duckdb").exists()
    res = invoke("bands", "--format", "csv", env={ledger.ENV_VAR: None})
    assert res.exit_code == 0 and "2026-10" in res.stdout


@pytest.mark.parametrize("args, message", [
    (["--run", "9"], "no run with id 9"),
    (["--run", "nine"], "--run takes 'latest' or a run id"),
    (["--as-of", "2020-01-01"], "no forecast with as-of date 2020-01-01"),
    (["--run", "1", "--as-of", "2026-09-30"], "not both"),
    (["--quantiles", "0.005,0.5"], "quantile 0.005 is outside the recorded grid [0.01, 0.99]"),
    (["--quantiles", "1.5"], "--quantiles must be between 0 and 1"),
    (["--metric", "revenue"], "has no metric 'revenue'"),
    (["--format", "parquet"], "--format parquet needs --out FILE"),
])
def test_bands_errors_are_one_line(recorded, args, message):
    path, _, _ = recorded
    res = invoke("bands", "--ledger", path, *args)
    assert res.exit_code == 1
    assert res.stdout == ""
    assert res.stderr.startswith("forecast: error: ") and message in res.stderr
    assert res.stderr.count("\n") == 1


def test_bands_without_a_ledger_or_runs(tmp_path):
    res = invoke("bands", "--ledger", tmp_path / "none.duckdb")
    assert res.exit_code == 1 and "no ledger there" in res.stderr
    empty = tmp_path / "empty.duckdb"
    con = ledger.connect(empty)
    ledger.migrate(con)
    con.close()
    res = invoke("bands", "--ledger", empty)
    assert res.exit_code == 1 and res.stderr.strip().endswith("no runs recorded yet")


def test_run_with_a_ledger_in_a_missing_directory_fails_before_simulating(tmp_path):
    res = invoke("run", *FAST, "--ledger", tmp_path / "no" / "l.duckdb")
    assert res.exit_code == 1 and "does not exist" in res.stderr and res.stdout == ""


def test_run_gives_up_on_a_locked_ledger(tmp_path):
    path = tmp_path / "held.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, time, duckdb
            con = duckdb.connect(sys.argv[1])
            print("holding", flush=True)
            time.sleep(60)
        """), str(path)], stdout=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "holding"
        res = invoke("run", "--paths", "20", "--horizon", "40", "--quiet", "--ledger", path,
                     "--ledger-timeout", "0.5")
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert res.exit_code == 1
    assert res.stderr == (f"forecast: error: {path}: the ledger is locked by another forecast "
                          "process; waited 0.5 s (set a longer --ledger-timeout, or retry "
                          "later)\n")


def corrupt_block_of(source: Path, target: Path, table: str) -> None:
    """Copy a ledger and overwrite 8 bytes inside a block of ``table``'s data (what a failing
    disk or a bad copy does): DuckDB finds the block's checksum wrong when it reads it."""
    shutil.copy(source, target)
    with duckdb.connect(str(target), read_only=True) as con:
        block = con.execute(f"SELECT min(block_id) FROM pragma_storage_info('{table}') "
                            "WHERE block_id >= 0").fetchone()[0]
        size = con.execute("SELECT block_size FROM pragma_database_size()").fetchone()[0]
    with open(target, "r+b") as fh:
        fh.seek(3 * 4096 + block * size + 1000)  # after the file's three 4 KiB headers
        fh.write(b"\xff" * 8)


@pytest.mark.parametrize("table", ["runs", "bands"])
def test_a_damaged_ledger_is_a_one_line_error_for_every_command(recorded, tmp_path, table):
    path = tmp_path / "damaged.duckdb"
    corrupt_block_of(recorded[0], path, table)
    history = tmp_path / "history.csv"
    history.write_text("lead_id,stage,entered_at,amount,segment\n"
                       "A,lead,2026-09-01,,paid_search\nA,won,2026-09-20,500,paid_search\n")
    commands = [["bands", "--ledger", path], ["bands", "--ledger", path, "--by", "quarter"],
                ["trend", "--period", "2026Q4", "--ledger", path],
                ["report", "--ledger", path, "--out", tmp_path / "r.html"]]
    if table == "runs":  # the writers read the runs (actuals: the model's currencies)
        commands += [["actuals", history, "--ledger", path, "--as-of", "2026-09-30"],
                     ["run", *FAST, "--ledger", path]]  # DuckDB's error: five lines
    for args in commands:
        res = invoke(*args)
        assert res.exit_code == 1, (args, res.output)
        last = res.stderr.splitlines()[-1]  # (report notes the history's gap first)
        assert res.stderr.endswith(last + "\n") and res.stdout == "", args
        assert last.startswith(f"forecast: error: {path}: "), args
        assert "Corrupt database file" in last and "restore it from a backup" in last, args
        assert "Traceback" not in res.output, args
    assert not (tmp_path / "r.html").exists()
