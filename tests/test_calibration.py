"""Simulation-based calibration: are the engine's bands honest on data from known rates?

Each repetition draws a parameter set from the fit's own prior (the PyMC model of
``forecast.fit``, prior predictive), simulates a history with our simulator over the history
*and* the horizon, cuts it at the cutoff (``forecast.backtest.truncate``), forecasts the horizon
from the cut history, and ranks the true outcome (read from the uncut history) among the
forecast paths, ties broken at random. If the forecast is the correct predictive distribution,
the rank is uniform on 0..L over repetitions (Talts et al. 2018, "Validating Bayesian inference
algorithms with simulation-based calibration").

- With the true parameters (the oracle), the forecast is exactly the predictive distribution:
  this checks the cut, the open pipeline, the simulator and the truth read-out end to end, with
  many cheap repetitions and a chi-square test that has power.
- With a fit at the cutoff (the real pipeline: statistics, PyMC, posterior draws per path), a
  few repetitions (each fit takes seconds), checked with a KS test on the normalised ranks.
- Both must FAIL for a deliberately miscalibrated forecaster (every hazard and arrival rate
  doubled), or the checks would have no power.

The model is a two-stage funnel (a -> b -> won, lost from both) with one segment and one recycle
level, so that the fit's prior does not depend on the data (segment effects are only added for
moves seen often enough). Its ``[priors]`` are narrow enough that every draw is a plausible
funnel. Everything is seeded: the outcome of each test is fixed.
"""

from __future__ import annotations

import datetime as dt
import types
import warnings

import numpy as np
import pytest
from scipy import stats as sps

from forecast import backtest as bt
from forecast.eventlog import EventLog
from forecast.model import load_model
from forecast.parameters import Parameters, default_parameters
from forecast.simulate.engine import simulate_history

SBC_TOML = """
[funnel]
name = "sbc"
stages = ["a", "b"]
entry = "a"
qualified_stage = "a"
amount_stage = "b"
age_bands = [0, 10]

[moves.a]
b =    [0.06, 0.03]
lost = [0.03, 0.05]

[moves.b]
won =  [0.05, 0.03]
lost = [0.03, 0.04]

[recycle]
advance_multiplier = [1.0]

[segments.x]
arrivals_per_day = 3.0
arrivals_dispersion = 10
deal_mean = 1000
deal_sigma = 0.5

[arrivals]
day_of_week = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]

[priors]
log_hazard_mu = -3.3
log_hazard_sigma = 0.4
arrivals_log_mu_sigma = 0.3
arrivals_dispersion_log_sigma = 0.5
day_of_week_sigma = 0.2
deal_log_mu_sigma = 0.3
deal_log_sigma_scale = 0.5
"""

START = dt.date(2024, 1, 1)
HISTORY_DAYS = 120
HORIZON = 30
CUTOFF = START + dt.timedelta(days=HISTORY_DAYS - 1)
RANK_PATHS = 99  # ranks 0..99: 100 equally likely values under calibration


@pytest.fixture(scope="module")
def sbc_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("sbc") / "sbc.toml"
    path.write_text(SBC_TOML)
    return load_model(path)


def simulated(model, params: Parameters, seed: int) -> EventLog:
    """History and horizon from an empty funnel, as a validated-looking event log (a few days
    more, so that the log's last row, its end as far as a backtest can tell, is after the
    horizon)."""
    frame = simulate_history(model, params, START, HISTORY_DAYS + HORIZON + 7, seed)
    frame["entered_at"] = frame["entered_at"].astype("datetime64[ns]")
    return EventLog(frame=frame, path=f"simulated-{seed}", as_of=None, sha256=f"sim{seed}")


def prior_draws(model, n: int, seed: int) -> Parameters:
    """``n`` parameter sets from the fit's prior (its own PyMC model, prior predictive)."""
    import pymc as pm

    from forecast.fit import build_model, posterior_parameters
    from forecast.statistics import sufficient_statistics

    log = simulated(model, default_parameters(model), 0)  # only the model's shape matters
    stats = sufficient_statistics(bt.truncate(log, CUTOFF), model, CUTOFF)
    with build_model(stats, model), warnings.catch_warnings():
        # The likelihoods are Potentials, ignored here: these are draws from the prior alone.
        warnings.filterwarnings("ignore", message=".*Potentials.*")
        idata = pm.sample_prior_predictive(draws=n, random_seed=seed)
    prior = idata.prior.copy()
    prior.attrs["model_sha256"] = model.sha256
    return posterior_parameters(types.SimpleNamespace(posterior=prior), model)


def doubled(params: Parameters) -> Parameters:
    """Every hazard and arrival rate doubled: a miscalibrated forecaster."""
    return Parameters(params.hazards * 2.0, params.arrivals_mean * 2.0,
                      params.arrivals_dispersion, params.day_of_week, params.deal_mu,
                      params.deal_sigma)


def rank(sample: np.ndarray, truth: float, rng: np.random.Generator) -> int:
    """The truth's rank among the sample, ties broken uniformly at random (0..len(sample))."""
    below = int(np.sum(sample < truth))
    ties = int(np.sum(sample == truth))
    return below + int(rng.integers(0, ties + 1))


