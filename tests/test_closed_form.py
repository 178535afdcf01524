"""The simulator against answers known in closed form, and exact conservation of leads.

- Eventual win / loss probabilities and expected days to win from ``forecast.hazards.absorption``
  (the embedded Markov chain) against many fresh leads simulated until nearly all are absorbed,
  within 4 Monte Carlo standard errors computed from the data.
- Hand-solvable models: constant hazards (time in stage geometric,
  ``P(T = n) = e^{-Λ(n-1)}(1 - e^{-Λ})``, mean ``1/(1 - e^{-Λ})``, outcome ``k`` with
  probability ``λ_k / Λ``) and a two-band hazard.
- Conservation: every day of every path, the leads in all states add up to the open pipeline
  plus the arrivals so far, exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import AS_OF
from scipy import stats

from forecast.hazards import absorption
from forecast.model import LOST, WON, load_model
from forecast.parameters import default_parameters
from forecast.simulate import Pipeline, simulate

N_SE = 4.0


def fresh_leads(n: int, state: int, segment: int = 0, recycle: int = 0, age: int = 0):
    return Pipeline(np.full(n, state, np.int64), np.full(n, age, np.int64),
                    np.full(n, segment, np.int64), np.full(n, recycle, np.int64),
                    np.full(n, np.nan))


def absorbed_outcomes(res, model):
    """Pooled over paths: number of leads, won and lost counts, still open, won-day indices."""
    n = res.n_open * res.n_paths
    end = res.occupancy[:, -1].sum(0)
    n_won, n_lost = end[model.state_index(WON)], end[model.state_index(LOST)]
    assert n_won == res.won.sum()
    days = np.repeat(np.tile(np.arange(res.horizon), res.n_paths), res.won.ravel())
    return n, n_won, n_lost, n - n_won - n_lost, days


def assert_within(observed, expected, se, what, slack=0.0):
    assert abs(observed - expected) <= N_SE * se + slack, (
        f"{what}: simulated {observed:.6g}, closed form {expected:.6g}, "
        f"difference {(observed - expected) / se:+.2f} standard errors")


@pytest.mark.parametrize("which", ["b2b", "two_stage"])
def test_absorption_of_many_sets_at_once_is_each_set_bit_for_bit(request, which):
    """The simulator solves a posterior's sets in one call (a set's leading axis): the same
    numbers as one set at a time, exactly, for sets scattered around the defaults."""
    model = request.getfixturevalue(which)
    h = default_parameters(model).hazards[0]
    sets = h * np.random.default_rng(3).lognormal(0.0, 0.4, (7, *h.shape))
    many = absorption(model, sets)
    assert many.win.shape == (7, h.shape[2], model.n_transient, h.shape[3])
    for k in range(len(sets)):
        one = absorption(model, sets[k])
        for name in ("win", "lose", "days_to_win"):
            np.testing.assert_array_equal(getattr(many, name)[k], getattr(one, name))
    assert not np.allclose(many.win[0], many.win[1])  # the sets differ


# ---- absorption probabilities of the bundled model ---------------------------------------------

@pytest.mark.parametrize(("stage", "segment", "recycle", "n_leads", "n_paths"), [
    ("sql", "organic", 0, 20_000, 3),
    ("opportunity", "partner", 1, 20_000, 2),
    ("mql", "paid_search", 2, 20_000, 3),
    ("nurture", "events", 0, 20_000, 3),
])
def test_b2b_win_probability_and_days_to_win(b2b, b2b_params, stage, segment, recycle,
                                             n_leads, n_paths):
    params = b2b_params.with_arrivals_scaled(0.0)
    s, g = b2b.state_index(stage), b2b.segment_names.index(segment)
    res = simulate(b2b, params, fresh_leads(n_leads, s, g, recycle), AS_OF, 3000, n_paths,
                   seed=11)
    assert res.arrivals.sum() == 0
    n, n_won, n_lost, n_open, days = absorbed_outcomes(res, b2b)
    ab = absorption(b2b, params.hazards[0])
    p_win, p_lose = ab.win[g, s, recycle], ab.lose[g, s, recycle]
    # Leads still open after 3000 days could only move the fractions by their share.
    assert n_open / n < 1e-3
    for name, count, p in (("win probability", n_won, p_win), ("loss probability", n_lost,
                                                                p_lose)):
        frac = count / n
        assert_within(frac, p, math.sqrt(frac * (1 - frac) / n), f"{stage} {name}",
                      slack=n_open / n)
    # Won on day index w = (days from entering the state, on the as-of date) - 1.
    t_win = days + 1.0
    assert_within(t_win.mean(), ab.days_to_win[g, s, recycle],
                  t_win.std(ddof=1) / math.sqrt(len(t_win)), f"{stage} days to win")


# ---- hand-solvable models ----------------------------------------------------------------------

CONSTANT_TOML = """
[funnel]
stages = ["s"]
entry = "s"
qualified_stage = "s"
age_bands = [0]
[moves.s]
won = 0.03
lost = 0.05
[segments.only]
arrivals_per_day = 0
deal_mean = 100
"""

TWO_BAND_TOML = """
[funnel]
stages = ["s"]
entry = "s"
qualified_stage = "s"
age_bands = [0, 5]
[moves.s]
won = [0.0, 0.2]
lost = [0.1, 0.0]
[segments.only]
arrivals_per_day = 0
deal_mean = 100
"""


@pytest.fixture(scope="module")
def constant_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("hand") / "constant.toml"
    path.write_text(CONSTANT_TOML)
    return load_model(path)


@pytest.fixture(scope="module")
def two_band_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("hand") / "two_band.toml"
    path.write_text(TWO_BAND_TOML)
    return load_model(path)


def test_absorption_by_hand(constant_model, two_band_model):
    lam_won, lam_lost = 0.03, 0.05
    total = lam_won + lam_lost
    ab = absorption(constant_model, default_parameters(constant_model).hazards[0])
    assert ab.win[0, 0, 0] == pytest.approx(lam_won / total, rel=1e-12)
    assert ab.lose[0, 0, 0] == pytest.approx(lam_lost / total, rel=1e-12)
    assert ab.days_to_win[0, 0, 0] == pytest.approx(1 / -math.expm1(-total), rel=1e-12)
    # Two bands: lost at 0.1/day for 5 days, then won at 0.2/day.
    ab = absorption(two_band_model, default_parameters(two_band_model).hazards[0])
    assert ab.win[0, 0, 0] == pytest.approx(math.exp(-0.5), rel=1e-12)
    assert ab.days_to_win[0, 0, 0] == pytest.approx(5 + 1 / -math.expm1(-0.2), rel=1e-12)


def _geometric_gof(t: np.ndarray, pmf, n_max: int) -> float:
    """Chi-square goodness of fit of whole days ``t`` to ``pmf(n)``, tail merged."""
    n = np.arange(1, n_max + 1)
    expected = pmf(n) * len(t)
    observed = np.bincount(t.astype(np.int64), minlength=n_max + 2)[1:n_max + 1].astype(float)
    # Merge the tail (everything from the first day whose expected count is below 20).
    cut = int(np.argmax(expected < 20)) if np.any(expected < 20) else n_max
    obs = np.append(observed[:cut], len(t) - observed[:cut].sum())
    exp = np.append(expected[:cut], len(t) - expected[:cut].sum())
    return float(stats.chisquare(obs, exp).pvalue)


@pytest.mark.parametrize("age", [0, 17])
def test_constant_hazard_geometric_time_in_stage(constant_model, age):
    """Memoryless: the open leads' age does not matter."""
    lam_won, lam_lost = 0.03, 0.05
    total = lam_won + lam_lost
    q = -math.expm1(-total)
    res = simulate(constant_model, default_parameters(constant_model),
                   fresh_leads(20_000, 0, age=age), AS_OF, 500, 2, seed=5)
    n, n_won, _, n_open, days = absorbed_outcomes(res, constant_model)
    assert n_open == 0  # P(T > 500) = e^-40
    p = lam_won / total
    assert_within(n_won / n, p, math.sqrt(p * (1 - p) / n), "win probability")
    t = days + 1
    mean_t, sd_t = 1 / q, math.sqrt(1 - q) / q
    assert_within(t.mean(), mean_t, sd_t / math.sqrt(len(t)), "mean days to win")
    pmf = lambda k: np.exp(-total * (k - 1)) * q  # noqa: E731
    assert _geometric_gof(t, pmf, 500) > 1e-3


