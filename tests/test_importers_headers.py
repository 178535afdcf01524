"""CRM importers (``forecast.importers``): column names in any script, repeated names, row numbers.

Every test runs in its own temporary directory, so messages can be compared word for word.
"""

from __future__ import annotations

import pandas as pd
import pytest

from forecast.eventlog import InputError
from forecast.importers import _norm, read_history, read_opportunities
from forecast.model import load_model

OPP_HEADER = "opportunity_id,product,deal_stage,engage_date,close_date,close_value\n"
DEALS = ("D1,GTX Basic,Won,10/20/2016,3/1/2017,1054\n"
         "D2,MG Special,Engaging,10/25/2016,,\n")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def deals():
    return load_model("opportunities")


def write(text: str, name: str = "crm.csv") -> str:
    with open(name, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return name


def error(path: str, model, format: str = "opportunities", **options) -> str:
    with pytest.raises(InputError) as exc:
        read_history(path, model, format=format, **options)
    message = str(exc.value)
    assert "\n" not in message
    return message


# ---- names in any script ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["製品", "Produktgruppe-Ä", "Código", "продукт", "उत्पाद"])
def test_a_non_ascii_column_can_be_named(deals, name):
    path = write(OPP_HEADER.replace("product", name) + DEALS)
    log = read_opportunities(path, deals, segment_column=name)
    assert log.frame["segment"].tolist() == ["GTX Basic", "GTX Basic", "MG Special"]


def test_a_non_ascii_column_matches_ignoring_case_spaces_and_punctuation(deals):
    path = write(OPP_HEADER.replace("product", "Código Producto") + DEALS)
    log = read_opportunities(path, deals, segment_column="código_producto")
    assert log.frame["segment"].tolist()[-1] == "MG Special"


def test_a_missing_non_ascii_column_is_still_missing(deals):
    path = write(OPP_HEADER.replace("product", "製品") + DEALS)
    assert error(path, deals, segment_column="品目").startswith(
        "crm.csv: missing column 品目 (the segment; columns found: ")


def test_non_ascii_names_differing_in_one_letter_do_not_collide(deals):
    # Before, both folded to "produkt": the wrong column, or "both name" for two columns.
    path = write("opportunity_id,produkt_ä,produkt_ö,deal_stage,engage_date,close_date\n"
                 "D1,GTX Basic,MG Special,Engaging,10/20/2016,\n")
    log = read_opportunities(path, deals, segment_column="Produkt Ö")
    assert log.frame["segment"].tolist() == ["MG Special"]


def test_norm_keeps_ascii_matching_as_before():
    assert _norm("Opportunity ID") == _norm("OpportunityId") == _norm("opportunity_id")
    assert _norm(" Close-Date (UTC) ") == "closedateutc"
    assert _norm("製品") == "製品" and _norm("") == ""
    assert _norm("ＰＲＯＤＵＣＴ") == "product"  # full-width letters
    assert _norm("Cafe\u0301") == _norm("Café") != _norm("Cafe")  # decomposed accent
    assert _norm("कि") != _norm("क")  # a Devanagari vowel sign is no punctuation


# ---- a column named twice --------------------------------------------------------------------

def test_a_column_named_twice_is_an_error_naming_both_positions(deals):
    path = write("opportunity_id,product,deal_stage,engage_date,close_date,opportunity_id\n"
                 "D1,GTX Basic,Engaging,10/20/2016,,D2\n")
    assert error(path, deals) == ("crm.csv: columns 'opportunity_id' (column 1) and "
                                  "'opportunity_id' (column 6) both name the deal id; keep one "
                                  "of them")


def test_a_column_named_twice_in_other_spellings(deals):
    path = write(OPP_HEADER.rstrip("\n") + ",Product\n" + "D1,GTX Basic,Engaging,10/20/2016,,,"
                 "MG Special\n")
    assert error(path, deals, segment_column="product").startswith(
        "crm.csv: columns 'product' (column 2) and 'Product' (column 7) both name the segment")


def test_a_column_named_twice_in_a_hubspot_export(b2b):
    path = write("hs_object_id,hs_lifecyclestage_lead_date,hs_lifecyclestage_lead_date\n"
                 "1,2026-01-01,2026-01-02\n")
    assert error(path, b2b, "hubspot").startswith(
        "crm.csv: columns 'hs_lifecyclestage_lead_date' (column 2) and "
        "'hs_lifecyclestage_lead_date' (column 3) both name the Lead date")


def test_a_parquet_column_named_twice(deals):
    frame = pd.DataFrame([["D1", "GTX Basic", "Engaging", "10/20/2016", "", "x"]],
                         columns=["opportunity_id", "product", "deal_stage", "engage_date",
                                  "close_date", "Deal Stage"])
    frame.to_parquet("crm.parquet")
    assert error("crm.parquet", deals).startswith(
        "crm.parquet: columns 'deal_stage' (column 3) and 'Deal Stage' (column 6) both name "
        "the status")


# ---- row numbers and blank lines (the event log's CSV reader) --------------------------------

def test_whitespace_lines_are_blank_and_keep_row_numbers(deals):
    path = write(OPP_HEADER + "D1,GTX Basic,Engaging,10/20/2016,,\n   \n \t \n"
                 "D2,GTX Basic,Engaging,10/21/2016,,\n")
    assert len(read_opportunities(path, deals).frame) == 2
    path = write(OPP_HEADER + "D1,GTX Basic,Engaging,10/20/2016,,\n   \n"
                 "D2,GTX Basic,Wonn,10/21/2016,,\n")
    assert error(path, deals).startswith("crm.csv, row 4, column deal_stage: ")


def test_rows_are_numbered_by_records_after_a_quoted_cell_spanning_lines(deals):
    head = OPP_HEADER + '"D\n1",GTX Basic,Engaging,10/20/2016,,\n'  # row 2 spans two lines
    ragged = write(head + "D2,GTX Basic,Engaging,10/21/2016,,,x\n")
    assert error(ragged, deals).startswith("crm.csv, row 3: has 7 fields but the header has 6")
    bad = write(head + "D2,GTX Basic,Engaging,10/32/2016,,\n")
    assert error(bad, deals).startswith("crm.csv, row 3, column engage_date: '10/32/2016' is "
                                        "not a date")
