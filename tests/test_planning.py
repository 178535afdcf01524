"""Scenarios against a baseline, sweeps, sensitivity and the probabilistic reverse funnel:
the library (``forecast.planning``) and the commands (``forecast scenario|sweep|sensitivity|
plan``)."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from forecast import planning
from forecast.cli import main
from forecast.scenario import Scenario, parse_change
from tests.conftest import AS_OF

SAMPLE_AS_OF = "2026-09-30"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def small(b2b, b2b_params, b2b_pipeline):
    """The b2b model with a tenth of its arrivals and a 250-lead pipeline: fast runs."""
    return planning.Setting(model=b2b, params=b2b_params.with_arrivals_scaled(0.1),
                            pipeline=b2b_pipeline, as_of=AS_OF, horizon=78, paths=2000,
                            seed=5)


def test_an_empty_scenario_gives_exactly_the_baseline(small):
    base, empty = planning.run_scenarios(small, [Scenario.empty("nothing")])
    for name in ("bookings", "won", "expired", "recaptured", "lost_to_expiry", "entered",
                 "arrivals", "occupancy"):
        np.testing.assert_array_equal(getattr(base, name), getattr(empty, name))


def test_common_random_numbers_keep_untouched_leads_identical(small, b2b):
    """Arrivals of one segment cut from day 30: the days before are identical path by path,
    and so are the other segments' arrivals afterwards."""
    c = parse_change({"lever": "arrivals", "segment": "partner", "multiply": 0.0,
                      "from": (AS_OF + dt.timedelta(days=31)).isoformat()}, b2b, "t")
    base, cut = planning.run_scenarios(small, [Scenario("cut", "", (c,))])
    np.testing.assert_array_equal(base.bookings[:, :30], cut.bookings[:, :30])
    np.testing.assert_array_equal(base.entered[:, :30], cut.entered[:, :30])
    assert np.all(cut.arrivals[:, 30:] <= base.arrivals[:, 30:])
    assert cut.arrivals[:, 30:].sum() < base.arrivals[:, 30:].sum()


@pytest.mark.parametrize("scale", [0.1, 3.0])
def test_common_random_numbers_hold_for_a_dated_change_of_rates(small, b2b, scale):
    """SQLs go cold half as fast from day 30: a lead still there on that date goes on from its
    own draw, rescaled, so the days before it are identical path by path, with small cohorts
    and large ones."""
    from dataclasses import replace

    setting = replace(small, params=small.params.with_arrivals_scaled(scale), paths=200)
    c = parse_change({"lever": "expiry", "stage": "sql", "multiply": 0.5,
                      "from": (AS_OF + dt.timedelta(days=31)).isoformat()}, b2b, "t")
    base, slow = planning.run_scenarios(setting, [Scenario("sla", "", (c,))])
    for name in ("entered", "expired", "won", "recaptured"):
        np.testing.assert_array_equal(getattr(base, name)[:, :30], getattr(slow, name)[:, :30])
    sql = b2b.state_index("sql")
    assert slow.expired[:, 30:, sql].sum() < 0.8 * base.expired[:, 30:, sql].sum()


def test_the_baseline_beside_a_dated_scenario_is_run_s_forecast(small, b2b):
    """A scenario's date cuts every run of the family, the baseline included, and moves none
    of its draws: the baseline is `forecast run`'s forecast path by path, with or without
    dated scenarios beside it (it used to be drawn by another scheme when one had a date)."""
    from forecast.outlook import simulate_ahead

    c = parse_change({"lever": "win_rate", "add": 0.05,
                      "from": (AS_OF + dt.timedelta(days=41)).isoformat()}, b2b, "t")
    base, _ = planning.run_scenarios(small, [Scenario("later", "", (c,))])
    run = simulate_ahead(small.model, small.params, small.pipeline, small.as_of, small.horizon,
                         small.paths, small.seed, occupancy_days=small.occupancy_days)
    for name in ("bookings", "won", "expired", "recaptured", "lost_to_expiry", "entered",
                 "arrivals", "occupancy"):
        np.testing.assert_array_equal(getattr(base, name), getattr(run, name), err_msg=name)


def test_compare_bands_and_probability_of_doing_better(small, b2b):
    c = parse_change({"lever": "win_rate", "add": 0.1}, b2b, "t")
    base, better = planning.run_scenarios(small, [Scenario("w", "", (c,))])
    from forecast.summarize import periods

    per = periods(AS_OF, small.horizon, "month")
    frame = planning.compare(base, better, per, "bookings", (0.1, 0.5, 0.9))
    total = frame[frame["period"] == "total"].iloc[0]
    diff = better.bookings.sum(1) - base.bookings.sum(1)
    assert total["delta_mean"] == pytest.approx(diff.mean())
    assert total["p_better"] == pytest.approx(np.mean(diff > 0))
    assert total["p_better"] > 0.5 > total["p_worse"]


@pytest.mark.slow
def test_plan_reaches_the_target_with_the_stated_probability(small):
    """The plan's arrivals (searched on 1,000 paths), checked on 4,000 fresh paths (another
    seed): P(bookings in the period >= target) is the confidence within Monte Carlo error
    (3 standard errors of the two estimates: 0.045), and 20% fewer leads fall clearly short
    (the plan is not an overshoot)."""
    w = planning.window("2024-05", dt.date(2024, 5, 1), dt.date(2024, 5, 31), AS_OF)
    base = planning.run_scenarios(small, [], baseline=True)[0]
    target = float(np.median(planning.in_window(base.bookings, w))) * 1.3
    result = planning.plan(planning.Setting(**{**small.__dict__, "paths": 1000}), target, w,
                           0.8)
    assert result.factor > 1 and result.current_probability < 0.5
    check = planning.Setting(**{**small.__dict__, "paths": 4000, "seed": 999})

    def reach(factor):
        res = planning.run_scenarios(check, [planning.arrivals_scenario(factor)],
                                     baseline=False)[0]
        return float(np.mean(planning.in_window(res.bookings, w) >= target))

    assert abs(reach(result.factor) - 0.8) < 0.045
    assert reach(0.8 * result.factor) < 0.75


