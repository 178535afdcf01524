"""Actuals in the ledger (`forecast actuals`), beside the bands, and `forecast trend`."""

from __future__ import annotations

import datetime as dt
import io
import json

import duckdb
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from forecast import ledger, trend
from forecast.cli import main
from forecast.eventlog import read_event_log
from forecast.model import load_model
from forecast.samples import sample_history_path

FAST = ["--paths", "100", "--horizon", "120", "--quiet"]
AS_OFS = ("2026-06-15", "2026-06-30", "2026-08-31")  # the sample history ends 2026-09-30

TINY = """lead_id,stage,entered_at,amount,segment
A,lead,2026-01-05,1000,
A,sql,2026-01-10,,
A,won,2026-01-20,,
B,lead,2026-01-15,,
B,won,2026-02-03,500,
C,lead,2026-02-01,,
C,won,2026-04-02,,
D,lead,2026-03-01,200,
D,won,2026-03-31,300,
"""


def invoke(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, env=env)


def actuals_rows(path) -> pd.DataFrame:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT * FROM actuals").df()
    finally:
        con.close()


def by_key(frame: pd.DataFrame, grain: str, metric: str) -> dict:
    sel = frame[(frame["grain"] == grain) & (frame["metric"] == metric)]
    return dict(zip(sel["period"], zip(sel["value"], sel["complete"], strict=True),
                    strict=True))


# ---- actuals from a tiny event log, by hand -------------------------------------------------


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.csv"
    path.write_text(TINY)
    return path


def test_realized_by_hand(tiny):
    model = load_model("b2b")
    real = trend.realized(read_event_log(tiny, model), model)
    assert (real.first, real.last) == (dt.date(2026, 1, 5), dt.date(2026, 4, 2))
    assert len(real.days) == 88 and real.unpriced == 1
    got = {d.date(): (b, w) for d, b, w in zip(real.days, real.bookings, real.won_deals,
                                               strict=True) if w}
    assert got == {dt.date(2026, 1, 20): (1000.0, 1),  # the lead's last amount before won
                   dt.date(2026, 2, 3): (500.0, 1),    # the amount on the won row
                   dt.date(2026, 3, 31): (300.0, 1),   # the won row's amount wins over 200
                   dt.date(2026, 4, 2): (0.0, 1)}      # no amount: counted, books 0
    frame = trend.actuals_frame(real)
    months = by_key(frame, "month", "bookings")
    assert months == {"2026-01": (1000.0, False), "2026-02": (500.0, True),
                      "2026-03": (300.0, True), "2026-04": (0.0, False)}
    assert by_key(frame, "quarter", "won_deals") == {"2026Q1": (3.0, False),
                                                     "2026Q2": (1.0, False)}
    assert by_key(frame, "year", "bookings") == {"2026": (1800.0, False)}
    days = frame[(frame["grain"] == "day") & (frame["metric"] == "bookings")]
    assert len(days) == 88 and days["complete"].all() and days["value"].sum() == 1800.0


def test_actuals_command_records_and_replaces(tiny, tmp_path):
    path = tmp_path / "l.duckdb"
    res = invoke("actuals", tiny, "--ledger", path)
    assert res.exit_code == 0, res.output
    assert "4 won deals, $1.8k bookings" in res.stdout
    assert "without a known amount" in res.stderr
    first = actuals_rows(path)
    assert (first["history_sha256"].str.len() == 64).all()
    assert set(first["grain"]) == {"day", "month", "quarter", "year"}
    # the same periods again, one amount corrected: replaced, not duplicated
    fixed = tmp_path / "fixed.csv"
    fixed.write_text(TINY.replace("B,won,2026-02-03,500,", "B,won,2026-02-03,700,"))
    res = invoke("actuals", fixed, "--ledger", path)
    assert res.exit_code == 0, res.output
    again = actuals_rows(path)
    assert len(again) == len(first)
    assert by_key(again, "month", "bookings")["2026-02"] == (700.0, True)
    assert set(again["history_path"]) == {str(fixed)}
    # a later-starting history does not replace a complete month with an incomplete one
    late = tmp_path / "late.csv"
    late.write_text("lead_id,stage,entered_at,amount,segment\n"
                    "E,lead,2026-02-10,,\nE,won,2026-03-05,50,\n")
    res = invoke("actuals", late, "--ledger", path)
    assert res.exit_code == 0, res.output
    months = by_key(actuals_rows(path), "month", "bookings")
    assert months["2026-02"] == (700.0, True)   # kept: the new one covers Feb in part
    assert months["2026-03"] == (300.0, True)   # late ends 2026-03-05: March incomplete