def ranks_of(model, truths: list[dict], forecasts: list[dict], seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {m: np.array([rank(f[m], t[m], rng) for t, f in zip(truths, forecasts, strict=True)])
            for m in bt.METRICS}


def chi2_uniform(ranks: np.ndarray, bins: int = 10) -> float:
    """p-value of a chi-square test that ranks 0..RANK_PATHS are uniform (equal-width bins)."""
    counts = np.bincount(ranks * bins // (RANK_PATHS + 1), minlength=bins)
    return float(sps.chisquare(counts).pvalue)


def ks_uniform(ranks: np.ndarray, seed: int) -> float:
    """p-value of a KS test of the ranks, spread uniformly within their cells, against U(0,1)."""
    u = (ranks + np.random.default_rng(seed).random(ranks.size)) / (RANK_PATHS + 1)
    return float(sps.kstest(u, "uniform").pvalue)


# ---- the oracle: forecasts with the true parameters ----------------------------------------

ORACLE_REPS = 150


@pytest.fixture(scope="module")
def oracle(sbc_model):
    """Per repetition: the truth, the forecast with the true and with doubled parameters."""
    draws = prior_draws(sbc_model, ORACLE_REPS, seed=1)
    truths, right, wrong = [], [], []
    for r in range(ORACLE_REPS):
        theta = draws.take(r)
        log = simulated(sbc_model, theta, seed=1000 + r)
        known = bt.truncate(log, CUTOFF)
        truths.append(bt.actuals(log, sbc_model, CUTOFF, HORIZON))
        right.append(bt.engine(sbc_model, theta, known, CUTOFF, HORIZON, RANK_PATHS, seed=r))
        wrong.append(bt.engine(sbc_model, doubled(theta), known, CUTOFF, HORIZON, RANK_PATHS,
                               seed=r))
    return truths, right, wrong


def test_prior_draws_are_plausible_funnels(sbc_model):
    draws = prior_draws(sbc_model, 50, seed=1)
    assert draws.n_sets == 50
    assert np.all((draws.arrivals_mean > 0.5) & (draws.arrivals_mean < 15))
    declared = draws.hazards[:, :2, :, 0, 0, :]
    assert np.all(declared[declared > 0] < 0.5)
    assert np.allclose(draws.day_of_week.mean(axis=1), 1.0)


def test_oracle_ranks_are_uniform(sbc_model, oracle):
    truths, right, _ = oracle
    ranks = ranks_of(sbc_model, truths, right, seed=2)
    for metric, r in ranks.items():
        assert chi2_uniform(r) > 0.01, (metric, np.bincount(r * 10 // 100, minlength=10))
    # and the 80% bands hold the truth about 80% of the time (binomial sd 3.3 points)
    inside = [np.quantile(f["won_deals"], 0.1) <= t["won_deals"] <= np.quantile(f["won_deals"],
                                                                               0.9)
              for t, f in zip(truths, right, strict=True)]
    assert 0.70 <= np.mean(inside) <= 0.90


def test_oracle_check_fails_when_the_rates_are_doubled(sbc_model, oracle):
    truths, _, wrong = oracle
    ranks = ranks_of(sbc_model, truths, wrong, seed=2)
    for metric, r in ranks.items():
        assert chi2_uniform(r) < 1e-6, metric
        assert np.mean(r) < 0.3 * RANK_PATHS  # the truth sits low: the forecast is too high


# ---- the whole pipeline: fit at the cutoff, then forecast --------------------------------

FIT_REPS = 10


@pytest.mark.slow
def test_fitted_forecasts_pass_sbc_and_doubled_rates_fail(sbc_model):
    """Simulation-based calibration through the PyMC fit (about 8 s a repetition)."""
    from forecast.fit import fit, posterior_parameters
    from forecast.statistics import sufficient_statistics

    draws = prior_draws(sbc_model, FIT_REPS, seed=7)
    truths, right, wrong = [], [], []
    for r in range(FIT_REPS):
        log = simulated(sbc_model, draws.take(r), seed=5000 + r)
        known = bt.truncate(log, CUTOFF)
        stats = sufficient_statistics(known, sbc_model, CUTOFF)
        result = fit(stats, sbc_model, draws=100, tune=150, chains=1, cores=1, seed=r,
                     progress=False)
        posterior = posterior_parameters(result.idata, sbc_model)
        truths.append(bt.actuals(log, sbc_model, CUTOFF, HORIZON))
        right.append(bt.engine(sbc_model, posterior, known, CUTOFF, HORIZON, RANK_PATHS, r))
        wrong.append(bt.engine(sbc_model, doubled(posterior), known, CUTOFF, HORIZON,
                               RANK_PATHS, r))
    good = ranks_of(sbc_model, truths, right, seed=3)
    bad = ranks_of(sbc_model, truths, wrong, seed=3)
    for metric in bt.METRICS:
        assert ks_uniform(good[metric], seed=4) > 0.05, (metric, good[metric])
        assert ks_uniform(bad[metric], seed=4) < 0.001, (metric, bad[metric])