def test_two_band_hazard_by_hand(two_band_model):
    """No win for 5 days (lost at 0.1/day), then won at 0.2/day: T - 5 is geometric."""
    res = simulate(two_band_model, default_parameters(two_band_model),
                   fresh_leads(20_000, 0), AS_OF, 400, 2, seed=6,
                   occupancy_days=np.array([3, 4, 5, 399]))
    n, n_won, _, n_open, days = absorbed_outcomes(res, two_band_model)
    assert n_open == 0
    p = math.exp(-0.5)
    assert_within(n_won / n, p, math.sqrt(p * (1 - p) / n), "win probability")
    t = days + 1
    assert t.min() == 6
    q = -math.expm1(-0.2)
    assert_within(t.mean(), 5 + 1 / q, math.sqrt(1 - q) / q / math.sqrt(len(t)), "days to win")
    pmf = lambda k: np.exp(-0.2 * (k - 6)) * q  # noqa: E731
    assert _geometric_gof(t - 5, lambda k: pmf(k + 5), 400) > 1e-3
    # Losses happen only on days 0-4 (ages 0-4), wins only from day 5 on.
    lost = res.occupancy[:, :, two_band_model.state_index(LOST)]
    assert np.all(lost[:, 1] == lost[:, -1]) and np.all(lost[:, 0] < lost[:, 1])
    assert res.won[:, :5].sum() == 0 and np.all(res.won[:, 5] > 0)
    p_lost = -math.expm1(-0.5)
    assert_within(lost[:, -1].sum() / n, p_lost, math.sqrt(p_lost * (1 - p_lost) / n),
                  "loss probability")