def test_actuals_refuse_a_model_whose_runs_are_in_another_currency(tiny, tmp_path):
    """Actuals carry no currency: those of an EUR model named like the ledger's USD runs
    would show beside USD forecasts. Refused, naming both currencies and the fix."""
    from pathlib import Path

    path = tmp_path / "l.duckdb"
    assert invoke("run", "--paths", 20, "--horizon", 30, "--quiet", "--ledger",
                  path).exit_code == 0  # b2b, USD
    eur = tmp_path / "b2b_eur.toml"
    b2b = Path(__file__).resolve().parents[1] / "models" / "b2b.toml"
    eur.write_text(b2b.read_text().replace('currency = "USD"', 'currency = "EUR"'))
    res = invoke("actuals", tiny, "--model", eur, "--ledger", path)
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr == (f"forecast: error: {path}: the recorded runs of model b2b are in "
                          "USD, and this model's currency is EUR: its actuals would be shown "
                          "beside those forecasts as if comparable (actuals carry no "
                          "currency); give this model another name (`name` in its [funnel] "
                          "table) to record its actuals; nothing was recorded\n")
    assert actuals_rows(path).empty
    assert invoke("actuals", tiny, "--ledger", path).exit_code == 0  # the USD model: fine


def test_v1_ledger_is_read_as_it_is_and_migrated_by_a_writer(tmp_path, monkeypatch, tiny):
    path = tmp_path / "v1.duckdb"
    with monkeypatch.context() as m:  # write the file as the version 1 code did
        m.setattr(ledger, "MIGRATIONS", ledger.MIGRATIONS[:1])
        res = invoke("run", "--paths", "20", "--horizon", "40", "--quiet", "--ledger", path,
                     "--format", "csv")
        assert res.exit_code == 0, res.output
    con = duckdb.connect(str(path), read_only=True)
    assert ledger.schema_version(con) == 1
    con.close()
    res = invoke("bands", "--ledger", path, "--format", "csv")  # reading leaves it at 1
    assert res.exit_code == 0, res.output
    got = pd.read_csv(io.StringIO(res.stdout))
    assert "actual" in got.columns and got["actual"].isna().all()
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert ledger.schema_version(con) == 1
    finally:
        con.close()
    assert invoke("actuals", tiny, "--ledger", path).exit_code == 0  # writing migrates it
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert ledger.schema_version(con) == 2
        assert con.execute("SELECT run_id FROM runs").fetchall() == [(1,)]
        assert con.execute("SELECT count(*) FROM bands").fetchone()[0] > 0
        assert con.execute("SELECT count(*) FROM actuals").fetchone()[0] > 0
    finally:
        con.close()


# ---- runs on the sample history at several as-of dates --------------------------------------


def sample_actual(start: str, end: str) -> tuple[float, int]:
    """Bookings and won deals between two dates, straight from the sample CSV with pandas."""
    log = pd.read_csv(sample_history_path(load_model("b2b")))
    log["known"] = log.groupby("lead_id", sort=False)["amount"].ffill()
    day = log["entered_at"].str[:10]
    won = log[(log["stage"] == "won") & (day >= start) & (day <= end)]
    return float(won["known"].fillna(0).sum()), len(won)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    root = tmp_path_factory.mktemp("trend")
    path = root / "l.duckdb"
    full = sample_history_path(load_model("b2b"))
    log = pd.read_csv(full)
    for as_of in AS_OFS:
        cut = root / f"history_{as_of}.csv"
        log[log["entered_at"].str[:10] <= as_of].to_csv(cut, index=False)
        res = invoke("run", *FAST, "--history", cut, "--ledger", path, "--format", "csv")
        assert res.exit_code == 0, res.output
    res = invoke("actuals", full, "--ledger", path)
    assert res.exit_code == 0, res.output
    return path


