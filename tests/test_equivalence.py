"""The fast simulator equals the day-by-day reference (``tests/reference.py``) in distribution.

Both simulate the same inputs with independent random streams; every output is reduced to
per-path statistics (totals, totals per window of the horizon, occupancy per state on a
mid-horizon day and the last day) and each statistic is compared with several two-sample tests:
Welch's test on the means, the Brown-Forsythe test on the spread, a chi-square test of
homogeneity on the binned distribution and, for amounts, Kolmogorov-Smirnov. Where leads are
independent (one parameter set, Poisson arrivals) the days of all won deals are also pooled and
their distributions compared day by day. A run fails when any p-value falls below
``FAMILY_ALPHA / number of p-values`` (Bonferroni). ``test_power_*`` show the same comparison
rejects a fast run with a slightly wrong hazard, so a pass means something.

Seeds are fixed: the outcome is deterministic; the thresholds only matter when the kernel's
random streams change.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import AS_OF
from reference import reference_simulate
from scipy import stats

from forecast.model import EXPIRY, WON
from forecast.parameters import Parameters
from forecast.simulate import simulate

FAMILY_ALPHA = 1e-3
DAILY = ("won", "bookings", "recaptured", "lost_to_expiry", "moves", "arrivals")
AMOUNTS = ("bookings", "lost_to_expiry")

pytestmark = pytest.mark.slow


# ---- the statistics --------------------------------------------------------------------------

def path_statistics(res, model, paths=None) -> dict[str, np.ndarray]:
    """Per-path scalar statistics of a run (optionally of a subset of its paths)."""
    sel = slice(None) if paths is None else paths
    out: dict[str, np.ndarray] = {}
    windows = [w for w in np.array_split(np.arange(res.horizon), 3) if 0 < len(w) < res.horizon]
    halves = [w for w in np.array_split(np.arange(res.horizon), 2) if 0 < len(w) < res.horizon]
    for name in DAILY:
        if not hasattr(res, name):
            continue
        a = getattr(res, name)[sel]
        out[f"{name} total"] = a.sum(1)
        for w in windows:
            out[f"{name} days {w[0]}-{w[-1]}"] = a[:, w].sum(1)
    for j, state in enumerate(model.states):
        e = res.entered[sel][:, :, j]
        out[f"entered[{state}] total"] = e.sum(1)
        for w in halves:
            out[f"entered[{state}] days {w[0]}-{w[-1]}"] = e[:, w].sum(1)
    for s, stage in enumerate(model.stages):
        e = res.expired[sel][:, :, s]
        out[f"expired[{stage}] total"] = e.sum(1)
        for w in halves:
            out[f"expired[{stage}] days {w[0]}-{w[-1]}"] = e[:, w].sum(1)
    for m, day in enumerate(res.occupancy_days):
        for j, state in enumerate(model.states):
            out[f"occupancy[{state}] day {day}"] = res.occupancy[sel][:, m, j]
    return out


def _chi2_homogeneity(x: np.ndarray, y: np.ndarray) -> float:
    """Chi-square test that ``x`` and ``y`` share one distribution, on pooled-quantile bins.

    Bins are runs of consecutive pooled values holding at least ``max(50, n/25)`` observations
    (ties never split), so every expected count is large.
    """
    values, counts = np.unique(np.concatenate([x, y]), return_counts=True)
    target = max(50, (len(x) + len(y)) // 25)
    upper, acc = [], 0
    for v, c in zip(values, counts, strict=True):
        acc += c
        if acc >= target:
            upper.append(v)
            acc = 0
    if acc and upper:
        upper[-1] = values[-1]  # the short remainder joins the last bin
    if len(upper) < 2:
        return 1.0
    upper = np.asarray(upper)
    table = np.array([np.bincount(np.searchsorted(upper, z), minlength=len(upper))
                      for z in (x, y)])
    return float(stats.chi2_contingency(table, correction=False).pvalue)


def _p_or_equal(p: float, x: np.ndarray, y: np.ndarray) -> float:
    """A NaN p-value comes from two constant samples: 1 if they are the same constant."""
    if np.isnan(p):
        return 1.0 if np.all(x == x[0]) and np.all(y == x[0]) else 0.0
    return float(p)


def two_sample_pvalues(x: np.ndarray, y: np.ndarray, *, amount: bool) -> dict[str, float]:
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = {
            "welch": _p_or_equal(stats.ttest_ind(x, y, equal_var=False).pvalue, x, y),
            "brown-forsythe": _p_or_equal(stats.levene(x, y, center="median").pvalue, x, y),
            "chi2": _chi2_homogeneity(x, y),
        }
    if amount:
        out["ks"] = float(stats.ks_2samp(x, y).pvalue)
    return out


def pooled_day_pvalue(a: np.ndarray, b: np.ndarray) -> float:
    """Chi-square: the days of all events in ``a`` vs ``b`` (``[path, day]`` counts)."""
    ca, cb = a.sum(0), b.sum(0)
    # Merge consecutive days until each merged bin holds at least 40 events in total.
    bins, acc = np.zeros(len(ca), dtype=np.int64), 0
    k = 0
    for t in range(len(ca)):
        bins[t] = k
        acc += ca[t] + cb[t]
        if acc >= 40:
            k, acc = k + 1, 0
    if acc and k:
        bins[bins == k] = k - 1
    table = np.array([np.bincount(bins, weights=c) for c in (ca, cb)])
    table = table[:, table.sum(0) > 0]
    if table.shape[1] < 2:
        return 1.0
    return float(stats.chi2_contingency(table, correction=False).pvalue)


def compare(fast, ref, model, *, by_set: bool = False, pooled: bool = True) -> dict[str, float]:
    """All p-values of fast vs reference, keyed ``"statistic: test"``."""
    groups = [(None, None, None)]
    if by_set:
        groups = [(f"sets {list(k)} ", (fast.set_index == k).all(1), (ref.set_index == k).all(1))
                  for k in np.unique(fast.set_index, axis=0)]
    out = {}
    for label, pf, pr in groups:
        sf, sr = path_statistics(fast, model, pf), path_statistics(ref, model, pr)
        assert sf.keys() == sr.keys()
        for name in sf:
            amount = name.split()[0] in AMOUNTS
            for test, p in two_sample_pvalues(sf[name], sr[name], amount=amount).items():
                out[f"{label or ''}{name}: {test}"] = p
    if pooled:
        out["days of won deals (pooled): chi2"] = pooled_day_pvalue(fast.won, ref.won)
        out["days of arrivals (pooled): chi2"] = pooled_day_pvalue(fast.arrivals, ref.arrivals)
    return out


def worst(pvalues: dict[str, float], n: int = 8) -> str:
    smallest = sorted(pvalues.items(), key=lambda kv: kv[1])[:n]
    return "\n".join(f"  {p:.3g}  {k}" for k, p in smallest)


def assert_same_distribution(pvalues: dict[str, float]) -> None:
    threshold = FAMILY_ALPHA / len(pvalues)
    assert min(pvalues.values()) > threshold, (
        f"fast kernel differs from the reference (threshold {threshold:.2g} on "
        f"{len(pvalues)} p-values); smallest p-values:\n{worst(pvalues)}")


def assert_outputs_consistent(fast, ref):
    for name in ("bookings", "won", "expired", "recaptured", "lost_to_expiry", "arrivals",
                 "occupancy"):
        assert getattr(fast, name).shape == getattr(ref, name).shape, name
    np.testing.assert_array_equal(fast.set_index, ref.set_index)


# ---- the cases -------------------------------------------------------------------------------

def _run_both(model, params, pipeline, horizon, n_paths, occ_days, **epochs):
    fast = simulate(model, params, pipeline, AS_OF, horizon, n_paths, seed=101,
                    occupancy_days=occ_days, **epochs)
    ref = reference_simulate(model, params, pipeline, AS_OF, horizon, n_paths, seed=202,
                             occupancy_days=occ_days, **epochs)
    assert_outputs_consistent(fast, ref)
    return fast, ref


def _swapped_on(model, params, pipeline, horizon, n_paths, occ_days, day):
    """Half the paths go from set 0 to set 1 on ``day``, the other half from 1 to 0: the fast
    kernel and the reference in the same law, set by set; the fast run."""
    set_index = np.where(np.arange(n_paths)[:, None] % 2 == 0, [[0, 1]], [[1, 0]])
    fast, ref = _run_both(model, params, pipeline, horizon, n_paths, occ_days,
                          set_index=set_index, switch_days=[day])
    assert_same_distribution(compare(fast, ref, model, by_set=True, pooled=False))
    return fast


TWO_STAGE_PATHS, TWO_STAGE_HORIZON = 2500, 60
B2B_PATHS, B2B_HORIZON = 2000, 90


@pytest.fixture(scope="module")
def two_stage_runs(two_stage, two_stage_params, two_stage_pipeline):
    return _run_both(two_stage, two_stage_params, two_stage_pipeline, TWO_STAGE_HORIZON,
                     TWO_STAGE_PATHS, [TWO_STAGE_HORIZON // 2 - 1, TWO_STAGE_HORIZON - 1])


def two_sets(model, params: Parameters) -> Parameters:
    """Set 0: the model's defaults. Set 1: other hazards, over-dispersed (negative-binomial)
    arrivals with another weekly pattern, bigger deals."""
    h = params.hazards.copy()
    won = model.state_index(WON)
    h[..., won] *= 2.0
    for s in (*model.stages, "nurture"):
        for d in model.states:
            if d != s and model.move_kind(s, d) == EXPIRY:
                h[:, model.state_index(s), ..., model.state_index(d)] *= 0.5
    return Parameters(
        hazards=np.concatenate([params.hazards, h]),
        arrivals_mean=np.concatenate([params.arrivals_mean, params.arrivals_mean * 1.5]),
        arrivals_dispersion=np.concatenate([params.arrivals_dispersion,
                                            np.full_like(params.arrivals_dispersion, 2.0)]),
        day_of_week=np.concatenate([params.day_of_week,
                                    [[0.5, 1.0, 1.5, 1.0, 2.0, 0.5, 0.5]]]),
        deal_mu=np.concatenate([params.deal_mu, params.deal_mu + 0.3]),
        deal_sigma=np.concatenate([params.deal_sigma, params.deal_sigma * 0.5]),
    )


def test_two_stage_model(two_stage, two_stage_runs):
    """Expiry back and to nurture, recapture into both stages, three recycle levels, known
    amounts, a band with no hazard at all, Poisson arrivals with a weekday pattern."""
    fast, ref = two_stage_runs
    pvalues = compare(fast, ref, two_stage)
    assert_same_distribution(pvalues)
    # The case exercises what it is meant to: expiries, recaptures and lost value happen.
    for res in (fast, ref):
        assert res.expired.sum(axis=(0, 1)).min() > 1000
        assert res.recaptured.sum() > 1000 and res.lost_to_expiry.sum() > 0


def test_two_stage_two_parameter_sets(two_stage, two_stage_params, two_stage_pipeline):
    """Each path uses its own parameter set (``p % 2``); NB arrivals in set 1."""
    params = two_sets(two_stage, two_stage_params)
    fast, ref = _run_both(two_stage, params, two_stage_pipeline, 40, 2400, [19, 39])
    pvalues = compare(fast, ref, two_stage, by_set=True, pooled=False)
    assert_same_distribution(pvalues)
    # The two sets really differ (so per-set statistics were needed).
    assert fast.bookings[fast.set_index[:, 0] == 1].sum(1).mean() > \
        1.3 * fast.bookings[fast.set_index[:, 0] == 0].sum(1).mean()


def test_parameters_switching_on_a_date(two_stage, two_stage_params, two_stage_pipeline):
    """A scenario's effective date: half the paths switch from set 0 to set 1 on day 17, the
    other half from 1 to 0; leads already in a stage switch hazards that day too."""
    fast = _swapped_on(two_stage, two_sets(two_stage, two_stage_params), two_stage_pipeline,
                       40, 2400, [16, 39], 17)
    # The switch matters: set 1 books more, so the two halves trade places on day 17.
    up = fast.set_index[:, 0] == 0
    before, after = fast.bookings[:, :17].mean(1), fast.bookings[:, 23:].mean(1)
    assert before[~up].mean() > 1.2 * before[up].mean()
    assert after[up].mean() > 1.2 * after[~up].mean()


def test_a_drastic_change_on_a_date(b2b, b2b_params, b2b_pipeline):
    """From day 15 every move out of the SQL and opportunity stages runs 20 times faster on
    half the paths, 20 times slower on the other half. A cohort's leads still there on the
    date go on from their own draw, rescaled, in the new set's exit-table row from the age
    they have then; where that row is too old to read precisely (under the faster set an
    SQL's survival to an age of 15 days is below 1e-6) the draw becomes an exponential in the
    stretches of constant hazard, and the position inside the day of leaving picks the
    destination. The law is the day-by-day process's."""
    from dataclasses import replace

    p = b2b_params.with_arrivals_scaled(0.1)
    h = p.hazards.copy()
    for s in ("sql", "opportunity"):
        h[:, b2b.state_index(s)] *= 20.0
    fast = _swapped_on(b2b, Parameters.concat([p, replace(p, hazards=h)]), b2b_pipeline, 40,
                       2000, [14, 39], 15)
    faster = fast.set_index[:, 1] == 1
    assert fast.won[faster, 15:].sum() > 2 * fast.won[~faster, 15:].sum()


def test_b2b_model(b2b, b2b_params, b2b_pipeline):
    """The bundled model: 4 stages, 5 segments, NB arrivals (scaled down), an open pipeline
    with leads in every state at ages in every band, all recycle levels, some known amounts."""
    params = b2b_params.with_arrivals_scaled(0.05)
    fast, ref = _run_both(b2b, params, b2b_pipeline, B2B_HORIZON, B2B_PATHS,
                          [B2B_HORIZON // 2 - 1, B2B_HORIZON - 1])
    # NB arrivals: events of a path are not independent, so no pooled tests.
    pvalues = compare(fast, ref, b2b, pooled=False)
    assert_same_distribution(pvalues)
    for res in (fast, ref):
        assert res.won.sum() > 1000 and res.recaptured.sum() > 1000
        assert np.all(res.expired.sum(axis=(0, 1)) > 1000)


def test_b2b_large_cohorts(b2b, b2b_params, b2b_pipeline):
    """Large cohorts and small ones: arrivals at three times the model's rates (tens a day per
    segment) and the open pipeline with 100 of its leads repeated 20 times (groups of 20 next
    to groups of 1). (Cohorts of more than 16 leads used to draw how many leave at once, each
    leaver's exit given that it leaves; every lead now draws its own.) Half the paths switch
    parameter sets on day 20, the other half the other way, so cohorts' stretches are cut at
    an epoch start."""
    from forecast.simulate.engine import Pipeline

    pl = b2b_pipeline
    rep = np.concatenate([np.arange(len(pl.state)), np.repeat(np.arange(100), 19)])
    pipeline = Pipeline(pl.state[rep], pl.age[rep], pl.segment[rep], pl.recycle[rep],
                        pl.amount[rep])
    params = two_sets(b2b, b2b_params.with_arrivals_scaled(3.0))
    assert params.arrivals_mean.max() > 32 > params.arrivals_mean.min()
    fast = _swapped_on(b2b, params, pipeline, 45, 2000, [19, 44], 20)
    assert fast.won.sum() > 1000 and fast.recaptured.sum() > 1000
    assert np.all(fast.expired.sum(axis=(0, 1)) > 1000)


def test_b2b_large_cohorts_one_epoch(b2b, b2b_params, b2b_pipeline):
    """The same cohorts in a run with one epoch, where the cohort kernel draws from its exit
    tables: each lead a uniform, a stayer above the row's probability at the horizon, else
    its cell; groups of the open pipeline read their rows from their age on. Paths alternate
    between two parameter sets, so each path rebuilds the rows it needs."""
    from forecast.simulate.engine import Pipeline

    pl = b2b_pipeline
    rep = np.concatenate([np.arange(len(pl.state)), np.repeat(np.arange(100), 19)])
    pipeline = Pipeline(pl.state[rep], pl.age[rep], pl.segment[rep], pl.recycle[rep],
                        pl.amount[rep])
    params = two_sets(b2b, b2b_params.with_arrivals_scaled(3.0))
    fast, ref = _run_both(b2b, params, pipeline, 45, 2000, [19, 44])
    pvalues = compare(fast, ref, b2b, by_set=True, pooled=False)
    assert_same_distribution(pvalues)
    for res in (fast, ref):
        assert res.won.sum() > 1000 and res.recaptured.sum() > 1000


# A stage that every lead leaves within days (survival e^-54 by the last band's start at 30
# days, below what a double can tell from 1) and its stale leads: the exit tables hold too
# little of the survivors' future to draw it without rounding, so leads that old go by the
# stretches.
FAST_STAGE_TOML = """
[funnel]
name = "fast_stage"
stages = ["a", "b"]
entry = "a"
qualified_stage = "b"
amount_stage = "b"
age_bands = [0, 10, 30]

[moves.a]
b =       [0.90, 0.90, 0.010]
nurture = [0.50, 0.50, 0.005]
lost =    [0.40, 0.40, 0.005]

[moves.b]
won =     [0.05, 0.10, 0.03]
nurture = [0.01, 0.02, 0.03]
lost =    [0.02, 0.02, 0.02]

[moves.nurture]
a =       [0.02, 0.02, 0.01]
lost =    [0.01, 0.01, 0.03]

[segments.x]
arrivals_per_day = 30
arrivals_dispersion = 0
conversion_multiplier = 1.0
deal_mean = 1000
deal_sigma = 0.5
"""


def test_stale_leads_of_a_fast_stage(tmp_path):
    """Leads in a fast stage at every age from new to far past its last band's start, in
    groups of one and of 25, next to large daily cohorts of arrivals."""
    from conftest import mixed_pipeline

    from forecast.model import load_model
    from forecast.parameters import default_parameters
    from forecast.simulate.engine import Pipeline

    path = tmp_path / "fast_stage.toml"
    path.write_text(FAST_STAGE_TOML)
    model = load_model(path)
    params = default_parameters(model)
    pl = mixed_pipeline(model, ages=[0, 5, 15, 22, 29, 30, 45, 400], amount_every=4)
    rep = np.concatenate([np.arange(len(pl.state)), np.repeat(np.arange(len(pl.state)), 24)])
    pipeline = Pipeline(pl.state[rep], pl.age[rep], pl.segment[rep], pl.recycle[rep],
                        pl.amount[rep])
    fast, ref = _run_both(model, params, pipeline, 60, 2500, [29, 59])
    pvalues = compare(fast, ref, model, pooled=False)
    assert_same_distribution(pvalues)
    # The stale leads are there to the end, in stage a, in numbers.
    a = model.state_index("a")
    assert fast.occupancy[:, -1, a].mean() > 50


@pytest.mark.parametrize("horizon", [1, 4])
def test_very_short_horizons(two_stage, two_stage_params, two_stage_pipeline, horizon):
    """The edges of the horizon: the first day's moves, arrivals and occupancy."""
    fast, ref = _run_both(two_stage, two_stage_params, two_stage_pipeline, horizon, 4000,
                          np.arange(horizon))
    assert_same_distribution(compare(fast, ref, two_stage))


def test_calendar_effects(two_stage, two_stage_params, two_stage_pipeline):
    """Won closes faster at quarter and month ends and slower at weekends, lost closes the
    other way round (their own calendar), arrivals bunched in the quarter's last month
    (strong effects, so a wrong thinning step would show): the fast kernel's thinning equals
    the reference's day-by-day multipliers. The horizon runs over the end of March (a quarter
    end) into May."""
    from dataclasses import replace

    params = replace(two_stage_params,
                     close_calendar=np.array([[[1.2, 1.2, 1.2, 1.2, 1.2, 0.5, 0.5,
                                                0.6, 0.9, 1.5, 2.5],  # won
                                               [0.8, 0.8, 0.8, 0.8, 0.8, 1.5, 1.5,
                                                1.6, 1.0, 0.4, 0.5]]]),  # lost
                     arrivals_calendar=np.array([[0.5, 1.0, 1.5, 1.8]]))
    assert params.has_calendar
    fast, ref = _run_both(two_stage, params, two_stage_pipeline, 75, 3000, [16, 46, 74])
    pvalues = compare(fast, ref, two_stage)
    assert_same_distribution(pvalues)
    # The effects are there: in the last days of March (a quarter end, won hazards x3.75 and
    # lost x0.16 on weekdays) far more deals close won and far fewer lost than without the
    # calendar.
    plain = simulate(two_stage, two_stage_params, two_stage_pipeline, AS_OF, 75, 3000,
                     seed=101)
    assert fast.won[:, 12:17].mean() > 1.8 * plain.won[:, 12:17].mean()
    lost = two_stage.state_index("lost")
    assert fast.entered[:, 12:17, lost].mean() < 0.5 * plain.entered[:, 12:17, lost].mean()


def _scaled(params: Parameters, model, source: str | None, dest: str, factor: float):
    h = params.hazards.copy()
    d = model.state_index(dest)
    if source is None:
        h[..., d] *= factor
    else:
        h[:, model.state_index(source), ..., d] *= factor
    return Parameters(h, params.arrivals_mean, params.arrivals_dispersion, params.day_of_week,
                      params.deal_mu, params.deal_sigma)


@pytest.mark.parametrize(("source", "dest", "factor", "statistic"), [
    (None, "won", 1.15, "won total"),
    ("b", "a", 1.15, "expired[b] total"),
])
def test_power_a_slightly_wrong_hazard_is_rejected(two_stage, two_stage_params,
                                                   two_stage_pipeline, two_stage_runs,
                                                   source, dest, factor, statistic):
    """The same comparison fails when the fast kernel runs with one hazard 15% too high."""
    _, ref = two_stage_runs
    wrong = _scaled(two_stage_params, two_stage, source, dest, factor)
    fast = simulate(two_stage, wrong, two_stage_pipeline, AS_OF, TWO_STAGE_HORIZON,
                    TWO_STAGE_PATHS, seed=101, occupancy_days=ref.occupancy_days)
    pvalues = compare(fast, ref, two_stage)
    threshold = FAMILY_ALPHA / len(pvalues)
    assert pvalues[f"{statistic}: welch"] < threshold, worst(pvalues)
    assert min(pvalues.values()) < 1e-12, worst(pvalues)
