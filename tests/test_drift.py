"""Drift: a history whose conversion doubles at a known date. The drift-aware fit (a monthly
random walk anchored at the as-of month) recovers the new rates; the plain fit, which
averages the history, does not."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import numpy as np
import pytest

from forecast.describe import drift_table, render_drift
from forecast.eventlog import EventLog
from forecast.fit import declared_moves, fit, month_offsets, posterior_parameters
from forecast.parameters import Parameters
from forecast.simulate import simulate_history
from forecast.statistics import sufficient_statistics

pytestmark = pytest.mark.slow

START = dt.date(2023, 1, 2)
DAYS, SWITCH = 540, 360  # rates double on day 360: the last 180 days run at the new rates


def test_month_offsets():
    got = month_offsets(dt.date(2024, 11, 30), 3, dt.date(2025, 1, 15))
    assert list(got) == [2, 1, 1]


@pytest.fixture(scope="module")
def regime(two_stage, two_stage_params):
    """History from two parameter sets: moves towards won (advance, recapture, won) twice as
    fast from day 360 on."""
    moves = declared_moves(two_stage)
    h = two_stage_params.hazards.copy()
    new = h.copy()
    for s, d in zip(moves.source[moves.towards_won], moves.dest[moves.towards_won],
                    strict=True):
        new[:, s, ..., d] *= 2.0
    return _switched(two_stage, two_stage_params, new), h[0], new[0]


def _switched(model, params, new_hazards):
    """The statistics of a history (five times the arrivals) whose hazards become
    ``new_hazards`` on day SWITCH."""
    base = params.with_arrivals_scaled(5.0)
    both = Parameters.concat([base, replace(base, hazards=new_hazards)])
    frame = simulate_history(model, both, START, DAYS, seed=4, set_index=(0, 1),
                             switch_days=(SWITCH,))
    frame["entered_at"] = frame["entered_at"].astype("datetime64[ns]")
    log = EventLog(frame=frame, path="simulated", as_of=None, sha256="sim")
    return sufficient_statistics(log, model, START + dt.timedelta(days=DAYS - 1))


def test_a_window_s_walk_spans_the_window_s_months_only(two_stage, two_stage_params):
    """With a trailing window the walk has a month for each month the window reaches and no
    more: months before it have no data, so their multipliers were the prior alone, and `fit`
    and `describe` printed them among the measured ones."""
    from forecast.fit import build_model

    frame = simulate_history(two_stage, two_stage_params, START, DAYS, seed=4)
    frame["entered_at"] = frame["entered_at"].astype("datetime64[ns]")
    log = EventLog(frame=frame, path="simulated", as_of=None, sha256="sim")
    as_of = START + dt.timedelta(days=DAYS - 1)  # 2024-06-24
    months = {}
    for since in (None, as_of - dt.timedelta(days=180)):  # the window from 2023-12-28 on
        stats = sufficient_statistics(log, two_stage, as_of, since=since)
        with build_model(stats, two_stage, drift=True) as pm_model:
            months[since] = len(pm_model.coords["months_back"])
    assert months == {None: 17, as_of - dt.timedelta(days=180): 6}  # back to 2023-01 / 2023-12
    # a window inside the as-of month leaves the walk nothing to move from: an error (it gave a
    # posterior without a walk, which `fit` still called a drift fit)
    from forecast.fit import PosteriorError

    stats = sufficient_statistics(log, two_stage, as_of, since=as_of - dt.timedelta(days=10))
    with pytest.raises(PosteriorError, match="the window from 2024-06-15 lies inside it"):
        build_model(stats, two_stage, drift=True)

def _a_to_b(params, model):
    """Posterior draws of the hazard a -> b in the last age band, segment x, fresh leads."""
    return params.hazards[:, model.state_index("a"), -1, 0, 0, model.state_index("b")]


def test_drift_fit_recovers_the_new_rates_and_the_plain_fit_does_not(two_stage, regime):
    stats, old, new = regime
    want_new = new[two_stage.state_index("a"), -1, 0, 0, two_stage.state_index("b")]
    want_old = old[two_stage.state_index("a"), -1, 0, 0, two_stage.state_index("b")]
    drawn = {}
    for drift in (False, True):
        result = fit(stats, two_stage, draws=200, tune=300, chains=2, seed=6, progress=False,
                     drift=drift)
        params = posterior_parameters(result.idata, two_stage)
        drawn[drift] = _a_to_b(params, two_stage)
        # a drift fit's walk goes on over the forecast (forecast.outlook), month by month
        assert params.has_walk == drift
        assert (params.walk_months == (1 if drift else 0)).all()
        # with Student-t steps (the default drift_step_nu), continued the same way
        assert (params.walk_nu == (3.0 if drift else np.inf)).all()
    # What `describe` shows: months before the change ran at about half the as-of month's
    # conversion, months after it at about the same.
    table = drift_table(result.idata.posterior, stats.as_of)
    # a walk per stage that moves towards won leave: a (-> b), b (-> won), nurture (-> a, b)
    assert list(dict.fromkeys(table["quantity"])) == ["conversion a", "conversion b",
                                                      "conversion nurture", "arrivals"]
    conv = table[table["quantity"] == "conversion a"].set_index("month")
    assert conv.loc["2023-07", "hi"] < 0.8 and conv.loc["2023-07", "lo"] < 0.5 < \
        conv.loc["2023-07", "hi"] + 0.1
    assert conv.loc["2024-05", "lo"] < 1.0 < conv.loc["2024-05", "hi"]
    assert "Drift: rates of each month relative to 2024-06" in render_drift(table, stats.as_of)
    text = render_drift(table, stats.as_of, posterior_parameters(result.idata, two_stage))
    assert "Forecasts continue the walk, one step a month" in text
    lo, hi = np.quantile(drawn[True], [0.05, 0.95])
    assert lo <= want_new <= hi, (lo, hi, want_new)
    lo, hi = np.quantile(drawn[False], [0.05, 0.95])
    assert hi < want_new and lo > want_old, (lo, hi, want_old, want_new)  # in between


def test_the_steps_law_follows_the_priors(two_stage, regime, tmp_path):
    """Student-t steps by default (3 d.o.f., drawn as a scale mixture of normals); ``drift_step_nu
    = inf`` in ``[priors]`` gives normal steps. Checked on the prior: a step over the step size
    is t(3), or normal (KS tests with 4,000 draws, which tell the two apart at p < 1e-6)."""
    import pymc as pm
    from scipy import stats as st

    from forecast.fit import build_model
    from forecast.model import load_model
    from tests.conftest import TWO_STAGE_TOML

    stats = regime[0]

    def steps(model):
        with build_model(stats, model, drift=True) as pm_model:
            prior = pm.sample_prior_predictive(draws=4000, random_seed=3,
                                               var_names=["drift_by_month", "drift_step_sd"])
        first = prior.prior["drift_by_month"].values[0, :, :, 0]  # [draw, stage]: one step
        return (first / prior.prior["drift_step_sd"].values[0][:, None]).ravel(), pm_model

    t_steps, t_model = steps(two_stage)
    assert "drift_mix" in t_model.named_vars
    assert st.kstest(t_steps, st.t(3).cdf).pvalue > 0.01
    assert st.kstest(t_steps, st.norm.cdf).pvalue < 1e-6
    path = tmp_path / "normal.toml"
    path.write_text(TWO_STAGE_TOML + "\n[priors]\ndrift_step_nu = inf\n")
    n_steps, n_model = steps(load_model(path))
    assert "drift_mix" not in n_model.named_vars
    assert st.kstest(n_steps, st.norm.cdf).pvalue > 0.01
    assert st.kstest(n_steps, st.t(3).cdf).pvalue < 1e-6


def test_a_change_in_one_stage_stays_in_that_stage(two_stage, two_stage_params):
    """Only a -> b doubles (a better lead source, say): each stage has its own walk, so the
    drift fit recovers the new a -> b and leaves b -> won where it was. (With one walk shared
    by every move towards won, b -> won came out raised too, and the forecast compounded it:
    docs/backtest.md, "On histories made by a funnel".)"""
    a, b, won = (two_stage.state_index(x) for x in ("a", "b", "won"))
    h = two_stage_params.hazards.copy()
    new = h.copy()
    new[:, a, ..., b] *= 2.0
    stats = _switched(two_stage, two_stage_params, new)
    result = fit(stats, two_stage, draws=200, tune=300, chains=2, seed=6, progress=False,
                 drift=True)
    params = posterior_parameters(result.idata, two_stage)
    # b -> won over its first two bands (where its events are), segment x, fresh leads
    for (s, d, truth) in ((a, b, 2.0), (b, won, 1.0)):
        got = params.hazards[:, s, :2, 0, 0, d] / h[0, s, :2, 0, 0, d]
        lo, hi = np.quantile(got.mean(axis=1), [0.025, 0.975])
        assert lo <= truth <= hi, ((s, d), lo, hi, truth)
    table = drift_table(result.idata.posterior, stats.as_of).set_index(["quantity", "month"])
    assert table.loc[("conversion a", "2023-07"), "hi"] < 0.8  # half the as-of month's
    assert table.loc[("conversion b", "2023-07"), "lo"] < 1.0 < \
        table.loc[("conversion b", "2023-07"), "hi"]  # unchanged
