"""Fit a funnel model's rates to a company's history with PyMC: a posterior for every forecast.

Three independent parts, all on the sufficient statistics of ``forecast.statistics`` (never on
raw rows, so a million-row history fits as fast as a small one):

- **Hazards**: the piecewise-constant competing-risks model of ``forecast.hazards``. For a
  declared move ``m`` (source ``s`` to destination ``d``), age band ``b``, segment ``g`` and
  recycle level ``r``::

      log λ[m, b, g, r] = α[m, b] + β[m, g] + 1{m moves towards won}·γ[r]

  ``α ~ Normal(log_hazard_mu, log_hazard_sigma)``, except that an age band no lead of the
  history was at risk in takes the α of the band before (:func:`carry_unseen_bands`);
  segments are partially pooled per move (``β[m, ·] ~ ZeroSumNormal(τ[kind of m])``,
  ``τ ~ LogNormal(log segment_effect_sigma, 0.5)``, only for moves seen at least 20 times;
  centred where the data pin them, non-centred otherwise: :func:`pinned_segment_effects`); the
  recycle effect ``γ[0] = 0``, ``γ[r] ~ Normal(0, recycle_effect_sigma)`` multiplies
  advances, skips and recaptures as in the model file's ``[recycle]``. The likelihood is the
  simulator's own daily process, not its continuous-time approximation: in a cell with ``E``
  lead-days at risk (exit days included), ``Y`` exits of which ``y_m`` by move ``m``, and
  ``Λ = Σ λ``, ``log L = -(E - Y)Λ + Y·log(1 - e^{-Λ}) - Y·log Λ + Σ_m y_m log λ_m``. (The Poisson
  likelihood ``Σ y log λ - EΛ`` is its limit for small ``Λ``; it biases fast hazards, e.g. the
  consumer model's SQLs that go cold within a day.)
- **Arrivals**: negative binomial per segment and day, mean ``μ_g · w[weekday]`` with
  ``w = 7·softmax(η)``, ``η ~ ZeroSumNormal(day_of_week_sigma)``, ``log μ_g ~ Normal(log of the
  model file's arrivals_per_day, arrivals_log_mu_sigma)``, NB size ``~ LogNormal(log 10,
  arrivals_dispersion_log_sigma)``.
- **Deal size**: lognormal per segment on the won deals with a known amount, log-scale means
  pooled across segments (``μ_g ~ Normal(μ_0, σ_μ)``), ``σ_g ~ HalfNormal(deal_log_sigma_scale)``;
  the likelihood is written on the per-segment sufficient statistics (count, mean and sum of
  squares of log x), with the ``μ_g`` integrated out and drawn from their exact normal
  conditional posterior (see ``build_model``).

Priors come from the model file's ``[priors]`` (``PRIOR_DEFAULTS`` fill what it leaves out).
Sampling is PyMC's NUTS, started from the data (:func:`nuts_start`: the crude rates, and a
mass matrix from the curvature there), or nutpie (``sampler="nutpie"``, an optional extra):
nutpie samples about 3x faster but compiles for about 40 s in every process, where PyMC's
compiled C is cached on disk, so end to end they tie at the default 1000 draws
(``benchmarks/fit.py``). The
posterior is an ArviZ ``InferenceData`` saved as netCDF with the model file's SHA-256, the
history's SHA-256, the as-of date and the diagnostics in its attributes;
:func:`posterior_parameters` turns it into one :class:`~forecast.parameters.Parameters` set per
draw, refusing a posterior of another model.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from forecast import __version__
from forecast.calendar import CLOSES, N_TYPES, type_index, type_parts
from forecast.model import FunnelModel
from forecast.parameters import Parameters

if TYPE_CHECKING:
    from forecast.statistics import Statistics

PRIOR_DEFAULTS = {
    "log_hazard_mu": -5.0,
    "log_hazard_sigma": 2.0,
    "segment_effect_sigma": 0.5,
    "recycle_effect_sigma": 0.5,
    "arrivals_log_mu_sigma": 2.0,
    "arrivals_dispersion_log_sigma": 1.5,
    "day_of_week_sigma": 0.5,
    "deal_log_mu_sigma": 2.0,
    "deal_log_sigma_scale": 1.0,
    "calendar_effect_sigma": 0.3,
    "drift_step_sigma": 0.15,
    # Degrees of freedom of the walk's steps (Student-t; inf: normal). Rates mostly drift
    # slowly but sometimes jump (a new team, a new channel, a backlog closed at once); with
    # normal steps one jump sets the step size for every period, and a forecast that continues
    # the walk then carries that jump's size into every path (docs/backtest.md).
    "drift_step_nu": 3.0,
}
MOVE_KINDS = ("advance", "expiry", "recapture", "lost")  # move_kinds() codes 1..4
SEGMENT_SD_LOG_SIGMA = 0.5  # spread of the segment-effect scale around its prior median
MIN_EVENTS_FOR_SEGMENTS = 20  # moves seen fewer times get no segment effect
CENTRED_MIN_EVENTS = 100  # per segment, for a centred segment effect (pinned_segment_effects)
# Smaller steps than the default 0.8: the segment effects of a move whose segments barely
# differ sit near the neck of a funnel; 0.9 removed the divergences on the CRM sample. (With the
# centring by pinned_*, 0.8 still left one of three fits of the bundled b2b sample stuck.)
TARGET_ACCEPT = 0.9
RHAT_LIMIT = 1.01
ESS_LIMIT = 100  # per parameter, bulk; below it the bands' parameter part is noisy
FORMAT_VERSION = 1


class PosteriorError(ValueError):
    """A posterior file cannot be used (missing, unreadable, or fitted to another model)."""


@dataclass(frozen=True)
class Moves:
    """The model's declared moves, in a fixed order (source-major, then destination)."""

    source: np.ndarray  # int64 [n_moves]: state index
    dest: np.ndarray  # int64 [n_moves]
    towards_won: np.ndarray  # bool [n_moves]: advance, skip or recapture (kinds 1 and 3)
    kind: np.ndarray  # int64 [n_moves]: index into MOVE_KINDS

    def __len__(self) -> int:
        return int(self.source.shape[0])

    def labels(self, model: FunnelModel) -> list[str]:
        return [f"{model.states[s]}->{model.states[d]}" for s, d in
                zip(self.source, self.dest, strict=True)]


