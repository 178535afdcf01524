"""`forecast run` and `forecast simulate-history` end to end, through click's CliRunner."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from click.testing import CliRunner

from forecast import outputs
from forecast.cli import main

FAST = ["--paths", "120", "--quiet"]


def invoke(*args):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def default_run():
    return invoke("run", *FAST)


def test_run_with_no_arguments_prints_monthly_bands(default_run):
    assert default_run.exit_code == 0, default_run.output
    out = default_run.stdout
    assert "Bookings forecast: model b2b" in out
    assert "as of 2026-09-30" in out  # the bundled sample history ends there
    for col in ("bookings mean", "P10", "P50", "P90", "won deals", "expired SQLs",
                "lost to expiry"):
        assert col in out
    for period in ("2026-10", "2026-11", "2026-12", "total"):
        assert period in out


def test_same_seed_same_output_different_seed_differs(default_run):
    again = invoke("run", *FAST)
    assert again.stdout == default_run.stdout
    other = invoke("run", *FAST, "--seed", "1")
    assert other.exit_code == 0
    assert other.stdout != default_run.stdout


def test_csv_and_json_formats_agree():
    csv = invoke("run", *FAST, "--format", "csv", "--by", "quarter",
                 "--quantiles", "0.05,0.5,0.95")
    assert csv.exit_code == 0, csv.output
    frame = pd.read_csv(io.StringIO(csv.stdout))
    assert {"period", "metric", "mean", "sd", "p5", "p50", "p95"} <= set(frame.columns)
    assert set(frame["period"]) == {"2026Q4", "total"}
    js = invoke("run", *FAST, "--format", "json", "--by", "quarter",
                "--quantiles", "0.05,0.5,0.95")
    payload = json.loads(js.stdout)
    assert payload["paths"] == 120 and payload["as_of"] == "2026-09-30"
    from_json = pd.DataFrame(payload["bands"])
    book = frame[(frame.metric == "bookings") & (frame.period == "total")].iloc[0]
    book_js = from_json[(from_json.metric == "bookings") & (from_json.period == "total")].iloc[0]
    assert book["p50"] == pytest.approx(book_js["p50"])
    assert book["p5"] <= book["p50"] <= book["p95"]


def test_out_dir_gets_all_files(tmp_path):
    out = tmp_path / "run1"
    res = invoke("run", *FAST, "--out", str(out), "--by", "week")
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["bands.csv", "bands.parquet", "fan_chart.png", "summary.json"]
    csv = pd.read_csv(out / "bands.csv")
    pq = pd.read_parquet(out / "bands.parquet")
    for col in ("start", "end"):  # dates in Parquet, ISO text in CSV
        csv[col] = pd.to_datetime(csv[col]).dt.date
    pd.testing.assert_frame_equal(csv, pq, check_dtype=False)
    assert (out / "fan_chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "b2b" and len(summary["model_sha256"]) == 64
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_failed_write_leaves_out_dir_untouched(tmp_path, monkeypatch):
    out = tmp_path / "existing"
    out.mkdir()
    (out / "bands.csv").write_text("previous run\n")

    def broken_chart(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(outputs, "fan_chart", broken_chart)
    res = invoke("run", *FAST, "--out", str(out))
    assert res.exit_code == 1
    assert "nothing was changed" in res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["bands.csv"]
    assert (out / "bands.csv").read_text() == "previous run\n"
    assert [p.name for p in tmp_path.iterdir()] == ["existing"]


@pytest.mark.parametrize("by", ["day", "week", "month", "quarter"])
def test_periods(by):
    res = invoke("run", "--paths", "30", "--quiet", "--horizon", "20", "--by", by,
                 "--format", "csv")
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(io.StringIO(res.stdout))
    days = frame[(frame.metric == "bookings") & (frame.period != "total")]["days"]
    assert days.sum() == 20


def test_consumer_model_runs():
    res = invoke("run", "--model", "consumer", "--paths", "40", "--quiet", "--horizon", "14")
    assert res.exit_code == 0, res.output
    assert "model consumer" in res.stdout


def test_history_and_as_of(tmp_path):
    log = tmp_path / "log.csv"
    res = invoke("simulate-history", "--start", "2026-01-01", "--days", "90", "--seed", "3",
                 "--out", str(log))
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(log)
    assert list(frame.columns) == ["lead_id", "stage", "entered_at", "amount", "segment"]
    run = invoke("run", *FAST, "--history", str(log), "--as-of", "2026-03-31",
                 "--horizon", "30")
    assert run.exit_code == 0, run.output
    assert "as of 2026-03-31" in run.stdout and str(log) in run.stdout


# ---- errors: a message, exit code 1 ----------------------------------------------------------


def test_bad_as_of():
    res = invoke("run", *FAST, "--as-of", "2026-13-01")
    assert res.exit_code == 1
    assert "--as-of '2026-13-01' is not a date" in res.stderr


def test_missing_history(tmp_path):
    res = invoke("run", *FAST, "--history", str(tmp_path / "nope.csv"))
    assert res.exit_code == 1
    assert "nope.csv" in res.stderr


def test_bad_history_row_names_file_row_column(tmp_path):
    log = tmp_path / "bad.csv"
    log.write_text("lead_id,stage,entered_at,amount\nA,lead,2026-01-02,\nA,mql,2026-02-30,\n")
    res = invoke("run", *FAST, "--history", str(log))
    assert res.exit_code == 1
    assert "bad.csv" in res.stderr and "row 3" in res.stderr and "entered_at" in res.stderr


def test_bad_quantiles():
    res = invoke("run", *FAST, "--quantiles", "0.1,1.5")
    assert res.exit_code == 1
    assert "between 0 and 1" in res.stderr


def test_bad_model(tmp_path):
    bad = tmp_path / "m.toml"
    bad.write_text("[funnel]\n")
    res = invoke("run", *FAST, "--model", str(bad))
    assert res.exit_code == 1
    assert "m.toml" in res.stderr and "[funnel.stages]" in res.stderr


def test_expired_column_reads_well_for_any_stage_name():
    from forecast.outputs import expired_label

    assert expired_label("sql") == "expired SQLs"
    assert expired_label("opportunity") == "expired from opportunity"


@pytest.mark.parametrize("name", ["log.csv", "log.csv.gz", "log.parquet"])
def test_simulate_history_that_cannot_be_written_is_one_line(tmp_path, monkeypatch, name):
    """A directory it may not write to, or a full disk: one line and exit 1, the file as it
    was and no temporary left (it was a traceback)."""
    out = tmp_path / name
    out.write_bytes(b"old")

    def broken(path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"partial")
        raise PermissionError(13, "Permission denied")

    if name.endswith(".gz"):  # the CSV text is made in memory, then written
        import pathlib

        monkeypatch.setattr(pathlib.Path, "write_bytes", broken)
    else:
        monkeypatch.setattr(pd.DataFrame, "to_csv", lambda self, path, **kw: broken(path))
        monkeypatch.setattr(pd.DataFrame, "to_parquet", lambda self, path, **kw: broken(path))
    res = CliRunner().invoke(main, ["simulate-history", "--start", "2026-01-01", "--days", "5",
                                    "--out", str(out)])
    assert res.exit_code == 1
    assert res.output.strip() == (f"forecast: error: {out}: could not write ([Errno 13] "
                                  "Permission denied); nothing was changed")
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == [name]