def test_a_target_far_out_of_reach_is_refused_after_two_runs(small):
    """Expected bookings are linear in the arrivals' multiplier, so a target that even 1,024
    times the leads cannot reach on average (Markov's bound, with a margin) is refused after
    the runs at 0 and 1 times them, not after a dozen runs of up to 1,024 times the leads;
    a reachable target is still searched (the test above)."""
    w = planning.window("2024-05", dt.date(2024, 5, 1), dt.date(2024, 5, 31), AS_OF)
    setting = small  # 2,000 paths: enough new leads' wins to trust their mean
    runs = []
    with pytest.raises(ValueError, match=r"would book about .* on average, too little"):
        planning.plan(setting, 1e12, w, 0.8, progress=lambda done, _: runs.append(done))
    assert runs == [1, 2]


def test_a_reachable_target_is_not_refused_on_a_noisy_slope(b2b, b2b_params):
    """The early refusal extrapolates the new leads' mean bookings 1,024 times: with an empty
    pipeline, a month's window and 100 paths, today's arrivals win nothing in the window on
    these paths (slope 0), yet about 512 times them reach 300,000 half the time. With too few
    new wins to trust the slope, the search runs and finds the plan."""
    from forecast.simulate import Pipeline

    w = planning.window("next-30-days", AS_OF + dt.timedelta(1), AS_OF + dt.timedelta(30),
                        AS_OF)
    setting = planning.Setting(model=b2b, params=b2b_params.with_arrivals_scaled(0.1),
                               pipeline=Pipeline.empty(), as_of=AS_OF, horizon=w.last + 1,
                               paths=100, seed=5)
    result = planning.plan(setting, 300_000, w, 0.5)
    assert 128 <= result.factor <= 1024 and result.probability >= 0.5


def test_classic_reverse_funnel_arithmetic(b2b, b2b_params):
    w = planning.window("2027Q1", dt.date(2027, 1, 1), dt.date(2027, 3, 31),
                        dt.date(2026, 9, 30))
    c = planning.classic_reverse_funnel(b2b, b2b_params, 1_000_000, w)
    rates = planning.stage_rates(b2b, b2b_params)
    assert c["won"] == pytest.approx(1_000_000 / rates["mean_deal"])
    assert c["lead"] == pytest.approx(c["won"] / np.prod(
        [rates[k] for k in ("lead->mql", "mql->sql", "sql->opportunity", "opportunity->won")]))
    assert c["leads_per_week"] == pytest.approx(c["lead"] / (90 / 7))
    # The model documents ~1% of leads converting and ~$100k won deals.
    assert c["lead"] / c["won"] == pytest.approx(100, rel=0.4)
    assert rates["mean_deal"] == pytest.approx(100_000, rel=0.05)


# ---- the commands ----------------------------------------------------------------------------

def test_scenario_command_table_json_out_and_ledger(tmp_path):
    empty = tmp_path / "nothing.toml"
    empty.write_text('name = "Nothing"\n')
    args = ["scenario", "scenarios/win_rate_plus_5_points.toml", empty, "--paths", 200,
            "--horizon", 60, "--quiet"]
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    assert "Win rate +5 points" in res.output and "P(better)" in res.output
    res = invoke(*args, "--format", "json")
    # The no-change scenario is said on stderr (even with --quiet), stdout stays JSON.
    assert "scenario 'Nothing' is the baseline itself" in res.stderr
    data = json.loads(res.stdout)
    rows = pd.DataFrame(data["rows"])
    nothing = rows[rows["scenario"] == "Nothing"]
    assert (nothing.filter(like="delta_") == 0).all().all() and (nothing["p_better"] == 0).all()
    win = rows[(rows["scenario"] == "Win rate +5 points") & (rows["period"] == "total")]
    assert win["delta_mean"].iloc[0] > 0
    ledger = tmp_path / "l.duckdb"
    res = invoke(*args, "--out", tmp_path / "out", "--ledger", ledger)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "scenarios.csv").exists()
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["scenarios"]
    from forecast import ledger as ledger_mod

    runs = ledger_mod.list_runs(ledger)
    assert list(runs["scenario"]) == ["baseline", "Win rate +5 points", "Nothing"]
    # `bands` shows the latest forecast, never a what-if run.
    res = invoke("bands", "--ledger", ledger)
    assert res.exit_code == 1 and "only what-if runs" in res.output


def test_scenario_command_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[change]]\nlever = "arrivals"\nadd = -1000\n')  # fails on the parameters
    res = invoke("scenario", bad, "--paths", 10, "--horizon", 10, "--quiet")
    assert res.exit_code == 1 and str(bad) in res.output and "below 0 leads" in res.output
    res = invoke("scenario", tmp_path / "missing.toml", "--paths", 10, "--quiet")
    assert res.exit_code == 1 and "missing.toml" in res.output


