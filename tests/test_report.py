"""`forecast report`: metrics against hand-computed numbers on a tiny log, the spend file, the page.

The tiny log (b2b model, as of 2026-03-31) has seven leads::

    A paid_search  lead 01-05, mql 01-10, sql 01-20, opportunity 02-01 (1000), won 02-15 (1200)
    B paid_search  lead 01-07, mql 01-17, nurture 02-06, mql 03-01 (reopened)
    C paid_search  lead 02-03, lost 02-13
    D paid_search  lead 02-10, mql 02-12, sql 02-20, mql 03-10 (went cold)
    E organic      lead 03-05 (open)
    F paid_search  lead 01-20, mql 02-25, sql 03-01, opportunity 03-11 (500), lost 03-21
    G organic      lead 03-02, mql 03-03

Every expected number below is counted by hand from this table.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from forecast import report as rep
from forecast.cli import main
from forecast.eventlog import InputError, read_event_log

AS_OF = dt.date(2026, 3, 31)
ROWS = """lead_id,stage,entered_at,amount,segment
A,lead,2026-01-05,,paid_search
A,mql,2026-01-10,,paid_search
A,sql,2026-01-20,,paid_search
A,opportunity,2026-02-01,1000,paid_search
A,won,2026-02-15,1200,paid_search
B,lead,2026-01-07,,paid_search
B,mql,2026-01-17,,paid_search
B,nurture,2026-02-06,,paid_search
B,mql,2026-03-01,,paid_search
C,lead,2026-02-03,,paid_search
C,lost,2026-02-13,,paid_search
D,lead,2026-02-10,,paid_search
D,mql,2026-02-12,,paid_search
D,sql,2026-02-20,,paid_search
D,mql,2026-03-10,,paid_search
E,lead,2026-03-05,,organic
F,lead,2026-01-20,,paid_search
F,mql,2026-02-25,,paid_search
F,sql,2026-03-01,,paid_search
F,opportunity,2026-03-11,500,paid_search
F,lost,2026-03-21,,paid_search
G,lead,2026-03-02,,organic
G,mql,2026-03-03,,organic
"""
SPEND = """segment,month,spend
paid_search,2025-12,500
paid_search,2026-01,1000
paid_search,2026-02,1000
paid_search,2026-03,1000
organic,2026-03,600
"""
MONTHS = pd.period_range("2026-01", "2026-03", freq="M")
CRM = Path(__file__).resolve().parents[2] / "shared" / "data" / "crm_opportunities" \
    / "sales_pipeline.csv"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report") / "tiny.csv"
    path.write_text(ROWS)
    return path


@pytest.fixture(scope="module")
def log(tiny, b2b):
    return read_event_log(tiny, b2b)


@pytest.fixture(scope="module")
def stays(log, b2b):
    return rep.stays(log, b2b, AS_OF)


@pytest.fixture(scope="module")
def spend_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spend") / "spend.csv"
    path.write_text(SPEND)
    return path


# ---- metrics ---------------------------------------------------------------------------------


def test_monthly_flow_counts_new_reopened_and_stage_entries(stays, b2b):
    flow = rep.monthly_flow(stays, b2b)
    assert list(flow.index) == list(MONTHS)
    assert flow["new_leads"].tolist() == [3, 2, 2]  # A B F | C D | E G
    assert flow["reopened"].tolist() == [0, 0, 1]  # B back from nurture on 03-01
    assert flow["entered_mql"].tolist() == [2, 2, 3]  # A B | D F | B D G
    assert flow["entered_sql"].tolist() == [1, 1, 1]  # A | D | F
    assert flow["entered_opportunity"].tolist() == [0, 1, 1]  # A | F
    assert flow["won"].tolist() == [0, 1, 0]
    assert flow["days"].tolist() == [27, 28, 31]  # the history starts on 01-05
    assert flow["complete"].tolist() == [False, True, True]


def test_mql_velocity_is_month_over_month_growth(stays, b2b):
    flow = rep.monthly_flow(stays, b2b)
    growth = rep.velocity(flow, f"entered_{rep.mql_stage(b2b)}")
    assert math.isnan(growth.iloc[0])
    assert growth.iloc[1:].tolist() == [0.0, 0.5]  # 2 -> 2 -> 3
    zero = rep.velocity(pd.DataFrame({"n": [0, 4, 2]}), "n")
    assert math.isnan(zero.iloc[1]) and zero.iloc[2] == -0.5  # no growth rate after a 0


def test_conversion_counts_first_entries_and_censoring(stays, b2b):
    conv = rep.conversion(stays, b2b, mature_days=60).set_index("stage")
    assert conv["next"].tolist() == ["mql", "sql", "opportunity", "won"]
    assert conv["entered"].tolist() == [7, 5, 3, 2]
    assert conv["converted"].tolist() == [5, 3, 2, 1]
    assert conv["open"].tolist() == [1, 2, 1, 0]  # E | B G | D (now in mql) | -
    assert conv["rate"].tolist() == pytest.approx([5 / 7, 3 / 5, 2 / 3, 1 / 2])
    # Mature: entered on or before 01-30 (60 days before the as-of date).
    assert conv["mature_entered"].tolist() == [3, 2, 1, 0]  # A B F | A B | A | -
    assert conv["mature_converted"].tolist() == [3, 1, 1, 0]
    assert conv.at["mql", "mature_rate"] == 0.5 and math.isnan(conv.at["opportunity",
                                                                     "mature_rate"])


def test_wilson_interval_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    lo, hi = rep.wilson(5, 7)
    ci = stats.binomtest(5, 7).proportion_ci(confidence_level=0.9, method="wilson")
    assert (float(lo), float(hi)) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert all(np.isnan(rep.wilson(0, 0)))


def test_median_days_in_stage_is_kaplan_meier(stays, b2b):
    days = rep.days_in_stage(stays, b2b).set_index("stage")
    # lead: 5 10 10 2 36 1 and E open 26 days -> S(5) = 4/7, S(10) = 2/7: median 10.
    # mql: 10 20 8 4 done, 30 21 28 open -> S(10) = 4/7, S(20) = 3/7: median 20.
    assert days["median_days"].to_dict() == {"lead": 10, "mql": 20, "sql": 12,
                                             "opportunity": 10, "nurture": 23}
    assert days["stays"].tolist() == [7, 7, 3, 2, 1]
    assert days["finished"].tolist() == [6, 4, 3, 2, 1]


def test_km_median_edge_cases():
    assert rep.km_median(np.array([3, 5]), np.array([False, False])) == math.inf
    assert math.isnan(rep.km_median(np.array([], dtype=int), np.array([], dtype=bool)))
    assert rep.km_median(np.array([1, 2, 3, 4]), np.ones(4, bool)) == 2  # S(2) = 0.5


def test_shelf_life_censors_every_other_exit(stays, b2b):
    # SQL stays: A 12 days (advanced), D 18 (went cold), F 10 (advanced): only D is an event.
    assert rep.shelf_life_days(stays, b2b) == {"stage": "sql", "stays": 3, "expired": 1,
                                               "median_days": 18.0}


def test_cohort_table(stays, b2b):
    t = rep.cohorts(stays, b2b)
    assert t["leads"].tolist() == [3, 2, 2]
    assert t["reached_mql"].tolist() == pytest.approx([1, 1 / 2, 1 / 2])
    assert t["reached_sql"].tolist() == pytest.approx([2 / 3, 1 / 2, 0])
    assert t["reached_opportunity"].tolist() == pytest.approx([2 / 3, 0, 0])
    assert t["reached_won"].tolist() == pytest.approx([1 / 3, 0, 0])
    assert t["open"].tolist() == pytest.approx([1 / 3, 1 / 2, 1])
    assert t["age_days"].tolist() == [85, 58, 30]


def test_sticky_points(stays, b2b):
    days = rep.days_in_stage(stays, b2b).set_index("stage")["median_days"]
    t = rep.sticky_points(stays, b2b, days).set_index("stage")
    assert t.loc["lead", ["advanced", "expired", "lost", "open_recent", "stalled"]].tolist() \
        == [5, 0, 1, 0, 1]  # E is open 26 days > 2 x 10
    assert t.loc["mql", ["advanced", "expired", "lost", "open_recent", "stalled"]].tolist() \
        == [3, 1, 0, 3, 0]
    assert t.loc["sql", ["advanced", "expired", "lost"]].tolist() == [2, 1, 0]
    assert t["stall_days"].tolist() == [20, 40, 24, 20]
    assert t["drop_out"].tolist() == pytest.approx([1 / 7, 1 / 7, 1 / 3, 1 / 2])
    assert t["drop_out"].idxmax() == "opportunity"


def test_costs_per_step_cac_and_ltv(stays, b2b, spend_file):
    flow = rep.monthly_flow(stays, b2b)
    c = rep.costs(stays, b2b, rep.read_spend(spend_file, b2b), flow, ltv_multiple=3)
    assert c.months == tuple(MONTHS) and c.ignored == (pd.Period("2025-12", "M"),)
    assert c.partial == (pd.Period("2026-01", "M"),)
    t = c.table.set_index("segment")
    assert list(t.index) == ["paid_search", "organic", "all"]
    ps = t.loc["paid_search"]
    assert ps[["spend", "leads", "mql", "sql", "opportunity", "won"]].tolist() == \
        [3000, 5, 4, 3, 2, 1]
    assert ps[["cost_per_leads", "cost_per_mql", "cost_per_sql", "cost_per_opportunity",
               "cac"]].tolist() == [600, 750, 1000, 1500, 3000]
    assert ps["mean_deal"] == 1200 and ps["ltv"] == 3600 and ps["ltv_cac"] == 1.2
    org = t.loc["organic"]
    assert org[["spend", "leads", "mql", "cost_per_leads", "cost_per_mql"]].tolist() == \
        [600, 2, 1, 300, 600]
    assert math.isnan(org["cac"]) and math.isnan(org["ltv_cac"])
    everyone = t.loc["all"]
    assert everyone[["spend", "leads", "mql", "won", "cac"]].tolist() == [3600, 7, 5, 1, 3600]
    assert everyone["ltv_cac"] == pytest.approx(1.0)


def test_model_conversion_from_parameters(b2b, b2b_params):
    from forecast.hazards import reach_probability

    t = rep.model_conversion(b2b, b2b_params)
    assert t["stage"].tolist() == list(b2b.stages)
    assert (t["model_lo"] == t["model_median"]).all()  # one set: no spread
    # b2b has no skips: reaching a further stage is reaching the next one.
    h = b2b_params.hazards[0]
    weight = b2b_params.arrivals_mean[0] / b2b_params.arrivals_mean[0].sum()
    expected = [weight @ reach_probability(b2b, h, nxt)[:, i, 0]
                for i, nxt in enumerate([*b2b.stages[1:], "won"])]
    assert t["model_median"].to_numpy() == pytest.approx(expected, rel=1e-9)


def test_model_conversion_counts_skips(two_stage, two_stage_params, b2b):
    # Give stage a a skip straight to won: reaching "b or further" is then more than reaching b.
    from forecast.hazards import reach_probability

    h = two_stage_params.hazards.copy()
    won = two_stage.state_index("won")
    h[:, 0, ..., won] = 0.05
    t = rep.model_conversion(two_stage, dataclasses.replace(two_stage_params, hazards=h))
    reach_b = reach_probability(two_stage, h[0], "b")[0, 0, 0]
    reach_won = reach_probability(two_stage, h[0], "won")[0, 0, 0]
    assert max(reach_b, reach_won) + 0.01 < t["model_median"].iloc[0] < reach_b + reach_won


# ---- the spend file --------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "message"), [
    ("", "the spend file is empty"),
    ("segment,month\npaid_search,2026-01\n", "row 1: missing column 'spend'"),
    ("segment,month,spend\n", "has a header but no rows"),
    ("segment,month,spend\npaid_search,2026-01,1\nbanner_ads,2026-01,5\n",
     "row 3, column 'segment': 'banner_ads' is not a segment of model b2b"),
    ("segment,month,spend\npaid_search,2026-13,1\n",
     "row 2, column 'month': '2026-13' is not a month (expected YYYY-MM"),
    ("segment,month,spend\npaid_search,2026-01,-5\n",
     "row 2, column 'spend': '-5' is not a non-negative number"),
    ("segment,month,spend\npaid_search,2026-01,\"1,000\"\n",
     "row 2, column 'spend': '1,000' is not a non-negative number"),
    ("segment,month,spend\npaid_search,2026-01,1\n\nPaid_Search,2026-01,2\n",
     "row 4, column 'segment': paid_search 2026-01 appears again (first on row 2)"),
    ("segment,month,spend\npaid_search,2026-01\n",
     "row 2, column 'spend': missing"),
])
def test_spend_file_errors_name_file_row_and_column(tmp_path, b2b, text, message):
    path = tmp_path / "spend.csv"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        rep.read_spend(path, b2b)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


def test_spend_file_reads_aliases_case_bom_and_extra_columns(tmp_path, b2b):
    path = tmp_path / "spend.csv"
    path.write_bytes("\ufeffMonth, Segment ,Spend,comment\n2026-02,ORGANIC,12.5,x\n".encode())
    frame = rep.read_spend(path, b2b)
    assert frame.to_dict("records") == [{"segment": "organic",
                                         "month": pd.Period("2026-02", "M"), "spend": 12.5}]


def test_cli_spend_error_is_one_line_and_exit_1(tiny, tmp_path):
    bad = tmp_path / "spend.csv"
    bad.write_text("segment,month,spend\npaid_search,Jan 2026,5\n")
    out = tmp_path / "r.html"
    res = CliRunner().invoke(main, ["report", "--history", str(tiny), "--spend", str(bad),
                                    "--out", str(out), "--no-forecast"])
    assert res.exit_code == 1
    assert res.output == (f"forecast: error: {bad}: row 2, column 'month': 'Jan 2026' is not "
                          "a month (expected YYYY-MM, e.g. 2026-03)\n")
    assert not out.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--out", "r.txt"], "--out must end in .html"),
    (["--out", "nowhere/r.html"], "does not exist"),
    (["--out", "r.html", "--ledger", "missing.duckdb"], "--ledger: no such file"),
    (["--out", "r.html", "--ledger", "x.duckdb", "--no-forecast"], "not both"),
])
def test_cli_option_errors(tiny, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["report", "--history", str(tiny), *args])
    assert res.exit_code == 1 and message in res.output


# ---- the page --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fresh(log, b2b, b2b_params):
    """A small fresh forecast of the tiny log's open pipeline (50 paths, 60 days)."""
    return rep.fresh_forecast(b2b, b2b_params, log, AS_OF, horizon=60, paths=50, seed=3,
                              parameters="model defaults")


