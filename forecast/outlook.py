"""The drift fit's random walk, continued over the forecast horizon.

``forecast fit --drift`` learns random walks on the log-hazards of the moves towards ``won``
(advances, skips, recaptures; a walk per stage they leave, one step size) and on log
arrivals, anchored at 0 in the as-of period: the posterior's base rates are the as-of
period's. The walk does not stop at the as-of date. Each
path continues it with its own steps, drawn at its posterior draw's fitted step size, one step
per period (month, or quarter for a quarterly walk) after the as-of period, Student-t steps
like the fit's (``drift_step_nu``; normal for a posterior fitted before them). The bands then
carry the chance that rates move over the horizon, as they moved in the history, and not only
the uncertainty about where they are now. Without this, every path of a quarter shares the
as-of rates and the bands are as narrow as independent deals make them.

The simulator needs no new mechanism: the periods of the horizon are epochs
(``simulate(switch_days=...)``), and path ``p`` in period ``j`` uses its own parameter set, its
draw's hazards and arrivals times the walk's multipliers there.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

import numpy as np

from forecast.model import FunnelModel
from forecast.parameters import Parameters

PERIOD_MONTHS = {"month": 1, "quarter": 3}
# Parameter sets the continued walk may create (paths x periods): each is a full hazard table
# and the simulator derives per-set tables from each (absorption probabilities included, about
# 1 ms a set): for models/b2b.toml 8,000 sets take 360 MB and 9 s, so this bounds memory
# (about 1 GB) and set-up time (about 30 s).
MAX_SETS = 25_000
_STEP_KEY = 0x5EED_0F_D21F7  # the walk's random stream: SeedSequence(seed, spawn_key=(this,))


@dataclass(frozen=True)
class Outlook:
    """Inputs for ``simulate``: one parameter set per path and period of the horizon."""

    params: Parameters
    set_index: np.ndarray  # int64 [n_paths, n_epochs]
    switch_days: np.ndarray  # int64 [n_epochs - 1]: the first day of each later period
    conversion: np.ndarray  # float [n_paths, n_walks, n_epochs]: the walks' multipliers of
    # conversion, one walk per stage that moves towards won leave (in state order)
    arrivals: np.ndarray  # float [n_paths, n_epochs]: and of arrivals


def periods_ahead(as_of: dt.date, horizon: int, period: str = "month") -> np.ndarray:
    """For each day of the horizon (day ``t`` is ``as_of + 1 + t``): how many whole periods
    (months or quarters) it is after the period holding ``as_of``."""
    months = PERIOD_MONTHS[period]
    start = np.datetime64(as_of + dt.timedelta(days=1))
    days = (start + np.arange(horizon)).astype("datetime64[M]").astype(np.int64)
    origin = np.datetime64(as_of, "M").astype(np.int64)
    return days // months - origin // months


def continue_walk(params: Parameters, towards_won: np.ndarray, conversion_sd: np.ndarray,
                  arrivals_sd: np.ndarray, as_of: dt.date, horizon: int, n_paths: int,
                  seed: int, *, period: str = "month", nu: np.ndarray | float = np.inf,
                  set_index: np.ndarray | None = None) -> Outlook:
    """Continue the walk of each path's draw over the horizon.

    ``towards_won`` is a bool ``[n_transient, n_states]`` mask of the moves the walks scale,
    each stage's (row's) by a walk of its own, as in the fit (``fit._drift_walks``);
    ``conversion_sd`` and ``arrivals_sd`` are each set's step sizes (log scale, per period),
    ``nu`` its steps' degrees of freedom (Student-t; inf: normal). Path ``p`` uses set
    ``set_index[p]`` (default ``p % n_sets``) and, for its ``j``-th step, the ``p``-th row
    drawn from ``(seed, _STEP_KEY, 2, j)`` (standard normals; for Student-t steps, the
    chi-square draws that divide them from ``(seed, _STEP_KEY, 3, j)``), so its walk does
    not depend on the path count, the horizon, the chunking or the thread count.
    """
    if period not in PERIOD_MONTHS:
        raise ValueError(f"period must be one of {sorted(PERIOD_MONTHS)}, got {period!r}")
    n_sets = params.n_sets
    conversion_sd = np.broadcast_to(np.asarray(conversion_sd, dtype=np.float64), (n_sets,))
    arrivals_sd = np.broadcast_to(np.asarray(arrivals_sd, dtype=np.float64), (n_sets,))
    nu = np.broadcast_to(np.asarray(nu, dtype=np.float64), (n_sets,))
    if np.any(conversion_sd < 0) or np.any(arrivals_sd < 0):
        raise ValueError("step sizes must be >= 0")
    if not np.all(nu > 0):
        raise ValueError("degrees of freedom must be > 0")
    if set_index is None:
        set_index = np.arange(n_paths, dtype=np.int64) % n_sets
    set_index = np.asarray(set_index, dtype=np.int64)
    ahead = periods_ahead(as_of, horizon, period)
    starts = np.flatnonzero(np.diff(ahead)) + 1  # first day of each later period
    epoch_ahead = ahead[np.concatenate([[0], starts])]  # periods ahead, per epoch
    n_epochs = len(epoch_ahead)
    _check_size(n_paths, n_epochs, period)
    n_steps = int(epoch_ahead[-1])
    mask = np.asarray(towards_won, dtype=bool)
    walk_rows = np.flatnonzero(mask.any(axis=1))  # the stages with a walk, in state order
    n_walks = max(len(walk_rows), 1)
    # rows: the first stage's walk, arrivals, the other stages' walks. Step j of every path
    # comes from a stream of its own, (seed, _STEP_KEY, 2, j), path by path, so a path's
    # steps depend neither on the path count nor on the horizon: a longer run repeats a
    # shorter one's periods (as the simulator does its days).
    z = np.zeros((n_paths, 1 + n_walks, n_steps))
    nu_p = nu[set_index]
    finite = np.isfinite(nu_p)
    df = np.where(finite, nu_p, 1.0)[:, None]
    for j in range(n_steps):
        step = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STEP_KEY, 2, j)))
        z[:, :, j] = step.standard_normal((n_paths, 1 + n_walks))
        if finite.any():  # Student-t: Z / sqrt(V / nu), V chi-square with nu d.o.f.
            chi = np.random.default_rng(np.random.SeedSequence(seed,
                                                               spawn_key=(_STEP_KEY, 3, j)))
            v = 2.0 * chi.standard_gamma(np.broadcast_to(df / 2.0, (n_paths, 1 + n_walks)))
            z[:, :, j] = np.where(finite[:, None], z[:, :, j] * np.sqrt(df / v), z[:, :, j])
    walk = np.concatenate([np.zeros((n_paths, 1 + n_walks, 1)), np.cumsum(z, axis=2)], axis=2)
    walk = walk[:, [0, *range(2, 1 + n_walks), 1]]  # stages' walks in order, then arrivals
    sd = np.concatenate([np.repeat(conversion_sd[set_index][:, None], n_walks, axis=1),
                         arrivals_sd[set_index][:, None]], axis=1)  # [path, walks + 1]
    log_mult = walk[:, :, epoch_ahead] * sd[:, :, None]  # [path, walks + 1, epoch]
    conv, arr = np.exp(log_mult[:, :n_walks]), np.exp(log_mult[:, n_walks])

    base = params.take(np.repeat(set_index, n_epochs))  # set p * n_epochs + e
    # each stage's multiplier, [set, stage] (1 for the stages without a walk)
    per_stage = np.ones((n_paths * n_epochs, mask.shape[0]))
    per_stage[:, walk_rows] = conv.transpose(0, 2, 1).reshape(n_paths * n_epochs, -1)[
        :, :len(walk_rows)]
    factor = np.where(mask[None, :, None, None, None, :],
                      per_stage[:, :, None, None, None, None], 1.0)
    out = replace(base, hazards=base.hazards * factor,
                  arrivals_mean=base.arrivals_mean * arr.reshape(-1)[:, None],
                  walk_sd=np.zeros_like(base.walk_sd))  # walked: not to be walked again
    index = np.arange(n_paths * n_epochs, dtype=np.int64).reshape(n_paths, n_epochs)
    return Outlook(params=out, set_index=index, switch_days=starts.astype(np.int64),
                   conversion=conv, arrivals=arr)


def towards_won(model: FunnelModel) -> np.ndarray:
    """The moves the walk scales, as a bool ``[n_transient, n_states]`` mask: advances, skips
    and recaptures (the drift fit's moves towards won)."""
    kinds = model.move_kinds()
    return (kinds == 1) | (kinds == 3)


def _check_size(n_paths: int, n_epochs: int, period: str) -> None:
    if n_paths * n_epochs > MAX_SETS:
        raise ValueError(
            f"a drift fit's walk goes on over the horizon with one parameter set per path and "
            f"{period}: {n_paths:,} paths x {n_epochs} {period}s = {n_paths * n_epochs:,} sets, "
            f"more than {MAX_SETS:,}; use --paths {MAX_SETS // n_epochs:,} or fewer, or a "
            f"shorter --horizon")


def walk_period(params: Parameters) -> str | None:
    """The period of the parameters' walk ("month" or "quarter"), ``None`` without one."""
    if not params.has_walk:
        return None
    months = np.unique(params.walk_months[params.walk_sd.max(axis=1) > 0])
    if len(months) != 1 or int(months[0]) not in PERIOD_MONTHS.values():
        raise ValueError(f"a walk needs one period of 1 or 3 months, got {months.tolist()}")
    return "month" if int(months[0]) == 1 else "quarter"


def check_walk(params: Parameters, as_of: dt.date, horizon: int, n_paths: int) -> None:
    """Raise ``ValueError`` now, before any run, if continuing the parameters' walk over the
    horizon would take more than ``MAX_SETS`` parameter sets."""
    period = walk_period(params)
    if period is not None:
        ahead = periods_ahead(as_of, horizon, period)
        _check_size(n_paths, int(ahead[-1] - ahead[0]) + 1, period)


def walk_ahead(model: FunnelModel, params: Parameters, as_of: dt.date, horizon: int,
               n_paths: int, seed: int) -> Outlook | None:
    """The parameter set of each path in each period of the horizon, with a drift fit's walk
    continued (:func:`continue_walk`, at each draw's step sizes and law), or ``None`` when the
    parameters carry no walk. ``run`` and the planning commands both start here, so that a
    scenario's baseline is the forecast ``run`` makes."""
    period = walk_period(params)
    if period is None:
        return None
    return continue_walk(params, towards_won(model), params.walk_sd[:, 0], params.walk_sd[:, 1],
                         as_of, horizon, n_paths, seed, period=period, nu=params.walk_nu)


def simulate_ahead(model: FunnelModel, params: Parameters, pipeline, as_of: dt.date,
                   horizon: int, n_paths: int, seed: int, **options):
    """``forecast.simulate.simulate``, with a drift fit's walk continued over the horizon when
    the parameters carry one (``Parameters.walk_sd``), else exactly ``simulate``.

    The result's ``set_index`` then points into the per-path, per-period sets of the walk, not
    into ``params``.
    """
    from forecast.simulate import simulate

    if params.has_walk and ("set_index" in options or "switch_days" in options):
        raise ValueError("a continued walk sets the parameter sets by period itself")
    ahead = walk_ahead(model, params, as_of, horizon, n_paths, seed)
    if ahead is None:
        return simulate(model, params, pipeline, as_of, horizon, n_paths, seed, **options)
    return simulate(model, ahead.params, pipeline, as_of, horizon, n_paths, seed,
                    set_index=ahead.set_index, switch_days=ahead.switch_days, epochs=True,
                    **options)