def test_seeds_example_neglected_sqls_cost_money():
    res = invoke("scenario", "scenarios/five_of_forty_sqls_neglected.toml", "--history",
                 "scenarios/forty_sqls.csv", "--no-arrivals", "--horizon", 365, "--paths", 400,
                 "--format", "json", "--quiet")
    assert res.exit_code == 0, res.output
    rows = pd.DataFrame(json.loads(res.output)["rows"])
    total = rows[rows["period"] == "total"].iloc[0]
    # 5 of 40 SQLs at ~25% and ~$100k: about $125k expected, never a gain.
    assert -200_000 < total["delta_mean"] < -60_000
    # Rarely better: a neglected lead may come back from nurture and win where, worked, it
    # was lost (its own random stream, another trajectory).
    assert total["p_better"] < 0.02
    # The 40 SQLs book about $720k in a year (12,000 paths over six seeds); 400 paths put
    # the mean within about $17k of it (a path's standard deviation is about $350k).
    assert 650_000 < total["baseline_mean"] < 790_000


def test_sweep_command(tmp_path):
    chart = tmp_path / "sweep.png"
    res = invoke("sweep", "--lever", "win_rate", "--from", -0.1, "--to", 0.1, "--steps", 5,
                 "--period", "2026-11", "--paths", 200, "--target", 1_000_000, "--chart", chart,
                 "--format", "csv", "--quiet")
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(pd.io.common.StringIO(res.output))
    assert list(frame["value"]) == pytest.approx([-0.1, -0.05, 0, 0.05, 0.1])
    assert frame["bookings_mean"].is_monotonic_increasing
    assert frame["p_target"].iloc[-1] > frame["p_target"].iloc[0]
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = invoke("sweep", "--lever", "conversion", "--from", 1, "--to", 2, "--quiet")
    assert res.exit_code == 1 and "needs 'stage'" in res.output


def test_sensitivity_command_with_spend(tmp_path):
    spend = tmp_path / "spend.csv"
    spend.write_text("segment,month,spend\npaid_search,2026-08,50000\npaid_search,2026-09,70000\n"
                     "paid_social,2026-09,40000\norganic,2026-09,15000\nevents,2026-09,30000\n"
                     "partner,2026-09,10000\n")
    chart = tmp_path / "tornado.png"
    res = invoke("sensitivity", "--paths", 100, "--horizon", 45, "--target", 1_000_000,
                 "--spend", spend, "--chart", chart, "--format", "json", "--quiet")
    assert res.exit_code == 0, res.output
    rows = pd.DataFrame(json.loads(res.output)["rows"])
    assert {"win rate", "deal size", "arrivals partner", "days in sql", "recapture"} <= set(
        rows["lever"])
    # ranked by the change in mean bookings the helpful way, which is the way of the two
    # that raises the mean more
    assert rows["delta_mean_helpful"].is_monotonic_decreasing
    assert (rows["delta_mean_helpful"] >= rows["delta_mean_harmful"]).all()
    # Deal size +10% books 10% more on every path (same deals, larger amounts) and changes
    # nothing about how many deals close, so CAC is unchanged.
    # (known amounts of open deals stay as they are, so a little under 10%).
    deal = rows[rows["lever"] == "deal size"].iloc[0]
    assert (deal["helpful_factor"], deal["harmful_factor"]) == pytest.approx((1.1, 0.9))
    assert deal["p50_base"] < deal["p50_helpful"] <= 1.1 * deal["p50_base"]
    assert deal["cac_helpful"] == deal["cac_base"]
    assert deal["ltv_cac_base"] < deal["ltv_cac_helpful"] <= 1.1 * deal["ltv_cac_base"]
    assert chart.read_bytes()[:4] == b"\x89PNG"


def test_shown_differences_and_costs_read_right():
    """A mean difference of nothing is "0.0", never "-0.0"; a CAC with no deal won in the
    window is "no wins", not "$inf"."""
    from forecast.planning_cli import _cac, _show

    assert [_show(x, "won_deals", "USD") for x in (-0.0, -0.04, 0.04, -1.25, -250.0)] == [
        "0.0", "0.0", "0.0", "-1.2", "-250"]
    assert _show(-0.0, "bookings", "USD") == "$0"
    assert _cac(float("inf"), "USD") == "no wins" and _cac(1234.0, "EUR") == "1.23k EUR"


def _table_rows(output: str, first_column: str) -> dict[str, dict[str, str]]:
    """A `_render` table in ``output`` (columns separated by 2+ spaces): {first cell: {header:
    cell}}."""
    import re

    lines = output.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(first_column + " "))
    head = re.split(r"\s{2,}", lines[at].strip())
    rows = {}
    for line in lines[at + 2:]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = dict(zip(head, cells, strict=True))
    return rows


_SMALL_SENSITIVITY = ["--period", "2026-10", "--paths", 100, "--quiet"]


@pytest.fixture(scope="module")
def small_sensitivity():
    """`forecast sensitivity` over October 2026, 100 paths: {format: stdout}."""
    out = {}
    for fmt in ("table", "csv", "json"):
        res = invoke("sensitivity", *_SMALL_SENSITIVITY, "--format", fmt)
        assert res.exit_code == 0, res.output
        out[fmt] = res.output
    return out


