"""Bands by period from hand-built simulation results: sums, stocks, quantiles, totals."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from forecast import summarize
from forecast.model import load_model
from forecast.simulate import SimulationResult


def fake_result(n_paths=5, horizon=45, as_of=dt.date(2026, 1, 20)):
    """Path p books p+1 dollars every day; occupancy records the day index."""
    model = load_model("b2b")
    per = summarize.periods(as_of, horizon, "month")
    n_states = len(model.states)
    bookings = np.tile(np.arange(1, n_paths + 1, dtype=float)[:, None], (1, horizon))
    won = np.ones((n_paths, horizon), dtype=np.int64)
    expired = np.zeros((n_paths, horizon, model.n_active), dtype=np.int64)
    expired[:, :, model.state_index("sql")] = 2
    occ = np.zeros((n_paths, len(per.last_day), n_states), dtype=np.int64)
    occ[:, :, 0] = per.last_day[None, :]
    zeros = np.zeros((n_paths, horizon), dtype=np.int64)
    return SimulationResult(
        model=model, as_of=as_of, seed=0, set_index=np.zeros((n_paths, 1), np.int64),
        switch_days=np.zeros(0, np.int64),
        bookings=bookings, won=won, expired=expired, recaptured=zeros, lost_to_expiry=zeros * 1.0,
        entered=np.zeros((n_paths, horizon, n_states), np.int32), arrivals=zeros,
        occupancy=occ, occupancy_days=per.last_day, n_open=0)


def test_periods_split_the_horizon_into_calendar_months():
    per = summarize.periods(dt.date(2026, 1, 20), 45, "month")
    assert per.labels == ["2026-01", "2026-02", "2026-03"]
    assert per.start == [dt.date(2026, 1, 21), dt.date(2026, 2, 1), dt.date(2026, 3, 1)]
    assert per.end == [dt.date(2026, 1, 31), dt.date(2026, 2, 28), dt.date(2026, 3, 6)]
    assert list(per.last_day - per.first_day + 1) == [11, 28, 6]


def test_quarter_and_week_labels():
    q = summarize.periods(dt.date(2026, 9, 30), 100, "quarter")
    assert q.labels == ["2026Q4", "2027Q1"]
    w = summarize.periods(dt.date(2026, 11, 22), 10, "week")  # a Sunday
    assert w.labels == ["week of 2026-11-23", "week of 2026-11-30"]


def test_bands_sum_flows_and_take_stocks_at_period_end():
    res = fake_result()
    b = summarize.bands(res, "month", (0.1, 0.5, 0.9)).set_index(["metric", "period"])
    jan = b.loc[("bookings", "2026-01")]
    assert jan["mean"] == pytest.approx(11 * 3.0)  # paths book 1..5 a day: mean 3
    assert jan["p50"] == pytest.approx(33.0)
    assert jan["p10"] == pytest.approx(np.quantile(11 * np.arange(1, 6), 0.1))
    assert jan["sd"] == pytest.approx(np.std(11 * np.arange(1, 6), ddof=1))
    assert b.loc[("won_deals", "2026-02")]["mean"] == 28
    assert b.loc[("expired_sql", "2026-03")]["mean"] == 12
    assert b.loc[("bookings", "total")]["mean"] == pytest.approx(45 * 3.0)
    # stocks: value at the period's end, and the total row is the horizon's end
    assert b.loc[("in_lead", "2026-02")]["mean"] == 38
    assert b.loc[("in_lead", "total")]["mean"] == 44


def test_cumulative_bands():
    res = fake_result()
    b = summarize.bands(res, "month", (0.5,), cumulative=True).set_index(["metric", "period"])
    assert b.loc[("won_deals", "2026-02")]["mean"] == 11 + 28
    assert b.loc[("won_deals", "total")]["mean"] == 45


@pytest.mark.parametrize("text", ["0.5,2", "abc", "", "0"])
def test_parse_quantiles_rejects(text):
    with pytest.raises(ValueError, match="quantiles"):
        summarize.parse_quantiles(text)


def test_parse_quantiles_sorts_and_labels():
    assert summarize.parse_quantiles("0.9, 0.1,0.5,0.5") == (0.1, 0.5, 0.9)
    assert summarize.quantile_label(0.025) == "p2.5"