@pytest.fixture(scope="module")
def page(log, b2b, spend_file, fresh) -> str:
    report = rep.build(log, b2b, AS_OF, mature_days=60, spend=rep.read_spend(spend_file, b2b),
                       spend_path="spend.csv", forecast=fresh)
    return rep.render_html(report)


def test_page_has_every_section_and_chart(page):
    for anchor in ("flow", "velocity", "conversion", "days", "cohorts", "sticky", "costs",
                   "forecast"):
        assert f'<section id="{anchor}">' in page
    charts = re.findall(r'data-chart="([a-z]+)"', page)
    assert charts == ["flow", "velocity", "conversion", "days", "cohorts", "sticky", "costs",
                      "fan"]
    assert "LTV is the mean won deal" in page.replace("<b>", "").replace("</b>", "")
    assert "As of 2026-03-31" in page and "SQL shelf life: 18 days" in page


def test_page_with_a_posterior_adds_the_model(log, b2b, b2b_params):
    report = rep.build(log, b2b, AS_OF, params=b2b_params, parameters="posterior p.nc")
    assert "model_median" in report.conversion.columns
    page = rep.render_html(report)
    assert '<section id="model">' in page and "model [5%-95%]" in page
    assert 'data-chart="costs"' not in page and "Give <code>--spend FILE</code>" in page