def test_bands_show_the_actual(recorded):
    res = invoke("bands", "--ledger", recorded, "--run", "2", "--format", "csv")  # 2026-06-30
    assert res.exit_code == 0, res.output
    got = pd.read_csv(io.StringIO(res.stdout)).set_index("period")
    assert got.at["2026-09", "actual"] == pytest.approx(sample_actual("2026-09-01",
                                                                      "2026-09-30")[0])
    assert np.isnan(got.at["2026-10", "actual"])  # after the history's last date
    cum = invoke("bands", "--ledger", recorded, "--run", "1", "--by", "quarter",
                 "--cumulative", "--metric", "won_deals", "--format", "json")
    rows = {r["period"]: r for r in json.loads(cum.stdout)["bands"]}
    assert rows["2026Q3"]["actual"] == sample_actual("2026-06-16", "2026-09-30")[1]
    assert rows["2026Q4"]["actual"] is None
    table = invoke("bands", "--ledger", recorded, "--run", "2")
    assert "actual" in table.stdout.splitlines()[3]
    other = invoke("bands", "--ledger", recorded, "--metric", "arrivals", "--format", "csv")
    assert "actual" not in other.stdout.splitlines()[0]


def test_trend_rows_and_chart(recorded, tmp_path):
    chart = tmp_path / "trend.png"
    res = invoke("trend", "--ledger", recorded, "--period", "2026Q3", "--format", "csv",
                 "--chart", chart)
    assert res.exit_code == 0, res.output
    got = pd.read_csv(io.StringIO(res.stdout))
    assert list(got["as_of"]) == ["2026-06-15", "2026-06-30"]  # 2026-08-31 covers part only
    assert "skipped 1 runs whose horizon covers only part of 2026Q3" in res.stderr
    assert (got["p10"] <= got["p50"]).all() and (got["p50"] <= got["p90"]).all()
    assert got["actual"].to_numpy() == pytest.approx(sample_actual("2026-07-01",
                                                                   "2026-09-30")[0])
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    import matplotlib.image

    assert matplotlib.image.imread(chart).shape[2] in (3, 4)
    last = invoke("trend", "--ledger", recorded, "--period", "2026-09", "--last", "2",
                  "--metric", "won_deals", "--format", "json")
    payload = json.loads(last.stdout)
    assert [r["as_of"] for r in payload["trend"]] == ["2026-06-30", "2026-08-31"]
    assert payload["runs"] == 3 and payload["grain"] == "month"
    assert payload["actual"] == sample_actual("2026-09-01", "2026-09-30")[1]
    table = invoke("trend", "--ledger", recorded, "--period", "2026-09")
    assert "3 of 3 runs covering it; actual $" in table.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--period", "2026Q5"], "is not a period label"),
    (["--period", "2026-9"], "is not a period label"),
    (["--period", "2030Q1"], "no recorded run covers 2030Q1"),
    (["--period", "2026"], "no recorded run covers all of 2026"),
    (["--period", "2026Q3", "--model", "consumer"], "no recorded run of model consumer"),
    (["--period", "2026Q3", "--chart", "x.svg"], "--chart must end in .png"),
    (["--period", "2026Q3", "--metric", "foo"], "no metric 'foo' in the ledger (metrics: "
                                                "arrivals, bookings,"),
])
def test_trend_errors_are_one_line(recorded, args, message):
    res = invoke("trend", "--ledger", recorded, *args)
    assert res.exit_code == 1
    assert res.stderr.startswith("forecast: error: ") and message in res.stderr
    assert res.stderr.count("\n") == 1


def test_parse_period():
    assert trend.parse_period("2027") == ("year", dt.date(2027, 1, 1), dt.date(2027, 12, 31))
    assert trend.parse_period("2027Q1") == ("quarter", dt.date(2027, 1, 1),
                                            dt.date(2027, 3, 31))
    assert trend.parse_period("2024-02") == ("month", dt.date(2024, 2, 1),
                                             dt.date(2024, 2, 29))
    with pytest.raises(trend.PeriodError):
        trend.parse_period("2027-Q1")