# ---- conservation --------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["two_stage", "b2b"])
def test_leads_are_conserved_every_day(request, which):
    model = request.getfixturevalue(which)
    params = request.getfixturevalue(f"{which}_params")
    pipeline = request.getfixturevalue(f"{which}_pipeline")
    if which == "b2b":
        params = params.with_arrivals_scaled(0.2)
    horizon = 120
    res = simulate(model, params, pipeline, AS_OF, horizon, 200, seed=3,
                   occupancy_days=np.arange(horizon))
    occ = res.occupancy  # [path, day, state]
    present = occ.sum(-1)
    np.testing.assert_array_equal(present, len(pipeline) + np.cumsum(res.arrivals, axis=1))
    won, lost = model.state_index(WON), model.state_index(LOST)
    np.testing.assert_array_equal(occ[:, :, won], np.cumsum(res.won, axis=1))
    assert np.all(np.diff(occ[:, :, lost], axis=1) >= 0)
    # Won deals, expiries and recaptures are all moves.
    assert np.all(res.moves >= res.won + res.expired.sum(-1) + res.recaptured)
    # Bookings on exactly the days with won deals (amounts are positive).
    np.testing.assert_array_equal(res.bookings > 0, res.won > 0)
    assert res.arrivals.sum() > 0 and res.recaptured.sum() > 0 and res.expired.sum() > 0


# ---- the cohort kernel's exit tables ---------------------------------------------------------

@pytest.fixture(scope="module")
def b2b_exit_tables(b2b, b2b_params):
    """Every row of the b2b model's exit tables over 400 days (the last band starts at 180)."""
    from forecast.simulate.kernels import exit_table_row, exit_tables

    hazards = np.ascontiguousarray(b2b_params.hazards, dtype=np.float64)
    total = hazards.sum(-1)
    band_lo = np.asarray(b2b.age_bands, dtype=np.int64)
    n_seg, n_rec = hazards.shape[3], hazards.shape[4]
    tables = exit_tables(400, b2b.move_kinds(), n_seg, n_rec, 1)
    tab_c, tab_guide, tab_ginv, _, dests = tables
    for s in range(b2b.n_transient):
        for g in range(n_seg):
            for r in range(n_rec):
                exit_table_row(tab_c, tab_guide, tab_ginv, (s * n_seg + g) * n_rec + r, hazards,
                               total, band_lo, dests, 0, s, g, r)
    return tables


