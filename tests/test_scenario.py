"""Levers (``forecast.scenario``): each definition checked exactly on the hazard table and, for
the ones a planner reads off outcomes, by simulation against the definition."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from forecast.hazards import median_days_in_stage, shelf_life, stage_exit
from forecast.model import WON
from forecast.scenario import (
    Scenario,
    ScenarioError,
    apply_changes,
    load_scenario,
    needed_band_edges,
    neglect_pipeline,
    parse_change,
    scenario_run,
    split_bands,
)
from forecast.simulate import simulate_history

AS_OF = dt.date(2026, 9, 30)


def change(model, **raw):
    return parse_change(raw, model, "test")


def exit_prob(model, params, stage):
    """``[set, g, r, dest]``: first-exit probabilities of a lead entering ``stage``."""
    return stage_exit(params.hazards[:, model.state_index(stage)], model.age_bands).prob


def band_totals(params, model, stage):
    return params.hazards[:, model.state_index(stage)].sum(-1)


# ---- exact definitions on the hazard table ---------------------------------------------------

@pytest.mark.parametrize(("raw", "expect"), [
    ({"set": 0.30}, lambda old: np.full_like(old, 0.30)),
    ({"add": 0.05}, lambda old: old + 0.05),
    ({"multiply": 0.5}, lambda old: old * 0.5),
])
def test_win_rate_sets_the_won_share_and_keeps_the_timing(b2b, b2b_params, raw, expect):
    won = b2b.state_index(WON)
    new = apply_changes(b2b, b2b_params, [change(b2b, lever="win_rate", **raw)])
    old_p = exit_prob(b2b, b2b_params, "opportunity")[..., won]
    np.testing.assert_allclose(exit_prob(b2b, new, "opportunity")[..., won], expect(old_p),
                               atol=1e-12)
    # The total hazard of every band (so the time in stage) is what it was.
    np.testing.assert_allclose(band_totals(new, b2b, "opportunity"),
                               band_totals(b2b_params, b2b, "opportunity"), rtol=1e-12)
    # Other stages untouched.
    other = [i for i in range(b2b.n_transient) if i != b2b.state_index("opportunity")]
    np.testing.assert_array_equal(new.hazards[:, other], b2b_params.hazards[:, other])


def test_conversion_of_one_segment_only(b2b, b2b_params):
    c = change(b2b, lever="conversion", stage="mql", multiply=1.2, segment="organic")
    new = apply_changes(b2b, b2b_params, [c])
    g = b2b.segment_names.index("organic")
    sql = b2b.state_index("sql")
    old_p, new_p = (exit_prob(b2b, p, "mql")[..., sql] for p in (b2b_params, new))
    np.testing.assert_allclose(new_p[:, g], 1.2 * old_p[:, g], rtol=1e-12)
    others = [i for i in range(len(b2b.segments)) if i != g]
    np.testing.assert_array_equal(new_p[:, others], old_p[:, others])


def test_velocity_keeps_outcomes_and_scales_mean_days(b2b, b2b_params):
    new = apply_changes(b2b, b2b_params, [change(b2b, lever="velocity", stage="sql",
                                                 multiply=0.5)])
    ex_old = stage_exit(b2b_params.hazards[:, b2b.state_index("sql")], b2b.age_bands)
    ex_new = stage_exit(new.hazards[:, b2b.state_index("sql")], b2b.age_bands)
    np.testing.assert_allclose(ex_new.prob, ex_old.prob, atol=1e-10)
    mean_old = ex_old.days.sum(-1) / ex_old.prob.sum(-1)
    mean_new = ex_new.days.sum(-1) / ex_new.prob.sum(-1)
    np.testing.assert_allclose(mean_new, 0.5 * mean_old, rtol=1e-9)
    assert np.all(median_days_in_stage(b2b, new.hazards[0])[b2b.state_index("sql")]
                  < median_days_in_stage(b2b, b2b_params.hazards[0])[b2b.state_index("sql")])


def test_expiry_shelf_life_and_multiply(b2b, b2b_params):
    new = apply_changes(b2b, b2b_params, [change(b2b, lever="expiry", stage="sql", set=10)])
    assert np.all(shelf_life(b2b, new.hazards[0], "sql") == 10)
    assert np.all(shelf_life(b2b, b2b_params.hazards[0], "sql") == 30)
    half = apply_changes(b2b, b2b_params, [change(b2b, lever="expiry", stage="sql",
                                                  multiply=0.5)])
    s, mql, nur, opp = (b2b.state_index(x) for x in ("sql", "mql", "nurture", "opportunity"))
    np.testing.assert_allclose(half.hazards[:, s, ..., [mql, nur]],
                               0.5 * b2b_params.hazards[:, s, ..., [mql, nur]])
    np.testing.assert_array_equal(half.hazards[:, s, ..., opp], b2b_params.hazards[:, s, ..., opp])


def test_recapture_arrivals_and_deal_size(b2b, b2b_params):
    n = b2b.state_index("nurture")
    rec = apply_changes(b2b, b2b_params, [change(b2b, lever="recapture", multiply=2)])
    np.testing.assert_allclose(rec.hazards[:, n, ..., b2b.state_index("mql")],
                               2 * b2b_params.hazards[:, n, ..., b2b.state_index("mql")])
    np.testing.assert_array_equal(rec.hazards[:, n, ..., b2b.state_index("lost")],
                                  b2b_params.hazards[:, n, ..., b2b.state_index("lost")])
    total = apply_changes(b2b, b2b_params, [change(b2b, lever="arrivals", set=100)])
    assert total.arrivals_mean.sum() == pytest.approx(100)
    np.testing.assert_allclose(total.arrivals_mean / total.arrivals_mean.sum(),
                               b2b_params.arrivals_mean / b2b_params.arrivals_mean.sum())
    one = apply_changes(b2b, b2b_params, [change(b2b, lever="arrivals", multiply=0.8,
                                                 segment="paid_search")])
    g = b2b.segment_names.index("paid_search")
    assert one.arrivals_mean[0, g] == pytest.approx(0.8 * b2b_params.arrivals_mean[0, g])
    assert one.arrivals_mean.sum() == pytest.approx(b2b_params.arrivals_mean.sum()
                                                    - 0.2 * b2b_params.arrivals_mean[0, g])
    deals = apply_changes(b2b, b2b_params, [change(b2b, lever="deal_size", set=150_000)])
    np.testing.assert_allclose(deals.deal_mean, 150_000)
    np.testing.assert_array_equal(deals.deal_sigma, b2b_params.deal_sigma)


def test_sla_adds_a_band_edge_and_stops_expiry_from_that_age(b2b, b2b_params):
    c = change(b2b, lever="expiry", stage="sql", within_days=2)
    assert needed_band_edges(b2b, [c]) == (2,)
    model, params = split_bands(b2b, b2b_params, needed_band_edges(b2b, [c]))
    assert model.age_bands == (0, 2, 7, 30, 90, 180)
    # Splitting alone changes nothing: same exits, same absorption.
    np.testing.assert_allclose(exit_prob(model, params, "sql"),
                               exit_prob(b2b, b2b_params, "sql"), atol=1e-14)
    new = apply_changes(model, params, [c])
    s, mql, nur = (model.state_index(x) for x in ("sql", "mql", "nurture"))
    cold = new.hazards[:, s][..., [mql, nur]]  # [set, band, g, r, 2]
    assert np.all(cold[:, 1:] == 0)
    assert np.all(cold[:, 0] == params.hazards[:, s, 0][..., [mql, nur]])


# ---- by simulation: what a planner reads off the outcomes ------------------------------------

def _first_exits(log: pd.DataFrame, stage: str, before: dt.date) -> pd.DataFrame:
    """Each entry into ``stage`` before ``before``: the next state and the days to it."""
    log = log.sort_values(["lead_id", "entered_at"], kind="stable").reset_index(drop=True)
    nxt = log.groupby("lead_id").shift(-1)
    rows = log[(log["stage"] == stage) & (log["entered_at"] < before) & nxt["stage"].notna()]
    nxt = nxt.loc[rows.index]
    days = (pd.to_datetime(nxt["entered_at"]) - pd.to_datetime(rows["entered_at"])).dt.days
    return pd.DataFrame({"next": nxt["stage"].to_numpy(), "days": days.to_numpy()})


@pytest.fixture(scope="module")
def opportunity_exits(b2b, b2b_params):
    """First exits of ~7,000 fresh opportunities under the defaults, under ``win_rate set
    0.30`` and under a naive won-hazard scaling: new leads enter as opportunities (20 a day
    for a year; all but ~0.2% have left their stage 540 days later)."""
    model = replace(b2b, entry="opportunity")
    params = b2b_params.with_arrivals_scaled(0.5)
    start = dt.date(2024, 1, 1)
    out = {}
    for name, p in [("base", params),
                    ("set30", apply_changes(b2b, params, [change(b2b, lever="win_rate",
                                                                 set=0.30)])),
                    ("naive", _naive_won_scaling(b2b, params, 0.6))]:
        log = simulate_history(model, p, start, 900, seed=7)
        out[name] = _first_exits(log, "opportunity", start + dt.timedelta(days=360))
    return out


def _naive_won_scaling(model, params, factor):
    """The won hazard alone scaled (the definition we do not use: it shortens the cycle)."""
    h = params.hazards.copy()
    h[:, model.state_index("opportunity"), ..., model.state_index(WON)] *= factor
    return replace(params, hazards=h)


def test_win_rate_set_030_by_simulation(opportunity_exits):
    """After ``win_rate set 0.30`` the share of opportunities closing won is 0.30 within Monte
    Carlo error, and the days to close of won deals barely move: the same median within 3 days
    and a KS test on 6,000 deals that cannot tell them apart (the mean moves 3%, by the hazard
    table; scaling the won hazard alone moves it far more, next test)."""
    base, new = opportunity_exits["base"], opportunity_exits["set30"]
    n = len(new)
    assert n > 6000
    share = np.mean(new["next"] == WON)
    assert abs(share - 0.30) < 4 * math.sqrt(0.3 * 0.7 / n), share
    assert np.mean(base["next"] == WON) > 0.40  # the change is a real one
    won_days = [x.loc[x["next"] == WON, "days"] for x in (base, new)]
    assert stats.ks_2samp(*won_days).pvalue > 1e-3
    assert abs(np.median(won_days[0]) - np.median(won_days[1])) <= 3


def test_the_naive_definition_would_fail_that_test(opportunity_exits):
    """Power: scaling the won hazard alone changes the days to close (and the test sees it)."""
    base, naive = opportunity_exits["base"], opportunity_exits["naive"]
    won_days = [x.loc[x["next"] == WON, "days"] for x in (base, naive)]
    assert stats.ks_2samp(*won_days).pvalue < 1e-3  # the threshold the test above uses


def test_sla_by_simulation(b2b, b2b_params):
    """With SQLs worked within 2 days, no SQL goes cold at 2 days or more."""
    c = change(b2b, lever="expiry", stage="sql", within_days=2)
    model, params = split_bands(b2b, b2b_params.with_arrivals_scaled(5), (2,))
    start = dt.date(2024, 1, 1)
    exits = {name: _first_exits(simulate_history(model, p, start, 400, seed=3), "sql",
                                start + dt.timedelta(days=400))
             for name, p in [("base", params), ("sla", apply_changes(model, params, [c]))]}
    cold = {k: x[x["next"].isin(["mql", "nurture"])] for k, x in exits.items()}
    assert (cold["base"]["days"] > 2).sum() > 500
    assert (cold["sla"]["days"] > 2).sum() == 0 and len(cold["sla"]) > 20


# ---- the open pipeline: neglect ---------------------------------------------------------------

def test_neglect_sends_the_chosen_leads_cold(b2b, b2b_pipeline):
    c = change(b2b, lever="neglect", stage="sql", count=5)
    sql, nurture = b2b.state_index("sql"), b2b.state_index("nurture")
    out = neglect_pipeline(b2b, b2b_pipeline, [c], seed=1)
    moved = (b2b_pipeline.state == sql) & (out.state == nurture)
    assert moved.sum() == min(5, (b2b_pipeline.state == sql).sum())
    assert np.all(out.age[moved] == 0)
    assert np.all(out.recycle[moved] == np.minimum(b2b_pipeline.recycle[moved] + 1,
                                                   b2b.recycle_levels - 1))
    same = neglect_pipeline(b2b, b2b_pipeline, [c], seed=1)
    np.testing.assert_array_equal(same.state, out.state)
    share = neglect_pipeline(b2b, b2b_pipeline, [change(b2b, lever="neglect", stage="sql",
                                                        share=1.0)], seed=1)
    assert not np.any(share.state == sql)


# ---- effective dates -------------------------------------------------------------------------

def test_effective_dates_make_epochs(b2b, b2b_params, b2b_pipeline):
    sc = Scenario(name="t", description="", changes=(
        change(b2b, lever="arrivals", multiply=0.5, **{"from": "2026-10-11"}),
        change(b2b, lever="deal_size", multiply=2.0, **{"from": "2026-09-01"}),  # already
        change(b2b, lever="win_rate", add=0.05, **{"from": "2027-06-01"}),  # after horizon
    ))
    run = scenario_run(b2b, b2b_params, b2b_pipeline, sc, AS_OF, 90, 4, seed=0)
    assert list(run.switch_days) == [10]  # 2026-10-11 is day 10 after 2026-09-30
    assert run.params.n_sets == 2 and run.set_index.tolist() == [[0, 1]] * 4
    assert np.allclose(run.params.deal_mean[0], 2 * b2b_params.deal_mean[0])  # from day 0
    assert np.allclose(run.params.arrivals_mean[0], b2b_params.arrivals_mean[0])
    assert np.allclose(run.params.arrivals_mean[1], 0.5 * b2b_params.arrivals_mean[0])
    np.testing.assert_array_equal(run.params.hazards[1], b2b_params.hazards[0])


# ---- files and messages ----------------------------------------------------------------------

def test_bundled_scenarios_load(b2b):
    from pathlib import Path

    files = sorted(Path(__file__).parents[1].joinpath("scenarios").glob("*.toml"))
    assert len(files) >= 5
    for f in files:
        sc = load_scenario(f, b2b)
        assert sc.name and sc.changes and sc.sha256


@pytest.mark.parametrize(("text", "message"), [
    ('[[change]]\nlever = "win"\nadd = 0.1\n', "'lever' must be one of"),
    ('[[change]]\nlever = "win_rate"\nadd = 0.1\nset = 0.3\n', "give exactly one of"),
    ('[[change]]\nlever = "velocity"\nadd = 0.1\nstage = "sql"\n', "'add' is not one of"),
    ('[[change]]\nlever = "conversion"\nadd = 0.1\n', "needs 'stage'"),
    ('[[change]]\nlever = "conversion"\nadd = 0.1\nstage = "demo"\n', "unknown stage 'demo'"),
    ('[[change]]\nlever = "arrivals"\nmultiply = 2\nsegment = "tv"\n', "unknown segment 'tv'"),
    ('[[change]]\nlever = "win_rate"\nset = 1.5\n', "a probability in [0, 1]"),
    ('[[change]]\nlever = "win_rate"\nset = 0.3\nfrom = "soon"\n', "'from' must be a date"),
    ('[[change]]\nlever = "neglect"\ncount = 2\nstage = "sql"\nfrom = 2027-01-01\n',
     "takes no 'from'"),
    ('[[change]]\nlever = "expiry"\nwithin_days = 1.5\nstage = "sql"\n', "whole number"),
    ('[[change]]\nlever = "expiry"\nmultiply = 0.5\nstage = "lead"\ncolour = 1\n',
     "unknown key 'colour'"),
    ('name = "x"\nchange = 3\n', "[[change]] tables"),
    ('name = [\n', "not a valid TOML file"),
])
def test_bad_scenario_files_name_the_file_and_change(tmp_path, b2b, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path, b2b)
    assert str(path) in str(err.value) and message in str(err.value)
    if "[[change]]" in text and "tables" not in message and "TOML" not in message:
        assert "change 1" in str(err.value)


def _with_opportunity(params, model, band, **moves):
    """``params`` with the opportunity stage's hazards of age band ``band`` (a slice) set."""
    h = params.hazards.copy()
    s = model.state_index("opportunity")
    for dest, value in moves.items():
        h[:, s, band, ..., model.state_index(dest)] = value
    return replace(params, hazards=h)


