"""Where the NUTS sampler starts and how it first scales its steps (``forecast.fit.nuts_start``):
at the crude rates, with the mass matrix from the data's curvature for the variables the data
pin. PyMC's default (within +-1 of the prior centre, an identity mass matrix for 101 tuning
steps) spent two thirds of a fit's leapfrog steps there. The posterior is the same either way;
these tests check that the start is what it says, and that it speeds up tuning."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pytest

from forecast.eventlog import read_event_log
from forecast.fit import (
    PINNED_BY_DATA,
    START_VARIANCE_SCALE,
    build_model,
    declared_moves,
    nuts_start,
)
from forecast.samples import sample_history_path
from forecast.statistics import sufficient_statistics

pytest.importorskip("pymc")


@pytest.fixture(scope="module")
def b2b_start(b2b):
    log = read_event_log(sample_history_path(b2b), b2b)
    stats = sufficient_statistics(log, b2b, dt.date(2026, 9, 30))
    pm_model = build_model(stats, b2b)
    step, initvals = nuts_start(pm_model, stats, b2b, chains=3, seed=4)
    return stats, pm_model, step, initvals


def variance_by_name(pm_model, step):
    """The start's mass-matrix variance (``velocity`` of ones), split by value variable."""
    from pymc.blocking import DictToArrayBijection

    info = DictToArrayBijection.map(pm_model.initial_point()).point_map_info
    var = step.potential.velocity(np.ones(sum(int(np.prod(s)) for _, s, *_ in info)))
    out, i = {}, 0
    for name, shape, *_ in info:
        n = int(np.prod(shape))
        out[name] = var[i:i + n].reshape(shape)
        i += n
    return out


def test_mass_matrix_starts_from_the_events(b2b, b2b_start):
    # A log-hazard seen y times is known to about 1/sqrt(y): its variance starts near
    # START_VARIANCE_SCALE / y (within the pull of the segment and recycle effects sharing
    # it), where PyMC's start is 1.
    stats, pm_model, step, _ = b2b_start
    var = variance_by_name(pm_model, step)
    moves = declared_moves(b2b)
    y = stats.events[moves.source, :, :, :, moves.dest].sum(axis=(2, 3))
    seen = y >= 100
    assert seen.sum() >= 10
    ratio = var["log_hazard"][seen] * y[seen] / START_VARIANCE_SCALE
    assert np.all((ratio > 0.5) & (ratio < 3.0)), ratio
    assert var["log_arrivals"].max() < 0.01  # thousands of arrivals a segment
    # Non-centred effects and scales keep PyMC's 1: their curvature at the start is how tightly
    # the others hold them, not how far they range.
    for name, v in var.items():
        if name not in PINNED_BY_DATA:
            assert np.all(v == 1.0), name


def test_chains_start_apart_near_the_crude_rates(b2b, b2b_start):
    stats, _, _, initvals = b2b_start
    assert len(initvals) == 3
    moves = declared_moves(b2b)
    y = stats.events[moves.source, :, :, :, moves.dest].sum(axis=(2, 3))
    e = stats.exposure[moves.source].sum(axis=(2, 3))
    seen = y >= 100
    crude = np.log(y[seen] / e[seen])
    for a, b in itertools.pairwise(initvals):
        assert not np.allclose(a["log_hazard"], b["log_hazard"])
    for iv in initvals:
        off = np.abs(iv["log_hazard"][seen] - crude) * np.sqrt(y[seen])
        assert off.max() < 2.5  # at most two standard errors (and the +0.5 of the crude rate)


def test_tuning_takes_larger_steps_from_the_data_start(b2b, b2b_start):
    # 60 tuning steps, one chain: from PyMC's start the step size stays near 0.01 (the identity
    # mass matrix against posteriors 0.02 wide); from the data's, it gets near 0.1. The same
    # seed gives the same start (and so the same draws: tests/test_fit.py).
    import pymc as pm

    stats, pm_model, _, initvals = b2b_start
    step, again = nuts_start(pm_model, stats, b2b, chains=3, seed=4)
    for a, b in zip(initvals, again, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    kw = dict(draws=10, tune=60, chains=1, cores=1, random_seed=1, progressbar=False,
              compute_convergence_checks=False, discard_tuned_samples=False)
    with pm_model:
        ours = pm.sample(step=step, initvals=again[:1], **kw)
        default = pm.sample(target_accept=step.target_accept, **kw)
    size = {name: float(np.median(run.warmup_sample_stats.step_size.values[0, 20:]))
            for name, run in (("ours", ours), ("default", default))}
    assert size["ours"] > 3 * size["default"], size
