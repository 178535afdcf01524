"""`forecast backtest`: the cut at the cutoff (nothing from the future leaks), the truth, the two
baselines, the scores, and the command (outputs, errors, determinism, the fit cache).

Most tests use ``--no-fit`` (the model file's defaults) so that they run in seconds; one slow
test fits at the cutoffs. The simulation-based calibration suite is tests/test_calibration.py.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from forecast import backtest as bt
from forecast.cli import main
from forecast.eventlog import EventLog, InputError
from forecast.statistics import sufficient_statistics

CUTOFF = dt.date(2024, 1, 31)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def make_log(rows) -> EventLog:
    frame = pd.DataFrame(rows, columns=["lead_id", "stage", "entered_at", "amount", "segment"])
    frame["entered_at"] = pd.to_datetime(frame["entered_at"]).astype("datetime64[ns]")
    frame["amount"] = frame["amount"].astype(float)
    return EventLog(frame=frame, path="hand.csv", as_of=None, sha256="hand")


NAN = float("nan")
HAND = [
    ("L1", "a", "2024-01-02", NAN, "x"), ("L1", "b", "2024-01-05", 100, "x"),
    ("L1", "won", "2024-01-20", 100, "x"),
    ("L2", "a", "2024-01-02", NAN, "x"), ("L2", "b", "2024-01-10", 200, "x"),
    ("L2", "lost", "2024-01-15", NAN, "x"),
    ("L3", "a", "2024-01-03", NAN, "x"), ("L3", "b", "2024-01-12", 300, "x"),
    ("L3", "won", "2024-02-10", 300, "x"),                      # open at the cutoff
    ("L4", "a", "2024-01-04", NAN, "x"), ("L4", "lost", "2024-01-06", NAN, "x"),
    ("L5", "a", "2024-01-25", NAN, "y"), ("L5", "b", "2024-02-05", 50, "y"),  # open in a
    ("L6", "a", "2024-02-03", NAN, "x"), ("L6", "b", "2024-02-04", 70, "x"),
    ("L6", "won", "2024-02-20", 70, "x"),                       # new business after it
    ("L7", "a", "2024-03-05", NAN, "x"),                        # the export's last day
]


@pytest.fixture(scope="module")
def hand(two_stage):
    return make_log(HAND)


# ---- scores ---------------------------------------------------------------------------------

def test_crps_is_the_energy_form_of_the_empirical_distribution():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=7), 0.3
    pairwise = np.abs(x[:, None] - x[None, :]).mean()
    assert bt.crps(x, y) == pytest.approx(np.abs(x - y).mean() - 0.5 * pairwise, rel=1e-12)
    assert bt.crps(np.array([5.0]), 2.0) == pytest.approx(3.0)
    # a wide normal sample against its closed form: CRPS(N(0,1), 0) = 2φ(0) - 1/√π
    z = rng.normal(size=20_000)
    assert bt.crps(z, 0.0) == pytest.approx(2 / np.sqrt(2 * np.pi) - 1 / np.sqrt(np.pi), abs=0.01)


def test_pit_pinball_and_bands():
    assert bt.pit(np.array([1.0, 2, 2, 3]), 2.0, u=0.5) == pytest.approx(0.5)
    assert bt.pit(np.array([1.0, 2, 2, 3]), 2.0, u=0.0) == pytest.approx(0.25)
    assert bt.pinball(np.array([0.0, 10.0]), 8.0, levels=(0.5,)) == pytest.approx(0.5 * 3)
    sample = np.arange(0.0, 1001.0)  # quantile q is exactly 1000 q
    s = bt.score(sample, 300.0, u=0.5)
    assert (s["in50"], s["in80"], s["in90"]) == (1.0, 1.0, 1.0)
    s = bt.score(sample, 60.0, u=0.5)
    assert (s["in50"], s["in80"], s["in90"]) == (0.0, 0.0, 1.0)
    assert s["p50_error"] == pytest.approx(440.0) and s["p50_rel_error"] == pytest.approx(440 / 60)
    assert s["pit"] == pytest.approx(60.5 / 1001)


def test_nb_moments():
    assert bt.nb_moments(np.array([3, 3, 3, 3]))[1] == np.inf  # not over-dispersed: Poisson
    mean, size = bt.nb_moments(np.array([0, 10, 0, 10]))
    assert mean == 5 and size == pytest.approx(25 / (100 / 3 - 5))


def test_parse_cutoffs():
    assert bt.parse_cutoffs("2017-06-30, 2017-05-31,2017-06-30") == [dt.date(2017, 5, 31),
                                                                      dt.date(2017, 6, 30)]
    with pytest.raises(ValueError, match="'2017-13-01' is not a date"):
        bt.parse_cutoffs("2017-05-31,2017-13-01")


# ---- the history at the cutoff, the truth, the baselines ------------------------------------

def test_truncate_keeps_what_was_known(hand, two_stage):
    known = bt.truncate(hand, CUTOFF)
    assert known.frame["entered_at"].max() <= pd.Timestamp(CUTOFF)
    assert set(known.frame["lead_id"]) == {"L1", "L2", "L3", "L4", "L5"}
    assert known.as_of == CUTOFF
    with pytest.raises(InputError, match="no rows on or before the cutoff 2023-12-31"):
        bt.truncate(hand, dt.date(2023, 12, 31))


def test_actuals_count_the_horizon_only(hand, two_stage):
    assert bt.actuals(hand, two_stage, CUTOFF, 30) == {"bookings": 370.0, "won_deals": 2.0}
    assert bt.actuals(hand, two_stage, CUTOFF, 15) == {"bookings": 300.0, "won_deals": 1.0}
    with pytest.raises(InputError, match=r"hand.csv: cutoff 2024-01-31 \+ 40 days = 2024-03-11 "
                                         r"is after the end of the history \(its last date is "
                                         r"2024-03-05\)"):
        bt.actuals(hand, two_stage, CUTOFF, 40)


def test_stage_win_rates_are_the_share_of_closed_deals_won(hand, two_stage):
    rate, closed = bt.stage_win_rates(bt.truncate(hand, CUTOFF), two_stage)
    assert rate[0] == pytest.approx(1 / 3) and closed[0] == 3  # L1 won, L2 and L4 lost
    assert rate[1] == pytest.approx(1 / 2) and closed[1] == 2  # L1 won, L2 lost
    assert np.isnan(rate[2]) and closed[2] == 0  # nobody went through nurture


def test_weighted_pipeline_mean_is_the_weighted_sum(hand, two_stage):
    known = bt.truncate(hand, CUTOFF)
    n = 40_000
    out = bt.weighted_pipeline(known, two_stage, CUTOFF, 30, n, np.random.default_rng(1))
    # L3 (stage b, 300) x 1/2 + L5 (stage a, amount unknown: segment y has no won deal, so the
    # mean won deal overall, 100) x 1/3 + new business: Poisson(1) deals (L1 was created and
    # won in the 30 days before the cutoff) of 100 each.
    want_deals, want_bookings = 0.5 + 1 / 3 + 1, 0.5 * 300 + 100 / 3 + 100
    assert out["won_deals"].mean() == pytest.approx(want_deals, abs=4 * 1.1 / np.sqrt(n))
    assert out["bookings"].mean() == pytest.approx(want_bookings, abs=4 * 180 / np.sqrt(n))


def test_run_rate_uses_the_trailing_weeks(hand, two_stage):
    known = bt.truncate(hand, CUTOFF)
    n = 20_000
    out = bt.run_rate(known, two_stage, CUTOFF, 28, n, np.random.default_rng(2), trailing=28)
    # one win (L1, 100) in the 4 weeks before the cutoff: 0.25 a week, over 4 weeks
    assert out["won_deals"].mean() == pytest.approx(1.0, abs=0.05)
    assert np.all(out["bookings"] == 100 * out["won_deals"])


# ---- the command, on a simulated history ---------------------------------------------------

@pytest.fixture(scope="module")
def history(tmp_path_factory, two_stage):
    path = tmp_path_factory.mktemp("backtest") / "history.csv"
    out = invoke("simulate-history", "--model", two_stage.path, "--start", "2024-01-01",
                 "--days", 200, "--seed", 5, "--out", path)
    assert out.exit_code == 0, out.output
    return path


def backtest_args(history, two_stage, *extra):
    return ["backtest", history, "--model", two_stage.path, "--cutoffs",
            "2024-04-30,2024-05-31", "--horizon", 45, "--paths", 300, "--no-fit", *extra]


def test_backtest_table_csv_json_and_outputs(history, two_stage, tmp_path):
    out = invoke(*backtest_args(history, two_stage))
    assert out.exit_code == 0, out.output
    for text in ("Backtest: model two_stage", "bookings, each horizon:", "won deals, each",
                 "weighted pipeline", "run rate", "in 50/80/90", "P50 MAE"):
        assert text in out.stdout
    csv = invoke(*backtest_args(history, two_stage, "--format", "csv"))
    table = pd.read_csv(io.StringIO(csv.stdout))
    assert len(table) == 3 * 2 * 3  # forecasters x metrics x (2 cutoffs + all)
    assert set(table["cutoff"]) == {"2024-04-30", "2024-05-31", "all"}
    assert {"actual", "p5", "p50", "p95", "in50", "in80", "in90", "pit", "crps", "pinball",
            "p50_error"} <= set(table.columns)
    overall = table[table["cutoff"] == "all"]
    assert overall[["in50", "in80", "in90", "pit"]].apply(lambda c: c.between(0, 1)).all().all()
    per = table[table["cutoff"] != "all"]
    assert (per.groupby(["cutoff", "metric"])["actual"].nunique() == 1).all()  # one truth
    doc = json.loads(invoke(*backtest_args(history, two_stage, "--format", "json")).stdout)
    assert doc["cutoffs"] == ["2024-04-30", "2024-05-31"] and len(doc["scores"]) == 18

    target = tmp_path / "bt"
    out = invoke(*backtest_args(history, two_stage, "--out", target, "--quiet"))
    assert out.exit_code == 0, out.output
    assert sorted(p.name for p in target.iterdir()) == ["backtest.csv", "calibration.png",
                                                        "forecasts.csv", "summary.json"]
    assert (target / "calibration.png").read_bytes()[:4] == b"\x89PNG"
    forecasts = pd.read_csv(target / "forecasts.csv")
    assert len(forecasts) == 3 * 2 * 2 and {"p1", "p50", "p99", "actual"} <= set(forecasts)
    q = forecasts[[f"p{i}" for i in range(1, 100)]].to_numpy()
    assert np.all(np.diff(q, axis=1) >= 0)


def test_same_seed_same_numbers(history, two_stage):
    first = invoke(*backtest_args(history, two_stage, "--format", "csv", "--seed", 3))
    second = invoke(*backtest_args(history, two_stage, "--format", "csv", "--seed", 3))
    other = invoke(*backtest_args(history, two_stage, "--format", "csv", "--seed", 4))
    assert first.stdout == second.stdout
    assert first.stdout != other.stdout


def test_future_rows_change_the_truth_but_not_the_forecasts(history, two_stage, tmp_path):
    """Rows after the cutoff are replaced by others (every open lead wins a fortune the next
    day, new leads arrive and win): the truth changes, the forecasts and the fit's input do
    not."""
    cutoff = dt.date(2024, 4, 30)
    log = pd.read_csv(history)
    past = log[pd.to_datetime(log["entered_at"]) <= pd.Timestamp(cutoff)]
    last = past.groupby("lead_id").tail(1)
    open_ids = last[last["stage"].isin(["a", "b", "nurture"])]["lead_id"]
    day = (cutoff + dt.timedelta(days=1)).isoformat()
    planted = pd.concat([
        past,
        pd.DataFrame({"lead_id": open_ids, "stage": "won", "entered_at": day,
                      "amount": 1e6, "segment": last.set_index("lead_id").loc[open_ids,
                                                                               "segment"].values}),
        pd.DataFrame({"lead_id": [f"NEW{i}" for i in range(30)], "stage": "a",
                      "entered_at": day, "amount": np.nan, "segment": "y"}),
        pd.DataFrame({"lead_id": [f"NEW{i}" for i in range(30)], "stage": "won",
                      "entered_at": "2024-05-10", "amount": 5e5, "segment": "y"}),
        pd.DataFrame({"lead_id": ["END"], "stage": ["a"], "entered_at": ["2024-07-18"],
                      "amount": [np.nan], "segment": ["x"]}),
    ]).sort_values(["lead_id", "entered_at"], kind="stable")
    other = tmp_path / "planted.csv"
    planted.to_csv(other, index=False)

    def run(path):
        out = invoke("backtest", path, "--model", two_stage.path, "--cutoffs", cutoff,
                     "--horizon", 45, "--paths", 300, "--no-fit", "--format", "csv")
        assert out.exit_code == 0, out.output
        return pd.read_csv(io.StringIO(out.stdout)).query("cutoff != 'all'")

    a, b = run(history), run(other)
    forecast_columns = ["mean", *(c for c in a.columns if re.fullmatch(r"p\d+", c))]
    pd.testing.assert_frame_equal(a[forecast_columns], b[forecast_columns])
    assert (b["actual"] > a["actual"]).all()

    # ... and the fit sees the same statistics from either history
    from forecast.eventlog import read_event_log

    stats = [sufficient_statistics(bt.truncate(read_event_log(p, two_stage), cutoff), two_stage,
                                   cutoff) for p in (history, other)]
    for name in ("events", "exposure", "arrivals", "deal_amounts"):
        assert np.array_equal(getattr(stats[0], name), getattr(stats[1], name)), name


@pytest.mark.parametrize(("extra", "message"), [
    (["--cutoffs", "2024-04-31"], "--cutoffs: '2024-04-31' is not a date"),
    (["--cutoffs", "2024-07-01"], "cutoff 2024-07-01 + 45 days = 2024-08-15 is after the end "
                                  "of the history (its last date is 2024-07-1"),
    (["--cutoffs", "2023-06-01"], "no rows on or before the cutoff 2023-06-01"),
])
def test_errors_are_one_line(history, two_stage, extra, message):
    args = ["backtest", history, "--model", two_stage.path, "--horizon", 45, "--no-fit", *extra]
    out = CliRunner().invoke(main, [str(a) for a in args])
    assert out.exit_code == 1
    assert message in out.stderr
    assert out.stderr.startswith("forecast: error: ") and out.stderr.count("\n") == 1


def test_out_must_be_a_directory(history, two_stage, tmp_path):
    clash = tmp_path / "file"
    clash.write_text("x")
    out = CliRunner().invoke(main, [str(a) for a in backtest_args(history, two_stage, "--out",
                                                                   clash)])
    assert out.exit_code == 2 and "is a file" in out.stderr  # click's usage error, as `run`'s


@pytest.mark.slow
def test_fits_at_each_cutoff_and_caches_them(history, two_stage, tmp_path):
    target = tmp_path / "bt"
    args = ["backtest", history, "--model", two_stage.path, "--cutoffs", "2024-05-31",
            "--horizon", 45, "--paths", 200, "--draws", 40, "--tune", 40, "--chains", 1,
            "--out", target, "--format", "csv"]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert "cutoff 2024-05-31: fitting" in first.stderr
    fits = list((target / "fits").glob("fit-2024-05-31-*.nc"))
    assert len(fits) == 1
    second = invoke(*args)
    assert "reusing the fit" in second.stderr
    assert second.stdout == first.stdout
    assert (target / "backtest.csv").read_text() == first.stdout