def test_win_rate_tilts_the_odds_alike_in_every_band(b2b, b2b_params):
    """The won share of exits has its odds multiplied by one factor in every age band (per
    parameter set, segment and recycle level), and the other moves keep their split."""
    new = apply_changes(b2b, b2b_params, [change(b2b, lever="win_rate", add=0.05)])
    s, won, lost, nur = (b2b.state_index(x) for x in ("opportunity", WON, "lost", "nurture"))

    def odds(p):
        hs = p.hazards[:, s]
        return hs[..., won] / (hs.sum(-1) - hs[..., won])  # [set, band, g, r]

    ratio = odds(new) / odds(b2b_params)
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:, :1], ratio.shape), rtol=1e-9)
    assert np.all(ratio > 1.2)  # +5 points on about 0.4: a real change
    np.testing.assert_allclose(new.hazards[:, s, ..., lost] / new.hazards[:, s, ..., nur],
                               b2b_params.hazards[:, s, ..., lost]
                               / b2b_params.hazards[:, s, ..., nur], rtol=1e-12)


def test_win_rate_reaches_past_a_band_where_nearly_every_exit_is_won(b2b, b2b_params):
    """A fitted posterior has draws like this: in a band past every closed deal of the history
    the prior speaks, and 99% of its exits can be wins. +5 points is still reached exactly with
    the timing kept (scaling the won share by one factor would need 1.1 x 0.99 > 1 there)."""
    params = _with_opportunity(b2b_params, b2b, slice(-1, None), won=0.0099, lost=0.0001,
                               nurture=0.0)
    won = b2b.state_index(WON)
    new = apply_changes(b2b, params, [change(b2b, lever="win_rate", add=0.05)])
    old_p = exit_prob(b2b, params, "opportunity")[..., won]
    np.testing.assert_allclose(exit_prob(b2b, new, "opportunity")[..., won], old_p + 0.05,
                               atol=1e-12)
    np.testing.assert_allclose(band_totals(new, b2b, "opportunity"),
                               band_totals(params, b2b, "opportunity"), rtol=1e-12)
    last = new.hazards[:, b2b.state_index("opportunity"), -1]
    assert np.all((last[..., won] / last.sum(-1) > 0.99) & (last[..., won] / last.sum(-1) < 1))