def declared_moves(model: FunnelModel) -> Moves:
    kinds = model.move_kinds()
    source, dest = np.nonzero(kinds)
    k = kinds[source, dest].astype(np.int64)
    return Moves(source.astype(np.int64), dest.astype(np.int64), (k == 1) | (k == 3), k - 1)


def priors_of(model: FunnelModel) -> dict[str, float]:
    """The model file's ``[priors]`` over ``PRIOR_DEFAULTS`` (unknown keys are an error)."""
    unknown = sorted(set(model.priors) - set(PRIOR_DEFAULTS))
    if unknown:
        raise PosteriorError(f"{model.path}: [priors] unknown key {unknown[0]!r} "
                             f"(known: {', '.join(PRIOR_DEFAULTS)})")
    out = dict(PRIOR_DEFAULTS)
    for key, value in model.priors.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PosteriorError(f"{model.path}: [priors] {key} must be a number, got {value!r}")
        if key != "log_hazard_mu" and value <= 0:
            raise PosteriorError(f"{model.path}: [priors] {key} must be > 0, got {value}")
        out[key] = float(value)
    return out


# ---- the PyMC model --------------------------------------------------------------------------

def _import_pymc():
    """Import PyMC without PyTensor's BLAS warning (this model has no matrix products)."""
    import warnings

    warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
    import pymc as pm

    return pm


@contextlib.contextmanager
def _private_tempdir():
    """Temporary files made inside go to a private directory, removed on exit.

    PyTensor's numba backend, which nutpie compiles with, writes the source of every function
    it generates to a temporary file it never deletes: about 50 files in /tmp a fit, for
    good. They are needed only while the functions compile.
    """
    with tempfile.TemporaryDirectory(prefix="forecast-fit-") as private:
        before = tempfile.tempdir
        tempfile.tempdir = private
        try:
            yield
        finally:
            tempfile.tempdir = before


@contextlib.contextmanager
def _pymc_chatter(shown: bool):
    """PyMC's progress lines ("Initializing NUTS", "Sampling 2 chains ... took 33 seconds")
    are INFO records on its logger: kept with the progress bar, dropped without it (``--quiet``,
    backtests, the nightly job, whose cron would mail them), warnings kept either way."""
    import logging

    log = logging.getLogger("pymc")
    level = log.level
    if not shown:
        log.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        log.setLevel(level)


def month_offsets(start: dt.date, days: int, as_of: dt.date) -> np.ndarray:
    """For each of ``days`` dates from ``start``: whole months before the month of ``as_of``
    (0 for the as-of month, 1 for the one before, ...)."""
    dates = pd.date_range(start, periods=days, freq="D")
    return ((as_of.year * 12 + as_of.month) - (dates.year * 12 + dates.month)).to_numpy(
        dtype=np.int64)


