"""CRM importers (``forecast.importers``) and the plain-deal model (``models/opportunities.toml``).

Every test runs in its own temporary directory and names files relatively, so error messages
can be compared word for word (``crm.csv, row 3, column CloseDate: ...``).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import math
import os
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecast import hazards as hz
from forecast.eventlog import EventLog, InputError, open_pipeline, read_event_log
from forecast.importers import read_history, read_hubspot, read_opportunities, read_salesforce
from forecast.model import ModelError, bundled_models_dir, load_model
from forecast.parameters import default_parameters


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def deals():
    return load_model("opportunities")


@pytest.fixture(scope="module")
def consumer():
    return load_model("consumer")


def write(text: str, name: str = "crm.csv") -> str:
    """Write ``text`` (dedented, leading newline dropped) to ``name``."""
    with open(name, "w", encoding="utf-8", newline="") as f:
        f.write(textwrap.dedent(text).lstrip("\n"))
    return name


def error(path: str, model, format: str, **options) -> str:
    with pytest.raises(InputError) as exc:
        read_history(path, model, format=format, **options)
    message = str(exc.value)
    assert "\n" not in message
    return message


def rows(log: EventLog) -> list[tuple]:
    """The frame as (lead_id, stage, date, amount or None, segment) tuples."""
    f = log.frame
    return [(r.lead_id, r.stage, r.entered_at.strftime("%Y-%m-%d"),
             None if math.isnan(r.amount) else r.amount, r.segment) for r in f.itertuples()]


# ---- the entry point -------------------------------------------------------------------------

def test_eventlog_format_is_the_event_log_reader(b2b):
    path = write("lead_id,stage,entered_at\nL1,lead,2026-01-01\nL1,MQL,2026-01-02\n",
                 "history.csv")
    log = read_history(path, b2b, as_of=dt.date(2026, 1, 2))
    assert log.frame.equals(read_event_log(path, b2b).frame)
    assert log.as_of == dt.date(2026, 1, 2) and log.notes == ()
    with pytest.raises(TypeError, match="takes no options"):
        read_history(path, b2b, id_column="x")


def test_unknown_format(b2b):
    assert error(write("a\n1\n"), b2b, "pipedrive").startswith(
        "crm.csv: unknown history format 'pipedrive' (formats: eventlog, hubspot, salesforce, "
        "opportunities)")


# ---- HubSpot ---------------------------------------------------------------------------------

def dates(*stages: str) -> str:
    """HubSpot lifecycle date column names."""
    return ",".join(f"hs_lifecyclestage_{s}_date" for s in stages)


HUBSPOT = "\n".join([
    "hs_object_id,email," + dates("subscriber", "lead", "marketingqualifiedlead",
                                  "salesqualifiedlead", "opportunity", "customer", "other")
    + ",amount,source",
    "101,a@x.com,2024-01-02T09:00:00.000Z,2024-01-02T10:00:00Z,2024-01-05T00:00:00Z,"
    "2024-01-09T12:00:00Z,2024-01-20T08:30:00Z,2024-02-01T16:00:00Z,,25000,partner",
    "102,b@x.com,,2024-01-10T00:00:00Z,2024-01-08T15:00:00Z,,,,2024-02-10T00:00:00Z,,Paid_Search",
    "103,c@x.com,,,,,,,,,",
    "104,d@x.com,,2024-01-03,,,,,,120.5,",
    "",
])


def test_hubspot_happy_path(b2b):
    log = read_history(write(HUBSPOT), b2b, format="hubspot", segment_column="source")
    assert rows(log) == [
        # subscriber and lead are both `lead`: one stay, from the first date
        ("101", "lead", "2024-01-02", None, "partner"),
        ("101", "mql", "2024-01-05", None, "partner"),
        ("101", "sql", "2024-01-09", None, "partner"),
        ("101", "opportunity", "2024-01-20", None, "partner"),
        ("101", "won", "2024-02-01", 25000.0, "partner"),  # the amount goes on the last event
        # the MQL date precedes the lead date: sorted by date, not an error
        ("102", "mql", "2024-01-08", None, "paid_search"),
        ("102", "lead", "2024-01-10", None, "paid_search"),
        ("102", "nurture", "2024-02-10", None, "paid_search"),
        ("104", "lead", "2024-01-03", 120.5, "organic"),
    ]
    assert log.notes == ("skipped 1 contact without any lifecycle date",)
    assert log.path == "crm.csv" and len(log.sha256) == 64


def test_hubspot_ui_labels_and_exported_date_forms(b2b):
    labels = ("Became a Lead Date,Became a Marketing Qualified Lead Date,"
              "Became an Opportunity Date,Became a Customer Date")
    path = write(f"""\
        Record ID,First Name,{labels},Recent Deal Amount
        7,Ann,3/9/2024,2024-03-10 14:05,03/12/2024 9:30 PM,2024-03-31T23:59:59+02:00,
        8,Bob,2024-03-01 00:00,,,,
        """)
    log = read_history(path, b2b, format="hubspot", as_of=dt.date(2024, 3, 31))
    assert rows(log) == [
        ("7", "lead", "2024-03-09", None, "organic"),
        ("7", "mql", "2024-03-10", None, "organic"),
        ("7", "opportunity", "2024-03-12", None, "organic"),
        ("7", "won", "2024-03-31", None, "organic"),  # the date as written, offset ignored
        ("8", "lead", "2024-03-01", None, "organic"),
    ]


def test_day_first_dates_read_with_date_order(b2b, deals):
    """European exports write day/month/year. Read month-first (US), a date that only reads
    day-first is an error that says so; --date-order day-first reads them (dots and dashes
    too), and then a month-first date is the error."""
    labels = "Record ID,Became a Lead Date,Became a Marketing Qualified Lead Date"
    path = write(f"{labels}\n7,03/02/2024,25/02/2024 14:05\n")
    assert error(path, b2b, "hubspot") == (
        "crm.csv, row 2, column Became a Marketing Qualified Lead Date: '25/02/2024 14:05' is "
        "not a date (it reads as day/month/year: pass --date-order day-first)")
    log = read_history(path, b2b, format="hubspot", date_order="day-first")
    assert rows(log) == [("7", "lead", "2024-02-03", None, "organic"),
                         ("7", "mql", "2024-02-25", None, "organic")]
    path = write("OpportunityId,StageName,CreatedDate,CloseDate\n"
                 "A,Prospecting,01.03.2024 09:00,\nA,Closed Won,13-03-2024 10:00,14.03.2024\n")
    assert rows(read_salesforce(path, b2b, date_order="day-first")) == [
        ("A", "opportunity", "2024-03-01", None, "organic"),
        ("A", "won", "2024-03-14", None, "organic")]
    assert error(path, b2b, "salesforce").endswith(
        "'01.03.2024 09:00' is not a date (it reads as day/month/year: pass --date-order "
        "day-first)")
    path = write("deal_id,created_date,closed_date,status\nD1,02/03/2024,03/25/2024,Won\n")
    assert error(path, deals, "opportunities", date_order="day-first") == (
        "crm.csv, row 2, column closed_date: '03/25/2024' is not a date (it reads as "
        "month/day/year: drop --date-order day-first)")
    assert error(path, deals, "opportunities", date_order="dmy") == (
        "crm.csv: date order 'dmy' is not one of month-first, day-first")
    # Dashes read month-first too (12-25-2024 is Christmas), so nothing to hint at.
    path = write("deal_id,created_date,closed_date,status\nD1,03-01-2024,12-25-2024,Won\n")
    assert rows(read_history(path, deals, format="opportunities")) == [
        ("D1", "opportunity", "2024-03-01", None, "GTX Basic"),
        ("D1", "won", "2024-12-25", None, "GTX Basic")]
    path = write("deal_id,created_date,closed_date,status\nD1,29/02/2023,,Open\n")
    assert error(path, deals, "opportunities", date_order="day-first").endswith(
        "'29/02/2023' is not a date (expected ISO 8601 like 2017-03-01 or "
        "2017-03-01T14:05:00Z, or day/month/year like 1/3/2017 or 01.03.2017 (--date-order "
        "day-first))")
    # Neither way a date: the general hint.
    path = write("deal_id,created_date,closed_date,status\nD1,32/13/2024,,Open\n")
    assert error(path, deals, "opportunities").endswith(
        "'32/13/2024' is not a date (expected ISO 8601 like 2017-03-01 or 2017-03-01T14:05:00Z, "
        "or US month/day/year like 3/1/2017 (day/month/year with --date-order day-first))")


def test_dates_that_read_either_way_are_noted(b2b, deals):
    """A file whose every slashed date has both numbers at 12 or below reads as other dates
    the other way round: it is read in the order asked for, with a note naming the first such
    date and the option. One date past the 12th (in any date column) settles it: no note."""
    path = write("deal_id,created_date,closed_date,status\n"
                 "D1,02/03/2024,04/03/2024,Won\nD2,03/03/2024,,Open\n")
    log = read_history(path, deals, format="opportunities")
    assert rows(log)[:2] == [("D1", "opportunity", "2024-02-03", None, "GTX Basic"),
                             ("D1", "won", "2024-04-03", None, "GTX Basic")]
    assert log.notes == (
        "no date shows whether the day or the month comes first (none has a number above "
        "12), so each also reads as day/month/year (the first: '02/03/2024', crm.csv, row 2, "
        "column created_date); they were read as month/day/year: pass --date-order day-first "
        "if the export writes day/month/year",)
    log = read_history(path, deals, format="opportunities", date_order="day-first")
    assert rows(log)[1] == ("D1", "won", "2024-03-04", None, "GTX Basic")
    assert log.notes[0].endswith("they were read as day/month/year: drop --date-order "
                                 "day-first if the export writes month/day/year")
    for text in ("D1,02/03/2024,04/13/2024,Won\n",  # a day past the 12th in another column
                 "D1,2024-02-03,2024-04-03,Won\n",  # ISO: nothing to tell
                 "D1,03/03/2024,04/04/2024,Won\n"):  # the same date either way
        path = write("deal_id,created_date,closed_date,status\n" + text)
        assert read_history(path, deals, format="opportunities").notes == (), text
    # Salesforce and HubSpot too (the first of their date columns that reads either way).
    path = write("OpportunityId,StageName,CreatedDate,CloseDate\n"
                 "A,Prospecting,01/03/2024 09:00,\nA,Closed Won,01/05/2024,01/05/2024\n")
    assert "(the first: '01/03/2024 09:00', crm.csv, row 2, column CreatedDate)" in \
        read_salesforce(path, b2b).notes[-1]
    path = write("Record ID,Became a Lead Date,Became a Marketing Qualified Lead Date\n"
                 "7,2024-02-03,05/02/2024\n")
    assert "column Became a Marketing Qualified Lead Date)" in \
        read_history(path, b2b, format="hubspot").notes[0]

def test_date_order_on_the_command_line(deals):
    from click.testing import CliRunner

    from forecast.cli import main
    write("deal_id,created_date,closed_date,status,product\n"
          "D1,02/03/2024,25/03/2024,Won,GTX Basic\nD2,20/03/2024,,Open,GTX Basic\n")
    base = ["run", "--model", "opportunities", "--history", "crm.csv", "--paths", "50",
            "--horizon", "30", "--segment-column", "product", "--history-format"]
    result = CliRunner().invoke(main, [*base, "opportunities", "--date-order", "day-first"])
    assert result.exit_code == 0, result.output
    assert "as of 2024-03-25" in result.output
    result = CliRunner().invoke(main, [*base, "opportunities"])
    assert result.exit_code == 1 and "pass --date-order day-first" in result.output
    result = CliRunner().invoke(main, [*base, "eventlog", "--date-order", "day-first"])
    assert result.exit_code == 1
    assert "--date-order: not an option of --history-format eventlog" in result.output
    result = CliRunner().invoke(main, [*base, "opportunities", "--date-order", "dmy"])
    assert result.exit_code == 2 and "'dmy' is not one of 'month-first', 'day-first'" in \
        result.output


def test_hubspot_same_day_ties_follow_the_lifecycle(b2b):
    path = write(f"""\
        vid,{dates("customer", "opportunity", "lead")}
        1,2024-05-01T09:00:00Z,2024-05-01T10:00:00Z,2024-05-01T11:00:00Z
        """)
    log = read_hubspot(path, b2b)
    assert log.frame["stage"].tolist() == ["lead", "opportunity", "won"]


def test_hubspot_id_column_option_and_evangelist_ignored(b2b):
    path = write(f"""\
        Contact,{dates("lead", "customer", "evangelist")}
        c1,2024-01-01,2024-01-05,2024-02-01
        """)
    log = read_history(path, b2b, format="hubspot", id_column="contact")
    assert log.frame["stage"].tolist() == ["lead", "won"]
    # Read the evangelist column and the model (no such CRM stage) refuses it.
    message = error(path, b2b, "hubspot", id_column="contact", skip_stages=())
    assert message.startswith("crm.csv, row 2, column hs_lifecyclestage_evangelist_date: the "
                              "HubSpot lifecycle stage 'Evangelist' is not a stage of model b2b")
    assert "skip_stages" in error(path, b2b, "hubspot", id_column="contact",
                                  skip_stages=("champion",))
    log = read_hubspot(path, b2b, id_column="contact", skip_stages="Evangelist")  # one name
    assert log.frame["stage"].tolist() == ["lead", "won"]


def test_hubspot_parquet_with_timestamps(b2b):
    pd.DataFrame({
        "hs_object_id": [5, 6],
        "hs_lifecyclestage_lead_date": pd.to_datetime(["2024-01-01 23:30", "2024-01-02 00:00"]),
        "hs_lifecyclestage_marketingqualifiedlead_date": pd.to_datetime([None, "2024-01-03"]),
    }).to_parquet("contacts.parquet")
    assert rows(read_hubspot("contacts.parquet", b2b)) == [
        ("5", "lead", "2024-01-01", None, "organic"),
        ("6", "lead", "2024-01-02", None, "organic"),
        ("6", "mql", "2024-01-03", None, "organic")]


def test_hubspot_csv_gz(b2b):
    with gzip.open("contacts.csv.gz", "wt", encoding="utf-8") as f:
        f.write("hs_object_id,hs_lifecyclestage_lead_date\n1,2024-01-01\n")
    assert read_hubspot("contacts.csv.gz", b2b).frame["stage"].tolist() == ["lead"]


HUB_HEADER = (f"hs_object_id,{dates('lead', 'marketingqualifiedlead')},Recent Deal Amount,"
              "Original Source\n")


@pytest.mark.parametrize(("body", "options", "expected"), [
    ("1,2024-01-01,,,\n2,2024-13-01,,,\n", {},
     "crm.csv, row 3, column hs_lifecyclestage_lead_date: '2024-13-01' is not a date"),
    ("1,2024-01-01,2/30/2024,,\n", {},
     "crm.csv, row 2, column hs_lifecyclestage_marketingqualifiedlead_date: '2/30/2024' is not "
     "a date"),
    ("1,0001-01-01,,,\n", {},
     "crm.csv, row 2, column hs_lifecyclestage_lead_date: '0001-01-01' is not a plausible date"),
    ("1,2024-01-01,,-5,\n", {},
     "crm.csv, row 2, column Recent Deal Amount: '-5' is negative"),
    ("1,2024-01-01,,$5,\n", {},
     "crm.csv, row 2, column Recent Deal Amount: '$5' is not a number"),
    ("1,2024-01-01,,,\n,2024-01-01,,,\n", {},
     "crm.csv, row 3, column hs_object_id: hs_object_id is empty"),
    ("1,2024-01-01,,,\n2,2024-01-01,,,\n1,2024-01-02,,,\n", {},
     "crm.csv, row 4, column hs_object_id: contact '1' is also on row 2; a contacts export has "
     "one row per contact"),
    ("1,2024-01-01,,,\n2,2024-01-01,2024-01-08,,\n", {"as_of": dt.date(2024, 1, 7)},
     "crm.csv, row 3, column hs_lifecyclestage_marketingqualifiedlead_date: 2024-01-08 is after "
     "--as-of 2024-01-07"),
    ("1,2024-01-01,,,TV\n", {"segment_column": "original source"},
     "crm.csv, row 2, column Original Source: 'TV' is not a segment of model b2b"),
])
def test_hubspot_errors(b2b, body, options, expected):
    assert error(write(HUB_HEADER + body), b2b, "hubspot", **options).startswith(expected)


def test_hubspot_event_after_a_close(b2b):
    path = write("""\
        hs_object_id,hs_lifecyclestage_customer_date,hs_lifecyclestage_other_date
        1,2024-01-05,2024-01-09
        """)
    assert error(path, b2b, "hubspot").startswith(
        "crm.csv, row 2, column hs_lifecyclestage_other_date: lead '1' was already closed (won "
        "at row 2)")


def test_hubspot_unknown_stage(consumer):
    # The consumer model has no MQL stage and does not map "Marketing Qualified Lead".
    message = error(write(HUB_HEADER + "1,2024-01-01,,,\n2,2024-01-01,2024-01-02,,\n"),
                    consumer, "hubspot")
    assert message.startswith(
        "crm.csv, row 3, column hs_lifecyclestage_marketingqualifiedlead_date: the HubSpot "
        "lifecycle stage 'Marketing Qualified Lead' is not a stage of model consumer")
    assert "[crm_stages]" in message


def test_hubspot_missing_columns(b2b):
    message = error(write("email,hs_lifecyclestage_lead_date\nx,2024-01-01\n"), b2b, "hubspot")
    assert message.startswith("crm.csv: missing column hs_object_id or Record ID or vid or "
                              "Contact ID (the contact id; columns found: 'email', ")
    assert message.endswith("name it with --id-column")
    message = error(write("hs_object_id,email\n1,x\n"), b2b, "hubspot")
    assert message.startswith("crm.csv: no lifecycle date columns")
    message = error(write("Record ID,hs_lifecyclestage_lead_date\n1,\n"), b2b, "hubspot")
    assert message.startswith("crm.csv: no contact has a lifecycle date")
    assert "column Contact" in error(write("hs_object_id,x\n1,2\n"), b2b, "hubspot",
                                     id_column="Contact").replace("missing column", "column")


@pytest.mark.parametrize(("text", "start"), [
    ("", "crm.csv: the file is empty"),
    ("hs_object_id,hs_lifecyclestage_lead_date\n", "crm.csv: no data rows"),
])
def test_hubspot_empty_file(b2b, text, start):
    assert error(write(text), b2b, "hubspot").startswith(start)


# ---- Salesforce ------------------------------------------------------------------------------

SF_HEADER = "OpportunityId,StageName,CreatedDate,Amount,CloseDate\n"


def test_salesforce_happy_path(b2b):
    path = write(SF_HEADER + textwrap.dedent("""\
        006B,Prospecting,2024-02-01T09:00:00.000+0000,,2024-06-30
        006A,Negotiation/Review,2024-01-20T10:00:00.000+0000,1500,2024-03-31
        006A,Prospecting,2024-01-05T09:00:00.000+0000,1000,2024-03-31
        006A,Qualification,2024-01-05T11:00:00.000+0000,1000,2024-03-31
        006A,Needs Analysis,2024-01-10T11:00:00.000+0000,1000,2024-04-30
        006A,Closed Won,2024-02-03T08:00:00.000+0000,1500,2024-02-01
        006A,Closed Won,2024-02-10T08:00:00.000+0000,1700,2024-02-01
        006C,Qualification,2024-01-02T00:00:00.000+0000,200,
        006C,Closed Lost,2024-01-09T00:00:00.000+0000,200,
        """))
    log = read_history(path, b2b, format="salesforce")
    assert rows(log) == [
        ("006A", "opportunity", "2024-01-05", 1000.0, "organic"),  # in CreatedDate order
        ("006A", "opportunity", "2024-01-20", 1500.0, "organic"),  # a new amount
        ("006A", "won", "2024-02-01", 1700.0, "organic"),  # CloseDate; the later edit folded
        ("006B", "opportunity", "2024-02-01", None, "organic"),
        ("006C", "opportunity", "2024-01-02", 200.0, "organic"),
        ("006C", "lost", "2024-01-09", 200.0, "organic"),  # no CloseDate: CreatedDate
    ]
    assert log.notes == ("folded 3 history rows that stay in the same model state without a "
                         "new amount",)


def test_salesforce_report_labels_and_segment(b2b):
    path = write("""\
        Opportunity ID,Stage,Created Date,Amount,Lead Source
        1,Prospecting,1/5/2024 9:00 AM,,Partner
        1,Closed Won,1/5/2024 8:00 AM,300,
        """)
    # Same day: the earlier time comes first, whatever the file order: won at 8:00, then
    # back to prospecting at 9:00, a reopened deal (open, the close dropped).
    log = read_salesforce(path, b2b, segment_column="Lead Source")
    # (the close's amount goes on with the reopened deal)
    assert rows(log) == [("1", "opportunity", "2024-01-05", 300.0, "partner")]
    assert log.notes[-1].startswith("1 deal closed and then reopened or closed the other way "
                                    "(the first: '1', crm.csv, row 3, column Stage): dropped 1 "
                                    "close row")
    path = write("""\
        Opportunity ID,Stage,Created Date,Amount,Lead Source
        1,Closed Won,1/5/2024 3:00 PM,300,
        1,Prospecting,1/5/2024 9:00 AM,,Partner
        """)
    assert rows(read_salesforce(path, b2b, segment_column="Lead Source")) == [
        ("1", "opportunity", "2024-01-05", None, "partner"),
        ("1", "won", "2024-01-05", 300.0, "partner")]


@pytest.mark.parametrize(("body", "options", "expected"), [
    ("1,Prospecting,2024-01-01,,\n1,Demo Booked,2024-01-02,,\n", {},
     "crm.csv, row 3, column StageName: 'Demo Booked' is not a stage of model b2b"),
    ("1,Prospecting,01/32/2024,,\n", {},
     "crm.csv, row 2, column CreatedDate: '01/32/2024' is not a date"),
    ("1,Prospecting,,,\n", {},
     "crm.csv, row 2, column CreatedDate: the date is empty"),
    ("1,Prospecting,2024-01-01,,\n1,Closed Won,2024-01-03,,2024-1-3\n", {},
     "crm.csv, row 3, column CloseDate: '2024-1-3' is not a date"),
    ("1,Prospecting,2024-01-01,-10,\n", {},
     "crm.csv, row 2, column Amount: '-10' is negative"),
    ("1,Prospecting,2024-01-01,\"1,000\",\n", {},
     "crm.csv, row 2, column Amount: '1,000' is not a number"),
    ("1,Prospecting,2024-01-01,,\n2,Prospecting,2024-01-09,,\n", {"as_of": dt.date(2024, 1, 8)},
     "crm.csv, row 3, column CreatedDate: 2024-01-09 is after --as-of 2024-01-08"),
    ("1,Prospecting,2024-01-01,,\n1,Closed Won,2024-01-05,,2024-01-09\n",
     {"as_of": dt.date(2024, 1, 8)},
     "crm.csv, row 3, column CloseDate: 2024-01-09 is after --as-of 2024-01-08"),
    ("1,Prospecting,2024-01-01,5,\n2,Prospecting,2024-01-01,,\n1,Prospecting,2024-01-01,5,\n", {},
     "crm.csv, row 4, column OpportunityId: this row repeats row 2 (same OpportunityId, "
     "StageName, CreatedDate, Amount and CloseDate); delete the duplicate"),
    (" ,Prospecting,2024-01-01,,\n", {},
     "crm.csv, row 2, column OpportunityId: OpportunityId is empty"),
])
def test_salesforce_errors(b2b, body, options, expected):
    assert error(write(SF_HEADER + body), b2b, "salesforce", **options).startswith(expected)


def test_salesforce_reopened_deals_keep_only_their_final_close(b2b):
    """Salesforce lets a closed deal reopen; nightly runs on such exports must not stop. The
    closes a deal moved on from are dropped: it stays in its stage until the reopening."""
    path = write(SF_HEADER + textwrap.dedent("""\
        A,Prospecting,2024-01-02,100,
        A,Closed Lost,2024-01-10,,2024-01-09
        A,Closed Lost,2024-01-11,,2024-01-09
        A,Negotiation/Review,2024-02-01,150,
        A,Closed Won,2024-02-20,160,2024-02-19
        B,Negotiation/Review,2024-01-03,,
        B,Closed Won,2024-01-15,500,2024-01-15
        B,Prospecting,2024-03-01,,
        C,Prospecting,2024-01-04,,
        C,Closed Won,2024-01-20,700,2024-01-20
        C,Closed Lost,2024-01-25,,2024-01-24
        D,Prospecting,2024-01-05,,
        D,Closed Won,2024-01-30,900,2024-01-30
        """))
    log = read_salesforce(path, b2b)
    assert rows(log) == [
        ("A", "opportunity", "2024-01-02", 100.0, "organic"),
        ("A", "opportunity", "2024-02-01", 150.0, "organic"),  # a new amount on reopening
        ("A", "won", "2024-02-19", 160.0, "organic"),  # only the final close
        ("B", "opportunity", "2024-01-03", None, "organic"),  # reopened: open since 01-03,
        ("B", "opportunity", "2024-03-01", 500.0, "organic"),  # the dropped close's amount on
        ("C", "opportunity", "2024-01-04", None, "organic"),
        ("C", "lost", "2024-01-24", 700.0, "organic"),  # won, then lost: lost (its amount on)
        ("D", "opportunity", "2024-01-05", None, "organic"),
        ("D", "won", "2024-01-30", 900.0, "organic"),  # untouched
    ]
    assert log.notes[-1] == (
        "3 deals closed and then reopened or closed the other way (the first: 'A', crm.csv, "
        "row 3, column StageName): dropped 4 close rows that a later row undid; only a deal's "
        "final close counts, and until a reopening it stays in its stage before the close")
    # Inside their closed spans A and B are open (the closes were undone), aged from their
    # stage entries; at the end only B is, open since 01-03 with no amount.
    inside = open_pipeline(log, b2b, dt.date(2024, 1, 20))
    assert inside.age.tolist() == [18, 17, 16, 15]
    end = open_pipeline(log, b2b, dt.date(2024, 3, 1))
    assert end.age.tolist() == [58] and end.amount.tolist() == [500.0]


def test_salesforce_ties_re_closes_and_amounts_of_reopened_deals(b2b):
    """Review cases. (1) Rows of one day without times, newest first: the close goes after
    that day's stage change, not before it (no reopening read into file order). (2) A deal
    closed again with the CloseDate of its first close (Salesforce keeps it on reopening):
    dated by CreatedDate, and noted, instead of an error that stopped every run. (3) An amount
    known only on a dropped close goes on to the deal's next row."""
    path = write(SF_HEADER + textwrap.dedent("""\
        A,Closed Won,2024-01-10,900,2024-01-10
        A,Negotiation/Review,2024-01-10,900,
        A,Prospecting,2024-01-02,500,
        B,Prospecting,2024-01-02,,
        B,Closed Won,2024-01-10,400,2024-01-10
        B,Negotiation/Review,2024-01-15,,
        B,Closed Won,2024-01-20,,2024-01-10
        """))
    log = read_salesforce(path, b2b)
    assert rows(log) == [
        ("A", "opportunity", "2024-01-02", 500.0, "organic"),
        ("A", "opportunity", "2024-01-10", 900.0, "organic"),
        ("A", "won", "2024-01-10", 900.0, "organic"),  # still won
        ("B", "opportunity", "2024-01-02", None, "organic"),
        ("B", "opportunity", "2024-01-15", 400.0, "organic"),  # the dropped close's amount
        ("B", "won", "2024-01-20", None, "organic"),  # by CreatedDate (the deal's amount:
        # its last known, 400)
    ]
    assert log.notes[-2].startswith("1 deal closed and then reopened or closed the other way "
                                    "(the first: 'B', crm.csv, row 6, column StageName)")
    assert log.notes[-1] == ("1 reopened deal closed again with a CloseDate before the "
                             "reopening (the first: crm.csv, row 8, column CloseDate): dated "
                             "by CreatedDate instead")
    # A deal never reopened keeps the error for a CloseDate before its last stage change.
    path = write(SF_HEADER + "C,Prospecting,2024-01-02,,\nC,Closed Won,2024-01-20,,2024-01-01\n")
    assert "is earlier than the deal's previous stage change" in error(path, b2b, "salesforce")