def test_out_of_reach_values_are_errors(b2b, b2b_params):
    """What cannot be reached with each band's total kept: wins past the bands where they
    happen, or a lower rate where nothing but wins happens. The message says where the
    probability is and how far it can go, and up to there the lever works exactly."""
    won = b2b.state_index(WON)
    k = list(b2b.age_bands).index(30)
    late = _with_opportunity(b2b_params, b2b, slice(k, None), won=0.0)  # no win from 30 days
    ex = stage_exit(late.hazards[:, b2b.state_index("opportunity")], b2b.age_bands)
    ceiling = ex.band[..., :k].sum(-1)  # closing in the first 30 days at all
    assert 0.1 < ceiling.min() < ceiling.max() < 0.5  # by segment and recycle level
    # the message names the cell furthest out of reach
    with pytest.raises(ScenarioError, match=rf"out of reach: for some segment the probability "
                                            rf"is 0\.\d+ and can reach at most "
                                            rf"{ceiling.min():.3f} "):
        apply_changes(b2b, late, [change(b2b, lever="win_rate", set=ceiling.max() + 0.01)])
    top = apply_changes(b2b, late, [change(b2b, lever="win_rate", set=ceiling.min())])
    np.testing.assert_allclose(exit_prob(b2b, top, "opportunity")[..., won], ceiling.min(),
                               atol=1e-12)

    only_won = _with_opportunity(b2b_params, b2b, slice(0, 1), lost=0.0, nurture=0.0)
    floor = stage_exit(only_won.hazards[:, b2b.state_index("opportunity")],
                       b2b.age_bands).band[..., 0]
    with pytest.raises(ScenarioError, match=rf"can fall no lower than {floor.max():.3f} "):
        apply_changes(b2b, only_won, [change(b2b, lever="win_rate", set=0.0)])
    bottom = apply_changes(b2b, only_won, [change(b2b, lever="win_rate", set=floor.max())])
    np.testing.assert_allclose(exit_prob(b2b, bottom, "opportunity")[..., won], floor.max(),
                               atol=1e-12)

    with pytest.raises(ScenarioError, match=r"out of \[0, 1\]"):
        apply_changes(b2b, b2b_params, [change(b2b, lever="win_rate", add=0.9)])