# ---- `forecast bands --chart`: the fan chart from the stored bands --------------------------


@pytest.mark.parametrize("target", [None, "3000000"])
def test_bands_fan_chart(recorded, tmp_path, target):
    import matplotlib.image

    chart = tmp_path / "fan.png"
    extra = ["--target", target] if target else []
    res = invoke("bands", "--ledger", recorded, "--run", "2", "--by", "quarter",
                 "--format", "csv", "--chart", chart, *extra)
    assert res.exit_code == 0, res.output
    assert f"wrote {chart}" in res.stderr
    got = pd.read_csv(io.StringIO(res.stdout))  # the bands themselves are still printed
    assert list(got["period"]) == ["2026Q3", "2026Q4"]
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["fan.png"]  # no temporary file left
    image = matplotlib.image.imread(chart)
    assert image.shape == (572, 1430, 4)  # 13 x 5.2 inches at 110 dpi: two panels


def test_fan_chart_png_level_metric_has_one_panel(recorded, tmp_path):
    con = ledger.open_for_reading(recorded)
    try:
        run = ledger.find_run(con, "1")
        stored = ledger.read_bands(con, run["run_id"], "month", metric="in_sql")
    finally:
        con.close()
    frame = ledger.select_bands(stored, run, "in_sql", trend.FAN_QUANTILES, target=40.0)
    chart = tmp_path / "occupancy.png"
    trend.fan_chart_png(chart, frame, None, run=run, metric="in_sql", by="month", target=40.0)
    import matplotlib.image

    assert matplotlib.image.imread(chart).shape[:2] == (572, 715)  # one panel
    assert [p.name for p in tmp_path.iterdir()] == ["occupancy.png"]


@pytest.mark.parametrize(("args", "message"), [
    (["--chart", "fan.svg"], "--chart must end in .png"),
    (["--chart", "no/such/dir/fan.png"], "does not exist"),
])
def test_bands_chart_errors_are_one_line(recorded, args, message):
    res = invoke("bands", "--ledger", recorded, *args)
    assert res.exit_code == 1
    assert res.stderr.startswith("forecast: error: ") and message in res.stderr
    assert res.stderr.count("\n") == 1


def test_fan_chart_failed_write_keeps_the_old_chart(recorded, tmp_path, monkeypatch):
    import matplotlib.figure

    chart = tmp_path / "fan.png"
    chart.write_bytes(b"old")

    def broken(self, fname, **kwargs):
        with open(fname, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken)
    res = invoke("bands", "--ledger", recorded, "--chart", chart)
    assert res.exit_code == 1 and "could not write (disk full)" in res.stderr
    assert chart.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["fan.png"]


def test_actuals_refuse_rows_after_the_export_date(tiny, tmp_path):
    """A mistyped year (2099) would record every month up to it as complete with nothing
    closed; a row after --as-of (default today) is an error naming the row and the column,
    and nothing is recorded."""
    path = tmp_path / "l.duckdb"
    future = tmp_path / "future.csv"
    future.write_text(TINY + "Z,lead,2099-01-01,,\n")
    res = invoke("actuals", future, "--ledger", path)
    assert res.exit_code == 1
    assert "future.csv, row 11, column entered_at" in res.stderr
    assert "2099-01-01 is after --as-of" in res.stderr
    assert not path.exists() or actuals_rows(path).empty
    res = invoke("actuals", future, "--ledger", path, "--as-of", "2026-03-31")
    assert res.exit_code == 1 and "after --as-of 2026-03-31" in res.stderr
    res = invoke("actuals", future, "--ledger", path, "--as-of", "2099-12-31")
    assert res.exit_code == 0, res.output
    assert "warning" not in res.stderr  # an old export is no stale forecast