def test_a_reopened_salesforce_deal_runs(b2b):
    """End to end: a forecast from an export with a reopened deal exits 0 and notes it."""
    from click.testing import CliRunner

    from forecast.cli import main
    write(SF_HEADER + "A,Prospecting,2024-01-02,100,\nA,Closed Lost,2024-01-10,,\n"
          "A,Negotiation/Review,2024-02-01,150,\n")
    result = CliRunner().invoke(main, ["run", "--history", "crm.csv", "--history-format",
                                       "salesforce", "--paths", "50", "--horizon", "30"])
    assert result.exit_code == 0, result.output
    assert "note: 1 deal closed and then reopened" in result.output
    # the report says it on stderr too, not only in its page (a cron job reads stderr)
    result = CliRunner().invoke(main, ["report", "--history", "crm.csv", "--history-format",
                                       "salesforce", "--no-forecast", "--out", "r.html"])
    assert result.exit_code == 0, result.output
    assert "note: 1 deal closed and then reopened" in result.output


def test_salesforce_close_date_before_an_earlier_stage_change(b2b):
    path = write(SF_HEADER + "1,Prospecting,2024-01-01,,\n1,Negotiation/Review,2024-01-10,,\n"
                 "1,Closed Won,2024-01-12,10,2024-01-08\n")
    assert error(path, b2b, "salesforce") == (
        "crm.csv, row 4, column CloseDate: 2024-01-08 is earlier than the deal's previous stage "
        "change (row 3, CreatedDate 2024-01-10); correct the CloseDate, or leave it empty to "
        "date the close by CreatedDate")
    # Sorted by CreatedDate first: the file order does not matter.
    path = write(SF_HEADER + "1,Closed Won,2024-01-12,10,2024-01-08\n1,Prospecting,2024-01-01,,\n"
                 "1,Negotiation/Review,2024-01-10,,\n")
    assert error(path, b2b, "salesforce").startswith(
        "crm.csv, row 2, column CloseDate: 2024-01-08 is earlier than the deal's previous stage "
        "change (row 4, CreatedDate 2024-01-10)")