def test_exit_tables_against_the_closed_form(b2b, b2b_params, b2b_exit_tables):
    """A row's cells hold, for each day at risk and destination, the probability of leaving
    then and there. Summed over the days up to ``J`` they must give ``stage_exit``'s eventual
    probabilities less what leaves after ``J`` (past the last band's start the hazard is
    constant, so what survives to ``J`` leaves for ``d`` with the last band's share
    ``λ_d / Λ``, after a geometric wait), and the same for ``E[T 1{next = d, T <= J}]``."""
    from forecast.hazards import stage_exit

    tab_c, _, _, _, dests = b2b_exit_tables
    width = dests.shape[1]
    n_days = tab_c.shape[1] // width
    h = b2b_params.hazards[0]  # [state, band, segment, recycle, dest]
    ex = stage_exit(h, b2b.age_bands)
    n_seg, n_rec = h.shape[2], h.shape[3]
    checked = 0
    for s in range(b2b.n_transient):
        for g in range(n_seg):
            for r in range(n_rec):
                c = tab_c[(s * n_seg + g) * n_rec + r]
                width_of = np.diff(np.concatenate([[0.0], c])).reshape(n_days, width)
                last = h[s, -1, g, r]
                lam = last.sum()
                surv = 1.0 - c[-1]
                bands = np.searchsorted(b2b.age_bands, np.arange(n_days), side="right") - 1
                assert math.isclose(surv, math.exp(-h[s, bands, g, r].sum()), rel_tol=1e-9)
                days = np.arange(1, n_days + 1)
                for i in range(width):
                    d = dests[s, i]
                    if d < 0:
                        assert np.all(width_of[:, i] == 0.0)
                        continue
                    share = last[d] / lam
                    p = ex.prob[s, g, r, d] - surv * share
                    t = ex.days[s, g, r, d] - surv * share * (n_days + 1 / -math.expm1(-lam))
                    assert math.isclose(width_of[:, i].sum(), p, rel_tol=1e-9, abs_tol=1e-12)
                    assert math.isclose((width_of[:, i] * days).sum(), t, rel_tol=1e-9,
                                        abs_tol=1e-9)
                    checked += 1
    assert checked == (b2b.move_kinds() != 0).sum() * n_seg * n_rec  # every move, every row


def test_exit_table_lookup_finds_the_cell_of_any_draw(b2b_exit_tables):
    """The guide table's lookup returns the cell whose interval holds ``u``: the same as a
    binary search, for random draws and for draws exactly on the cells' edges."""
    from forecast.simulate.kernels import table_cell

    tab_c, tab_guide, tab_ginv, _, _ = b2b_exit_tables
    rng = np.random.default_rng(7)
    for row in range(tab_c.shape[0]):
        c = tab_c[row]
        u = np.concatenate([rng.uniform(0, c[-1], 2000), c[:-1][c[:-1] < c[-1]],
                            np.nextafter(c[1:], 0.0), [0.0]])
        u = u[u < c[-1]]
        got = np.array([table_cell(tab_c, tab_guide, tab_ginv, row, x) for x in u])
        np.testing.assert_array_equal(got, np.searchsorted(c, u, side="right"))


