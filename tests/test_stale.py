"""Stale open deals (``forecast describe --history``): the threshold, the count and what they
are worth at their real age."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner

from forecast.cli import main
from forecast.describe import stale_deals, stale_threshold
from forecast.hazards import survival_quantile
from forecast.simulate import Pipeline
from tests.conftest import AS_OF


def test_threshold_is_the_95th_percentile_of_days_in_stage(b2b, b2b_params):
    limit = stale_threshold(b2b, b2b_params)
    opp = b2b.state_index("opportunity")
    rates = b2b_params.hazards[0, opp].sum(-1)[:, 0, 0]  # [band], segment 0, fresh
    assert limit[opp, 0] == survival_quantile(rates, b2b.age_bands, 0.95)
    # P(T > limit - 1) > 5% >= P(T > limit), with P(T > n) = exp(-cumulative hazard).
    lo = np.asarray(b2b.age_bands)
    def cum(n):
        return sum(r * max(0, min(n, hi) - a) for r, a, hi in
                   zip(rates, lo, [*lo[1:], 10**9], strict=True))
    n = int(limit[opp, 0])
    assert math.exp(-cum(n - 1)) > 0.05 >= math.exp(-cum(n))


def test_stale_deals_count_and_expected_value(b2b, b2b_params):
    """200 opportunities aged 10 days (fresh) and 300 aged 400 days (stale, in the last age
    band): only the old ones count, and their expected deals in 90 days match the last band's
    constant hazards (leaving within 90 days, won share), up to the rare deal that goes to
    nurture and comes all the way back within the quarter."""
    opp, g = b2b.state_index("opportunity"), 2
    n_old = 300
    pipe = Pipeline(state=np.full(500, opp), age=np.r_[np.full(200, 10), np.full(n_old, 400)],
                    segment=np.full(500, g), recycle=np.zeros(500, np.int64),
                    amount=np.full(500, 50_000.0))
    table = stale_deals(b2b, b2b_params, pipe, AS_OF, horizon=90, paths=2000, seed=1)
    row = table[table["stage"] == "opportunity"].iloc[0]
    assert row["stale_open"] == n_old and row["open"] == 500 and row["oldest_days"] == 400
    h = b2b_params.hazards[0, opp, -1, g, 0]
    lam = h.sum()
    p_won = (1 - math.exp(-90 * lam)) * h[b2b.state_index("won")] / lam
    sd = math.sqrt(n_old * p_won * (1 - p_won) / 2000)
    assert row["expected_won"] == pytest.approx(n_old * p_won, abs=4 * sd + 0.05)
    assert row["expected_bookings"] == pytest.approx(50_000 * row["expected_won"], rel=1e-9)
    # The CRM's weighted pipeline counts them at a fresh opportunity's win rate: far more.
    assert row["crm_weighted"] > 2 * row["expected_bookings"]
    assert (table[table["stage"] != "opportunity"]["stale_open"] == 0).all()


def test_describe_with_history_prints_stale_deals():
    res = CliRunner().invoke(main, ["describe", "--history",
                                    "forecast/samples/b2b_history.csv.gz", "--horizon", "30"])
    assert res.exit_code == 0, res.output
    assert "Stale open deals" in res.output and "CRM weighted value" in res.output


def test_the_stale_table_shows_no_oldest_age_without_a_stale_deal():
    import pandas as pd

    from forecast.describe import render_stale

    table = pd.DataFrame([
        {"stage": "sql", "threshold_days": 90.0, "stale_open": 0, "open": 37,
         "oldest_days": 0, "crm_weighted": 0.0, "expected_bookings": 0.0, "expected_won": 0.0},
        {"stage": "opportunity", "threshold_days": 180.0, "stale_open": 3, "open": 20,
         "oldest_days": 412, "crm_weighted": 1e5, "expected_bookings": 2e4,
         "expected_won": 0.2}])
    rows = render_stale(table, "USD", 90).splitlines()[2:]
    assert rows[0].split()[:5] == ["sql", "90", "0", "/", "37"] and rows[0].split()[5] == "-"
    assert rows[1].split()[5] == "412"


def test_a_history_dated_after_today_warns_when_it_sets_the_as_of_date(tmp_path):
    """No --as-of: the as-of date is the history's last date; a mistyped 2099 there moves the
    forecast to start in 2099, so it is warned about (even with --quiet)."""
    from click.testing import CliRunner

    from forecast.cli import main

    log = tmp_path / "future.csv"
    log.write_text("lead_id,stage,entered_at,amount,segment\nA,lead,2026-01-05,,organic\n"
                   "B,lead,2099-01-01,,organic\n")
    for args in (["run", "--paths", "10", "--horizon", "5", "--quiet"], ["describe"]):
        res = CliRunner().invoke(main, [*args, "--history", str(log)])
        assert res.exit_code == 0, res.output
        assert "warning: the last date in future.csv is 2099-01-01, after today" in res.stderr
    res = CliRunner().invoke(main, ["run", "--paths", "10", "--horizon", "5", "--quiet",
                                    "--history", str(log), "--as-of", "2099-01-01"])
    assert "after today" not in res.stderr  # chosen: no warning


def test_describe_as_of_without_history_is_an_error():
    from click.testing import CliRunner

    from forecast.cli import main

    res = CliRunner().invoke(main, ["describe", "--as-of", "2026-01-01"])
    assert res.exit_code == 1 and "--as-of dates the open deals of --history" in res.stderr