def test_salesforce_missing_column_and_empty_file(b2b):
    message = error(write("OpportunityId,CreatedDate,Amount\n1,2024-01-01,\n"), b2b,
                    "salesforce")
    assert message.startswith("crm.csv: missing column StageName or Stage or To Stage (the "
                              "stage name; columns found: 'OpportunityId', 'CreatedDate', "
                              "'Amount'); name it with --stage-column")
    assert error(write(""), b2b, "salesforce").startswith("crm.csv: the file is empty")
    assert error(write(SF_HEADER + ",,,,\n"), b2b, "salesforce").startswith(
        "crm.csv: no data rows")


def test_salesforce_columns_can_be_turned_off(b2b):
    path = write(SF_HEADER + "1,Prospecting,2024-01-01,-1,x\n1,Closed Won,2024-01-05,,y\n")
    log = read_salesforce(path, b2b, amount_column=None, close_column=None)
    assert rows(log) == [("1", "opportunity", "2024-01-01", None, "organic"),
                         ("1", "won", "2024-01-05", None, "organic")]


# ---- plain deal tables -----------------------------------------------------------------------

DEALS = """\
    opportunity_id,sales_agent,product,deal_stage,engage_date,close_date,close_value
    D1,Ann,GTXPro,Won,10/20/2016,3/1/2017,4514
    D2,Bob,MG Special,Lost,10/25/2016,3/11/2017,0
    D3,Ann,gtx basic,Engaging,11/2/2016,,
    D4,Cy,GTX Plus Pro,Prospecting,,,
    D5,Cy,,Engaging,12/1/2016,,800
    """