@pytest.mark.parametrize(("lever", "stage", "name"), [
    ("velocity", "opportunity", "days in opportunity"),
    ("expiry", "lead", "going cold from lead"),
])
def test_sensitivity_columns_mean_what_they_say_for_a_lever_helpful_down(
        small_sensitivity, lever, stage, name):
    """Days in stage and going cold help bookings when they go down: the value under each
    header (table, CSV and JSON) is what `sweep` gives for that move of the lever. (The
    columns were headed "P50 -10%" / "P50 +10%" but held harmful / helpful, swapped for these
    levers.)"""
    from forecast.outputs import money

    res = invoke("sweep", "--lever", lever, "--stage", stage, "--from", 0.9, "--to", 1.1,
                 "--steps", 3, *_SMALL_SENSITIVITY, "--format", "json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)["rows"]
    sweep = {round(r["value"], 6): r["bookings_p50"] for r in rows}
    same = sweep[1.0]
    assert sweep[0.9] != sweep[1.1]  # the lever moves P50 at all, so a swap would show
    mean = {round(r["value"], 6): r["bookings_mean"] for r in rows}
    # Down helps. Going cold from lead barely reaches October's bookings (its +-10% moves
    # the mean of 100 paths by less than their noise), so the way is shown where the lever
    # has room: a quarter, +-50%, 300 paths (3.24M, 3.14M, 3.05M for going cold from lead).
    res = invoke("sweep", "--lever", lever, "--stage", stage, "--from", 0.5, "--to", 1.5,
                 "--steps", 3, "--period", "2026Q4", "--paths", 300, "--quiet", "--format",
                 "json")
    wide = [r["bookings_mean"] for r in json.loads(res.output)["rows"]]
    assert wide[0] > wide[1] > wide[2]

    # The columns follow the runs: the helpful way is the one with the higher mean in the
    # window (for going cold from lead in October that is within the noise, either way).
    good, bad = (0.9, 1.1) if mean[0.9] > mean[1.1] else (1.1, 0.9)
    if lever == "velocity":  # days in opportunity: far outside the noise
        assert good == 0.9
    row = next(r for r in json.loads(small_sensitivity["json"])["rows"] if r["lever"] == name)
    assert row["helpful_factor"] == pytest.approx(good)
    assert row["harmful_factor"] == pytest.approx(bad)
    assert row["p50_base"] == pytest.approx(same, rel=1e-12)
    assert row["p50_helpful"] == pytest.approx(sweep[good], rel=1e-12)
    assert row["p50_harmful"] == pytest.approx(sweep[bad], rel=1e-12)
    assert row["delta_p50_helpful"] == pytest.approx(sweep[good] - same, rel=1e-9, abs=1e-6)
    assert row["delta_p50_harmful"] == pytest.approx(sweep[bad] - same, rel=1e-9, abs=1e-6)
    assert row["delta_mean_helpful"] == pytest.approx(mean[good] - mean[1.0], rel=1e-9)
    assert row["delta_mean_harmful"] == pytest.approx(mean[bad] - mean[1.0], rel=1e-9)

    csv = pd.read_csv(pd.io.common.StringIO(small_sensitivity["csv"])).set_index("lever")
    csv = csv.loc[name]
    assert csv["p50_helpful"] == pytest.approx(sweep[good], rel=1e-12)
    assert csv["p50_harmful"] == pytest.approx(sweep[bad], rel=1e-12)

    table = _table_rows(small_sensitivity["table"], "lever")
    cells = table[name]
    assert cells["helpful way"] == ("-10%" if good == 0.9 else "+10%") + (
        " (noise)" if row["lost_in_noise"] else "")
    assert cells["P50 helpful"] == money(sweep[good])
    assert cells["P50 harmful"] == money(sweep[bad])
    assert cells["change of mean helpful"] == (f"{money(mean[good] - mean[1.0])} ± "
                                               f"{money(row['delta_mean_se_helpful'])}")
    assert cells["change of mean harmful"] == (f"{money(mean[bad] - mean[1.0])} ± "
                                               f"{money(row['delta_mean_se_harmful'])}")
    assert table["win rate"]["helpful way"] == "+10%"


@pytest.mark.parametrize(("text", "message"), [
    ("segment,spend\nx,1\n", "month"),
    ("segment,month,spend\ntv,2026-09,1\n", "row 2"),
    ("segment,month,spend\norganic,2026-09,-5\n", "row 2"),
])
def test_spend_file_errors(tmp_path, text, message):
    spend = tmp_path / "spend.csv"
    spend.write_text(text)
    res = invoke("sensitivity", "--spend", spend, "--paths", 10, "--quiet")
    assert res.exit_code == 1 and str(spend) in res.output and message in res.output


def test_plan_command():
    res = invoke("plan", "--target", 1_000_000, "--period", "2026-11", "--confidence", 0.5,
                 "--paths", 300, "--format", "json", "--quiet")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["probability"] >= 0.5 > out["probability_at_current_arrivals"]
    assert out["arrivals_factor"] > 1
    assert out["leads_per_week"] == pytest.approx(out["leads_per_week_now"]
                                                  * out["arrivals_factor"])
    assert [m["month"] for m in out["monthly"]] == ["2026-10", "2026-11"]
    # The plan as a scenario change, so that typing it into a file cannot be off by 7x:
    # arrivals' add and set take leads per day, the plan answers in leads per week.
    assert out["scenario_change"] == {"lever": "arrivals", "multiply": out["arrivals_factor"]}
    assert out["leads_per_day"] == pytest.approx(out["leads_per_week"] / 7)
    res = invoke("plan", "--target", 1_000_000, "--period", "2026-11", "--confidence", 0.5,
                 "--paths", 300, "--quiet")
    assert (f'as a scenario change: lever = "arrivals", multiply = {out["arrivals_factor"]:.4g} '
            "(all segments, mix kept; add and set take leads per day: "
            f"{out['leads_per_day']:,.1f} a day)") in res.stdout
    assert out["classic"]["leads_per_week"] > 0
    res = invoke("plan", "--target", 1e12, "--period", "2026-10", "--paths", 50, "--quiet")
    assert res.exit_code == 1 and "even 1024 times" in res.output
    res = invoke("plan", "--target", 1e6, "--period", "2026-09", "--quiet")
    assert res.exit_code == 1 and "ended on or before the as-of date" in res.output


@pytest.mark.slow
def test_sensitivity_ranks_by_the_mean_change_on_the_bundled_default():
    """Ranked and oriented by the change in mean bookings (sharp on common random numbers),
    not the P50 (a lumpy sum of deals: `days in sql` once showed P50 down both ways with the
    mean up $9.7k the helpful way). On the bundled default every lever moved the helpful way
    raises mean bookings."""
    res = invoke("sensitivity", "--period", "2027Q1", "--paths", 500, "--format", "json",
                 "--quiet")
    assert res.exit_code == 0, res.output
    rows = pd.DataFrame(json.loads(res.output)["rows"])
    assert len(rows) == 19 and not json.loads(res.output)["skipped"]
    assert rows["delta_mean_helpful"].is_monotonic_decreasing  # the ranking key
    assert (rows["delta_mean_helpful"] >= 0).all(), rows[["lever", "delta_mean_helpful"]]
    assert (rows["delta_mean_helpful"] >= rows["delta_mean_harmful"]).all()
    np.testing.assert_allclose(rows["delta_mean_helpful"], rows["mean_helpful"]
                               - rows["mean_base"], rtol=1e-9)


def test_sensitivity_skips_a_lever_it_cannot_move():
    """A 55% step takes b2b's win rate (0.195 to 0.656 by segment and recycle level) past 1:
    the lever is left out, with the reason, and the rest are computed (it used to abort,
    naming a `--lever` option that sensitivity does not have)."""
    args = ["sensitivity", "--change", 0.55, "--horizon", 30, "--paths", 50, "--quiet"]
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    assert "--lever" not in res.output
    skipped = [line for line in res.stdout.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 1
    assert skipped[0].startswith("skipped win rate") and "out of [0, 1]" in skipped[0]
    assert "(it is 0.195 to 0.656 now)" in skipped[0]
    out = json.loads(invoke(*args, "--format", "json").stdout)
    assert [s.split(" (")[0] for s in out["skipped"]] == ["win rate"]
    # left out both ways (x0.45 alone could be made), the rest computed
    levers = [r["lever"] for r in out["rows"]]
    assert "win rate" not in levers and {"deal size", "conversion sql"} <= set(levers)


def test_sensitivity_library_lists_skipped_levers(small):
    w = planning.window("2024-05", dt.date(2024, 5, 1), dt.date(2024, 5, 31), AS_OF)
    from dataclasses import replace

    frame = planning.sensitivity(replace(small, paths=20), 0.9, w, None)
    assert any(s.startswith("win rate") for s in frame.attrs["skipped"])
    assert "win rate" not in set(frame["lever"]) and len(frame) > 0


@pytest.mark.parametrize(("metric", "better"), [
    ("bookings", "higher"), ("won_deals", "higher"), ("recaptured", "higher"),
    ("arrivals", "higher"), ("lost_to_expiry", "lower"), ("expired_all", "lower"),
    ("expired_sql", "lower"), ("in_nurture", "lower"), ("in_opportunity", "higher"),
])
def test_better_is_the_right_way_for_each_metric(metric, better):
    assert planning.lower_is_better(metric) is (better == "lower")


def test_scenario_p_better_is_lower_for_money_lost_to_expiry(small, b2b):
    """SQLs worked within 2 days lose far less to expiry: that is better (P(better) was the
    share of paths where the loss went *up*, 0%)."""
    from forecast.summarize import periods

    c = parse_change({"lever": "expiry", "stage": "sql", "within_days": 2}, b2b, "t")
    base, sla = planning.run_scenarios(small, [Scenario("sla", "", (c,))])
    per = periods(AS_OF, small.horizon, "month")
    frame = planning.compare(base, sla, per, "lost_to_expiry", (0.1, 0.5, 0.9))
    total = frame[frame["period"] == "total"].iloc[0]
    diff = sla.lost_to_expiry.sum(1) - base.lost_to_expiry.sum(1)
    assert total["better"] == "lower"
    assert total["p_better"] == pytest.approx(np.mean(diff < 0))
    assert total["p_worse"] == pytest.approx(np.mean(diff > 0))
    assert total["delta_mean"] < 0 and total["p_better"] > 0.9

    res = invoke("scenario", "scenarios/sql_worked_within_48_hours.toml", "--metric",
                 "lost_to_expiry", "--by", "quarter", "--paths", 200, "--horizon", 60,
                 "--quiet")
    assert res.exit_code == 0, res.output
    row = _table_rows(res.stdout, "period")["total"]
    assert row["mean difference"].startswith("-$") and row["P(better)"] == "100%"
    assert "strictly lower: for lost_to_expiry, lower is better" in res.stdout
    res = invoke("scenario", "scenarios/win_rate_plus_5_points.toml", "--paths", 100,
                 "--horizon", 30, "--quiet")
    assert "strictly higher: for bookings, higher is better" in res.stdout


def test_sweep_target_zero_keeps_its_column():
    res = invoke("sweep", "--lever", "win_rate", "--from", 0, "--to", 0.05, "--steps", 2,
                 "--horizon", 30, "--paths", 50, "--target", 0, "--quiet")
    assert res.exit_code == 0, res.output
    rows = _table_rows(res.stdout, "win_rate")
    assert [r["P(>= $0)"] for r in rows.values()] == ["100%", "100%"]


def test_scenario_no_arrivals_warns_about_arrivals_changes(tmp_path):
    """--no-arrivals runs without new leads: a change of arrivals by a factor changes
    nothing, and one that adds leads gives them to the scenario only; both say so."""
    more = tmp_path / "more.toml"
    more.write_text('name = "More"\n[[change]]\nlever = "arrivals"\nmultiply = 2\n')
    add = tmp_path / "add.toml"
    add.write_text('name = "Add"\n[[change]]\nlever = "arrivals"\nadd = 5\n')
    args = ["scenario", more, add, "--horizon", 30, "--paths", 50, "--quiet"]
    res = invoke(*args, "--no-arrivals")
    assert res.exit_code == 0, res.output
    warnings = [line for line in res.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 2
    assert f"{more}" in warnings[0] and "changes nothing in this run" in warnings[0]
    assert f"{add}" in warnings[1] and "gives this scenario new leads" in warnings[1]
    assert "--no-arrivals" in warnings[0] and "--no-arrivals" in warnings[1]
    res = invoke(*args)  # with new leads: nothing to warn about
    assert res.exit_code == 0 and "warning" not in res.stderr


# ---- a drift fit's posterior: the walk goes on in every run of the family -------------------

@pytest.fixture(scope="module")
def walking(small):
    """``small`` with a monthly walk of step 0.5 on conversion and arrivals (as a drift fit's
    posterior carries it), on fewer paths: the walk makes a parameter set per path and month."""
    from dataclasses import replace

    n = small.params.n_sets
    params = replace(small.params, walk_sd=np.tile([0.5, 0.5], (n, 1)),
                     walk_months=np.ones(n, dtype=np.int64))
    return replace(small, params=params, paths=300)


def test_a_drift_posterior_s_baseline_is_the_forecast_run_makes(walking):
    """`forecast run` continues the walk over the horizon (forecast.outlook); the planning
    commands used to compare scenarios at the as-of rates, under a header saying the walk was
    continued. Their baseline is now `run`'s forecast, path by path."""
    from dataclasses import replace

    from forecast.outlook import simulate_ahead

    s = walking
    (base,) = planning.run_scenarios(s, [])
    ran = simulate_ahead(s.model, s.params, s.pipeline, s.as_of, s.horizon, s.paths, s.seed)
    for name in ("bookings", "won", "entered", "arrivals", "occupancy"):
        np.testing.assert_array_equal(getattr(base, name), getattr(ran, name))
    (still,) = planning.run_scenarios(replace(s, params=replace(
        s.params, walk_sd=np.zeros_like(s.params.walk_sd))), [])
    # the walk is there: arrivals of a path move together by month (their spread across
    # paths, at these 3 to 4 months of step 0.5, is several times that of the as-of rates)
    assert base.arrivals.sum(1).std() > 3 * still.arrivals.sum(1).std()


def test_a_drift_posterior_s_scenarios_keep_common_random_numbers(walking, b2b):
    """Every run takes the same walk on the same path: an empty scenario is the baseline,
    and a change from a date leaves the days before it identical; the change applies to the
    walked rates after it."""
    day = 40  # after the walk's first month ends: the cut has the walk's dates and this one
    c = parse_change({"lever": "arrivals", "multiply": 0.0,
                      "from": (AS_OF + dt.timedelta(days=day + 1)).isoformat()}, b2b, "t")
    base, empty, cut = planning.run_scenarios(
        walking, [Scenario.empty("nothing"), Scenario("cut", "", (c,))])
    for name in ("bookings", "won", "expired", "entered", "arrivals", "occupancy"):
        np.testing.assert_array_equal(getattr(base, name), getattr(empty, name))
    for name in ("bookings", "won", "entered", "arrivals"):
        np.testing.assert_array_equal(getattr(base, name)[:, :day], getattr(cut, name)[:, :day])
    assert cut.arrivals[:, day:].sum() == 0 < base.arrivals[:, day:].sum()


def test_sensitivity_with_a_walk_leaves_out_levers_the_walked_rates_cannot_take(walking):
    """A lever is checked on the sets the runs change: with a drift posterior, each path's
    walked rates. The check used the as-of rates, so a win rate that fits them but not a
    path's walked one (pushed past 1) stopped the whole command after the baseline ran."""
    w = planning.window("the horizon", AS_OF + dt.timedelta(days=1),
                        AS_OF + dt.timedelta(days=walking.horizon), AS_OF)
    frame = planning.sensitivity(walking, 0.5, w, None)
    skipped = frame.attrs["skipped"]
    assert any(text.startswith("win rate") for text in skipped), skipped
    assert "win rate" not in set(frame["lever"]) and "deal size" in set(frame["lever"])


def test_a_walk_and_a_scenario_s_dates_together_are_bounded(walking, b2b):
    """The walk's sets (paths x months) are copied once per block of a scenario's changes:
    too many is a clear error before any run, not memory and minutes."""
    from dataclasses import replace

    from forecast.scenario import ScenarioError

    dates = [parse_change({"lever": "arrivals", "multiply": 1.1,
                           "from": (AS_OF + dt.timedelta(days=d)).isoformat()}, b2b, "t")
             for d in (20, 40, 60)]
    with pytest.raises(ScenarioError, match=r"copies them 4 times: 30,000 sets, more than "
                                            r"25,000; use --paths 2,083 or fewer"):
        planning.run_scenarios(replace(walking, paths=2500), [Scenario("d", "", tuple(dates))])


def test_scenario_periods_say_the_days_the_horizon_covers():
    """A 120-day horizon covers all 92 days of 2026Q4 and 28 of 2027Q1: the table, CSV and
    JSON say so for every row (total included), as `forecast run` does; "2027Q1 $998k" read
    as a quarter's bookings."""
    args = ["scenario", "scenarios/win_rate_plus_5_points.toml", "--by", "quarter",
            "--horizon", 120, "--paths", 30, "--quiet"]
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    table = _table_rows(res.stdout, "period")
    assert {p: r["days"] for p, r in table.items()} == {"2026Q4": "92", "2027Q1": "28",
                                                       "total": "120"}
    assert "days = the period's days inside the horizon" in res.stdout
    csv = pd.read_csv(pd.io.common.StringIO(invoke(*args, "--format", "csv").stdout))
    rows = json.loads(invoke(*args, "--format", "json").stdout)["rows"]
    expect = [("2026Q4", "2026-10-01", "2026-12-31", 92), ("2027Q1", "2027-01-01",
                                                           "2027-01-28", 28),
              ("total", "2026-10-01", "2027-01-28", 120)]
    assert list(csv[["period", "start", "end", "days"]].itertuples(index=False,
                                                                  name=None)) == expect
    assert [(r["period"], r["start"], r["end"], r["days"]) for r in rows] == expect
    res = invoke("scenario", "scenarios/win_rate_plus_5_points.toml", "--by", "week",
                 "--horizon", 20, "--paths", 20, "--quiet", "--format", "json")
    days = {r["period"]: r["days"] for r in json.loads(res.stdout)["rows"]}
    assert days == {"week of 2026-09-28": 4, "week of 2026-10-05": 7,
                    "week of 2026-10-12": 7, "week of 2026-10-19": 2, "total": 20}


@pytest.mark.parametrize("command", [
    ("sweep", "--lever", "win_rate", "--from", 0, "--to", 0.05, "--steps", 2),
    ("plan", "--target", 1e5),
])
def test_one_period_commands_state_the_days_they_count(command):
    """sweep, sensitivity and plan state their period's span in the header and the JSON;
    a period under way at the as-of date counts only its days after it."""
    for period, span, days in (("2026-11", "2026-11-01 to 2026-11-30, 30 days", 30),
                               ("2026", "2026-10-01 to 2026-12-31, 92 days", 92)):
        res = invoke(*command, "--period", period, "--paths", 5, "--quiet")
        assert res.exit_code == 0, res.output
        assert f"in {period} ({span})" in res.stdout.splitlines()[0]
        out = json.loads(invoke(*command, "--period", period, "--paths", 5, "--quiet",
                                "--format", "json").stdout)
        assert (out["period"], out["days"]) == (period, days)
        assert f"{out['start']} to {out['end']}" == span.split(",")[0]


def test_scenario_and_sensitivity_standard_errors_are_those_of_the_per_path_differences(small,
                                                                                      b2b):
    """The standard error of a mean difference is sd(per-path differences) / sqrt(paths):
    small for a change of rates, nearly that of independent runs for a change of timing."""
    from dataclasses import replace

    from forecast.summarize import periods

    setting = replace(small, paths=300)
    rate = parse_change({"lever": "win_rate", "add": 0.05}, b2b, "t")
    slow = parse_change({"lever": "velocity", "stage": "mql", "multiply": 0.9}, b2b, "t")
    base, win, fast = planning.run_scenarios(setting, [Scenario("w", "", (rate,)),
                                                       Scenario("v", "", (slow,))])
    per = periods(AS_OF, setting.horizon, "month")
    for res in (win, fast):
        frame = planning.compare(base, res, per, "bookings", (0.5,))
        diff = res.bookings.sum(1) - base.bookings.sum(1)
        total = frame[frame["period"] == "total"].iloc[0]
        assert total["delta_mean_se"] == pytest.approx(diff.std(ddof=1) / np.sqrt(300))
    w = planning.window("2024-05", dt.date(2024, 5, 1), dt.date(2024, 5, 31), AS_OF)
    frame = planning.sensitivity(replace(small, paths=200, horizon=w.last + 1), 0.1, w, None)
    row = frame.set_index("lever").loc["win rate"]
    up = planning.run_scenarios(replace(small, paths=200, horizon=w.last + 1), [Scenario(
        "u", "", (planning.levers(b2b)[0].make(0.1),))])
    diff = planning.in_window(up[1].bookings, w) - planning.in_window(up[0].bookings, w)
    assert row["delta_mean_helpful"] == pytest.approx(diff.mean())
    assert row["delta_mean_se_helpful"] == pytest.approx(diff.std(ddof=1) / np.sqrt(200))
    noisy = ((frame["delta_mean_helpful"].abs() <= 2 * frame["delta_mean_se_helpful"])
             & (frame["delta_mean_harmful"].abs() <= 2 * frame["delta_mean_se_harmful"]))
    assert (frame["lost_in_noise"] == noisy).all()


def test_scenario_table_shows_the_standard_error(tmp_path):
    res = invoke("scenario", "scenarios/win_rate_plus_5_points.toml", "--paths", 50,
                 "--horizon", 30, "--quiet", "--format", "json")
    rows = json.loads(res.stdout)["rows"]
    assert all(r["delta_mean_se"] > 0 for r in rows)
    res = invoke("scenario", "scenarios/win_rate_plus_5_points.toml", "--paths", 50,
                 "--horizon", 30, "--quiet")
    from forecast.outputs import money

    total = _table_rows(res.stdout, "period")["total"]
    assert total["s.e."] == money(rows[-1]["delta_mean_se"])
    assert "s.e. = Monte Carlo standard error of the mean difference" in res.stdout


def test_sensitivity_marks_a_lever_lost_in_the_noise():
    """Days in mql, 10% either way, over 2027Q1 on 300 paths: both changes raise mean bookings
    ($92k and $80k), each within 1.5 standard errors ($63k) of zero: a timing lever moves
    every exit day, so the paired differences are nearly as noisy as independent runs. The
    row says so; win rate (standard error $16k) is far outside the noise."""
    res = invoke("sensitivity", "--period", "2027Q1", "--paths", 300, "--quiet", "--format",
                 "json")
    assert res.exit_code == 0, res.output
    rows = pd.DataFrame(json.loads(res.stdout)["rows"]).set_index("lever")
    mql = rows.loc["days in mql"]
    assert mql["delta_mean_helpful"] > 0 and mql["delta_mean_harmful"] > 0
    assert mql["delta_mean_helpful"] < 2 * mql["delta_mean_se_helpful"]
    assert mql["delta_mean_se_helpful"] * np.sqrt(300) > 800_000  # sd of the differences
    assert bool(mql["lost_in_noise"]) and not bool(rows.loc["win rate", "lost_in_noise"])
    assert rows.loc["win rate", "delta_mean_se_helpful"] < 0.25 * mql["delta_mean_se_helpful"]


def test_small_sensitivity_table_marks_noise_as_the_json_does(small_sensitivity):
    rows = {r["lever"]: r for r in json.loads(small_sensitivity["json"])["rows"]}
    table = _table_rows(small_sensitivity["table"], "lever")
    assert any(r["lost_in_noise"] for r in rows.values())
    for name, r in rows.items():
        assert table[name]["helpful way"].endswith(" (noise)") is bool(r["lost_in_noise"])
    assert "(2026-10-01 to 2026-10-31, 31 days)" in small_sensitivity["table"].splitlines()[0]


def test_a_dated_scenario_beside_another_leaves_its_baseline_as_run_s():
    """Adding a scenario file with a date inside the horizon cuts every run of the family at
    that date; the other scenarios' baseline stays `forecast run`'s forecast, path by path.
    (Until the cohorts drew from an exit table per epoch, runs cut at a date drew by
    stretches: the same law, other draws, and the baseline moved with the dated file.)"""
    common = ["--paths", 40, "--horizon", 120, "--by", "quarter", "--quiet"]
    ran = json.loads(invoke("run", *common, "--format", "json").stdout)
    ran = {b["period"]: b["mean"] for b in ran["bands"] if b["metric"] == "bookings"}

    def baseline(*files):
        res = invoke("scenario", "scenarios/win_rate_plus_5_points.toml", *files, *common,
                     "--format", "json")
        return {r["period"]: r["baseline_mean"] for r in json.loads(res.stdout)["rows"]
                if r["scenario"] == "Win rate +5 points"}

    assert baseline() == pytest.approx(ran, rel=1e-12)
    # from 2027-01-01, inside the horizon
    assert baseline("scenarios/paid_search_volume_minus_20.toml") == pytest.approx(ran, rel=1e-12)


def test_sweep_leaves_out_a_value_the_lever_cannot_take():
    """A win rate pushed past 1 (b2b's is 0.195 to 0.656) made the whole sweep fail; like
    sensitivity, the sweep now leaves that value out and says why under the table (in the
    JSON's ``skipped``, on stderr with CSV); only when every value fails is it an error."""
    args = ["sweep", "--lever", "win_rate", "--from", 0, "--to", 0.6, "--steps", 3,
            "--paths", 20, "--horizon", 20, "--quiet"]
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    assert list(_table_rows(res.stdout, "win_rate")) == ["add +0", "add +0.3"]
    skipped = [line for line in res.stdout.splitlines() if line.startswith("skipped ")]
    assert skipped == ["skipped --lever win_rate add 0.6 (win_rate): add 0.6 takes the "
                       "probability out of [0, 1] (it is 0.195 to 0.656 now); left out"]
    out = json.loads(invoke(*args, "--format", "json").stdout)
    assert [r["value"] for r in out["rows"]] == pytest.approx([0, 0.3])
    assert [s.split(":")[0] for s in out["skipped"]] == ["--lever win_rate add 0.6 (win_rate)"]
    res = invoke(*args[:-1], "--format", "csv")  # noted on stderr (as sensitivity: not quiet)
    assert res.exit_code == 0 and "skipped --lever win_rate add 0.6" in res.stderr
    assert len(pd.read_csv(pd.io.common.StringIO(res.stdout))) == 2
    # a value the lever never takes (a negative factor) is left out the same way
    res = invoke("sweep", "--lever", "velocity", "--stage", "sql", "--from", -1, "--to", 1,
                 "--steps", 3, "--paths", 20, "--horizon", 20, "--quiet", "--format", "json")
    out = json.loads(res.stdout)
    assert [r["value"] for r in out["rows"]] == [1.0] and len(out["skipped"]) == 2
    res = invoke("sweep", "--lever", "win_rate", "--from", 0.5, "--to", 0.6, "--steps", 2,
                 "--paths", 20, "--horizon", 20, "--quiet")
    assert res.exit_code == 1 and res.stdout == "" and res.stderr.count("\n") == 1
    assert "add 0.5 takes the probability out of [0, 1]" in res.stderr


def test_scenario_metric_takes_the_metrics_run_reports():
    """`run` and `bands` report expired_sql (and leads in each state); scenario --metric
    refused them. Its baseline is `run`'s, path by path (no dates), so the bands agree."""
    common = ["--paths", 40, "--horizon", 60, "--quiet"]
    ran = json.loads(invoke("run", *common, "--format", "json").stdout)["bands"]
    for metric in ("expired_sql", "in_sql"):
        res = invoke("scenario", "scenarios/sql_worked_within_48_hours.toml", "--metric",
                     metric, *common, "--format", "json")
        assert res.exit_code == 0, res.output
        rows = json.loads(res.stdout)["rows"]
        expect = {b["period"]: b["mean"] for b in ran if b["metric"] == metric}
        assert {r["period"]: r["baseline_mean"] for r in rows} == pytest.approx(expect)
        total = rows[-1]
        assert total["unit"] == "count"
        # worked SQLs stay SQLs instead of going cold
        assert (total["delta_mean"] < 0) is (metric == "expired_sql")
    res = invoke("scenario", "scenarios/sql_worked_within_48_hours.toml", "--metric",
                 "in_sql", *common)
    assert "in_sql at each period's end" in res.stdout
    res = invoke("scenario", "scenarios/sql_worked_within_48_hours.toml", "--metric",
                 "expired_opportunity", *common)
    assert res.exit_code == 2 and "Invalid value for '--metric'" in res.stderr
    assert "expired_sql" in res.stderr
