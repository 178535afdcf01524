"""Numeric parameters of a funnel model: one or many parameter sets as plain arrays.

A parameter set is everything the simulator needs beyond the model's structure: the full hazard
table, arrivals, deal sizes. The defaults of a model file make one set; a fitted posterior
(a later issue) makes one set per draw, and each Monte Carlo path uses one set.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from forecast.calendar import CLOSES, N_ARRIVALS, N_CLOSE
from forecast.model import EXPIRY, LOST, FunnelModel


@dataclass(frozen=True)
class Parameters:
    """Parameter sets, stacked along the first axis.

    Attributes
    ----------
    hazards : float64 [n_sets, n_transient, n_bands, n_segments, n_recycle, n_states]
        Per-day hazard of each move, by source state, age band, segment and recycle level.
    arrivals_mean : float64 [n_sets, n_segments]
        Mean new leads per day (averaged over the week).
    arrivals_dispersion : float64 [n_sets, n_segments]
        Negative-binomial size (variance = mean + mean**2 / size); 0 means Poisson.
    day_of_week : float64 [n_sets, 7]
        Arrival multipliers, Monday first, mean 1.
    deal_mu, deal_sigma : float64 [n_sets, n_segments]
        Lognormal deal size on the log scale.
    close_calendar : float64 [n_sets, 2, 11]
        Multipliers of the hazards of closing moves by date (``forecast.calendar``), per
        closing move (``CLOSES``: won, lost): weekday (7), month of the quarter (3), month
        end (1). All ones (the default) means no calendar effect.
    arrivals_calendar : float64 [n_sets, 4]
        Multipliers of arrivals: month of the quarter (3), month end (1).
    walk_sd : float64 [n_sets, 2]
        A drift fit's random-walk step sizes (log scale, per period) of conversion (moves
        towards won) and of arrivals, continued over the horizon by
        ``forecast.outlook.simulate_ahead``. Zeros (the default) mean rates held where they are.
    walk_months : int64 [n_sets]
        The walk's period in months (1 or 3; 0 without a walk).
    walk_nu : float64 [n_sets]
        Degrees of freedom of the walk's Student-t steps (inf, the default: normal steps).
    """

    hazards: np.ndarray
    arrivals_mean: np.ndarray
    arrivals_dispersion: np.ndarray
    day_of_week: np.ndarray
    deal_mu: np.ndarray
    deal_sigma: np.ndarray
    close_calendar: np.ndarray | None = None
    arrivals_calendar: np.ndarray | None = None
    walk_sd: np.ndarray | None = None
    walk_months: np.ndarray | None = None
    walk_nu: np.ndarray | None = None

    def __post_init__(self):
        n = self.hazards.shape[0]
        if self.close_calendar is None:
            object.__setattr__(self, "close_calendar", np.ones((n, len(CLOSES), N_CLOSE)))
        if self.arrivals_calendar is None:
            object.__setattr__(self, "arrivals_calendar", np.ones((n, N_ARRIVALS)))
        if self.walk_sd is None:
            object.__setattr__(self, "walk_sd", np.zeros((n, 2)))
        if self.walk_months is None:
            object.__setattr__(self, "walk_months", np.zeros(n, dtype=np.int64))
        if self.walk_nu is None:
            object.__setattr__(self, "walk_nu", np.full(n, np.inf))

    @classmethod
    def concat(cls, parts) -> Parameters:
        """The sets of several :class:`Parameters`, one block after the other."""
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))

    @property
    def has_calendar(self) -> bool:
        return bool(np.any(self.close_calendar != 1.0) or np.any(self.arrivals_calendar != 1.0))

    @property
    def has_walk(self) -> bool:
        return bool(np.any(self.walk_sd > 0.0))

    @property
    def n_sets(self) -> int:
        return self.hazards.shape[0]

    @property
    def deal_mean(self) -> np.ndarray:
        """Mean deal size per set and segment: exp(mu + sigma**2 / 2)."""
        return np.exp(self.deal_mu + 0.5 * self.deal_sigma**2)

    def take(self, index: np.ndarray | int) -> Parameters:
        """The parameter sets at ``index`` (keeps the leading axis)."""
        idx = np.atleast_1d(index)
        return Parameters(*(getattr(self, f)[idx] for f in _FIELDS))

    def with_arrivals_scaled(self, factor: float) -> Parameters:
        """The same sets with every segment's arrival mean multiplied by ``factor``."""
        return replace(self, arrivals_mean=self.arrivals_mean * factor)


_FIELDS = ("hazards", "arrivals_mean", "arrivals_dispersion", "day_of_week", "deal_mu",
           "deal_sigma", "close_calendar", "arrivals_calendar", "walk_sd", "walk_months",
           "walk_nu")


def default_parameters(model: FunnelModel) -> Parameters:
    """The model file's default parameters as one parameter set.

    The hazard of a move for segment ``g`` and recycle level ``r`` is the base hazard of the
    move, times the segment's ``conversion_multiplier`` and the recycle level's
    ``advance_multiplier`` when the move is an advance, a skip or a recapture (moves towards
    ``won``); expiry and ``lost`` hazards are the base hazards.
    """
    n_t, n_b = model.n_transient, len(model.age_bands)
    n_g, n_r, n_s = len(model.segments), model.recycle_levels, len(model.states)
    haz = np.zeros((n_t, n_b, n_g, n_r, n_s))
    for source, dests in model.hazards.items():
        i = model.state_index(source)
        for dest, values in dests.items():
            j = model.state_index(dest)
            base = np.asarray(values, dtype=float)[:, None, None]
            if model.move_kind(source, dest) in (EXPIRY, LOST):
                haz[i, :, :, :, j] = base
            else:
                seg = np.array([s.conversion_multiplier for s in model.segments])[None, :, None]
                rec = np.asarray(model.recycle_advance_multiplier)[None, None, :]
                haz[i, :, :, :, j] = base * seg * rec
    segs = model.segments
    return Parameters(
        hazards=haz[None],
        arrivals_mean=np.array([[s.arrivals_per_day for s in segs]], dtype=float),
        arrivals_dispersion=np.array([[s.arrivals_dispersion for s in segs]], dtype=float),
        day_of_week=np.array([model.day_of_week], dtype=float),
        deal_mu=np.array([[s.deal_mu for s in segs]], dtype=float),
        deal_sigma=np.array([[s.deal_sigma for s in segs]], dtype=float),
        close_calendar=np.array([model.calendar.close], dtype=float),
        arrivals_calendar=np.array([model.calendar.arrivals_vector()], dtype=float),
    )