def test_opportunities_happy_path(deals):
    log = read_history(write(DEALS), deals, format="opportunities", segment_column="product")
    assert rows(log) == [
        ("D1", "opportunity", "2016-10-20", None, "GTX Pro"),  # alias GTXPro -> GTX Pro
        ("D1", "won", "2017-03-01", 4514.0, "GTX Pro"),
        ("D2", "opportunity", "2016-10-25", None, "MG Special"),
        ("D2", "lost", "2017-03-11", None, "MG Special"),  # close_value 0 is no amount
        ("D3", "opportunity", "2016-11-02", None, "GTX Basic"),
        ("D5", "opportunity", "2016-12-01", 800.0, "GTX Basic"),  # default segment
    ]
    assert log.notes == ("skipped 1 open row without engage_date (not yet in the modelled "
                         "funnel)",)


def test_opportunities_custom_columns_statuses_and_entry_stage(b2b):
    path = write("""\
        Deal,Opened,Closed,Result,Value
        a,2024-01-01,2024-02-01,Booked,100
        b,2024-01-02,2024-01-03,Dropped,0
        c,2024-01-03,2024-12-31,pending,50
        """)
    options = dict(id_column="Deal", created_column="Opened", closed_column="Closed",
                   status_column="Result", amount_column="Value", won_values=["booked"],
                   lost_values="dropped")
    message = error(path, b2b, "opportunities", **options)  # 'pending': no status of b2b
    assert message.startswith("crm.csv, row 4, column Result: 'pending' is not a won, lost or "
                              "open status of model b2b (won: booked, closed won, customer, won;")
    assert message.endswith("map it to a state in the model's [crm_stages], or name it with "
                            "--won-values, --lost-values or --open-values")
    options["open_values"] = ["Pending"]
    log = read_opportunities(path, b2b, entry_stage="SQL", **options)
    assert rows(log) == [("a", "sql", "2024-01-01", None, "organic"),
                         ("a", "won", "2024-02-01", 100.0, "organic"),
                         ("b", "sql", "2024-01-02", None, "organic"),
                         ("b", "lost", "2024-01-03", None, "organic"),
                         ("c", "sql", "2024-01-03", 50.0, "organic")]
    # The model's entry stage by default; an open deal's expected close date is no event.
    log = read_opportunities(path, b2b, as_of=dt.date(2024, 2, 1), **options)
    assert log.frame["stage"].tolist()[::2] == ["lead", "lead", "lead"]
    message = error(path, b2b, "opportunities", entry_stage="won", **options)
    assert message.startswith("crm.csv: entry_stage 'won' is not an active stage of model b2b")
    # A status with two meanings: given twice, or given against the model's [crm_stages].
    assert error(path, b2b, "opportunities", **{**options, "lost_values": ["booked"]}) \
        == "crm.csv: status 'booked' is in two of the won, lost and open values; give each " \
           "status one meaning"
    assert error(path, b2b, "opportunities", **{**options, "won_values": ["Disqualified"]}) \
        == "crm.csv: status 'disqualified' is given as won, but the model b2b reads it as " \
           "lost; give each status one meaning"