def build_model(stats: Statistics, model: FunnelModel, *, drift: bool = False):
    """The PyMC model of ``stats`` (hazards, arrivals, deal sizes) under ``model``'s priors.

    With a ``[calendar]`` table in the model, closing hazards and arrivals get calendar
    multipliers (``forecast.calendar``; the moves to won and to lost each their own). With
    ``drift``, the hazards of moves towards won and the arrivals get a monthly random walk on
    the log scale, anchored at 0 in the as-of month (its step sizes go into the parameters:
    ``forecast.outlook`` continues it over a forecast): the fitted base rates are those of the
    last month, and older months differ by the walk (so a rate that changed during the history
    is not averaged away). With both, the walk
    steps once a quarter (anchored at 0 in the as-of quarter), so that it cannot take over the
    month-of-quarter effects (``_drift_walks``).

    The segments' deal log-means (``deal_log_mu``, and ``deal_log_mu_pooled`` with several
    segments) are deterministic functions of the data and of standard normals: the posterior
    is right, but a prior predictive sample of this graph gives them given the data, not
    from their prior.
    """
    pm = _import_pymc()
    import pytensor.tensor as pt

    pri = priors_of(model)
    moves = declared_moves(model)
    n_b, n_g, n_r = len(model.age_bands), len(model.segments), model.recycle_levels
    sources = np.unique(moves.source)
    coords = {
        "move": moves.labels(model),
        "move_kind": list(MOVE_KINDS),
        "band": [f"{lo}+" for lo in model.age_bands],
        "segment": list(model.segment_names),
        "recycle_level": [str(r) for r in range(1, n_r)],
        "weekday": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
    }
    y = stats.events[moves.source, :, :, :, moves.dest]  # [move, band, g, r]
    # Segment effects only where the data can say something: a move seen a few times has no
    # information on how segments differ, and a free centred effect there is a funnel.
    with_effect = y.sum(axis=(1, 2, 3)) >= MIN_EVENTS_FOR_SEGMENTS
    centred = with_effect & pinned_segment_effects(
        y.sum(axis=(1, 3)), stats.exposure[moves.source].sum(axis=(1, 3)))
    for name, group in (("segment_effect_centred", centred),
                        ("segment_effect_noncentred", with_effect & ~centred)):
        coords[f"{name}_move"] = [m for m, w in zip(coords["move"], group, strict=True) if w]
    exposure = stats.exposure[sources]  # [source, band, g, r]
    exits = stats.events.sum(-1)[sources]
    calendar = model.calendar.declared and stats.daily_events is not None
    drift = drift and stats.daily_events is not None
    if calendar or drift:  # the same by group of days: kinds of day x months before as-of
        n_days = stats.daily_exposure.shape[-1]
        kind = type_index(stats.calendar_start, n_days, model.calendar.month_end_days) \
            if calendar else np.zeros(n_days, dtype=np.int64)
        month = month_offsets(stats.calendar_start, n_days, stats.as_of) if drift \
            else np.zeros(n_days, dtype=np.int64)
        arr_month = month_offsets(stats.first_day, stats.arrivals.shape[0], stats.as_of) \
            if drift else np.zeros(0, dtype=np.int64)
        n_k = N_TYPES if calendar else 1
        n_m = int(max(month.max(initial=0), arr_month.max(initial=0))) + 1
        if drift and stats.since is not None:
            # A trailing window: the walk spans the window's months only. Days before it have
            # no exposure and no events, so months there would be the prior alone (and
            # `describe` would show them as if measured); those days join the window's first.
            n_m = min(n_m, int(month_offsets(stats.since + dt.timedelta(days=1), 1,
                                             stats.as_of)[0]) + 1)
            month = np.minimum(month, n_m - 1)
        ev, ex = stats.grouped(kind + n_k * month, n_k * n_m)
        y = ev[moves.source, :, :, :, :, moves.dest]  # [move, band, g, r, group]
        exposure, exits = ex[sources], ev.sum(-1)[sources]
        group_kind, group_month = np.arange(n_k * n_m) % n_k, np.arange(n_k * n_m) // n_k
        # each move's closing move with a calendar (its index in CLOSES), -1 for the others
        close_of = np.array([CLOSES.index(model.states[d]) if model.states[d] in CLOSES
                             else -1 for d in moves.dest], dtype=np.int64)
        coords["close"] = list(CLOSES)
        coords["quarter_month"] = ["first", "second", "third"]
        coords["months_back"] = [str(m) for m in range(1, n_m)]
        # With the calendar, the walk steps once a quarter (see ``_drift_walks``).
        walk_quarter = quarters_back(stats.as_of, n_m) if calendar \
            else np.arange(n_m, dtype=np.int64)
        if drift and int(walk_quarter.max()) < 1:  # nothing before the as-of period
            period = "quarter" if calendar else "month"
            raise PosteriorError(
                f"--drift needs history before the as-of {period} for the rates to move from; "
                + (f"the window from {stats.since + dt.timedelta(days=1)} lies inside it: "
                   "widen --window or drop --drift" if stats.since is not None else
                   "the history lies inside it: drop --drift"))
        if calendar and drift:
            coords["quarters_back"] = [str(q) for q in range(1, int(walk_quarter.max()) + 1)]
        # A walk per stage the moves towards won leave (each its own path, one step size):
        # the move of each move's walk, -1 for the moves no walk scales.
        walk_sources = np.unique(moves.source[moves.towards_won])
        walk_of_move = np.where(moves.towards_won,
                                np.searchsorted(walk_sources, moves.source), -1)
        coords["drift_stage"] = [model.states[x] for x in walk_sources]

    with pm.Model(coords=coords) as pm_model:
        # -- hazards
        alpha = pm.Normal("log_hazard", pri["log_hazard_mu"], pri["log_hazard_sigma"],
                          dims=("move", "band"))
        log_lam = alpha[:, :, None, None]
        if n_g > 1:
            # A lognormal scale, not a half-normal: it keeps the scale off zero, where a kind of
            # move whose segments barely differ would drag the sampler into the funnel's neck
            # (divergences on the CRM sample). Its median is segment_effect_sigma.
            tau = pm.LogNormal("segment_sd", np.log(pri["segment_effect_sigma"]),
                               SEGMENT_SD_LOG_SIGMA, dims="move_kind")
            # Centred where every segment has seen the move often (the data pin each effect;
            # a non-centred form mixes badly there), non-centred where some segment has few
            # (the prior dominates; a centred form is a funnel). Both give "segment_effect".
            full = pt.zeros((len(moves), n_g))
            for name, group in (("segment_effect_centred", centred),
                                ("segment_effect_noncentred", with_effect & ~centred)):
                if not group.any():
                    continue
                scale = tau[moves.kind[group]][:, None]
                dims = (f"{name}_move", "segment")
                if group is centred:
                    part = pm.ZeroSumNormal(name, sigma=scale, dims=dims)
                else:
                    part = scale * pm.ZeroSumNormal(name, sigma=1.0, dims=dims)
                full = pt.set_subtensor(full[np.flatnonzero(group)], part)
            full = pm.Deterministic("segment_effect", full, dims=("move", "segment"))
            log_lam = log_lam + full[:, None, :, None]
        if n_r > 1:
            gamma = pm.Normal("recycle_effect", 0.0, pri["recycle_effect_sigma"],
                              dims="recycle_level")
            full = pt.concatenate([pt.zeros(1), gamma])
            log_lam = log_lam + moves.towards_won.astype(float)[:, None, None, None] \
                * full[None, None, None, :]
        log_lam = pt.broadcast_to(log_lam, (len(moves), n_b, n_g, n_r))
        if calendar or drift:
            extra = pt.zeros((len(moves), n_k * n_m))
            if calendar:
                # Closing moves (to won and to lost, each its own effects: they can move in
                # opposite directions) run faster or slower by the kind of day.
                sd = pri["calendar_effect_sigma"]
                c_wd = pm.ZeroSumNormal("close_day_of_week_effect", sigma=sd,
                                        dims=("close", "weekday"))
                c_qm = pm.ZeroSumNormal("close_quarter_month_effect", sigma=sd,
                                        dims=("close", "quarter_month"))
                c_me = pm.Normal("close_month_end_effect", 0.0, sd, dims="close")
                wd_k, qm_k, me_k = type_parts()
                log_mult = (c_wd[:, wd_k] + c_qm[:, qm_k]
                            + c_me[:, None] * me_k)[:, group_kind]  # [close, group]
                extra = extra + (close_of >= 0)[:, None] * log_mult[np.maximum(close_of, 0)]
            if drift:
                walk, arr_walk = _drift_walks(pm, pt, pri, walk_quarter, quarterly=calendar,
                                              n_walks=len(walk_sources))
                scaled = np.flatnonzero(walk_of_move >= 0)
                extra = pt.inc_subtensor(extra[scaled],
                                         walk[walk_of_move[scaled]][:, group_month])
            log_lam = log_lam[..., None] + extra[:, None, None, None, :]
        lam = pt.exp(log_lam)
        lam_total = pt.stack([lam[moves.source == s].sum(0) for s in sources])
        pm.Potential("hazard_loglik",
                     pt.sum(y * log_lam)
                     - pt.sum((exposure - exits) * lam_total)
                     + pt.sum(exits * (pt.log1mexp(-lam_total) - pt.log(lam_total))))

        # -- arrivals
        default_rate = np.array([max(s.arrivals_per_day, 1e-3) for s in model.segments])
        log_mu = pm.Normal("log_arrivals", np.log(default_rate), pri["arrivals_log_mu_sigma"],
                           dims="segment")
        eta = pm.ZeroSumNormal("day_of_week_effect", sigma=pri["day_of_week_sigma"],
                               dims="weekday")
        weights = 7.0 * pt.special.softmax(eta)
        size = pm.LogNormal("arrivals_size", np.log(10.0), pri["arrivals_dispersion_log_sigma"],
                            dims="segment")
        if stats.arrivals.shape[0] > 0:
            mu = pt.exp(log_mu)[None, :] * weights[stats.weekday][:, None]
            if calendar:
                sd = pri["calendar_effect_sigma"]
                a_qm = pm.ZeroSumNormal("arrivals_quarter_month_effect", sigma=sd,
                                        dims="quarter_month")
                a_me = pm.Normal("arrivals_month_end_effect", 0.0, sd)
                mu = mu * pt.exp(a_qm[stats.quarter_month]
                                 + a_me * stats.month_end.astype(float))[:, None]
            if drift:
                mu = mu * pt.exp(arr_walk[arr_month])[:, None]
            pm.NegativeBinomial("arrivals", mu=mu, alpha=size[None, :],
                                observed=stats.arrivals)

        # -- deal sizes
        default_mu = np.array([s.deal_mu for s in model.segments])
        mu_a, mu_b = float(default_mu.mean()), pri["deal_log_mu_sigma"]  # mu0's prior
        deal_sigma = pm.HalfNormal("deal_log_sigma", pri["deal_log_sigma_scale"], dims="segment")
        logs = np.log(stats.deal_amounts)
        n = np.bincount(stats.deal_segment, minlength=n_g).astype(float)
        if n_g > 1:
            # Given the scales (the segments' spread sd_mu and their deals' spreads), the rest
            # is normal: the segments' mean log deals around mu0, mu0 around its prior. So the
            # segments' log-means and mu0 are integrated out of the likelihood (exactly) and
            # drawn from their normal posteriors given the scales, through standard normals
            # the likelihood never touches. The sampler then sees no funnel (means alike, the
            # scale near 0; or few segments, mu0 as wide as the scale) and no banana (means
            # pinned, the scale wide): with the means as parameters, centred or not, the
            # bundled b2b sample gave 1 to 5 divergences a fit non-centred, up to 73 centred.
            # The posterior is the same.
            #
            # The sums run over the segments with deals only (indexed, not masked by a
            # constant 0/1 vector: with a mask that is all or partly zero, PyTensor's
            # canonicalisation never reached its fixed point, and a fit of a history with
            # few or no deals hung before sampling).
            sd_mu = pm.HalfNormal("deal_log_mu_sd", pri["deal_log_mu_sigma"])
            seen = np.flatnonzero(n > 0)
            n_s = n[seen]
            mean_s = np.bincount(stats.deal_segment, weights=logs, minlength=n_g)[seen] / n_s
            ss_s = np.bincount(stats.deal_segment,
                               weights=(logs - mean_s[np.searchsorted(seen,
                                                                      stats.deal_segment)])
                               ** 2, minlength=n_g)[seen]
            sigma_s = deal_sigma[seen]
            noise2 = sigma_s**2 / n_s  # the squared standard error of a segment's mean
            v = sd_mu**2 + noise2  # the variance of a segment's mean around mu0
            # The segments' means: normal around mu0 (variances v), mu0 ~ Normal(a, b^2): a
            # joint normal with covariance diag(v) + b^2 11', in closed form (Sherman-Morrison).
            r = mean_s - mu_a
            w = pm.Normal("deal_log_mu_pooled_z", 0.0, 1.0)
            z_mu = pm.Normal("deal_log_mu_z", 0.0, 1.0, dims="segment")
            if len(seen):
                precision = 1.0 / mu_b**2 + pt.sum(1.0 / v)  # of mu0 given the means
                pm.Potential("deal_loglik", pt.sum(
                    -(n_s - 1.0) * pt.log(sigma_s) - ss_s / (2.0 * sigma_s**2)
                    - 0.5 * pt.log(v) - r**2 / (2.0 * v))
                    - 0.5 * pt.log(mu_b**2 * precision)
                    + pt.sum(r / v) ** 2 / (2.0 * precision))
                mu0 = pm.Deterministic(
                    "deal_log_mu_pooled",
                    (mu_a / mu_b**2 + pt.sum(mean_s / v)) / precision + w / pt.sqrt(precision))
            else:  # no deals: the prior
                mu0 = pm.Deterministic("deal_log_mu_pooled", mu_a + mu_b * w)
            # A segment without deals: its prior around mu0 (shrink 0, sd sd_mu).
            shrink_s = sd_mu**2 / v
            centre = pt.set_subtensor(pt.zeros(n_g)[seen],
                                      shrink_s * (mean_s - mu0)) if len(seen) else 0.0
            post_sd = pt.set_subtensor((sd_mu * pt.ones(n_g))[seen],
                                       pt.sqrt(shrink_s * noise2)) if len(seen) \
                else sd_mu * pt.ones(n_g)
            pm.Deterministic("deal_log_mu", mu0 + centre + post_sd * z_mu, dims="segment")
        else:
            mu0 = pm.Normal("deal_log_mu_pooled", mu_a, mu_b)
            s1, s2 = logs.sum(), (logs**2).sum()
            if n.sum() > 0:  # (no deals: nothing to add, and no constant-zero graph to fold)
                pm.Potential("deal_loglik", pt.sum(
                    -n * pt.log(deal_sigma) - (s2 - 2.0 * mu0 * s1 + n * mu0**2)
                    / (2.0 * deal_sigma**2)))
    return pm_model