def test_spend_months_outside_the_history_leave_no_costs_chart(stays, b2b, log, tmp_path):
    path = tmp_path / "spend.csv"
    path.write_text("segment,month,spend\norganic,2025-01,10\n")
    report = rep.build(log, b2b, AS_OF, spend=rep.read_spend(path, b2b), spend_path=str(path))
    assert report.costs.months == () and report.costs.ignored == (pd.Period("2025-01", "M"),)
    page = rep.render_html(report)
    assert 'data-chart="costs"' not in page and "outside the history, not used: 2025-01" in page


def test_page_is_self_contained(page):
    without_data = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", without_data, re.I)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    sources = re.findall(r'\ssrc="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert all(h.startswith("#") for h in re.findall(r'\shref="([^"]*)"', page))


def test_page_is_deterministic(log, b2b, spend_file, fresh, page):
    again = rep.render_html(rep.build(log, b2b, AS_OF, mature_days=60,
                                      spend=rep.read_spend(spend_file, b2b),
                                      spend_path="spend.csv", forecast=fresh))
    assert again == page


def test_cli_writes_the_same_bytes_twice_and_atomically(tiny, tmp_path, spend_file):
    out = tmp_path / "report.html"
    args = ["report", "--history", str(tiny), "--spend", str(spend_file), "--out", str(out),
            "--paths", "40", "--horizon", "30"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    first = out.read_bytes()
    assert CliRunner().invoke(main, args).exit_code == 0
    assert out.read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # no temp file left
    assert b"a fresh run (seed 0) with model defaults" in first


def test_another_process_writes_the_same_bytes(tiny, tmp_path, spend_file):
    # Another interpreter with another hash seed: nothing may depend on set or dict order.
    args = ["report", "--history", str(tiny), "--spend", str(spend_file), "--no-forecast"]
    here, there = tmp_path / "here.html", tmp_path / "there.html"
    assert CliRunner().invoke(main, [*args, "--out", str(here)]).exit_code == 0
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", "from forecast.cli import main; main()", *args,
                    "--out", str(there)], check=True, env=env, capture_output=True)
    assert here.read_bytes() == there.read_bytes()