def test_exit_table_rows_never_decrease():
    """A day's cells end where the day ends even when a move's share is too small to show
    in the sum (1e-19 to 1e-15 of the other's): were a cell a rounding step above the day's
    end, a group whose draw fell exactly on its age's start would leave before its age."""
    from forecast.simulate.kernels import exit_table_row, exit_tables, table_cell

    kinds = np.array([[0, 1, 1, 0]], dtype=np.int8)  # one state, two moves
    band_lo = np.array([0, 20], dtype=np.int64)
    rng = np.random.default_rng(0)
    out_of_order = 0
    for _ in range(2000):
        real = rng.uniform(0.05, 1.5)
        hazards = np.zeros((1, 1, 2, 1, 1, 4))
        hazards[..., 1] = real
        hazards[..., 2] = real * 10.0 ** rng.uniform(-19, -15)
        tables = exit_tables(50, kinds, 1, 1, 1)
        tab_c, tab_guide, tab_ginv, _, dests = tables
        exit_table_row(tab_c, tab_guide, tab_ginv, 0, hazards, hazards.sum(-1), band_lo, dests,
                       0, 0, 0, 0)
        c = tab_c[0]
        out_of_order += np.any(np.diff(c) < 0)
        width = dests.shape[1]
        for age in range(1, 20):
            if 1.0 - c[age * width - 1] < 1e-6:
                break
            assert table_cell(tab_c, tab_guide, tab_ginv, 0, c[age * width - 1]) >= age * width
    assert out_of_order == 0


def test_a_hazard_on_a_move_the_model_lacks_is_refused(b2b, b2b_params):
    """The exit tables hold the model's moves only, so parameters with a hazard anywhere else
    (here lead -> won) are refused with the move named, not simulated wrongly."""
    hazards = b2b_params.hazards.copy()
    hazards[:, b2b.state_index("lead"), :, :, :, b2b.state_index(WON)] = 0.01
    params = b2b_params.__class__(hazards, b2b_params.arrivals_mean,
                                  b2b_params.arrivals_dispersion, b2b_params.day_of_week,
                                  b2b_params.deal_mu, b2b_params.deal_sigma)
    with pytest.raises(ValueError, match="lead -> won, which is not a move of model b2b"):
        simulate(b2b, params, fresh_leads(10, 0), AS_OF, 30, 4, 0)


@pytest.mark.parametrize("which", ["b2b", "two_stage", "fast_stage"])
def test_cohort_schedule_runs_every_cohort_after_those_that_feed_it(request, tmp_path, which):
    """The cohort kernel runs a (state, recycle level) over the whole horizon before the ones
    it feeds, so its order must be topological: every node once, a move never goes to an
    earlier pass, and a pass holds one strongly connected set of nodes (run day by day
    together). b2b has three levels: everything below the last is run alone, in order; the
    fast-stage model has one level, so its states all feed each other and share one pass."""
    from test_equivalence import FAST_STAGE_TOML

    from forecast.simulate.kernels import KIND_EXPIRY, cohort_schedule

    if which == "fast_stage":
        path = tmp_path / "fast_stage.toml"
        path.write_text(FAST_STAGE_TOML)
        model = load_model(path)
    else:
        model = request.getfixturevalue(which)
    kinds = model.move_kinds()
    n_trans, n_rec = kinds.shape[0], model.recycle_levels
    sched_s, sched_r, start = cohort_schedule(kinds, n_rec)
    nodes = list(zip(sched_s.tolist(), sched_r.tolist(), strict=True))
    assert sorted(nodes) == [(s, r) for s in range(n_trans) for r in range(n_rec)]
    pass_of = {node: p for p in range(len(start) - 1) for node in nodes[start[p]:start[p + 1]]}
    edges = {(s, r): [(d, min(r + (kinds[s, d] == KIND_EXPIRY), n_rec - 1))
                      for d in range(n_trans) if kinds[s, d]]
             for s in range(n_trans) for r in range(n_rec)}

    def reach(u):
        seen, todo = set(), [u]
        while todo:
            for v in edges[todo.pop()]:
                if v not in seen:
                    seen.add(v)
                    todo.append(v)
        return seen

    reached = {u: reach(u) for u in edges}
    for u, vs in edges.items():
        for v in vs:
            assert pass_of[u] <= pass_of[v], (u, v)
    for u in edges:
        for v in edges:
            same = u == v or (v in reached[u] and u in reached[v])
            assert (pass_of[u] == pass_of[v]) == same, (u, v)
    sizes = np.diff(start)
    if which == "b2b":
        assert sizes[0] == 1 and nodes[0] == (model.state_index("lead"), 0)
        assert sum(sizes > 1) == 1 and sizes.max() == n_trans - 1  # all but lead, at level 2
    if which == "fast_stage":
        assert sizes.tolist() == [n_trans]
