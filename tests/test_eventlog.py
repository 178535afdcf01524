"""The event log reader (``forecast.eventlog``): the input contract, its errors, the pipeline.

Every test runs in its own temporary directory and names files relatively, so error messages
can be compared word for word (``history.csv, row 14, column entered_at: ...``).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import itertools
import textwrap

import numpy as np
import pandas as pd
import pytest

from forecast.eventlog import EventLog, InputError, latest_date, open_pipeline, read_event_log

HEADER = "lead_id,stage,entered_at,amount,segment\n"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def write(body: str, name: str = "history.csv", header: str = HEADER) -> str:
    """Write ``header`` + ``body`` (dedented) to ``name`` in the current directory."""
    with open(name, "w", encoding="utf-8", newline="") as f:
        f.write(header + textwrap.dedent(body).lstrip("\n"))
    return name


def error(path: str, model, **kwargs) -> str:
    with pytest.raises(InputError) as exc:
        read_event_log(path, model, **kwargs)
    message = str(exc.value)
    assert "\n" not in message
    return message


# ---- happy paths -----------------------------------------------------------------------------

def test_csv_happy_path(b2b):
    path = write("""\
        L2,lead,2026-01-03,,paid_search
        L1,lead,2026-01-01T09:30:00+02:00,,
        L1,Marketing Qualified Lead,2026-01-02 17:00,,Events
        L2, mql ,2026-01-04,  ,
        L1,opportunity,2026-01-05,125000.50,
        """, header="Lead_ID , Stage,ENTERED_AT,amount,segment\n")
    log = read_event_log(path, b2b)
    assert isinstance(log, EventLog)
    f = log.frame
    assert list(f.columns) == ["lead_id", "stage", "entered_at", "amount", "segment"]
    assert f["lead_id"].tolist() == ["L1", "L1", "L1", "L2", "L2"]
    assert f["stage"].tolist() == ["lead", "mql", "opportunity", "lead", "mql"]
    assert f["entered_at"].dtype == "datetime64[ns]"
    assert f["entered_at"].dt.strftime("%Y-%m-%d").tolist() == [
        "2026-01-01", "2026-01-02", "2026-01-05", "2026-01-03", "2026-01-04"]
    assert (f["entered_at"] == f["entered_at"].dt.normalize()).all()
    assert f["amount"].dtype == np.float64
    assert np.isnan(f["amount"].to_numpy()[[0, 1, 3, 4]]).all()
    assert f["amount"].iloc[2] == 125000.50
    # Empty segments take the lead's segment from its other rows (case-insensitive match).
    assert f["segment"].tolist() == ["events", "events", "events", "paid_search", "paid_search"]
    assert f.index.equals(pd.RangeIndex(5))
    assert log.path == "history.csv"
    assert log.as_of is None
    with open(path, "rb") as fh:
        assert log.sha256 == hashlib.sha256(fh.read()).hexdigest()
    assert latest_date(log) == dt.date(2026, 1, 5)


def test_extra_columns_are_ignored_and_names_are_matched_loosely(b2b):
    path = write("L1,2026-01-01,x,lead\n",
                 header=" LEAD_ID ,Entered_At,owner,stage\n")
    frame = read_event_log(path, b2b).frame
    assert frame.columns.tolist() == ["lead_id", "stage", "entered_at", "amount", "segment"]
    assert frame["stage"].tolist() == ["lead"]


def test_lead_id_is_text(b2b):
    path = write("007,lead,2026-01-01,,\n7,lead,2026-01-01,,\n")
    assert read_event_log(path, b2b).frame["lead_id"].tolist() == ["007", "7"]


def test_crm_stage_names_are_mapped(b2b):
    path = write("""\
        L1,Subscriber,2026-01-01,,
        L1,marketing qualified lead,2026-01-02,,
        L1,Sales Qualified Lead,2026-01-03,,
        L1,Negotiation/Review,2026-01-04,,
        L1,Recycled,2026-01-05,,
        L1,MQL,2026-01-06,,
        L1,Closed Won,2026-01-07,,
        """)
    stages = read_event_log(path, b2b).frame["stage"].tolist()
    assert stages == ["lead", "mql", "sql", "opportunity", "nurture", "mql", "won"]


def test_no_segment_column_means_default_segment(b2b):
    path = write("L1,lead,2026-01-01\nL2,lead,2026-01-02\n", header="lead_id,stage,entered_at\n")
    frame = read_event_log(path, b2b).frame
    assert (frame["segment"] == b2b.default_segment).all()
    assert frame["amount"].isna().all()


def test_empty_segment_without_other_rows_is_default(b2b):
    path = write("L1,lead,2026-01-01,,\nL2,lead,2026-01-01,,partner\n")
    assert read_event_log(path, b2b).frame["segment"].tolist() == ["organic", "partner"]


def test_csv_gz(b2b):
    text = HEADER + "L1,lead,2026-01-01,,events\nL1,mql,2026-01-02,,\n"
    with gzip.open("history.csv.gz", "wt", encoding="utf-8") as f:
        f.write(text)
    log = read_event_log("history.csv.gz", b2b)
    assert log.frame["stage"].tolist() == ["lead", "mql"]
    with open("history.csv.gz", "rb") as fh:
        assert log.sha256 == hashlib.sha256(fh.read()).hexdigest()


def test_parquet_happy_path(b2b):
    df = pd.DataFrame({
        "lead_id": [12, 3, 12],
        "Stage": ["lead", "lead", "Opportunity"],
        "entered_at": pd.to_datetime(["2026-01-01 10:00", "2026-01-02 00:00", "2026-01-03 23:59"]),
        "amount": [np.nan, np.nan, 5000.0],
        "segment": ["partner", None, None],
    })
    df.to_parquet("history.parquet")
    frame = read_event_log("history.parquet", b2b).frame
    assert frame["lead_id"].tolist() == ["12", "12", "3"]
    assert frame["stage"].tolist() == ["lead", "opportunity", "lead"]
    assert frame["entered_at"].dt.strftime("%Y-%m-%d").tolist() == [
        "2026-01-01", "2026-01-03", "2026-01-02"]
    assert frame["amount"].iloc[1] == 5000.0
    assert frame["segment"].tolist() == ["partner", "partner", "organic"]


def test_parquet_with_text_dates_and_tz_aware_timestamps(b2b):
    pd.DataFrame({"lead_id": ["a", "b"], "stage": ["lead", "lead"],
                  "entered_at": ["2026-01-01", "2026-01-02T08:00:00Z"]}).to_parquet("t.parquet")
    frame = read_event_log("t.parquet", b2b).frame
    assert frame["entered_at"].dt.day.tolist() == [1, 2]
    stamps = pd.to_datetime(["2026-01-01 23:30"]).tz_localize("America/New_York")
    pd.DataFrame({"lead_id": ["a"], "stage": ["lead"], "entered_at": stamps}).to_parquet(
        "tz.parquet")
    # The wall-clock date as recorded, not the UTC date (which would be 2026-01-02).
    assert read_event_log("tz.parquet", b2b).frame["entered_at"].dt.day.tolist() == [1]


def test_parquet_with_date_objects_and_categoricals(b2b):
    pd.DataFrame({"lead_id": pd.Series(["x", "x"], dtype="category"),
                  "stage": pd.Series(["lead", "MQL"], dtype="category"),
                  "entered_at": [dt.date(2026, 1, 1), dt.date(2026, 1, 3)],
                  "amount": ["", "12.5"]}).to_parquet("history.parquet")
    frame = read_event_log("history.parquet", b2b).frame
    assert frame["stage"].tolist() == ["lead", "mql"]
    assert frame["entered_at"].dt.day.tolist() == [1, 3]
    assert np.isnan(frame["amount"].iloc[0]) and frame["amount"].iloc[1] == 12.5


def test_blank_lines_are_skipped_but_keep_row_numbers(b2b):
    path = write("L1,lead,2026-01-01,,\n\n,,,,\nL1,bogus,2026-01-02,,\n")
    assert "history.csv, row 5, column stage:" in error(path, b2b)
    path = write("L1,lead,2026-01-01,,\n\nL2,lead,2026-01-02,,\n\n")
    assert len(read_event_log(path, b2b).frame) == 2


def test_quoted_newlines_count_as_one_row(b2b):
    path = write('"L\n1",lead,2026-01-01,,\nL2,lead,2026-01-01,-1,\n')
    assert error(path, b2b).startswith("history.csv, row 3, column amount:")


def test_as_of_is_recorded_and_rows_on_it_are_fine(b2b):
    path = write("L1,lead,2026-01-01,,\nL1,mql,2026-01-05T23:59,,\n")
    log = read_event_log(path, b2b, as_of=dt.date(2026, 1, 5))
    assert log.as_of == dt.date(2026, 1, 5)


# ---- file-level errors -----------------------------------------------------------------------

def test_unsupported_extension(b2b):
    with open("history.xlsx", "w") as f:
        f.write("x")
    message = error("history.xlsx", b2b)
    assert message.startswith("history.xlsx: unsupported file type")
    assert ".csv, .csv.gz, .parquet" in message


def test_missing_file(b2b):
    assert error("nope.csv", b2b) == "nope.csv: no such file; check the path"


def test_empty_file(b2b):
    open("history.csv", "w").close()
    assert error("history.csv", b2b).startswith("history.csv: the file is empty")


@pytest.mark.parametrize("body", ["", "\n\n", ",,,,\n"])
def test_header_only(b2b, body):
    assert error(write(body), b2b).startswith("history.csv: no data rows")


def test_parquet_without_records(b2b):
    pd.DataFrame({"lead_id": pd.Series([], dtype=str), "stage": pd.Series([], dtype=str),
                  "entered_at": pd.Series([], dtype=str)}).to_parquet("empty.parquet")
    assert error("empty.parquet", b2b).startswith("empty.parquet: no data records")


def test_not_parquet(b2b):
    with open("history.parquet", "w") as f:
        f.write("lead_id,stage\n")
    assert error("history.parquet", b2b).startswith("history.parquet: not a readable Parquet")


def test_bad_gzip(b2b):
    with open("history.csv.gz", "w") as f:
        f.write(HEADER)
    assert error("history.csv.gz", b2b).startswith("history.csv.gz: not a valid gzip file")


def test_not_utf8(b2b):
    """A Latin-1 file is refused at its first bad byte, by line and character (a UTF-8
    character earlier on the line counts as one)."""
    with open("history.csv", "wb") as f:
        f.write(HEADER.encode() + "L0,lead,2026-01-01,,\u00e9t\u00e9\n".encode()
                + "L1,lead,2026-01-01,,caf\u00e9\n".encode("latin-1"))
    assert error("history.csv", b2b).startswith(
        "history.csv, line 3, character 24: byte 0xE9 is not UTF-8 text")
    with open("history.csv", "wb") as f:
        f.write(HEADER.encode() + "L1,lead,2026-01-01,,\u00e9t\u00e9 caf".encode()
                + "\u00e9\n".encode("latin-1"))
    assert error("history.csv", b2b).startswith(
        "history.csv, line 2, character 28: byte 0xE9 is not UTF-8 text")


def test_ragged_row(b2b):
    path = write("L1,lead,2026-01-01,,\nL2,lead,2026-01-01,,,extra\n")
    message = error(path, b2b)
    assert message.startswith("history.csv, row 3: has 6 fields but the header has 5")


def test_missing_required_column(b2b):
    path = write("L1,lead,,\n", header="lead_id,stage,amount,notes\n")
    message = error(path, b2b)
    assert message.startswith("history.csv: missing required column entered_at")
    assert "columns found: 'lead_id', 'stage', 'amount', 'notes'" in message


def test_column_named_twice(b2b):
    path = write("L1,lead,2026-01-01,lead\n", header="lead_id,stage,entered_at,Stage \n")
    assert "both name stage" in error(path, b2b)


# ---- row-level errors ------------------------------------------------------------------------

def test_empty_lead_id(b2b):
    path = write("L1,lead,2026-01-01,,\n  ,mql,2026-01-02,,\n")
    assert error(path, b2b).startswith("history.csv, row 3, column lead_id: lead_id is empty")


def test_bad_date_message(b2b):
    rows = "".join(f"L{i},lead,2026-01-01,,\n" for i in range(12)) + "L12,lead,2026-13-01,,\n"
    assert error(write(rows), b2b) == (
        "history.csv, row 14, column entered_at: '2026-13-01' is not a date "
        "(expected ISO 8601 like 2026-11-23)")


@pytest.mark.parametrize("value", ["23/11/2026", "2026-02-30", "2026-1-5", "yesterday",
                                   "2026-01-01T25:00", "20260101"])
def test_bad_dates(b2b, value):
    message = error(write(f"L1,lead,2026-01-01,,\nL1,mql,{value},,\n"), b2b)
    assert message.startswith(f"history.csv, row 3, column entered_at: '{value}' is not a date")


def test_empty_date(b2b):
    message = error(write("L1,lead,,,\n"), b2b)
    assert message.startswith("history.csv, row 2, column entered_at: entered_at is empty")


def test_placeholder_date(b2b):
    message = error(write("L1,lead,2026-01-01,,\nL2,lead,0001-01-01,,\n"), b2b)
    assert message.startswith("history.csv, row 3, column entered_at: '0001-01-01' is not a "
                              "plausible date")


def test_date_after_as_of(b2b):
    path = write("L1,lead,2026-01-01,,\nL1,mql,2026-01-02,,\nL2,lead,2026-01-09,,\n")
    message = error(path, b2b, as_of=dt.date(2026, 1, 1))
    assert message.startswith("history.csv, row 3, column entered_at: 2026-01-02 is after "
                              "--as-of 2026-01-01")
    assert "pass a later --as-of or filter the log" in message


def test_unknown_stage(b2b):
    message = error(write("L1,lead,2026-01-01,,\nL1,Demo Booked,2026-01-02,,\n"), b2b)
    assert message.startswith("history.csv, row 3, column stage: 'Demo Booked' is not a stage "
                              "of model b2b")
    for name in (*b2b.states, "Marketing Qualified Lead", "Closed Lost"):
        assert name in message
    assert "[crm_stages]" in message


def test_empty_stage(b2b):
    message = error(write("L1,,2026-01-01,,\n"), b2b)
    assert message.startswith("history.csv, row 2, column stage: stage is empty")


@pytest.mark.parametrize(("value", "what"), [("$100", "is not a number"),
                                             ("1,000", "is not a number"),
                                             ("-5", "is negative"),
                                             ("inf", "is not a finite number")])
def test_bad_amount(b2b, value, what):
    path = write(f'L1,lead,2026-01-01,,\nL1,opportunity,2026-01-02,"{value}",\n')
    message = error(path, b2b)
    assert message.startswith(f"history.csv, row 3, column amount: '{value}' {what}")


def test_unknown_amount_spellings_are_nan(b2b):
    path = write("L1,lead,2026-01-01,NaN,\nL1,mql,2026-01-02,n/a,\nL1,sql,2026-01-03,0,\n")
    amounts = read_event_log(path, b2b).frame["amount"].to_numpy()
    assert np.isnan(amounts[:2]).all() and amounts[2] == 0.0


def test_negative_amount_in_parquet(b2b):
    pd.DataFrame({"lead_id": ["a", "b"], "stage": ["lead", "lead"],
                  "entered_at": ["2026-01-01", "2026-01-01"],
                  "amount": [1.0, -2.0]}).to_parquet("history.parquet")
    message = error("history.parquet", b2b)
    assert message.startswith("history.parquet, record 2, column amount: '-2.0' is negative")


def test_unknown_segment(b2b):
    message = error(write("L1,lead,2026-01-01,,\nL2,lead,2026-01-01,,tradeshow\n"), b2b)
    assert message.startswith("history.csv, row 3, column segment: 'tradeshow' is not a "
                              "segment of model b2b")
    assert "paid_search" in message and "default segment organic" in message


def test_duplicate_row(b2b):
    path = write("""\
        L1,lead,2026-01-01,,
        L2,lead,2026-01-01,,events
        L1,mql,2026-01-02,,
        L2,Lead,2026-01-01T10:00,,Events
        """)
    assert error(path, b2b).startswith(
        "history.csv, row 5, column lead_id: this row repeats row 3 (same lead_id, stage, "
        "entered_at, amount and segment)")


def test_same_day_rows_that_differ_are_not_duplicates(b2b):
    path = write("L1,lead,2026-01-01,,\nL1,mql,2026-01-01,,\nL1,opportunity,2026-01-01,5,\n"
                 "L1,opportunity,2026-01-01,6,\n")
    assert len(read_event_log(path, b2b).frame) == 4


def test_rows_out_of_time_order(b2b):
    path = write("""\
        L1,lead,2026-01-01,,
        L2,lead,2026-01-05,,
        L1,mql,2026-01-03,,
        L2,mql,2026-01-04,,
        """)
    message = error(path, b2b)
    assert message.startswith("history.csv, row 5, column entered_at: 2026-01-04 is earlier "
                              "than the previous row of lead 'L2' (row 3, 2026-01-05)")


@pytest.mark.parametrize("closing", ["won", "Closed Lost"])
def test_rows_after_a_close(b2b, closing):
    path = write(f"""\
        L1,lead,2026-01-01,,
        L1,{closing},2026-01-03,,
        L2,lead,2026-01-03,,
        L1,mql,2026-01-04,,
        """)
    closed = "won" if closing == "won" else "lost"
    assert error(path, b2b).startswith(
        f"history.csv, row 5, column stage: lead 'L1' was already closed ({closed} at row 3); "
        "a closed lead cannot re-enter the funnel")


def test_first_offending_row_is_reported(b2b):
    path = write("L1,bogus,2026-01-01,,\nL2,other,2026-01-01,,\n")
    assert error(path, b2b).startswith("history.csv, row 2, column stage: 'bogus'")


# ---- the open pipeline -----------------------------------------------------------------------

PIPELINE_LOG = """\
    A,lead,2026-01-01,,events
    A,mql,2026-01-05,,
    A,sql,2026-01-10,,
    A,mql,2026-01-20,,
    A,nurture,2026-02-01,,
    A,mql,2026-02-10,,
    B,lead,2026-01-01,,
    B,mql,2026-01-02,,
    B,lead,2026-01-03,,
    B,mql,2026-01-04,,
    B,nurture,2026-01-05,,
    B,mql,2026-01-06,,
    B,sql,2026-01-07,,
    B,lead,2026-01-08,,
    C,lead,2026-01-01,,partner
    C,mql,2026-01-02,,
    C,won,2026-01-10,900,
    D,lead,2026-01-01,,paid_search
    D,nurture,2026-02-20,,
    E,sql,2026-01-01,,paid_search
    E,opportunity,2026-01-15,50000,partner
    E,nurture,2026-02-01,,
    F,opportunity,2026-01-10,10,
    F,opportunity,2026-02-01,20,
    G,lead,2026-02-15,,
    """


def test_open_pipeline_known_answers(b2b):
    log = read_event_log(write(PIPELINE_LOG), b2b)
    p = open_pipeline(log, b2b, dt.date(2026, 3, 1))
    idx, seg = b2b.state_index, b2b.segment_names.index
    # Open leads A, B, D, E, F, G (C is won), in lead_id order.
    assert p.state.tolist() == [idx("mql"), idx("lead"), idx("nurture"), idx("nurture"),
                                idx("opportunity"), idx("lead")]
    assert p.age.tolist() == [19, 52, 9, 28, 50, 14]  # F: in opportunity since 01-10
    assert p.recycle.tolist() == [2, 2, 1, 1, 0, 0]  # B had 3 expiries: capped at levels - 1
    assert p.segment.tolist() == [seg("events"), seg("organic"), seg("paid_search"),
                                  seg("partner"), seg("organic"), seg("organic")]
    np.testing.assert_array_equal(p.amount, [np.nan, np.nan, np.nan, 50000.0, 20.0, np.nan])
    for a in (p.state, p.age, p.segment, p.recycle):
        assert a.dtype == np.int64
    assert p.amount.dtype == np.float64


def test_open_pipeline_ignores_rows_after_an_earlier_as_of(b2b):
    log = read_event_log(write(PIPELINE_LOG), b2b)
    p = open_pipeline(log, b2b, dt.date(2026, 1, 31))
    idx = b2b.state_index
    # A (mql since 01-20, one expiry), B, D (still a lead), E (opportunity), F; C won by then,
    # G not yet arrived.
    assert p.state.tolist() == [idx("mql"), idx("lead"), idx("lead"), idx("opportunity"),
                                idx("opportunity")]
    assert p.age.tolist() == [11, 23, 30, 16, 21]
    assert p.recycle.tolist() == [1, 2, 0, 0, 0]
    np.testing.assert_array_equal(p.amount, [np.nan, np.nan, np.nan, 50000.0, 10.0])
    assert len(open_pipeline(log, b2b, dt.date(2025, 12, 31))) == 0


def test_recycle_counts_agree_with_move_kind(b2b):
    log = read_event_log(write(PIPELINE_LOG), b2b)
    f = log.frame
    expected = []
    for _, rows in f.groupby("lead_id", sort=True):
        stages = rows["stage"].tolist()
        if stages[-1] in ("won", "lost"):
            continue
        kinds = [b2b.move_kind(a, b) for a, b in itertools.pairwise(stages) if a != b]
        expected.append(min(kinds.count("expiry"), b2b.recycle_levels - 1))
    assert open_pipeline(log, b2b, latest_date(log)).recycle.tolist() == expected


def test_open_pipeline_on_unsorted_frame(b2b):
    """A hand-built frame whose leads are not in lead_id order (each lead's rows in order)."""
    log = read_event_log(write(PIPELINE_LOG), b2b)
    frame = log.frame.sort_values("lead_id", ascending=False, kind="stable")
    shuffled = EventLog(frame=frame, path=log.path, as_of=None, sha256=log.sha256)
    a = open_pipeline(log, b2b, dt.date(2026, 3, 1))
    b = open_pipeline(shuffled, b2b, dt.date(2026, 3, 1))
    for field in ("state", "age", "segment", "recycle", "amount"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


# ---- round trip through the simulator --------------------------------------------------------

def test_simulated_history_round_trip(b2b, b2b_params):
    from forecast.simulate import simulate_history

    history = simulate_history(b2b, b2b_params, dt.date(2026, 1, 1), 60, seed=11)
    history.to_csv("history.csv", index=False)
    log = read_event_log("history.csv", b2b, as_of=dt.date(2026, 3, 1))
    f = log.frame
    assert len(f) == len(history)
    assert f["lead_id"].tolist() == history["lead_id"].astype(str).tolist()
    assert f["stage"].tolist() == history["stage"].tolist()
    assert (f["entered_at"].dt.date == history["entered_at"]).all()
    np.testing.assert_array_equal(f["amount"].to_numpy(), history["amount"].to_numpy())
    assert f["segment"].tolist() == history["segment"].tolist()

    p = open_pipeline(log, b2b, latest_date(log))
    last = history.groupby("lead_id", sort=True).tail(1)
    assert len(p) == int((~last["stage"].isin(["won", "lost"])).sum())
    assert (p.age >= 0).all()
    assert ((p.recycle >= 0) & (p.recycle < b2b.recycle_levels)).all()
    assert (p.state < b2b.n_transient).all()