def test_cli_reads_the_latest_run_from_a_ledger(tiny, tmp_path):
    ledger = tmp_path / "f.duckdb"
    run = CliRunner().invoke(main, ["run", "--history", str(tiny), "--paths", "40", "--horizon",
                                    "45", "--ledger", str(ledger), "--quiet"])
    assert run.exit_code == 0, run.output
    out = tmp_path / "r.html"
    res = CliRunner().invoke(main, ["report", "--history", str(tiny), "--ledger", str(ledger),
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "From run 1 of the ledger f.duckdb (the latest of model b2b as of 2026-03-21)" in text
    assert 'data-chart="fan"' in text
    from forecast.ledger import LedgerError

    with pytest.raises(LedgerError, match=r"^no run of model consumer recorded \(runs of: b2b\)"):
        rep.ledger_forecast(ledger, "consumer")


def test_cli_shows_the_ledgers_run_of_the_pages_as_of_date(tiny, tmp_path):
    """The page's forecast is the latest-recorded run as of the page's date; else the latest
    of an earlier date, said on the page; never one of a later date."""
    ledger = tmp_path / "f.duckdb"
    for as_of in ("2026-03-10", "2026-03-21", "2026-03-15"):  # runs 1, 2, 3
        run = CliRunner().invoke(main, ["run", "--history", str(tiny), "--as-of", as_of,
                                        "--paths", "30", "--horizon", "40", "--ledger",
                                        str(ledger), "--quiet"])
        assert run.exit_code == 0, run.output
    out = tmp_path / "r.html"
    args = ["report", "--history", str(tiny), "--ledger", str(ledger), "--out", str(out)]

    res = CliRunner().invoke(main, args)  # as of the history's last date, 2026-03-21
    assert res.exit_code == 0, res.output
    assert "From run 2 of the ledger f.duckdb (the latest of model b2b as of 2026-03-21): " \
           "as of 2026-03-21" in out.read_text()

    res = CliRunner().invoke(main, [*args, "--as-of", "2026-03-18"])
    assert res.exit_code == 0, res.output
    note = ("No run of model b2b as of 2026-03-18 in the ledger: the forecast shown is run 3, "
            "as of 2026-03-15 (3 days earlier than this page).")
    text = out.read_text()
    assert f'<p class="note">{note}</p>' in text and "As of 2026-03-18" in text
    assert "run 3 of the ledger f.duckdb (the latest of model b2b before 2026-03-18)" in text
    assert f"note: {note}" in res.stderr

    before = out.read_bytes()
    res = CliRunner().invoke(main, [*args, "--as-of", "2026-03-05"])
    assert res.exit_code == 1
    last = res.stderr.splitlines()[-1]  # after the note of the events left out
    assert last.startswith(f"forecast: error: {ledger}: no run of model b2b as of 2026-03-05 "
                           "or before (its 3 runs are as of 2026-03-10 or later")
    assert out.read_bytes() == before


@pytest.mark.skipif(not CRM.exists(), reason=f"the public CRM sample is not at {CRM}")
def test_report_on_the_crm_sample(tmp_path):
    out = tmp_path / "crm.html"
    res = CliRunner().invoke(main, [
        "report", "--model", "opportunities", "--history", str(CRM), "--history-format",
        "opportunities", "--segment-column", "product", "--no-forecast", "--out", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    # The data: 63.2% of closed deals were won; with open deals counted the rate is lower.
    rate = float(re.search(r"<td>opportunity</td><td>won</td>(?:<td>[^<]*</td>){3}"
                           r"<td>([\d.]+)%", text).group(1))
    assert 45 < rate < 63.2