def test_band_totals_kept_when_the_other_moves_are_tiny(b2b, b2b_params):
    """A band whose other moves are 1e-17 of its won hazard: lowering the win rate moves its
    exits to them without losing the band's total (1 - share rounded to 0 there, and the band
    lost its hazard: leads stayed in the stage for ever)."""
    params = _with_opportunity(b2b_params, b2b, slice(-1, None), won=0.01, lost=1e-19,
                               nurture=0.0)
    for raw in ({"set": 0.0}, {"add": -0.05}):
        new = apply_changes(b2b, params, [change(b2b, lever="win_rate", **raw)])
        np.testing.assert_allclose(band_totals(new, b2b, "opportunity"),
                                   band_totals(params, b2b, "opportunity"), rtol=1e-12)
        assert np.all(stage_exit(new.hazards[:, b2b.state_index("opportunity")],
                                 b2b.age_bands).stay < 1e-12)


def test_win_rate_set_to_the_ends(b2b, b2b_params):
    """``set 1``: every exit of every band is won (the lead still leaves when it did);
    ``set 0``: none is, and lost and nurture keep their split."""
    s, won = b2b.state_index("opportunity"), b2b.state_index(WON)
    one = apply_changes(b2b, b2b_params, [change(b2b, lever="win_rate", set=1.0)])
    np.testing.assert_allclose(one.hazards[:, s, ..., won], band_totals(b2b_params, b2b,
                                                                        "opportunity"))
    assert np.all(np.delete(one.hazards[:, s], won, axis=-1) == 0)
    zero = apply_changes(b2b, b2b_params, [change(b2b, lever="win_rate", set=0.0)])
    assert np.all(zero.hazards[:, s, ..., won] == 0)
    np.testing.assert_allclose(band_totals(zero, b2b, "opportunity"),
                               band_totals(b2b_params, b2b, "opportunity"), rtol=1e-12)