# Value variables whose data pin them directly (no non-centred hierarchy, no walk): their
# curvature at the start is close to their posterior precision (see nuts_start).
PINNED_BY_DATA = ("log_hazard", "segment_effect_centred_zerosum__", "recycle_effect",
                  "log_arrivals", "day_of_week_effect_zerosum__", "arrivals_size_log__",
                  "deal_log_sigma_log__")
# The start's variance is this times the inverse curvature: the curvature is the precision given
# the other variables, the posterior's marginal variance is larger. At 1, the CRM sample cut at
# 2017-05-31 (250 + 250) had 77 and 147 divergences in seeds 0 and 4 of five (PyMC's start: 2
# in all five); at 2, 25 in one of four; at 4, fits of 60 + 60 mixed worse.
START_VARIANCE_SCALE = 2.0


def nuts_start(pm_model, stats: Statistics, model: FunnelModel, chains: int, seed: int):
    """PyMC's NUTS step and per-chain initial values for ``fit``, started from the data.

    PyMC's default start (``jitter+adapt_diag``) puts every chain within +-1 of the prior
    centre on the unconstrained scale with an identity mass matrix, which it keeps for the
    first 101 tuning steps; these posteriors are 0.02-0.2 wide there, so the step size
    collapses to ~0.01 and those steps took most of a fit's leapfrog steps (two thirds on
    the bundled b2b sample at 500 + 500; all of a fit tuned for 100 steps or fewer, which
    never leaves them). Instead:

    - the chains start at the crude rates (events over exposure per move and band, mean
      arrivals per segment), each jittered by up to two of its standard errors;
    - the mass matrix starts at ``START_VARIANCE_SCALE`` times the inverse curvature of the
      log-posterior there (a finite-difference diagonal of the Hessian, ``2n`` gradient
      calls) for the variables the data pin directly (``PINNED_BY_DATA``), 1 elsewhere: for
      a non-centred effect or a hierarchical scale the curvature at the start says how
      tightly it is held given the others, not how far it ranges (its marginal is much
      wider; the b2b deal block mixed worse with it). PyMC's adaptation then goes on from
      there as it would.

    The posterior is the same; only where the sampler starts and how it first scales its
    steps change.
    """
    pm = _import_pymc()
    from pymc.blocking import DictToArrayBijection
    from pymc.step_methods.hmc.quadpotential import QuadPotentialDiagAdapt

    pri = priors_of(model)
    moves = declared_moves(model)
    y = stats.events[moves.source, :, :, :, moves.dest].sum(axis=(2, 3))  # [move, band]
    e = stats.exposure[moves.source].sum(axis=(2, 3))
    with np.errstate(divide="ignore"):
        crude = np.log((y + 0.5) / np.where(e > 0, e, 1.0))
    centre = {"log_hazard": (np.where(e > 0, np.clip(crude, -15.0, 3.0), pri["log_hazard_mu"]),
                             1.0 / (y + 1.0))}
    arr = stats.arrivals.astype(float)
    if arr.shape[0] > 1:
        mean = np.maximum(arr.mean(axis=0), 1e-3)
        centre["log_arrivals"] = (np.log(mean),
                                  np.maximum(arr.var(axis=0), mean) / mean**2 / arr.shape[0])
    point = pm_model.initial_point()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    initvals = []
    for _ in range(chains):
        initvals.append({name: c + rng.uniform(-2.0, 2.0, c.shape) * np.sqrt(np.minimum(v, 1.0))
                         for name, (c, v) in centre.items() if name in point})
    for name, (c, _) in centre.items():
        if name in point:
            point[name] = c
    start = DictToArrayBijection.map(point)
    x0 = start.data
    potential = QuadPotentialDiagAdapt(x0.size, x0, np.ones(x0.size), 10)
    step = pm.NUTS(potential=potential, target_accept=TARGET_ACCEPT, model=pm_model)
    # The step's own compiled log-density and gradient (compiling another costs 2-4 s); its
    # variables are the model's value variables in the order of ``point``.
    logp_dlogp = step._logp_dlogp_func
    if [v.name for v in logp_dlogp._grad_vars] != [name for name, *_ in start.point_map_info]:
        raise AssertionError("the NUTS step's variables are not in the initial point's order")
    logp_dlogp.set_extra_values({})
    h = 1e-4
    curv = np.empty_like(x0)
    for i in range(x0.size):
        xp, xm = x0.copy(), x0.copy()
        xp[i] += h
        xm[i] -= h
        curv[i] = (logp_dlogp(xm)[1][i] - logp_dlogp(xp)[1][i]) / (2.0 * h)
    pinned = np.concatenate([np.full(int(np.prod(shape)), name in PINNED_BY_DATA)
                             for name, shape, *_ in start.point_map_info])
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.clip(START_VARIANCE_SCALE / curv, 1e-8, 1.0)
    var = np.where(pinned & np.isfinite(curv) & (curv > 0), var, 1.0)
    # Started afresh with that variance: the same object the step's integrator holds.
    potential.__init__(x0.size, x0, var, 10)
    return step, initvals


