"""`forecast simulate-history --scenario`: a history whose rates change on known dates (to
backtest drift). The history is the plain one, draw for draw, up to the change's date; from
it on the scenario's rates apply, for the leads already in the funnel too; a change dated
after the history changes nothing (and says so); `neglect`, which needs open leads, is
refused."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from forecast.cli import main

START, DAYS, CHANGE = "2024-01-01", 730, dt.date(2025, 1, 1)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def write(path, text):
    path.write_text(text)
    return path


def history(tmp_path, name, *scenarios):
    out = tmp_path / f"{name}.csv"
    args = ["simulate-history", "--start", START, "--days", DAYS, "--seed", 5, "--out", out]
    for sc in scenarios:
        args += ["--scenario", sc]
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    return res, pd.read_csv(out, parse_dates=["entered_at"])


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("planted")
    doubled = write(tmp / "doubled.toml", f"""
name = "lead conversion doubles"
[[change]]
lever = "conversion"
stage = "lead"
multiply = 2.0
from = {CHANGE}
""")
    return history(tmp, "plain")[1], history(tmp, "doubled", doubled)[1]


def _next_stage_after_lead(frame: pd.DataFrame, first: dt.date, last: dt.date) -> pd.Series:
    """For the leads arriving from ``first`` to ``last``: the stage each entered next."""
    frame = frame.sort_values(["lead_id", "entered_at"], kind="stable")
    arrived = frame.groupby("lead_id")["entered_at"].first()
    cohort = arrived[(arrived >= pd.Timestamp(first)) & (arrived <= pd.Timestamp(last))].index
    rows = frame[frame["lead_id"].isin(cohort)]
    second = rows[rows.groupby("lead_id").cumcount() == 1]
    return second.set_index("lead_id")["stage"].reindex(cohort)


def test_the_history_is_the_plain_one_up_to_the_date(logs):
    plain, doubled = logs
    before = pd.Timestamp(CHANGE)
    a = plain[plain["entered_at"] < before].sort_values(["lead_id", "entered_at", "stage"])
    b = doubled[doubled["entered_at"] < before].sort_values(["lead_id", "entered_at", "stage"])
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    # and from the date on it is not (the change acts on that very day)
    on = plain[plain["entered_at"] == before]
    assert len(plain[plain["entered_at"] >= before]) != len(doubled[doubled["entered_at"]
                                                                    >= before])
    assert len(on) > 0


def test_the_planted_change_doubles_the_probability_from_its_date(logs):
    """Fresh leads arriving in the half-year after the change move on to MQL (rather than to
    nurture or lost) twice as often as those of the half-year before, each followed for
    183 days or more under one set of rates (what they do past 183 days, when the hazards
    are a tenth of the first weeks', is the only mixing). In the plain history the ratio is
    1. About 7,000 leads a window, 18% of them to MQL: the log ratio's standard error (the
    delta method, below) is about 0.035, so a change not planted (ratio 1) is 20 of them away
    from 2."""
    plain, doubled = logs
    windows = ((dt.date(2024, 1, 1), dt.date(2024, 6, 30)),
               (CHANGE, dt.date(2025, 6, 30)))
    for log, truth in ((plain, 1.0), (doubled, 2.0)):
        nexts = [_next_stage_after_lead(log, a, b) for a, b in windows]
        n = np.array([len(x) for x in nexts])
        p = np.array([(x == "mql").mean() for x in nexts])
        se = np.sqrt(((1 - p) / (n * p)).sum())
        assert abs(np.log(p[1] / p[0] / truth)) < 3.3 * se, (truth, p, se)


def test_a_change_after_the_history_changes_nothing_and_says_so(tmp_path):
    late = write(tmp_path / "late.toml", """
name = "too late"
[[change]]
lever = "win_rate"
add = 0.05
from = 2031-01-01
""")
    res, log = history(tmp_path, "late", late)
    assert "after the horizon's last day" in res.stderr
    pd.testing.assert_frame_equal(log, history(tmp_path, "plain")[1])


def test_neglect_and_bad_files_are_refused(tmp_path):
    neglect = write(tmp_path / "neglect.toml", """
name = "neglect"
[[change]]
lever = "neglect"
stage = "sql"
count = 3
""")
    out = tmp_path / "log.csv"
    res = invoke("simulate-history", "--start", START, "--days", 30, "--out", out,
                 "--scenario", neglect)
    assert res.exit_code == 1
    assert "neglect.toml: change 1" in res.stderr and "starts with none" in res.stderr
    assert not out.exists()
    res = invoke("simulate-history", "--start", START, "--days", 30, "--out", out,
                 "--scenario", tmp_path / "missing.toml")
    assert res.exit_code == 1 and "missing.toml" in res.stderr
    assert not out.exists()