def test_opportunities_statuses_come_from_the_model(deals, tmp_path):
    """Statuses are read through the model's [crm_stages]; a status it does not know is an
    error, never an open deal (a typo must not reopen a won deal)."""
    booked = DEALS.replace(",Won,", ",Booked,")
    text = Path(deals.path).read_text().replace('"Won" = "won"', '"Won" = "won"\n"Booked" = "won"')
    path = tmp_path / "booked.toml"
    path.write_text(text)
    log = read_history(write(booked), load_model(path), format="opportunities",
                       segment_column="product")
    assert rows(log)[1] == ("D1", "won", "2017-03-01", 4514.0, "GTX Pro")
    message = error(write(booked), deals, "opportunities", segment_column="product")
    assert message.startswith("crm.csv, row 2, column deal_stage: 'Booked' is not a won, lost "
                              "or open status of model opportunities")
    typo = DEALS.replace(",Won,", ",Wonn,")
    assert error(write(typo), deals, "opportunities").startswith(
        "crm.csv, row 2, column deal_stage: 'Wonn' is not a won, lost or open status")
    # Values given add to the model's; "" names a blank status (an error unless named).
    log = read_history(write(booked), deals, format="opportunities", won_values=["booked"])
    assert [r[1] for r in rows(log)][:2] == ["opportunity", "won"]
    blank = DEALS.replace(",Engaging,11/2/2016", ",,11/2/2016")
    assert error(write(blank), deals, "opportunities").startswith(
        "crm.csv, row 4, column deal_stage: '' is not a won, lost or open status")
    log = read_history(write(blank), deals, format="opportunities", open_values=[""])
    assert ("D3", "opportunity", "2016-11-02", None, "GTX Basic") in rows(log)
    # A status the model maps to nurture is not closed: open (b2b maps "Recycled" there).
    text = OPP_HEADER + "D1,organic,Recycled,10/20/2016,,\n"
    assert rows(read_history(write(text), load_model("b2b"), format="opportunities",
                             segment_column="product"))[0][1] == "lead"