def true_spread2(estimates: np.ndarray, se2: np.ndarray) -> float:
    """The variance of the true values behind noisy ``estimates`` (squared standard errors
    ``se2``), by moments: the estimates' variance less their mean squared standard error (the
    estimates alone also spread by their noise). Negative when the noise explains it all."""
    return float(estimates.var(ddof=1) - se2.mean())


def pinned_segment_effects(events: np.ndarray, exposure: np.ndarray) -> np.ndarray:
    """Per move (``events``, ``exposure``: [move, segment]): do the data pin its segment
    effects? Either every segment saw it ``CENTRED_MIN_EVENTS`` times, or the typical segment's
    standard error of its log-rate (``1/sqrt(events)``, median over segments) is below the
    spread of the true effects, estimated by moments from the crude log-rates (their variance
    less their mean squared standard error). Where they are pinned the effects are centred: a
    non-centred form is a banana there (each pinned effect ties its standardized value to the
    scale; on the CRM sample, where one product of seven is rare, NUTS took 400 steps a draw).
    Elsewhere they are non-centred (the prior dominates; a centred form is a funnel)."""
    out = events.min(axis=1) >= CENTRED_MIN_EVENTS
    for m, (y, e) in enumerate(zip(events, exposure, strict=True)):
        seen = (y > 0) & (e > 0)
        if out[m] or seen.sum() < 2:
            continue
        spread2 = true_spread2(np.log(y[seen] / e[seen]), 1.0 / y[seen])
        out[m] = np.median(1.0 / np.maximum(y, 1.0)) < spread2
    return out