def test_an_older_shorter_export_does_not_replace_what_a_longer_one_recorded(tmp_path):
    """Incomplete periods: the recording covering more of the period wins, whichever came
    last (a re-run of an old export must not shrink February to its first ten days)."""
    path = tmp_path / "l.duckdb"
    head = "lead_id,stage,entered_at,amount,segment\n"
    longer = tmp_path / "longer.csv"
    longer.write_text(head + "A,lead,2026-01-05,,\nA,won,2026-02-05,100,\n"
                      "B,lead,2026-01-06,,\nB,won,2026-02-18,50,\n")
    shorter = tmp_path / "shorter.csv"
    shorter.write_text(head + "A,lead,2026-01-05,,\nA,won,2026-02-05,100,\n"
                       "B,lead,2026-01-06,,\n")
    assert invoke("actuals", longer, "--ledger", path).exit_code == 0
    res = invoke("actuals", shorter, "--ledger", path)
    assert res.exit_code == 0, res.output
    assert "covers more of them" in res.stderr
    assert by_key(actuals_rows(path), "month", "bookings")["2026-02"] == (150.0, False)
    # and the other way round: the longer one replaces the shorter one
    path2 = tmp_path / "l2.duckdb"
    assert invoke("actuals", shorter, "--ledger", path2).exit_code == 0
    assert invoke("actuals", longer, "--ledger", path2).exit_code == 0
    assert by_key(actuals_rows(path2), "month", "bookings")["2026-02"] == (150.0, False)


def test_a_short_last_period_is_labelled_or_left_out_of_the_fan():
    """A 370-day horizon from 2026-09-30 leaves 5 days of 2027Q4: within each quarter its P50
    read as a collapse of bookings. A period covered in part is drawn with its days; a last
    one covered for under a quarter of its days is left out (it is in the cumulative panel)."""
    frame = pd.DataFrame({"period": ["2026Q4", "2027Q1", "2027Q4"],
                          "end": ["2026-12-31", "2027-03-31", "2027-10-05"],
                          "days": [92, 90, 5]})
    full, keep = trend.partial_periods(frame, "quarter")
    assert full.tolist() == [92, 90, 92] and keep.tolist() == [True, True, False]
    frame = pd.DataFrame({"period": ["2026-10", "2026-11"], "end": ["2026-10-31", "2026-11-14"],
                          "days": [17, 14]})  # as of 2026-10-14, 31 days
    full, keep = trend.partial_periods(frame, "month")
    assert full.tolist() == [31, 30] and keep.tolist() == [True, True]
    full, keep = trend.partial_periods(pd.DataFrame({"end": ["2028-02-29"], "days": [3]}), "year")
    assert full.tolist() == [366] and keep.tolist() == [True]  # a lone period stays


def test_actuals_as_of_the_export_s_date_know_the_quiet_days_up_to_it(tmp_path):
    """An export dated 2026-03-31 whose last row is 2026-03-27 (a quiet weekend and two days
    after it): with --as-of 2026-03-31 March and 2026Q1 are complete, the days after the last
    row recorded as zeros; without it (as of today) the history's last date ends what is
    known, and March stays incomplete."""
    log = tmp_path / "quiet.csv"
    log.write_text("lead_id,stage,entered_at,amount,segment\n"
                   "A,lead,2026-01-01,,\nA,won,2026-01-20,100,\n"
                   "B,lead,2026-03-01,,\nB,won,2026-03-27,50,\n")
    dated, undated = tmp_path / "dated.duckdb", tmp_path / "undated.duckdb"
    assert invoke("actuals", log, "--ledger", dated, "--as-of", "2026-03-31").exit_code == 0
    assert invoke("actuals", log, "--ledger", undated).exit_code == 0
    rows = actuals_rows(dated)
    assert by_key(rows, "month", "bookings")["2026-03"] == (50.0, True)
    assert by_key(rows, "quarter", "won_deals")["2026Q1"] == (2.0, True)
    days = by_key(rows, "day", "bookings")
    assert days["2026-03-31"] == (0.0, True) and "2026-04-01" not in days
    rows = actuals_rows(undated)
    assert by_key(rows, "month", "bookings")["2026-03"] == (50.0, False)
    assert "2026-03-28" not in by_key(rows, "day", "bookings")