def test_scenario_notes_say_what_has_less_effect_than_it_reads(b2b, b2b_pipeline):
    from forecast.scenario import scenario_notes

    n_sql = int((b2b_pipeline.state == b2b.state_index("sql")).sum())
    sc = Scenario(name="t", description="", changes=(
        change(b2b, lever="arrivals", multiply=2, **{"from": "2027-06-01"}),
        change(b2b, lever="arrivals", multiply=2, **{"from": "2026-10-15"}),
        change(b2b, lever="neglect", stage="sql", count=n_sql + 1),
        change(b2b, lever="neglect", stage="sql", count=n_sql),
    ))
    notes = scenario_notes(b2b, sc, b2b_pipeline, AS_OF, 90)
    assert notes == [
        "test (arrivals): from 2027-06-01, after the horizon's last day 2026-12-29: it changes "
        "nothing in this run",
        f"test (neglect): count {n_sql + 1}, but only {n_sql:,} sql leads are open at "
        "2026-09-30: all of them are neglected"]
    assert scenario_notes(b2b, sc, b2b_pipeline, AS_OF, 365)[:1] == [notes[1]]


@pytest.mark.parametrize(("text", "name"), [("", "quo"), ('name = "status quo"\n', "status quo")])
def test_a_scenario_without_changes_is_noted_as_the_baseline(tmp_path, b2b, b2b_pipeline, text,
                                                             name):
    """An empty file, or one without [[change]] tables, is the baseline: allowed (a "status
    quo" beside other scenarios), but said, since a difference of zero reads as a finding."""
    from forecast.scenario import load_scenario, scenario_notes

    path = tmp_path / "quo.toml"
    path.write_text(text)
    sc = load_scenario(path, b2b)
    assert sc.changes == ()
    assert scenario_notes(b2b, sc, b2b_pipeline, AS_OF, 90) == [
        f"{path}: no [[change]] table: scenario {name!r} is the baseline itself"]