def quarters_back(as_of: dt.date, n_months: int) -> np.ndarray:
    """For the month ``j`` months before the month of ``as_of`` (``j = 0 .. n_months - 1``):
    whole calendar quarters before the quarter of ``as_of``."""
    month = as_of.year * 12 + as_of.month - 1 - np.arange(n_months, dtype=np.int64)
    return (as_of.year * 12 + as_of.month - 1) // 3 - month // 3


def _drift_walks(pm, pt, pri, step: np.ndarray, *, quarterly: bool = False,
                 n_walks: int = 1):
    """Random walks (log scale) for conversion and arrivals, 0 in the as-of month: ``walk[j]``
    is the log-multiplier ``j`` months before it (non-centred steps). Conversion has
    ``n_walks`` walks, ``[walk, month]``, one per stage that moves towards won leave (dims
    ``drift_stage``): a change in one stage's conversion (a new lead source converting
    better) is not a change in all of them, and a shared walk, pulled by the stage with the
    most events, carried one stage's doubling into every stage's forecast (docs/backtest.md).
    They share one step size.

    ``step[j]`` is the step of the walk month ``j`` is on: ``j`` itself for a monthly walk, its
    quarter (:func:`quarters_back`) for a quarterly one (``quarterly``), whose step prior is
    ``drift_step_sigma`` times sqrt(3), a monthly walk's spread over three months. With calendar
    effects the walk must be quarterly: a monthly walk can take the month-of-quarter pattern
    of conversion into the months (the two explain the same monthly swings of the won moves;
    when won and lost shared one calendar, the walk took the won pattern and the calendar
    the lost one), and the fit then anchored the base rate on the as-of month's own level
    and applied the quarter-month effects on top of it again. A
    quarterly walk is constant within a quarter, so the month-of-quarter effects are the only
    within-quarter pattern, and the base rates are those of the as-of quarter.
    """
    n_steps = int(step.max(initial=0))
    out = []
    for name in ("drift", "arrivals_drift"):
        stages = name == "drift"
        if n_steps < 1:
            out.append(pt.zeros((n_walks, len(step)) if stages else len(step)))
            continue
        scale = pri["drift_step_sigma"] * (np.sqrt(3.0) if quarterly else 1.0)
        step_sd = pm.HalfNormal(f"{name}_step_sd", scale)
        dims = "quarters_back" if quarterly else "months_back"
        dims = ("drift_stage", dims) if stages else dims
        z = pm.Normal(f"{name}_z", 0.0, 1.0, dims=dims)
        nu = pri["drift_step_nu"]
        if np.isinf(nu):
            steps = step_sd * z
        else:
            # Student-t steps as a scale mixture of normals: z / sqrt(g), g ~ Gamma(nu/2, nu/2),
            # is t with nu degrees of freedom (the same prior). A jump the data pin (lead
            # conversion doubling in a month) then takes a large 1/g, not a z of 80 in the
            # t's far tail that must shrink and grow with the step size at every draw: on the
            # planted history of docs/backtest.md, 117 divergences and R-hat 1.11 with the t
            # drawn directly, 2 and 1.04 this way.
            g = pm.Gamma(f"{name}_mix", alpha=nu / 2.0, beta=nu / 2.0, dims=dims)
            steps = step_sd * z / pt.sqrt(g)
        if stages:
            walk = pt.concatenate([pt.zeros((n_walks, 1)), pt.cumsum(steps, axis=1)],
                                  axis=1)[:, step]
            pm.Deterministic(f"{name}_by_month", walk[:, 1:], dims=("drift_stage",
                                                                    "months_back"))
        else:
            walk = pt.concatenate([pt.zeros(1), pt.cumsum(steps)])[step]
            pm.Deterministic(f"{name}_by_month", walk[1:], dims="months_back")
        out.append(walk)
    return out


# ---- fitting ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class FitResult:
    """A fitted posterior and how it went."""

    idata: object  # arviz.InferenceData
    diagnostics: dict
    timings: dict


def fit(stats: Statistics, model: FunnelModel, *, draws: int = 1000, tune: int = 1000,
        chains: int = 2, cores: int | None = None, seed: int = 0, sampler: str = "pymc",
        progress: bool = True, history_path: str = "", history_sha256: str = "",
        drift: bool = False) -> FitResult:
    """Sample the posterior of ``model``'s rates given ``stats``.

    Progress goes to stderr. The returned ``idata`` carries the provenance (model and history
    hashes, as-of date, window, seed, sampler) and the diagnostics in its posterior's attrs.
    Same statistics, model and seed give the same draws.
    """
    pm = _import_pymc()

    timings = {}
    t0 = time.perf_counter()
    pm_model = build_model(stats, model, drift=drift)
    cores = min(chains, os.cpu_count() or 1) if cores is None else cores
    with contextlib.redirect_stdout(sys.stderr), pm_model, _pymc_chatter(progress):
        if sampler == "nutpie":
            try:
                import nutpie
            except ImportError:
                raise PosteriorError("the nutpie sampler is not installed: pip install "
                                     "'pipeline-forecast[nutpie]', or use --sampler pymc") \
                    from None

            with _private_tempdir():
                compiled = nutpie.compile_pymc_model(pm_model)
                timings["compile_s"] = time.perf_counter() - t0
                t1 = time.perf_counter()
                idata = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains,
                                      cores=cores, seed=seed, progress_bar=progress,
                                      save_warmup=False, target_accept=TARGET_ACCEPT)
        elif sampler == "pymc":
            # The NUTS step compiles the logp/gradient once (nuts_start uses that compiled
            # function too; the graph rewrites are not cached, so every extra compile costs
            # 2-5 s a fit). pm.sample's own clock of the sampling gives the split.
            step, initvals = nuts_start(pm_model, stats, model, chains, seed)
            idata = pm.sample(draws=draws, tune=tune, chains=chains, cores=cores,
                              random_seed=seed, progressbar=progress, step=step,
                              initvals=initvals, compute_convergence_checks=False,
                              idata_kwargs={"log_likelihood": False})
            sampling = float(idata.sample_stats.attrs["sampling_time"])
            t1 = time.perf_counter() - sampling
            timings["compile_s"] = t1 - t0
        else:
            raise ValueError(f"sampler must be 'pymc' or 'nutpie', got {sampler!r}")
    timings["sampling_s"] = time.perf_counter() - t1
    carried = carry_unseen_bands(idata, stats, model)
    diag = diagnose(idata)
    diag["carried_bands"] = carried
    idata.posterior.attrs.update({
        "forecast_format": FORMAT_VERSION,
        "fitted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "forecast_version": __version__,
        "model_name": model.name,
        "model_path": str(model.path),
        "model_sha256": model.sha256,
        "history_path": history_path,
        "history_sha256": history_sha256,
        "as_of": stats.as_of.isoformat(),
        "since": stats.since.isoformat() if stats.since else "",
        "drift_step_nu": priors_of(model)["drift_step_nu"] if drift else 0.0,
        "seed": int(seed),
        "sampler": sampler,
        "drift": int(bool(drift)),
        "n_rows": int(stats.n_rows),
        "n_leads": int(stats.n_leads),
        "diagnostics": json.dumps(diag),
    })
    timings["total_s"] = time.perf_counter() - t0
    return FitResult(idata=idata, diagnostics=diag, timings=timings)