OPP_HEADER = "opportunity_id,product,deal_stage,engage_date,close_date,close_value\n"


@pytest.mark.parametrize(("body", "options", "expected"), [
    ("D1,GTX Basic,Won,10/20/2016,3/1/2017,abc\n", {},
     "crm.csv, row 2, column close_value: 'abc' is not a number"),
    ("D1,GTX Basic,Won,10/20/2016,3/1/2017,-4\n", {},
     "crm.csv, row 2, column close_value: '-4' is negative"),
    ("D1,GTX Basic,Won,10/20/2016,3/1/2017,1\nD2,GTX Basic,Lost,20/10/2016,3/1/2017,0\n", {},
     "crm.csv, row 3, column engage_date: '20/10/2016' is not a date"),
    ("D1,GTX Basic,Won,10/20/2016,,1\n", {},
     "crm.csv, row 2, column close_date: close_date is empty, but the deal is won (deal_stage "
     "'Won'); a closed deal needs its closed date"),
    ("D1,GTX Basic,Lost,,3/1/2017,0\n", {},
     "crm.csv, row 2, column engage_date: engage_date is empty, but the deal is lost"),
    ("D1,GTX Basic,Won,10/20/2016,10/19/2016,5\n", {},
     "crm.csv, row 2, column close_date: 2016-10-19 is before engage_date 2016-10-20 on the "
     "same row; a deal cannot close before it was created"),
    ("D1,GTX Basic,Won,10/20/2016,3/1/2017,5\n", {"as_of": dt.date(2017, 2, 28)},
     "crm.csv, row 2, column close_date: 2017-03-01 is after --as-of 2017-02-28"),
    ("D1,GTX Basic,Engaging,10/20/2016,,\nD2,GTX Basic,Engaging,10/21/2016,,\n"
     "D1,GTX Basic,Won,10/20/2016,3/1/2017,5\n", {},
     "crm.csv, row 4, column opportunity_id: deal 'D1' is also on row 2; the table has one row "
     "per deal"),
    ("D1,GTX Ultra,Engaging,10/20/2016,,\n", {"segment_column": "product"},
     "crm.csv, row 2, column product: 'GTX Ultra' is not a segment of model opportunities"),
    ("D1,GTX Basic,Prospecting,,,\n", {},
     "crm.csv: no row has a engage_date date"),
])
def test_opportunities_errors(deals, body, options, expected):
    assert error(write(OPP_HEADER + body), deals, "opportunities", **options).startswith(expected)


