"""A move the model does not declare is an error naming the file, the row and the column.

The event log's frame is sorted by lead, so the row is carried from the reader
(``EventLog.pos`` / ``EventLog.at``): the number is the one every other error of the file uses
(CSV: the header is row 1, a quoted cell spanning lines is one row, blank lines count; Parquet:
records from 1), and for a CRM export it is the export's row and stage (or status) column.
Every test runs in its own temporary directory, so messages can be compared word for word.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from click.testing import CliRunner

from forecast import backtest as bt
from forecast.cli import main
from forecast.eventlog import EventLog, InputError, read_event_log
from forecast.importers import read_history
from forecast.statistics import sufficient_statistics

AS_OF = dt.date(2026, 3, 31)
HEADER = "lead_id,stage,entered_at,amount,segment\n"
# Not sorted by lead: L9's rows are interleaved with L2's, and L9 comes first. The b2b model
# declares no sql -> won (only opportunity -> won): L9's won row, row 8, is the undeclared move.
# Frame order (L2's five rows, then L9's) would put it at frame index 8, i.e. "row 10".
ROWS = [
    "L9,lead,2026-01-02,,",
    "L2,lead,2026-01-01,,",
    "L2,mql,2026-01-05,,",
    "L9,mql,2026-01-06,,",
    "L2,sql,2026-01-10,,",
    "L9,sql,2026-01-12,,",
    "L9,won,2026-03-02,500,",
    "L2,opportunity,2026-01-20,,",
    "L2,won,2026-02-20,100,",
]
MOVE = ("lead L9 moves sql -> won on 2026-03-02, a move the model b2b does not declare; "
        "declare it in [moves.sql] or pass --undeclared censor")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def write(text: str, name: str = "events.csv") -> str:
    with open(name, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return name


def error(log, model, as_of: dt.date = AS_OF) -> str:
    with pytest.raises(InputError) as exc:
        sufficient_statistics(log, model, as_of)
    message = str(exc.value)
    assert "\n" not in message
    return message


# ---- event logs ------------------------------------------------------------------------------

def test_csv_names_the_row_in_the_file_not_in_the_sorted_frame(b2b):
    log = read_event_log(write(HEADER + "\n".join(ROWS) + "\n"), b2b)
    assert error(log, b2b) == f"events.csv, row 8, column stage: {MOVE}"


def test_the_first_undeclared_move_in_the_file_is_named(b2b):
    # L2 (first in the frame, and earlier in time) also moves sql -> won, on row 9: L9's row 8
    # comes first in the file.
    rows = [r for r in ROWS if not r.startswith("L2,opportunity")]
    log = read_event_log(write(HEADER + "\n".join(rows) + "\n"), b2b)
    assert error(log, b2b) == f"events.csv, row 8, column stage: {MOVE}"


def test_csv_rows_count_records_blank_lines_and_blank_rows(b2b):
    # Row 2 spans three lines (a quoted note), row 4 is a line of spaces and row 6 a row of
    # empty cells: the row numbers are those of every other error of the file.
    text = ("lead_id,stage,entered_at,amount,segment,note\n"
            'L9,lead,2026-01-02,,,"called twice,\nleft a message\nno answer"\n'
            "L2,lead,2026-01-01,,,\n"
            "   \n"
            "L9,mql,2026-01-06,,,\n"
            ",,,,,\n"
            "L9,sql,2026-01-12,,,\n"
            "L9,won,2026-03-02,500,,\n")
    log = read_event_log(write(text), b2b)
    assert error(log, b2b) == f"events.csv, row 8, column stage: {MOVE}"
    # The same numbering as the reader's own errors for that row.
    with pytest.raises(InputError, match=r"^events\.csv, row 8, column stage: 'bogus'"):
        read_event_log(write(text.replace("L9,won", "L9,bogus")), b2b)


def test_csv_gz_and_an_as_of_that_drops_rows(b2b):
    import gzip

    # Rows after the as-of date (L1's, before L9's in the file) are left out of the statistics;
    # the row number is still the file's.
    text = HEADER + "L1,lead,2026-05-01,,\nL1,mql,2026-05-02,,\n" + "\n".join(ROWS) + "\n"
    with open("events.csv.gz", "wb") as f:
        f.write(gzip.compress(text.encode()))
    log = read_event_log("events.csv.gz", b2b)
    assert error(log, b2b) == f"events.csv.gz, row 10, column stage: {MOVE}"


def test_parquet_names_the_record(b2b):
    frame = pd.DataFrame([r.split(",") for r in ROWS],
                         columns=["lead_id", "stage", "entered_at", "amount", "segment"])
    frame.to_parquet("events.parquet")
    log = read_event_log("events.parquet", b2b)
    assert error(log, b2b) == f"events.parquet, record 7, column stage: {MOVE}"


def test_backtest_truncation_keeps_the_rows(b2b):
    # L1 enters after the cutoff, at the top of the file: truncation drops its rows.
    text = HEADER + "L1,lead,2026-03-20,,\nL1,mql,2026-03-25,,\n" + "\n".join(ROWS) + "\n"
    known = bt.truncate(read_event_log(write(text), b2b), dt.date(2026, 3, 10))
    assert len(known.frame) == len(ROWS) and len(known.pos) == len(ROWS)
    assert error(known, b2b, dt.date(2026, 3, 10)) == f"events.csv, row 10, column stage: {MOVE}"


def test_a_log_built_in_memory_names_the_file_only(b2b):
    log = read_event_log(write(HEADER + "\n".join(ROWS) + "\n"), b2b)
    bare = EventLog(frame=log.frame, path="memory", as_of=None, sha256="")
    assert error(bare, b2b) == f"memory: {MOVE}"


# ---- CRM exports: the export's row and stage column ------------------------------------------

def test_hubspot_names_the_row_and_the_lifecycle_date_column(b2b):
    text = ("hs_object_id,email,hs_lifecyclestage_lead_date,"
            "hs_lifecyclestage_marketingqualifiedlead_date,"
            "hs_lifecyclestage_salesqualifiedlead_date,hs_lifecyclestage_customer_date,amount\n"
            "202,b@x.com,2024-01-02,2024-01-05,2024-01-09,,\n"
            "201,a@x.com,2024-01-03,2024-01-06,,,\n"
            "105,c@x.com,2024-01-02,2024-01-05,2024-01-09,2024-02-01,500\n")
    log = read_history(write(text, "contacts.csv"), b2b, format="hubspot")
    assert error(log, b2b, dt.date(2024, 3, 31)) == (
        "contacts.csv, row 4, column hs_lifecyclestage_customer_date: lead 105 moves sql -> won "
        "on 2024-02-01, a move the model b2b does not declare; declare it in [moves.sql] or "
        "pass --undeclared censor")


def test_salesforce_names_the_row_and_the_stage_column(b2b):
    text = ("OpportunityId,StageName,CreatedDate,Amount,CloseDate\n"
            "006Z,Prospecting,2024-01-05T09:00:00.000+0000,100,\n"
            "006B,Closed Won,2024-02-10T08:00:00.000+0000,1700,2024-02-01\n"
            "006Z,Closed Won,2024-02-03T08:00:00.000+0000,100,2024-02-01\n"
            "006B,SQL,2024-01-05T09:00:00.000+0000,1000,2024-03-31\n")
    log = read_history(write(text, "history.csv"), b2b, format="salesforce")
    assert error(log, b2b, dt.date(2024, 3, 31)) == (
        "history.csv, row 3, column StageName: lead 006B moves sql -> won on 2024-02-01, a move "
        "the model b2b does not declare; declare it in [moves.sql] or pass --undeclared censor")


def test_opportunities_names_the_row_and_the_status_column(b2b):
    text = ("deal_id,created_date,closed_date,status,amount\n"
            "Z1,2024-01-01,,Open,\n"
            "A1,2024-01-02,2024-02-01,Won,100\n")
    log = read_history(write(text, "deals.csv"), b2b, format="opportunities")
    assert error(log, b2b, dt.date(2024, 3, 31)) == (
        "deals.csv, row 3, column status: lead A1 moves lead -> won on 2024-02-01, a move the "
        "model b2b does not declare; declare it in [moves.lead] or pass --undeclared censor")


# ---- the command line ------------------------------------------------------------------------

def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_fit_fails_naming_the_row_and_writes_nothing(tmp_path):
    write(HEADER + "\n".join(ROWS) + "\n")
    out = invoke("fit", "events.csv", "--model", "b2b", "--out", "posterior.nc",
                 "--as-of", "2026-03-05", "--quiet")
    assert out.exit_code == 1
    assert out.stderr == f"forecast: error: events.csv, row 8, column stage: {MOVE}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.csv"]


def test_fit_of_an_export_names_the_export_row(tmp_path):
    write("deal_id,created_date,closed_date,status,amount\n"
          "Z1,2024-01-01,,Open,\n"
          "A1,2024-01-02,2024-02-01,Won,100\n", "deals.csv")
    out = invoke("fit", "deals.csv", "--model", "b2b", "--format", "opportunities",
                 "--out", "posterior.nc", "--as-of", "2024-02-05", "--quiet")
    assert out.exit_code == 1
    assert out.stderr.count("\n") == 1
    assert out.stderr.startswith("forecast: error: deals.csv, row 3, column status: lead A1 "
                                 "moves lead -> won on 2024-02-01")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deals.csv"]
