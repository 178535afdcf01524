"""Defects found by a finance analyst's walkthrough of the ledger: `bands`, `trend`, `report`.

Each test failed before its fix: a trend that labelled USD runs as EUR, a report that showed a
what-if run as the latest forecast (and in the model file's currency rather than the run's),
an empty ledger file that failed a run after the simulation, a read-only ledger found only
after the work (and an older read-only ledger that could not be read at all), a NaN target
that printed "nan%", and "$1000k" for $999,999.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from forecast import ledger
from forecast import report as rep
from forecast.cli import main
from forecast.outputs import money

FAST = ["--paths", "60", "--horizon", "100", "--quiet"]  # as of 2026-09-30: all of 2026Q4
REPO = Path(__file__).resolve().parents[1]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def eur_model(tmp_path_factory) -> Path:
    """The bundled b2b model with its amounts in EUR (same name, b2b)."""
    path = tmp_path_factory.mktemp("models") / "b2b_eur.toml"
    text = (REPO / "models" / "b2b.toml").read_text()
    path.write_text(text.replace('currency = "USD"', 'currency = "EUR"', 1))
    return path


@pytest.fixture(scope="module")
def usd_then_eur(tmp_path_factory, eur_model) -> Path:
    """Run 1 of model b2b in USD, run 2 of the same model name in EUR."""
    path = tmp_path_factory.mktemp("ledger") / "f.duckdb"
    for extra in ([], ["--model", eur_model]):
        res = invoke("run", *FAST, *extra, "--ledger", path)
        assert res.exit_code == 0, res.output
    return path


def _record_what_if(path: Path, of_run: int, scenario: str) -> int:
    """Record a what-if run with the bands of ``of_run`` doubled (as `forecast scenario`
    records its scenarios: ``scenario`` set)."""
    con = ledger.open_for_reading(path)
    try:
        run = ledger.find_run(con, of_run)
        stored = ledger.read_bands(con, of_run, "month")
        stored = [stored] + [ledger.read_bands(con, of_run, g) for g in ("quarter", "year")]
    finally:
        con.close()
    import pandas as pd

    bands = pd.concat(stored, ignore_index=True).drop(columns=["run_id"])
    for col in ("mean", "sd", "min", "max"):
        bands[col] = bands[col] * 2
    bands["quantiles"] = [q * 2 for q in bands["quantiles"]]
    record = ledger.RunRecord(
        as_of=run["as_of"], model_name=run["model_name"], model_path=run["model_path"],
        model_sha256=run["model_sha256"], history_path=run["history_path"],
        history_sha256=run["history_sha256"], seed=run["seed"], paths=run["paths"],
        horizon_days=run["horizon_days"], currency=run["currency"], scenario=scenario)
    return ledger.record(path, record, bands)


# ---- trend: one unit per trend --------------------------------------------------------------


def test_trend_refuses_to_mix_currencies(usd_then_eur):
    res = invoke("trend", "--ledger", usd_then_eur, "--period", "2026Q4")
    assert res.exit_code == 1
    assert "several currencies (EUR, USD)" in res.output and "--last 1" in res.output
    assert "$" not in res.output
    one = invoke("trend", "--ledger", usd_then_eur, "--period", "2026Q4", "--last", "1",
                 "--format", "json")
    assert one.exit_code == 0, one.output
    assert '"currency": "EUR"' in one.output


# ---- report: the latest forecast, in its own currency ---------------------------------------


def test_report_latest_forecast_skips_what_if_runs(tmp_path):
    path = tmp_path / "f.duckdb"
    res = invoke("run", *FAST, "--ledger", path)
    assert res.exit_code == 0, res.output
    what_if = _record_what_if(path, 1, "Win rate +5 points")
    assert what_if == 2
    fc = rep.ledger_forecast(path, "b2b")
    assert fc.run["run_id"] == 1 and fc.run["scenario"] is None
    assert "run 1 of the ledger" in fc.source


def test_report_says_when_a_model_has_only_what_if_runs(tmp_path, eur_model):
    path = tmp_path / "f.duckdb"
    res = invoke("run", *FAST, "--ledger", path)
    assert res.exit_code == 0, res.output
    con = duckdb.connect(str(path))
    con.execute("UPDATE runs SET scenario = 'baseline'")
    con.close()
    with pytest.raises(ledger.LedgerError, match=r"^no run of model b2b recorded; only 1 "
                                                 r"what-if runs"):
        rep.ledger_forecast(path, "b2b")


def test_report_shows_a_ledger_run_in_the_runs_currency(usd_then_eur, tmp_path):
    out = tmp_path / "r.html"
    res = invoke("report", "--ledger", usd_then_eur, "--out", out)  # the b2b model: USD
    assert res.exit_code == 0, res.output
    page = out.read_text()
    section = page[page.index('id="forecast"'):]
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", section)
    amounts = [c for c in cells if re.search(r"\d(k|M)\b", c)]
    assert amounts and all(c.endswith(" EUR") for c in amounts), amounts[:5]
    assert not any("$" in c for c in cells)


# ---- a ledger that is an empty file, or read-only --------------------------------------------


def test_an_empty_file_becomes_the_ledger(tmp_path):
    path = tmp_path / "forecasts.duckdb"
    path.touch()  # `touch forecasts.duckdb`, or an aborted copy
    res = invoke("bands", "--ledger", path)
    assert res.exit_code == 1 and "an empty file, no ledger yet" in res.output
    res = invoke("run", *FAST, "--ledger", path)
    assert res.exit_code == 0, res.output
    assert list(ledger.list_runs(path)["run_id"]) == [1]


def _deny_writes(monkeypatch, *paths: Path) -> None:
    """As a read-only file (or file system) does: os.access(..., W_OK) is False for these
    (chmod cannot show it when the tests run as root)."""
    real = ledger.os.access
    denied = {Path(p).resolve() for p in paths}

    def access(p, mode, *args, **kwargs):
        if mode & ledger.os.W_OK and Path(p).resolve() in denied:
            return False
        return real(p, mode, *args, **kwargs)

    monkeypatch.setattr(ledger.os, "access", access)


def test_a_read_only_ledger_fails_before_the_forecast(tmp_path, monkeypatch):
    path = tmp_path / "f.duckdb"
    res = invoke("run", *FAST, "--ledger", path)
    assert res.exit_code == 0, res.output
    _deny_writes(monkeypatch, path)
    res = invoke("run", *FAST, "--ledger", path)
    assert res.exit_code == 1
    assert res.output.startswith(f"forecast: error: {path}: the ledger is read-only")
    assert len(res.output.strip().splitlines()) == 1
    _deny_writes(monkeypatch, tmp_path)
    res = invoke("run", *FAST, "--ledger", tmp_path / "new.duckdb")
    assert res.exit_code == 1 and "is not writable" in res.output
    assert not (tmp_path / "new.duckdb").exists()


def test_a_read_only_older_ledger_is_read_as_it_is(tmp_path, monkeypatch):
    source = tmp_path / "new.duckdb"
    res = invoke("run", *FAST, "--ledger", source)
    assert res.exit_code == 0, res.output
    old = tmp_path / "v1.duckdb"  # a ledger written before `actuals` (schema version 1)
    con = duckdb.connect(str(old))
    ledger.migrate(con, ledger.MIGRATIONS[:1])
    con.execute(f"ATTACH '{source}' AS src (READ_ONLY)")
    con.execute("INSERT INTO runs SELECT * FROM src.runs")
    con.execute("INSERT INTO bands SELECT * FROM src.bands")
    con.close()
    want = invoke("bands", "--ledger", source, "--by", "quarter", "--format", "csv")
    _deny_writes(monkeypatch, old)
    got = invoke("bands", "--ledger", old, "--by", "quarter", "--format", "csv")
    assert got.exit_code == 0, got.output
    assert got.stdout == want.stdout
    trend = invoke("trend", "--ledger", old, "--period", "2026Q4")
    assert trend.exit_code == 0, trend.output
    con = duckdb.connect(str(old), read_only=True)
    try:  # not migrated: the file is as it was
        assert con.execute("SELECT max(version) FROM schema_version").fetchone()[0] == 1
    finally:
        con.close()


def test_reading_a_writable_older_ledger_leaves_it_as_it_was(tmp_path, monkeypatch):
    """Finance reading with a newer forecast must not upgrade revenue-ops' ledger: the older
    forecast that writes to it nightly would then refuse a schema newer than it knows."""
    every = ledger.MIGRATIONS
    old = tmp_path / "v1.duckdb"
    monkeypatch.setattr(ledger, "MIGRATIONS", every[:1])  # a forecast from before `actuals`
    res = invoke("run", *FAST, "--ledger", old)
    assert res.exit_code == 0, res.output
    before = old.read_bytes()
    monkeypatch.setattr(ledger, "MIGRATIONS", every)  # today's forecast reads it
    for args in (("bands", "--ledger", old), ("trend", "--ledger", old, "--period", "2026Q4"),
                 ("report", "--ledger", old, "--out", tmp_path / "report.html")):
        res = invoke(*args)
        assert res.exit_code == 0, res.output
    assert old.read_bytes() == before
    monkeypatch.setattr(ledger, "MIGRATIONS", every[:1])  # and the older one still writes
    res = invoke("run", *FAST, "--ledger", old)
    assert res.exit_code == 0, res.output
    assert len(ledger.list_runs(old)) == 2


# ---- bands: a target must be a number ----------------------------------------------------------


def test_trend_of_a_count_shows_runs_in_any_currency(usd_then_eur):
    """Won deals are a count: the currency check is for amounts only."""
    res = invoke("trend", "--ledger", usd_then_eur, "--period", "2026Q4", "--metric",
                 "won_deals", "--format", "json")
    assert res.exit_code == 0, res.output


def test_bands_refuses_a_target_that_is_not_finite(usd_then_eur):
    for bad in ("nan", "inf"):
        res = invoke("bands", "--ledger", usd_then_eur, "--target", bad)
        assert res.exit_code == 1, res.output
        assert "--target must be a finite amount" in res.output and "nan%" not in res.output


# ---- money: never "$1000k" ------------------------------------------------------------------


@pytest.mark.parametrize(("amount", "usd", "eur"), [
    (999_999, "$1M", "1M EUR"), (999_500, "$1M", "1M EUR"), (999_499, "$999k", "999k EUR"),
    (999.6, "$1k", "1k EUR"), (999.4, "$999", "999 EUR"), (999_999_999, "$1B", "1B EUR"),
    (-999_999, "-$1M", "-1M EUR"), (1_234_567, "$1.23M", "1.23M EUR"), (12.3, "$12", "12 EUR"),
    (999.5e9, "$1T", "1T EUR"), (1e12, "$1T", "1T EUR"), (float("inf"), "$inf", "inf EUR"),
    (float("nan"), "$nan", "nan EUR"), (0.0, "$0", "0 EUR"),
])
def test_money_rounds_up_into_the_next_unit(amount, usd, eur):
    assert money(amount) == usd and money(amount, "EUR") == eur


# ---- bands: which model, and a what-if run's rows say so -------------------------------------


def test_bands_picks_the_model_and_marks_what_if_rows(tmp_path):
    """With two models in one ledger, ``bands`` showed whichever ran last; ``--model`` picks
    one. A what-if run's CSV had no sign of being one: its rows now carry the scenario."""
    path = tmp_path / "f.duckdb"
    other = tmp_path / "other.toml"
    other.write_text((REPO / "models" / "b2b.toml").read_text().replace(
        'name = "b2b"', 'name = "prévision"', 1))
    sample = REPO / "forecast" / "samples" / "b2b_history.csv.gz"
    for extra in ([], ["--model", other, "--history", sample]):
        res = invoke("run", *FAST, *extra, "--ledger", path)
        assert res.exit_code == 0, res.output
    import json

    latest = json.loads(invoke("bands", "--ledger", path, "--format", "json").output)
    assert latest["run"]["model_name"] == "prévision"
    b2b = invoke("bands", "--ledger", path, "--model", "b2b", "--format", "json")
    assert b2b.exit_code == 0 and json.loads(b2b.output)["run"]["run_id"] == 1
    other_id = invoke("bands", "--ledger", path, "--model", "b2b", "--run", 2)
    assert other_id.exit_code == 1 and "no run of model b2b with id 2" in other_id.output
    missing = invoke("bands", "--ledger", path, "--model", "b2c")
    assert missing.exit_code == 1
    assert "no run of model 'b2c' recorded (models: b2b, prévision)" in missing.output
    what_if = _record_what_if(path, 1, "Win rate +5 points")
    forecast_csv = invoke("bands", "--ledger", path, "--run", 1, "--format", "csv").output
    assert "scenario" not in forecast_csv.splitlines()[0]
    rows = invoke("bands", "--ledger", path, "--run", what_if, "--format", "csv").output
    lines = rows.splitlines()
    assert lines[0].startswith("scenario,")
    assert all(line.startswith("Win rate +5 points,") for line in lines[1:])