def carry_unseen_bands(idata, stats: Statistics, model: FunnelModel) -> dict[str, list[str]]:
    """Give an age band no lead was ever at risk in the hazards of the band before it, draw by
    draw (in place); return the bands carried, by state (``{"opportunity": ["365+"]}``).

    With no exposure a band's ``log_hazard`` never meets the likelihood, so its posterior is
    its prior (median e^-5 = 0.0067 a day, 90% interval 0.0003 to 0.18) and independent of
    everything else: a deal turning a year old in the forecast would close at a rate the data
    never showed, faster than one of half a year whose band the data pin near zero. Replacing
    those draws by the band before's is exactly sampling a model in which an unseen band's
    hazards equal those of the last band seen before it. A state never at risk at any age
    keeps its prior.
    """
    moves = declared_moves(model)
    seen = stats.exposure.sum(axis=(2, 3)) > 0  # [transient state, band]
    log_hazard = idata.posterior["log_hazard"]
    values = log_hazard.values.copy()  # [chain, draw, move, band]
    carried: dict[str, list[str]] = {}
    for s in np.unique(moves.source):
        first_seen = np.flatnonzero(seen[s])
        if not first_seen.size:
            continue
        unseen = [b for b in range(first_seen[0] + 1, seen.shape[1]) if not seen[s, b]]
        out_of_s = moves.source == s
        for b in unseen:  # in order, so a run of unseen bands carries the last seen one
            values[:, :, out_of_s, b] = values[:, :, out_of_s, b - 1]
        if unseen:
            carried[model.states[s]] = [f"{model.age_bands[b]}+" for b in unseen]
    if carried:
        idata.posterior["log_hazard"] = log_hazard.copy(data=values)
    # always written: a posterior without it predates the carry (nightly refits such a one)
    idata.posterior.attrs["carried_bands"] = json.dumps(carried)
    return carried


def carried_notes(carried: dict[str, list[str]]) -> list[str]:
    """One line per state of :func:`carry_unseen_bands`' result, for the user."""
    return [f"no {state} lead was at risk at ages {', '.join(bands)} days in the history: "
            f"{'those bands take' if len(bands) > 1 else 'that band takes'} the hazards of the "
            "band before (not the prior's)" for state, bands in carried.items()]


def diagnose(idata) -> dict:
    """R-hat (max), bulk ESS (min), divergences and the warnings they call for."""
    import arviz as az

    post = idata.posterior
    n_chains = post.sizes["chain"]

    def over_all(diagnostic, pick):
        # Elements that never vary (a deterministic that is 0 by construction, a one-segment
        # model's effects) have no R-hat or ESS: ArviZ gives NaN, with a warning from 0 / 0.
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.concatenate([np.ravel(v.values)
                                     for v in diagnostic(post).data_vars.values()])
        values = values[np.isfinite(values)]
        return float(pick(values)) if values.size else float("nan")

    rhat = over_all(az.rhat, np.max) if n_chains > 1 else float("nan")
    ess = over_all(lambda p: az.ess(p, method="bulk"), np.min)
    stats = idata.sample_stats
    div_name = "diverging" if "diverging" in stats else None
    divergences = int(stats[div_name].sum()) if div_name else 0
    n_draws = int(post.sizes["draw"]) * n_chains
    warnings = []
    if n_chains < 2:
        warnings.append("one chain: R-hat cannot be computed; run --chains 2 or more to check "
                        "convergence")
    elif not rhat <= RHAT_LIMIT:
        warnings.append(f"R-hat {rhat:.3f} > {RHAT_LIMIT}: the chains disagree; run longer "
                        f"(--tune and --draws 2000) or check the history for a rate that "
                        f"changed during it (try --window)")
    if divergences:
        warnings.append(f"{divergences} divergent transitions of {n_draws}: the sampler missed "
                        f"part of the posterior; raise --tune, or give weakly identified rates "
                        f"tighter [priors] in the model file")
    if ess < ESS_LIMIT:
        warnings.append(f"smallest bulk ESS {ess:.0f} < {ESS_LIMIT}: too few effective draws; "
                        f"run more --draws")
    return {"max_rhat": rhat, "min_ess_bulk": ess, "divergences": divergences,
            "draws": n_draws, "chains": int(n_chains), "warnings": warnings}


# ---- from posterior to parameter sets ---------------------------------------------------------

def _flat(post, name: str) -> np.ndarray:
    """A posterior variable with (chain, draw) stacked chain-major into one leading axis."""
    values = post[name].values
    return values.reshape((-1, *values.shape[2:]))