def test_the_win_rate_lever_is_opportunity_to_won_and_its_docs_say_what_sql_to_won_does(
        b2b, b2b_params):
    """``win_rate`` acts on opportunity -> won (55% for a fresh b2b opportunity), while a "25%
    win rate" means SQL -> won: +5 points on the lever move a fresh SQL's chance of closing won
    from 25.1% to 27.3% (weighted by the segments' new leads reaching each stage). The README,
    the lever's definition, sweep's help and the scenario file say so with these numbers."""
    from pathlib import Path

    from click.testing import CliRunner

    import forecast.scenario as scenario_mod
    from forecast.cli import main
    from forecast.hazards import reach_probability

    def weighted_win(params, stage):
        win = reach_probability(b2b, params.hazards, WON)[0]  # [g, state, r]
        reach = reach_probability(b2b, params.hazards, stage)[0]
        w = params.arrivals_mean[0] * reach[:, b2b.state_index(b2b.entry), 0]
        return float((win[:, b2b.state_index(stage), 0] * w).sum() / w.sum())

    plus = apply_changes(b2b, b2b_params, [change(b2b, lever="win_rate", add=0.05)])
    assert round(weighted_win(b2b_params, "opportunity"), 2) == 0.55
    assert round(weighted_win(plus, "opportunity"), 2) == 0.60
    assert (round(weighted_win(b2b_params, "sql"), 3),
            round(weighted_win(plus, "sql"), 3)) == (0.251, 0.273)
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    assert "SQL → won from 25.1% to 27.3%" in readme and "**opportunity → won**" in readme
    assert "from 25.1% to 27.3%" in scenario_mod.__doc__
    assert "SQL -> won from 25.1% to 27.3%" in (
        root / "scenarios" / "win_rate_plus_5_points.toml").read_text()
    help_text = " ".join(CliRunner().invoke(main, ["sweep", "--help"]).output.split())
    assert "win_rate is the opportunity -> won rate" in help_text and "25.1% to 27.3%" in help_text