def test_opportunities_missing_column_and_empty_file(deals):
    message = error(write("opportunity_id,deal_stage,engage_date\nD1,Won,1/1/2017\n"), deals,
                    "opportunities")
    assert message.startswith("crm.csv: missing column closed_date or closed_at or close_date "
                              "(the closed date; columns found: ")
    message = error(write("opportunity_id,deal_stage,engage_date\nD1,Won,1/1/2017\n"), deals,
                    "opportunities", closed_column="Closed On")
    assert message.startswith("crm.csv: missing column Closed On (the closed date;")
    assert error(write(""), deals, "opportunities").startswith("crm.csv: the file is empty")
    assert error(write(OPP_HEADER), deals, "opportunities").startswith("crm.csv: no data rows")


def test_same_column_for_two_purposes(deals):
    path = write(OPP_HEADER + "D1,GTX Basic,Engaging,10/20/2016,,\n")
    assert "cannot be both the status and the segment" in error(
        path, deals, "opportunities", segment_column="deal_stage")


# ---- dates -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "day"), [
    ("2017-03-01", "2017-03-01"), ("2017-03-01T23:59:59.123Z", "2017-03-01"),
    ("2017-03-01 14:05", "2017-03-01"), ("2017-03-01T14:05:00-08:00", "2017-03-01"),
    ("3/1/2017", "2017-03-01"), ("03/01/2017 14:05", "2017-03-01"),
    ("3/1/2017 12:05 am", "2017-03-01"), ("2/29/2016", "2016-02-29"),
])
def test_accepted_dates(deals, text, day):
    path = write(OPP_HEADER + f'D1,GTX Basic,Engaging,"{text}",,\n')
    assert rows(read_opportunities(path, deals))[0][2] == day


@pytest.mark.parametrize("text", ["2/29/2017", "13/1/2017", "1/5/17", "3/1/2017 13:00 PM",
                                  "3/1/2017 24:00", "2017-03-01T24:00", "March 1, 2017",
                                  "20170301"])
def test_rejected_dates(deals, text):
    path = write(OPP_HEADER + f'D1,GTX Basic,Engaging,"{text}",,\n')
    assert error(path, deals, "opportunities").startswith(
        f"crm.csv, row 2, column engage_date: '{text}' is not a date")


# ---- the plain-deal model and segment aliases ------------------------------------------------

def test_opportunities_model_matches_the_sample_facts(deals):
    """Win rate, median days to win and deal sizes from the hazards alone (documented)."""
    assert deals.stages == ("opportunity",) and deals.entry == "opportunity"
    assert deals.age_bands == (0, 14, 30, 60, 90, 180, 365)
    assert set(deals.segment_names) == {"GTX Basic", "GTX Pro", "MG Special", "MG Advanced",
                                        "GTX Plus Basic", "GTX Plus Pro", "GTK 500"}
    params = default_parameters(deals)
    h = params.hazards[0]
    doc = deals.documented
    win = hz.absorption(deals, h).win[:, 0, 0]
    assert np.all(np.abs(win - doc["lead_to_won"]) <= doc["lead_to_won_tolerance"])
    # Day by day: P(won on day n) = P(T >= n) * (1 - e^-Λ) * λ_won / Λ at age n - 1.
    ages = np.arange(5000)
    band = np.searchsorted(deals.age_bands, ages, side="right") - 1
    won = np.asarray(deals.hazards["opportunity"]["won"])[band]
    total = won + np.asarray(deals.hazards["opportunity"]["lost"])[band]
    alive = np.exp(-np.r_[0.0, np.cumsum(total)[:-1]])
    p_won = alive * -np.expm1(-total) * won / total
    # past the last day, in the last band's constant hazards: the rest closes won at its share
    beyond = alive[-1] * math.exp(-total[-1]) * won[-1] / total[-1]
    assert p_won.sum() + beyond == pytest.approx(win[0], abs=1e-9)
    median = int(np.searchsorted(np.cumsum(p_won) / (p_won.sum() + beyond), 0.5)) + 1
    assert abs(median - doc["median_days_to_win"]) <= doc["median_days_to_win_tolerance"]
    wins = params.arrivals_mean[0] * win
    average = float((wins * params.deal_mean[0]).sum() / wins.sum())
    assert abs(average - doc["average_deal"]) <= doc["average_deal_tolerance"]
    grid = np.linspace(1.0, 40000.0, 80001)
    z = (np.log(grid)[:, None] - params.deal_mu[0]) / params.deal_sigma[0]
    cdf = (0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2))) * wins / wins.sum()).sum(1)
    median_deal = grid[np.searchsorted(cdf, 0.5)]
    assert abs(median_deal - doc["median_deal"]) <= doc["median_deal_tolerance"]


