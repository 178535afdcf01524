"""The event log's CSV reading (``forecast.eventlog``): the header, row numbers, blank lines.

Row numbers count records (the header is row 1; a quoted cell spanning lines is one row; blank
lines count), the same in every message. Every test runs in its own temporary directory, so
messages can be compared word for word.
"""

from __future__ import annotations

import gzip

import pytest

from forecast.eventlog import InputError, read_event_log

HEADER = "lead_id,stage,entered_at,amount,segment\n"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def write(text: str, name: str = "history.csv") -> str:
    with open(name, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return name


def error(path: str, model) -> str:
    with pytest.raises(InputError) as exc:
        read_event_log(path, model)
    message = str(exc.value)
    assert "\n" not in message
    return message


# ---- the header ------------------------------------------------------------------------------

def test_a_column_named_twice_is_an_error_naming_both_positions(b2b):
    path = write("lead_id,stage,entered_at,lead_id\nA,lead,2026-01-01,B\n")
    assert error(path, b2b) == ("history.csv: columns 'lead_id' (column 1) and 'lead_id' "
                                "(column 4) both name lead_id; keep one of them")


def test_a_column_named_twice_in_other_spellings(b2b):
    path = write("Stage,lead_id,entered_at, STAGE \nlead,A,2026-01-01,mql\n")
    assert error(path, b2b) == ("history.csv: columns 'Stage' (column 1) and ' STAGE ' "
                                "(column 4) both name stage; keep one of them")


def test_a_column_named_twice_in_a_gzipped_log(b2b):
    with open("history.csv.gz", "wb") as f:
        f.write(gzip.compress(b"lead_id,stage,entered_at,stage\nA,lead,2026-01-01,mql\n"))
    assert error("history.csv.gz", b2b).startswith(
        "history.csv.gz: columns 'stage' (column 2) and 'stage' (column 4) both name stage")


def test_other_columns_may_repeat(b2b):
    path = write("lead_id,note,stage,note,entered_at\nA,x,lead,y,2026-01-01\n")
    assert read_event_log(path, b2b).frame["lead_id"].tolist() == ["A"]


def test_header_names_are_read_as_written(b2b):
    path = write("lead_id,stage,entered_at,,notes\nA,lead,2026-01-01,,\n")
    assert len(read_event_log(path, b2b).frame) == 1
    message = error(write("lead_id,,entered_at\nA,lead,2026-01-01\n"), b2b)
    assert "columns found: 'lead_id', '', 'entered_at'" in message


def test_a_blank_first_line_is_not_a_header(b2b):
    path = write("\n" + HEADER + "A,lead,2026-01-01,,\n")
    assert error(path, b2b) == ("history.csv, row 1: the header row is blank; the column "
                                "names must be on the first line")


@pytest.mark.parametrize("text", ["\n", "  \n\n", " \t "])
def test_a_file_of_whitespace_is_empty(b2b, text):
    assert error(write(text), b2b).startswith("history.csv: the file is empty")


# ---- row numbers after a quoted cell spanning lines ------------------------------------------

MULTILINE = HEADER + '"A\n1",lead,2026-01-01,,\n'  # row 2 spans two lines


def test_a_ragged_row_is_numbered_by_records(b2b):
    path = write(MULTILINE + "B,lead,2026-01-01,,\nC,lead,2026-01-02,,,extra\n")
    assert error(path, b2b) == ("history.csv, row 4: has 6 fields but the header has 5 "
                                "('C,lead,2026-01-02,,,extra'); check the commas and quoting "
                                "on that row")


def test_a_cell_error_is_numbered_by_records_too(b2b):
    path = write(MULTILINE + "B,lead,2026-01-01,,\nC,bogus,2026-01-02,,\n")
    assert error(path, b2b).startswith("history.csv, row 4, column stage: 'bogus' is not a "
                                       "stage")


def test_a_ragged_row_with_a_quoted_cell_spanning_lines(b2b):
    path = write(HEADER + 'A,lead,2026-01-01,,\nB,lead,"2026-01-01\n",,,x\n')
    assert error(path, b2b).startswith("history.csv, row 3: has 6 fields but the header has 5 "
                                       "('B,lead,\"2026-01-01\\\\n\",,,x')")


def test_a_ragged_row_text_seen_earlier_is_located_at_its_own_row(b2b):
    # The bad row's text also occurs in row 2's quoted cell.
    path = write(HEADER + '"B,lead",lead,2026-01-01,,\nA,lead,2026-01-01,,\nB,lead\n')
    assert error(path, b2b).startswith("history.csv, row 4: has 2 fields but the header has 5")


# ---- lines of whitespace are blank lines -----------------------------------------------------

@pytest.mark.parametrize("blank", ["   ", " \t ", "", '""', '"  "'])
def test_whitespace_lines_are_ignored(b2b, blank):
    path = write(HEADER + f"A,lead,2026-01-01,,\n{blank}\nB,lead,2026-01-02,,\n{blank}\n")
    assert read_event_log(path, b2b).frame["lead_id"].tolist() == ["A", "B"]


def test_whitespace_lines_keep_row_numbers(b2b):
    path = write(HEADER + "A,lead,2026-01-01,,\n   \nB,lead,2026-01-01,,\r\n \t \r\n"
                 "C,bogus,2026-01-02,,\n")
    assert error(path, b2b).startswith("history.csv, row 6, column stage: 'bogus'")


def test_whitespace_lines_then_a_ragged_row(b2b):
    path = write(HEADER + "   \nA,lead,2026-01-01,,\n  \n" + 'B,"x\ny",2026-01-01,,,extra\n')
    assert error(path, b2b).startswith("history.csv, row 5: has 6 fields but the header has 5")


def test_whitespace_and_multiline_rows_keep_later_row_numbers(b2b):
    path = write(MULTILINE + "  \nB,lead,2026-01-01,,\nB,lead,2025-12-01,,\n")
    assert error(path, b2b).startswith("history.csv, row 5, column entered_at: 2025-12-01 is "
                                       "earlier than the previous row of lead 'B' (row 4,")


def test_only_whitespace_lines_means_no_data_rows(b2b):
    assert error(write(HEADER + "   \n \n"), b2b).startswith("history.csv: no data rows")


def test_a_cell_of_whitespace_in_a_one_field_row_is_still_ragged(b2b):
    path = write(HEADER + "A,lead,2026-01-01,,\n  x  \n")
    assert error(path, b2b).startswith("history.csv, row 3: has 1 fields but the header has 5")