def test_a_change_dated_on_or_before_the_as_of_date_is_noted(tmp_path, b2b, b2b_pipeline):
    """A change from a date on or before the as-of date was applied from the first day without
    a word (one after the horizon is noted): it is noted in the same style; one from the
    horizon's first day is not."""
    from click.testing import CliRunner

    from forecast.cli import main
    from forecast.scenario import scenario_notes

    sc = Scenario(name="t", description="", changes=(
        change(b2b, lever="arrivals", multiply=2, **{"from": "2026-09-30"}),
        change(b2b, lever="arrivals", multiply=2, **{"from": "2026-10-01"}),
        change(b2b, lever="win_rate", add=0.05, **{"from": "2025-01-01"}),
    ))
    assert scenario_notes(b2b, sc, b2b_pipeline, AS_OF, 90) == [
        "test (arrivals): from 2026-09-30, before the horizon's first day 2026-10-01: it "
        "applies from that day, as if undated",
        "test (win_rate): from 2025-01-01, before the horizon's first day 2026-10-01: it "
        "applies from that day, as if undated"]
    path = tmp_path / "early.toml"
    path.write_text('name = "early"\n[[change]]\nlever = "arrivals"\nmultiply = 0.8\n'
                    "from = 2026-09-01\n")
    res = CliRunner().invoke(main, ["scenario", str(path), "--paths", 5, "--horizon", 10,
                                    "--quiet"])
    assert res.exit_code == 0, res.output
    assert (f"forecast: warning: {path}: change 1 (arrivals): from 2026-09-01, before the "
            "horizon's first day 2026-10-01: it applies from that day, as if undated"
            ) in res.stderr