def test_segment_aliases(deals):
    assert deals.segment_aliases == {"GTXPro": "GTX Pro"}
    assert deals.map_segment(" gtxpro ") == "GTX Pro"
    assert deals.map_segment("mg special") == "MG Special"
    assert deals.map_segment("GTX Ultra") is None
    # The event log reader accepts the aliases too.
    write("lead_id,stage,entered_at,segment\nD1,Engaging,2017-01-01,GTXPro\n", "log.csv")
    assert read_event_log("log.csv", deals).frame["segment"].tolist() == ["GTX Pro"]


DEALS_TOML = (bundled_models_dir() / "opportunities.toml").read_text()


@pytest.mark.parametrize(("new", "key", "what"), [
    ('"GTXPro" = "GTX Ultra"', "segment_aliases.GTXPro",
     "maps to 'GTX Ultra', which is not a segment"),
    ('"gtx basic" = "GTX Pro"', "segment_aliases.gtx basic", "already means segment 'GTX Basic'"),
    ('"x" = "GTX Pro"\n"X" = "MG Special"', "segment_aliases.X", "already means segment"),
])
def test_bad_segment_aliases(new, key, what):
    Path("m.toml").write_text(DEALS_TOML.replace('"GTXPro" = "GTX Pro"', new))
    with pytest.raises(ModelError, match=rf"m\.toml: \[{key}\] {what}"):
        load_model("m.toml")


def test_segment_aliases_must_be_a_table():
    text = DEALS_TOML.replace('[segment_aliases]\n"GTXPro" = "GTX Pro"', "")
    Path("m.toml").write_text('segment_aliases = "GTXPro"\n' + text)
    with pytest.raises(ModelError, match=r"\[segment_aliases\] must be a table"):
        load_model("m.toml")


# ---- the real CRM sample ---------------------------------------------------------------------

def shared_data() -> Path:
    root = os.environ.get("FORECAST_SHARED_DATA")
    base = Path(root) if root else Path(__file__).resolve().parents[2] / "shared/data"
    return base / "crm_opportunities"


def test_real_crm_sample(deals):
    path = shared_data() / "sales_pipeline.csv"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    log = read_history(path, deals, format="opportunities", segment_column="product")
    f = log.frame
    last = f.groupby("lead_id", sort=False)["stage"].last()
    assert f["lead_id"].nunique() == 8300  # opportunities with an engage date
    assert (f["stage"] == "opportunity").sum() == 8300
    assert (last == "won").sum() == 4238 and (last == "lost").sum() == 2473
    assert (last == "opportunity").sum() == 1589
    assert log.notes == ("skipped 500 open rows without engage_date (not yet in the modelled "
                         "funnel)",)
    won = f.loc[f["stage"] == "won", "amount"]
    assert won.notna().all() and won.median() == 1117 and won.min() == 38
    assert f.loc[f["stage"] != "won", "amount"].isna().all()
    assert set(f["segment"]) == set(deals.segment_names)  # GTXPro read as GTX Pro
    days = (f.groupby("lead_id")["entered_at"].agg(["first", "last"]).diff(axis=1)["last"]
            .dt.days[last == "won"])
    assert days.median() == 57


def test_a_past_as_of_reads_salesforce_history_as_the_crm_had_it(b2b):
    """`run --as-of` before the export's end: a Salesforce history is read as the CRM held it
    that day, rows recorded (CreatedDate) after it left out before the reopening logic. A
    win made by then and reopened later is still a win (it was dropped as undone and the deal
    shown open); a close recorded later but dated back by its CloseDate is not known yet (it
    leaked into the past, amount and all); and the file running past the as-of date is no
    stale export (the warning looked at the cut history)."""
    from click.testing import CliRunner

    from forecast.cli import main
    write(SF_HEADER + textwrap.dedent("""\
        A,Prospecting,2024-01-02,1000,
        A,Closed Won,2024-02-01,1000,2024-02-01
        A,Prospecting,2024-04-10,1000,
        A,Closed Won,2024-05-01,1000,2024-05-01
        B,Prospecting,2024-01-05,2000,
        B,Closed Won,2024-04-20,2500,2024-02-15
        C,Prospecting,2024-01-03,500,
        C,Closed Lost,2024-03-01,,2024-03-01
        D,Prospecting,2024-03-20,700,
        """))
    log = read_salesforce("crm.csv", b2b, known_at=dt.date(2024, 3, 31))
    assert rows(log) == [
        ("A", "opportunity", "2024-01-02", 1000.0, "organic"),
        ("A", "won", "2024-02-01", 1000.0, "organic"),  # won then, whatever came later
        ("B", "opportunity", "2024-01-05", 2000.0, "organic"),  # open then, at 2,000
        ("C", "opportunity", "2024-01-03", 500.0, "organic"),
        ("C", "lost", "2024-03-01", None, "organic"),
        ("D", "opportunity", "2024-03-20", 700.0, "organic"),
    ]
    assert log.notes[-1] == ("left out 3 history rows recorded (CreatedDate) after 2024-03-31: "
                             "the CRM did not have them then (a reopening or a close recorded "
                             "later)")
    result = CliRunner().invoke(main, ["run", "--history", "crm.csv", "--history-format",
                                       "salesforce", "--as-of", "2024-03-31", "--paths", "50",
                                       "--horizon", "30", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["open_leads"] == 2  # B and D
    assert "stale" not in result.stderr and "left out 3 history rows" in result.stderr
    assert error("crm.csv", b2b, "salesforce", known_at=dt.date(2023, 12, 31)) == (
        "crm.csv: every row is after --as-of 2023-12-31 (the history starts on 2024-01-02)")
