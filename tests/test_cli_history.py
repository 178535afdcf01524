"""`forecast run` on CRM exports: `--history-format` and the importers' column flags."""

from __future__ import annotations

import json

from click.testing import CliRunner

from forecast.cli import main

DEALS = """opportunity_id,product,deal_stage,engage_date,close_date,close_value
D1,GTX Basic,Won,10/20/2016,11/1/2016,550
D2,GTXPro,Lost,10/21/2016,11/3/2016,0
D3,MG Special,Engaging,10/25/2016,,
D4,GTX Pro,Engaging,10/28/2016,,
D5,GTX Basic,Prospecting,,,
"""


def test_run_reads_a_deal_table_with_products_as_segments(tmp_path):
    path = tmp_path / "deals.csv"
    path.write_text(DEALS)
    out = CliRunner().invoke(main, [
        "run", "--model", "opportunities", "--history", str(path), "--history-format",
        "opportunities", "--segment-column", "product", "--paths", "50", "--horizon", "30",
        "--format", "json", "--quiet"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)
    assert summary["open_leads"] == 2  # D3, D4 open; D5 (no engage date) not yet in the funnel
    assert summary["as_of"] == "2016-11-03"


def test_a_column_flag_the_format_does_not_take_is_an_error(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("lead_id,stage,entered_at\n1,lead,2024-01-01\n")
    out = CliRunner().invoke(main, ["run", "--history", str(path), "--created-column", "x"])
    assert out.exit_code == 1
    assert "--created-column: not an option of --history-format eventlog" in out.output


def test_a_bad_export_row_is_reported_by_file_row_and_column(tmp_path):
    path = tmp_path / "deals.csv"
    path.write_text(DEALS.replace("11/1/2016", "11/31/2016"))
    out = CliRunner().invoke(main, [
        "run", "--model", "opportunities", "--history", str(path), "--history-format",
        "opportunities", "--segment-column", "product", "--paths", "5"])
    assert out.exit_code == 1
    assert "deals.csv" in out.output and "row 2" in out.output and "close_date" in out.output


def test_an_as_of_well_after_the_history_warns_that_it_may_be_stale(tmp_path):
    """Leads open at the history's end are taken as still open at a later as-of date, and
    nothing since is known: a week past the last event, every command that reads a history
    says so on stderr (even with --quiet); a few days (a weekend) is normal."""
    path = tmp_path / "deals.csv"
    path.write_text(DEALS)  # last event 2016-11-03
    args = ["run", "--model", "opportunities", "--history", str(path), "--history-format",
            "opportunities", "--segment-column", "product", "--paths", "5", "--horizon", "10",
            "--quiet", "--as-of"]
    late = CliRunner().invoke(main, [*args, "2016-12-03"])
    assert late.exit_code == 0, late.output
    assert ("forecast: warning: deals.csv ends on 2016-11-03, 30 days before the as-of date "
            "2016-12-03") in late.stderr
    soon = CliRunner().invoke(main, [*args, "2016-11-10"])
    assert soon.exit_code == 0 and "warning" not in soon.stderr


def _report(tmp_path, deals: str, as_of: str):
    """`forecast report` of a deal table as of a day: (the result, the page)."""
    path = tmp_path / "deals.csv"
    path.write_text(deals)
    out = tmp_path / "report.html"
    res = CliRunner().invoke(main, [
        "report", "--model", "opportunities", "--history", str(path), "--history-format",
        "opportunities", "--segment-column", "product", "--no-forecast", "--as-of", as_of,
        "--out", str(out)])
    assert res.exit_code == 0, res.output
    return res, out.read_text()


def test_the_report_header_gives_the_history_last_date_not_the_as_of(tmp_path):
    _, page = _report(tmp_path, DEALS, "2017-01-31")
    assert "2016-10-20 to 2016-11-03</p>" in page
    assert "The history ends on 2016-11-03, 89 days before the as-of date" in page
    # deals here never go cold: the shelf life is not reached, and has no unit
    assert "OPPORTUNITY shelf life: not reached (0 of 4 stays went cold)" in page


def test_a_past_as_of_cuts_a_deal_export_to_what_was_known_then(tmp_path):
    """`--as-of` before the export's end asks for the history as it was known then. On a
    one-row-per-deal export that cannot be done by dropping rows (D1 and D2, open on
    2016-10-30, close later, and their rows would go): the deals closed later are open on
    the as-of date, with a note of what was left out, for run, describe and fit alike. It
    used to stop with advice to filter the file, which loses those deals."""
    path = tmp_path / "deals.csv"
    path.write_text(DEALS)
    base = ["--model", "opportunities", "--history", str(path), "--history-format",
            "opportunities", "--segment-column", "product"]
    out = CliRunner().invoke(main, ["run", *base, "--as-of", "2016-10-30", "--paths", "50",
                                    "--horizon", "30", "--format", "json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["open_leads"] == 4 and summary["as_of"] == "2016-10-30"  # D1-D4 open then
    assert ("note: left out 2 events of deals.csv dated after --as-of 2016-10-30: the history "
            "as it was known at the end of that day") in out.stderr
    out = CliRunner().invoke(main, ["describe", *base, "--as-of", "2016-10-22"])
    assert out.exit_code == 0, out.output
    assert "left out 4 events" in out.stderr  # D1 and D2's closes, D3 and D4's entries
    out = CliRunner().invoke(main, ["run", *base, "--as-of", "2016-10-01"])
    assert out.exit_code == 1
    assert out.stderr.strip().endswith(
        "deals.csv: every row is after --as-of 2016-10-01 (the history starts on 2016-10-20)")


def test_a_report_as_of_a_past_day_is_not_called_stale(tmp_path):
    """A past --as-of cuts the history; the events left out after it show the file is no stale
    export, so neither stderr nor the page asks whether it is (the page checked the cut
    history's last date), and the page says what was left out."""
    res, page = _report(tmp_path, DEALS + "D6,GTX Basic,Engaging,12/20/2016,,\n", "2016-12-15")
    assert "left out 1 event of deals.csv dated after --as-of 2016-12-15" in page
    assert "stale" not in page.lower() and "stale" not in res.stderr