def posterior_parameters(idata, model: FunnelModel, path: str = "posterior") -> Parameters:
    """One parameter set per posterior draw (chain-major), for the simulator.

    Refuses (``PosteriorError``) a posterior fitted with another model file.
    """
    post = idata.posterior
    sha = post.attrs.get("model_sha256")
    if sha is None:
        raise PosteriorError(f"{path}: not a forecast posterior (no model_sha256 attribute)")
    if sha != model.sha256:
        raise PosteriorError(
            f"{path}: fitted with model {post.attrs.get('model_name')!r} "
            f"({post.attrs.get('model_path')}, sha256 {sha[:12]}), not {model.path} "
            f"(sha256 {model.sha256[:12]}); refit with `forecast fit --model {model.path}` or "
            f"run with the model it was fitted with")
    moves = declared_moves(model)
    n_b, n_g, n_r = len(model.age_bands), len(model.segments), model.recycle_levels
    log_lam = _flat(post, "log_hazard")[:, :, :, None, None]  # [set, move, band, 1, 1]
    if n_g > 1:
        if "segment_effect" in post:
            log_lam = log_lam + _flat(post, "segment_effect")[:, :, None, :, None]
    if n_r > 1:
        gamma = np.concatenate([np.zeros((log_lam.shape[0], 1)),
                                _flat(post, "recycle_effect")], axis=1)
        log_lam = log_lam + moves.towards_won[None, :, None, None, None] \
            * gamma[:, None, None, None, :]
    n_sets = log_lam.shape[0]
    lam = np.broadcast_to(np.exp(log_lam), (n_sets, len(moves), n_b, n_g, n_r))
    hazards = np.zeros((n_sets, model.n_transient, n_b, n_g, n_r, len(model.states)))
    for i, (s, d) in enumerate(zip(moves.source, moves.dest, strict=True)):
        hazards[:, s, :, :, :, d] = lam[:, i]
    eta = _flat(post, "day_of_week_effect")
    dow = np.exp(eta - eta.max(1, keepdims=True))
    dow = 7.0 * dow / dow.sum(1, keepdims=True)
    if n_g > 1:
        deal_mu = _flat(post, "deal_log_mu")
    else:
        deal_mu = _flat(post, "deal_log_mu_pooled")[:, None]
    close_cal = arr_cal = None
    if "close_day_of_week_effect" in post:
        parts = [_flat(post, "close_day_of_week_effect"), _flat(post, "close_quarter_month_effect"),
                 _flat(post, "close_month_end_effect")[..., None]]
        if "close" not in post["close_day_of_week_effect"].dims:
            # a posterior fitted before won and lost had calendars of their own: one for both
            parts = [np.repeat(part[:, None], len(CLOSES), axis=1) for part in parts]
        close_cal = np.exp(np.concatenate(parts, axis=-1))  # [set, close, 11]
    if "arrivals_quarter_month_effect" in post:
        arr_cal = np.exp(np.concatenate([_flat(post, "arrivals_quarter_month_effect"),
                                         _flat(post, "arrivals_month_end_effect")[:, None]],
                                        axis=1))
    walk_sd = walk_months = walk_nu = None
    if "drift_step_sd" in post:  # a drift fit: its walk goes on over the forecast's horizon
        walk_sd = np.stack([_flat(post, name) if name in post else np.zeros(n_sets)
                            for name in ("drift_step_sd", "arrivals_drift_step_sd")], axis=1)
        quarterly = "quarters_back" in post["drift_z"].dims
        walk_months = np.full(n_sets, 3 if quarterly else 1, dtype=np.int64)
        # the steps' degrees of freedom (absent: a posterior from before Student-t steps)
        walk_nu = np.full(n_sets, float(post.attrs.get("drift_step_nu", np.inf)))
    return Parameters(
        walk_sd=walk_sd, walk_months=walk_months, walk_nu=walk_nu,
        hazards=hazards,
        arrivals_mean=np.exp(_flat(post, "log_arrivals")),
        arrivals_dispersion=_flat(post, "arrivals_size"),
        day_of_week=dow,
        deal_mu=np.ascontiguousarray(deal_mu),
        deal_sigma=_flat(post, "deal_log_sigma"),
        close_calendar=close_cal, arrivals_calendar=arr_cal,
    )


# ---- files -----------------------------------------------------------------------------------

def save_posterior(idata, path: str | Path) -> None:
    """Write the posterior as netCDF, atomically (a temporary file moved into place)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        idata.to_netcdf(str(tmp), engine="h5netcdf")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class Posterior:
    """The posterior group of a saved fit (``arviz.from_netcdf`` reads the whole file)."""

    posterior: object  # xarray.Dataset


def load_posterior(path: str | Path) -> Posterior:
    """Read the posterior group of a file written by :func:`save_posterior`.

    Reads with xarray only (importing ArviZ costs seconds); ``PosteriorError`` if the file is
    missing, unreadable or not written by ``forecast fit``.
    """
    import xarray as xr

    path = Path(path)
    if not path.is_file():
        raise PosteriorError(f"{path}: no such file")
    try:
        with xr.open_dataset(path, group="posterior", engine="h5netcdf") as ds:
            ds = ds.load()
    except Exception as exc:  # any reader failure means "not a posterior"
        raise PosteriorError(f"{path}: not a readable posterior netCDF file "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    if "model_sha256" not in ds.attrs or "log_hazard" not in ds:
        raise PosteriorError(f"{path}: not a posterior written by `forecast fit`")
    return Posterior(posterior=ds)


def provenance(idata) -> dict:
    """The attributes ``fit`` stored: model, history, as-of date, diagnostics."""
    attrs = dict(idata.posterior.attrs)
    out = {k: attrs.get(k) for k in ("model_name", "model_path", "model_sha256", "history_path",
                                     "history_sha256", "as_of", "since", "seed", "sampler", "drift",
                                     "n_rows", "n_leads", "forecast_version", "fitted_at",
                                     "carried_bands")}
    out["diagnostics"] = json.loads(attrs.get("diagnostics", "{}"))
    out["as_of_date"] = dt.date.fromisoformat(out["as_of"]) if out.get("as_of") else None
    return out
