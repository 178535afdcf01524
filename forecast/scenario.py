"""Scenarios: named lists of changes to a funnel's parameters ("levers"), each from a date.

A scenario file (``scenarios/*.toml``)::

    name = "Win rate +5 points"
    description = "What a better close rate is worth."

    [[change]]
    lever = "win_rate"
    add = 0.05               # or: multiply = 1.1, or: set = 0.30
    segment = "paid_search"  # optional: only this segment (default: all)
    from = 2027-01-01        # optional effective date (default: from the start)

Every lever acts on each parameter set (each posterior draw) separately, and on every segment
(or the one named) and recycle level. The definitions, each exact and tested in
``tests/test_scenario.py``:

``win_rate`` (add | multiply | set)
    The probability that a lead entering the stage that closes deals (the stage with a move to
    ``won``) leaves it as won, counted on its first exit. In every age band the odds of a won
    exit against the stage's other exits are multiplied by one factor, solved so the
    probability is the new one; each band keeps its total hazard and the other moves their
    split. So the time in stage (cycle time) is unchanged and the days to close of won deals
    barely move (they would not move at all if every band had the same won share; +5 points on
    ``models/b2b.toml``: mean +1.9%). Bands where no deal is ever won stay so, and bands where
    nothing but wins happens stay so: they bound what can be reached, and a value beyond is an
    error saying how far it can go. (Scaling the won share of every band by one factor instead
    would keep the days to close exactly, but can raise a rate only a little once some band has
    nearly all its exits won; posterior draws often have such a band past every closed deal of
    the history, where the prior speaks. On the CRM sample's posterior it refused +2 points.)
    This is the opportunity -> won rate (about 55% for a fresh opportunity on
    ``models/b2b.toml``), not the SQL -> won rate a "25% win rate" means: only about 45% of
    SQLs reach opportunity, so ``add = 0.05`` (55% -> 60%) moves a fresh SQL's chance of
    closing won from 25.1% to 27.3% on b2b (weighted by the segments' SQLs).
``conversion`` (add | multiply | set; ``stage``)
    The same for advancing out of ``stage``: the probability that a lead entering it leaves it
    forward (advance or skip, including to ``won``); the forward moves are tilted together,
    keeping their split.
``velocity`` (multiply; ``stage``)
    Days in the stage multiplied by the factor (0.5: twice as fast), outcomes unchanged: all
    hazards of the stage are multiplied by one factor, found so that the mean days in stage
    (of the leads that leave it) is the given factor times what it was, then the split between
    destinations is re-tilted (one multiplier per destination, by iterative proportional
    fitting, each band's total kept) so the probability of each next state is exactly what it
    was. The shape of the hazard over age is kept.
``expiry`` (multiply | set | within_days; ``stage``)
    Leads going cold out of ``stage`` (its expiry moves: back, or to nurture). ``multiply``
    scales the expiry hazards; ``set = N`` sets the shelf life, the days until half of unworked
    leads have gone cold, to ``N`` (expiry hazards scaled so their cumulative hazard at ``N``
    days is ``ln 2``); ``within_days = N`` is a service-level agreement: every lead is worked
    within ``N`` days, so none goes cold from age ``N`` on (an age band boundary is added at
    ``N`` where there is none; the process is otherwise unchanged). Other moves are untouched:
    a lead that no longer goes cold stays until it advances or is lost.
``recapture`` (multiply; optional ``stage``: the stage recaptured into)
    The hazards of moves out of nurture back into the funnel (a nurture program).
``arrivals`` (add | multiply | set)
    Mean new leads per day. Without ``segment``, ``set`` and ``add`` apply to the total and
    keep the segment mix.
``deal_size`` (add | multiply | set)
    Mean deal amount (lognormal, its spread kept): deals drawn from then on. Known amounts of
    open deals are kept.
``neglect`` (share | count; ``stage``; no ``from``)
    That share (or number) of the open leads in ``stage`` at the as-of date is never worked:
    they go cold at once, into nurture with one more recycle. Which ones is drawn from the
    run's seed, so it is the same leads on every run with that seed.

Changes apply in file order. Dates before the first forecast day apply from the start; the
simulator switches parameter sets on each later date (``forecast.simulate``'s epochs).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from forecast.hazards import stage_exit
from forecast.model import (
    ADVANCE,
    EXPIRY,
    MAX_ARRIVALS_PER_DAY,
    NURTURE,
    RECAPTURE,
    SKIP,
    WON,
    FunnelModel,
)
from forecast.parameters import Parameters
from forecast.simulate.engine import Pipeline

#: lever -> the operations it takes.
LEVERS: dict[str, tuple[str, ...]] = {
    "win_rate": ("add", "multiply", "set"),
    "conversion": ("add", "multiply", "set"),
    "velocity": ("multiply",),
    "expiry": ("multiply", "set", "within_days"),
    "recapture": ("multiply",),
    "arrivals": ("add", "multiply", "set"),
    "deal_size": ("add", "multiply", "set"),
    "neglect": ("share", "count"),
}
_NEEDS_STAGE = ("conversion", "velocity", "expiry", "neglect")
_KEYS = {"lever", "stage", "segment", "from", *(op for ops in LEVERS.values() for op in ops)}
_PROBABILITY_LEVERS = ("win_rate", "conversion")


class ScenarioError(ValueError):
    """A scenario file is malformed, or a change cannot be applied; says where and why."""


@dataclass(frozen=True)
class Change:
    """One change of a scenario: ``op`` applied with ``value`` to ``lever``."""

    lever: str
    op: str
    value: float
    stage: str | None = None
    segment: str | None = None
    start: dt.date | None = None
    where: str = ""  # "file: change N (lever)", for messages

    def describe(self) -> str:
        what = self.lever + (f" {self.stage}" if self.stage else "") \
            + (f" [{self.segment}]" if self.segment else "")
        when = f" from {self.start}" if self.start else ""
        return f"{what} {self.op} {self.value:g}{when}"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    changes: tuple[Change, ...]
    path: str = ""
    sha256: str = ""

    @classmethod
    def empty(cls, name: str = "baseline") -> Scenario:
        return cls(name=name, description="no change", changes=())


# ---- reading ---------------------------------------------------------------------------------

def load_scenario(path: str | Path, model: FunnelModel) -> Scenario:
    """Read and validate a scenario file against ``model`` (stages and segments must exist)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read the scenario file ({exc.strerror})") from None
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: not a valid TOML file: {exc}") from None
    unknown = set(raw) - {"name", "description", "change"}
    if unknown:
        raise ScenarioError(f"{path}: unknown key {sorted(unknown)[0]!r} (expected name, "
                            "description and [[change]] tables)")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise ScenarioError(f"{path}: 'name' must be a non-empty string")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ScenarioError(f"{path}: 'description' must be a string, got {description!r}")
    items = raw.get("change", [])
    if not isinstance(items, list) or not all(isinstance(c, dict) for c in items):
        raise ScenarioError(f"{path}: changes are [[change]] tables")
    changes = tuple(parse_change(c, model, f"{path}: change {i + 1}")
                    for i, c in enumerate(items))
    return Scenario(name=name.strip(), description=description.strip(),
                    changes=changes, path=str(path), sha256=hashlib.sha256(data).hexdigest())


def parse_change(raw: dict, model: FunnelModel, where: str) -> Change:
    """One ``[[change]]`` table (or the equivalent built by ``sweep``/``sensitivity``)."""
    lever = raw.get("lever")
    if lever not in LEVERS:
        raise ScenarioError(f"{where}: 'lever' must be one of {', '.join(LEVERS)}, "
                            f"got {lever!r}")
    where = f"{where} ({lever})"
    unknown = set(raw) - _KEYS
    if unknown:
        raise ScenarioError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    ops = [op for op in LEVERS[lever] if op in raw]
    wrong = [k for k in raw if k in _KEYS - {"lever", "stage", "segment", "from"}
             and k not in LEVERS[lever]]
    if wrong or len(ops) != 1:
        raise ScenarioError(f"{where}: give exactly one of {', '.join(LEVERS[lever])}"
                            + (f" ({wrong[0]!r} is not one of them)" if wrong else ""))
    op = ops[0]
    value = raw[op]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError(f"{where}: {op} must be a number, got {value!r}")
    value = float(value)
    _check_value(lever, op, value, where)

    stage = raw.get("stage")
    if lever in _NEEDS_STAGE and stage is None:
        raise ScenarioError(f"{where}: needs 'stage' (one of {', '.join(model.stages)})")
    if stage is not None:
        allowed = model.stages + ((NURTURE,) if lever == "velocity" else ())
        if lever not in (*_NEEDS_STAGE, "recapture"):
            raise ScenarioError(f"{where}: takes no 'stage'")
        if stage not in allowed:
            raise ScenarioError(f"{where}: unknown stage {stage!r} (one of {', '.join(allowed)})")
        _check_stage_has_moves(model, lever, stage, where)
    segment = raw.get("segment")
    if segment is not None and segment not in model.segment_names:
        raise ScenarioError(f"{where}: unknown segment {segment!r} (one of "
                            f"{', '.join(model.segment_names)})")
    start = raw.get("from")
    if start is not None:
        if lever == "neglect":
            raise ScenarioError(f"{where}: acts on the open pipeline at the as-of date, so it "
                                "takes no 'from'")
        if isinstance(start, str):
            try:
                start = dt.date.fromisoformat(start)
            except ValueError:
                raise ScenarioError(f"{where}: 'from' must be a date (YYYY-MM-DD), "
                                    f"got {start!r}") from None
        if isinstance(start, dt.datetime) or not isinstance(start, dt.date):
            raise ScenarioError(f"{where}: 'from' must be a date (YYYY-MM-DD), got {start!r}")
    return Change(lever=lever, op=op, value=value, stage=stage, segment=segment, start=start,
                  where=where)


def _check_value(lever: str, op: str, value: float, where: str) -> None:
    bad = None
    if op == "multiply" and value < 0:
        bad = "a factor of 0 or more"
    elif op == "multiply" and value == 0 and lever in ("velocity", "deal_size"):
        bad = "a positive factor"
    elif lever in _PROBABILITY_LEVERS and op == "set" and not 0 <= value <= 1:
        bad = "a probability in [0, 1]"
    elif lever in _PROBABILITY_LEVERS and op == "add" and not -1 <= value <= 1:
        bad = "a change of probability in [-1, 1] (0.05 is 5 points)"
    elif lever == "expiry" and op == "set" and value < 1:
        bad = "a shelf life of at least 1 day"
    elif lever == "expiry" and op == "within_days" and (value < 0 or value != int(value)):
        bad = "a whole number of days, 0 or more"
    elif lever in ("arrivals", "deal_size") and op == "set" and value < 0:
        bad = "0 or more"
    elif lever == "deal_size" and op == "set" and value == 0:
        bad = "a positive amount"
    elif op == "share" and not 0 <= value <= 1:
        bad = "a share in [0, 1]"
    elif op == "count" and (value < 0 or value != int(value)):
        bad = "a whole number, 0 or more"
    if bad:
        raise ScenarioError(f"{where}: {op} must be {bad}, got {value:g}")


def _check_stage_has_moves(model: FunnelModel, lever: str, stage: str, where: str) -> None:
    kinds = {"conversion": (ADVANCE, SKIP), "expiry": (EXPIRY,), "recapture": (RECAPTURE,)}
    if lever == "recapture":
        if stage not in model.hazards.get(NURTURE, {}):
            raise ScenarioError(f"{where}: the model has no recapture into {stage!r}")
    elif lever in kinds:
        if not any(model.move_kind(stage, d) in kinds[lever]
                   for d in model.hazards.get(stage, {})):
            raise ScenarioError(f"{where}: stage {stage!r} has no {lever} move in the model")


def closing_stages(model: FunnelModel) -> tuple[str, ...]:
    """The stages with a move to ``won`` (where ``win_rate`` acts)."""
    return tuple(s for s in model.stages if WON in model.hazards.get(s, {}))


# ---- applying to parameters ------------------------------------------------------------------

def needed_band_edges(model: FunnelModel, changes: Sequence[Change]) -> tuple[int, ...]:
    """Age-band boundaries that ``within_days`` changes need and the model lacks."""
    have = set(model.age_bands)
    return tuple(sorted({int(c.value) for c in changes
                         if c.op == "within_days" and 0 < c.value and int(c.value) not in have}))


def split_bands(model: FunnelModel, params: Parameters,
                edges: Sequence[int]) -> tuple[FunnelModel, Parameters]:
    """The same process with extra age-band boundaries (each new band copies its parent)."""
    if not edges:
        return model, params
    new = sorted(set(model.age_bands) | set(edges))
    parent = np.searchsorted(np.asarray(model.age_bands), new, side="right") - 1
    hazards = {s: {d: tuple(v[i] for i in parent) for d, v in dests.items()}
               for s, dests in model.hazards.items()}
    model2 = replace(model, age_bands=tuple(new), hazards=hazards)
    params2 = replace(params, hazards=np.ascontiguousarray(params.hazards[:, :, parent]))
    return model2, params2


def apply_changes(model: FunnelModel, params: Parameters,
                  changes: Sequence[Change]) -> Parameters:
    """``params`` with every change applied in order (the model must already have the band
    edges of :func:`needed_band_edges`)."""
    for c in changes:
        params = _apply(model, params, c)
    return params


def _segments(model: FunnelModel, c: Change) -> np.ndarray:
    mask = np.ones(len(model.segments), dtype=bool)
    if c.segment is not None:
        mask[:] = False
        mask[model.segment_names.index(c.segment)] = True
    return mask


def _dest_mask(model: FunnelModel, source: str, kinds: tuple[str, ...],
               only: str | None = None) -> np.ndarray:
    return np.array([d in model.hazards.get(source, {}) and model.move_kind(source, d) in kinds
                     and (only is None or d == only) for d in model.states])


def _apply(model: FunnelModel, params: Parameters, c: Change) -> Parameters:
    seg = _segments(model, c)
    if c.lever == "arrivals":
        mean = params.arrivals_mean.copy()
        if c.op == "multiply":
            with np.errstate(over="ignore"):
                mean[:, seg] *= c.value
        else:
            total = mean[:, seg].sum(1, keepdims=True)
            new_total = c.value if c.op == "set" else total + c.value
            if np.any(new_total < 0):
                raise ScenarioError(f"{c.where}: arrivals would fall below 0 leads a day")
            with np.errstate(invalid="ignore", divide="ignore"):
                mix = np.where(total > 0, mean[:, seg] / total, 1.0 / seg.sum())
            mean[:, seg] = mix * new_total
        if not np.all(mean <= MAX_ARRIVALS_PER_DAY):  # (nan and inf too)
            raise ScenarioError(f"{c.where}: {c.op} {c.value:g} makes more than "
                                f"{MAX_ARRIVALS_PER_DAY:,.0f} new leads a day in a segment, "
                                "more than the simulator takes")
        return replace(params, arrivals_mean=mean)
    if c.lever == "deal_size":
        mu = params.deal_mu.copy()
        old = params.deal_mean[:, seg]
        with np.errstate(over="ignore"):
            new = {"multiply": old * c.value, "set": np.full_like(old, c.value),
                   "add": old + c.value}[c.op]
        if np.any(new <= 0):
            raise ScenarioError(f"{c.where}: the mean deal would be 0 or less")
        if not np.all(np.isfinite(new)):
            raise ScenarioError(f"{c.where}: {c.op} {c.value:g} makes the mean deal too "
                                "large to hold in a number")
        mu[:, seg] += np.log(new / old)
        return replace(params, deal_mu=mu)
    if c.lever == "neglect":
        return params  # acts on the open pipeline: see neglect_pipeline

    h = params.hazards.copy()  # [set, source, band, g, r, dest]
    if c.lever == "recapture":
        s = model.state_index(NURTURE)
        dests = _dest_mask(model, NURTURE, (RECAPTURE,), c.stage)
        part = h[:, s][:, :, seg]  # [set, band, g, r, dest] (a copy: boolean index)
        part[..., dests] *= c.value
        h[:, s][:, :, seg] = part
    elif c.lever in _PROBABILITY_LEVERS:
        stages = closing_stages(model) if c.lever == "win_rate" else (c.stage,)
        for stage in stages:
            only = WON if c.lever == "win_rate" else None
            dests = _dest_mask(model, stage, (ADVANCE, SKIP), only)
            _tilt_share(model, h, model.state_index(stage), dests, seg, c)
    elif c.lever == "velocity":
        _velocity(model, h, model.state_index(c.stage), seg, c)
    elif c.lever == "expiry":
        _expiry(model, h, model.state_index(c.stage), seg, c)
    return replace(params, hazards=h)


def _exit_prob(model: FunnelModel, hs: np.ndarray) -> np.ndarray:
    """``[set, g, r, dest]`` first-exit probabilities from hazards ``hs[set, band, g, r, dest]``."""
    return stage_exit(hs, model.age_bands).prob


def _tilt_share(model: FunnelModel, h: np.ndarray, s: int, dests: np.ndarray,
                seg: np.ndarray, c: Change) -> None:
    """Tilt the odds of the moves ``dests`` out of ``s`` against the stage's other moves by one
    factor in every age band, keeping each band's total hazard (so the time in stage is
    unchanged), with the factor found so the probability of leaving by ``dests`` is the new one.

    In band ``b`` the share ``w`` of exits taken by ``dests`` becomes ``w e^θ / (1 - w + w e^θ)``
    (``dests`` keep their split among themselves, the other moves theirs); the probability of
    leaving in the band, ``E_b``, does not change, so the stage's probability is
    ``Σ_b E_b w_b(θ)``, increasing in ``θ``; it is solved for ``θ`` by bisection, for every
    parameter set, segment and recycle level. Bands where ``dests`` never happen stay so, and
    bands where nothing else happens stay all ``dests``: they bound what can be reached.
    """
    hs = h[:, s][:, :, seg]  # [set, band, g, r, dest]
    ex = stage_exit(hs, model.age_bands)
    old = ex.prob[..., dests].sum(-1)  # [set, g, r]
    new = {"add": old + c.value, "multiply": old * c.value,
           "set": np.full_like(old, c.value)}[c.op]
    if np.any(new > 1 + 1e-12) or np.any(new < -1e-12):
        raise ScenarioError(f"{c.where}: {c.op} {c.value:g} takes the probability out of "
                            f"[0, 1] (it is {old.min():.3f} to {old.max():.3f} now)")
    if np.any((old <= 0) & (new > 0)):
        raise ScenarioError(f"{c.where}: the probability is 0 now (no such move happens), "
                            "so it cannot be scaled up")
    moved = np.moveaxis(hs[..., dests].sum(-1), 1, -1)  # [set, g, r, band]
    rest = np.moveaxis(hs[..., ~dests].sum(-1), 1, -1)
    ceiling = (ex.band * (moved > 0)).sum(-1)  # every exit where the move happens is the move
    floor = (ex.band * ((moved > 0) & (rest <= 0))).sum(-1)  # ... or where nothing else does
    tol = 1e-12
    several = " and parameter set" if old.shape[0] > 1 else ""
    for bad, bound, word in ((new > ceiling + tol, ceiling, "reach at most"),
                             (new < floor - tol, floor, "fall no lower than")):
        if np.any(bad):
            worst = np.unravel_index(np.argmax(np.where(bad, np.abs(new - bound), -1.0)),
                                     bad.shape)
            raise ScenarioError(
                f"{c.where}: {c.op} {c.value:g} is out of reach: for some segment{several} the "
                f"probability is {float(old[worst]):.3f} and can {word} "
                f"{float(bound[worst]):.3f} (the age bands where the move never happens, or "
                f"where nothing else does, keep their outcome)")

    with np.errstate(divide="ignore", invalid="ignore"):
        log_odds = np.log(rest) - np.log(moved)  # of the other moves: -inf / +inf at the ends
    live = (moved > 0) | (rest > 0)

    def tilt(theta, sign=1.0):  # [set, g, r] -> the new shares [set, g, r, band] of the
        # moves (sign 1) or of the other moves (sign -1: each from its own exponential, not
        # 1 - the other, which rounds to 0 where the other moves are 1e-16 of the band)
        with np.errstate(over="ignore"):
            return np.where(live, 1.0 / (1.0 + np.exp(sign * (log_odds - theta[..., None]))),
                            0.0)

    # Bisection on θ, from a bracket wide enough for any share a float can hold.
    lo_t, hi_t = np.full(old.shape, -1500.0), np.full(old.shape, 1500.0)
    for _ in range(80):
        mid = 0.5 * (lo_t + hi_t)
        up = (ex.band * tilt(mid)).sum(-1) < new
        lo_t, hi_t = np.where(up, mid, lo_t), np.where(up, hi_t, mid)
    theta = 0.5 * (lo_t + hi_t)
    total = moved + rest
    new_moved, new_rest = total * tilt(theta), total * tilt(theta, -1.0)
    at_top = (new >= ceiling)[..., None]  # every exit where the move happens is the move
    new_moved = np.where(at_top, np.where(moved > 0, total, 0.0), new_moved)
    new_rest = np.where(at_top, np.where(moved > 0, 0.0, rest), new_rest)
    at_bottom = (new <= floor)[..., None]  # none is, where anything else can happen
    new_moved = np.where(at_bottom, np.where(rest > 0, 0.0, moved), new_moved)
    new_rest = np.where(at_bottom, np.where(rest > 0, total, 0.0), new_rest)
    same = (new == old)[..., None]
    new_moved, new_rest = np.where(same, moved, new_moved), np.where(same, rest, new_rest)
    with np.errstate(invalid="ignore", divide="ignore"):
        f_moved = np.where(moved > 0, new_moved / moved, 0.0)  # [set, g, r, band]
        f_rest = np.where(rest > 0, new_rest / rest, 0.0)
    f_moved, f_rest = np.moveaxis(f_moved, -1, 1), np.moveaxis(f_rest, -1, 1)
    out = np.where(dests, hs * f_moved[..., None], hs * f_rest[..., None])
    h[:, s][:, :, seg] = out


def _mean_days(model: FunnelModel, hs: np.ndarray) -> np.ndarray:
    """``[set, g, r]``: mean days in the stage of the leads that leave it."""
    ex = stage_exit(hs, model.age_bands)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ex.days.sum(-1) / ex.prob.sum(-1)


def _velocity(model: FunnelModel, h: np.ndarray, s: int, seg: np.ndarray, c: Change) -> None:
    hs = h[:, s][:, :, seg]
    target = _exit_prob(model, hs)  # [set, g, r, dest]
    goal = _mean_days(model, hs) * c.value
    # One factor k on all the stage's hazards such that the mean days in stage is the factor
    # times what it was (the mean falls as k grows: bisection on log k, per cell).
    lo, hi = np.full(goal.shape, -30.0), np.full(goal.shape, 30.0)
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        slow = _mean_days(model, hs * np.exp(mid)[:, None, ..., None]) > goal
        lo, hi = np.where(slow, mid, lo), np.where(slow, hi, mid)
    k = np.exp(0.5 * (lo + hi))[:, None, ..., None]
    total = (hs * k).sum(-1)  # [set, band, g, r]: kept while the split is re-tilted
    new = hs * k
    for _ in range(500):  # iterative proportional fitting of one multiplier per destination
        got = _exit_prob(model, new)
        err = np.max(np.abs(got - target))
        if err < 1e-13:
            break
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(got > 0, target / got, 1.0)
        new = new * ratio[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            norm = np.where(new.sum(-1) > 0, total / new.sum(-1), 0.0)
        new = new * norm[..., None]
    if err > 1e-9:
        raise ScenarioError(f"{c.where}: cannot keep the stage's outcomes with its days "
                            f"multiplied by {c.value:g} (off by {err:.2g})")
    h[:, s][:, :, seg] = new


def _expiry(model: FunnelModel, h: np.ndarray, s: int, seg: np.ndarray, c: Change) -> None:
    dests = _dest_mask(model, model.stages[s], (EXPIRY,))
    hs = h[:, s][:, :, seg]
    cold = hs[..., dests]  # [set, band, g, r, k]
    if c.op == "multiply":
        cold = cold * c.value
    elif c.op == "within_days":
        lo = np.asarray(model.age_bands)
        cold = cold * (lo < c.value)[None, :, None, None, None]
    else:  # set the shelf life: cumulative expiry hazard over the first N days = ln 2
        n = int(c.value)
        lo = np.asarray(model.age_bands)
        hi = np.append(lo[1:], np.iinfo(np.int64).max)
        days = np.clip(np.minimum(hi, n) - lo, 0, None)  # days of each band before age n
        cum = (cold.sum(-1) * days[None, :, None, None]).sum(1)  # [set, g, r]
        if np.any(cum <= 0):
            raise ScenarioError(f"{c.where}: leads never go cold in the first {n} days now, "
                                "so there is no shelf life to scale")
        # A hair above ln 2 so the rounded-up day is n, not n + 1, after floating error.
        cold = cold * (math.log(2.0) * (1 + 1e-12) / cum)[:, None, :, :, None]
    hs[..., dests] = cold
    h[:, s][:, :, seg] = hs


# ---- the open pipeline -----------------------------------------------------------------------

def neglect_pipeline(model: FunnelModel, pipeline: Pipeline, changes: Sequence[Change],
                     seed: int) -> Pipeline:
    """The open pipeline after the ``neglect`` changes: the chosen leads gone cold."""
    state, age = pipeline.state.copy(), pipeline.age.copy()
    rec = pipeline.recycle.copy()
    top = model.recycle_levels - 1
    rng = np.random.default_rng([seed, 0x6E65676C])  # "negl": the same leads for this seed
    for c in changes:
        if c.lever != "neglect":
            continue
        idx = np.flatnonzero(state == model.state_index(c.stage))
        idx = idx[_segments(model, c)[pipeline.segment[idx]]]
        n = int(c.value) if c.op == "count" else round(c.value * len(idx))
        chosen = rng.permutation(idx)[:min(n, len(idx))]
        state[chosen] = model.state_index(NURTURE)
        age[chosen] = 0
        rec[chosen] = np.minimum(rec[chosen] + 1, top)
    return Pipeline(state=state, age=age, segment=pipeline.segment, recycle=rec,
                    amount=pipeline.amount)


def scenario_notes(model: FunnelModel, scenario: Scenario, pipeline: Pipeline,
                   as_of: dt.date, horizon: int) -> list[str]:
    """What in ``scenario`` has another effect in this run than it reads: no change at all (an
    empty file, or a table misnamed inside ``[[change]]``'s), a change dated after the horizon
    (none), one dated on or before the as-of date (from the horizon's first day, as if
    undated), and a ``neglect`` count above the stage's open leads (only those)."""
    first, last = as_of + dt.timedelta(days=1), as_of + dt.timedelta(days=horizon)
    out = []
    if not scenario.changes:
        out.append(f"{scenario.path or scenario.name}: no [[change]] table: scenario "
                   f"{scenario.name!r} is the baseline itself")
    for c in scenario.changes:
        if c.start is not None and c.start > last:
            out.append(f"{c.where}: from {c.start}, after the horizon's last day {last}: it "
                       "changes nothing in this run")
        if c.start is not None and c.start < first:
            out.append(f"{c.where}: from {c.start}, before the horizon's first day {first}: "
                       "it applies from that day, as if undated")
        if c.lever == "neglect" and c.op == "count":
            idx = np.flatnonzero(pipeline.state == model.state_index(c.stage))
            n_open = int(_segments(model, c)[pipeline.segment[idx]].sum())
            if c.value > n_open:
                out.append(f"{c.where}: count {c.value:g}, but only {n_open:,} {c.stage} "
                           f"lead{'s are' if n_open != 1 else ' is'} open at {as_of}: all of "
                           "them are neglected")
    return out


# ---- a scenario as a simulator run -----------------------------------------------------------

@dataclass(frozen=True)
class ScenarioRun:
    """What the simulator needs for one scenario: parameters with one block of sets per epoch,
    the epochs' first days and, per path, the set of each epoch."""

    params: Parameters
    switch_days: np.ndarray
    set_index: np.ndarray
    pipeline: Pipeline


def switch_days(scenario: Scenario, as_of: dt.date, horizon: int) -> list[int]:
    """The day indices inside the horizon on which some change of ``scenario`` starts."""
    first = as_of + dt.timedelta(days=1)
    return sorted({(c.start - first).days for c in scenario.changes
                   if c.start is not None and 0 < (c.start - first).days < horizon})


def scenario_run(model: FunnelModel, params: Parameters, pipeline: Pipeline,
                 scenario: Scenario, as_of: dt.date, horizon: int, n_paths: int,
                 seed: int, base_index: np.ndarray | None = None) -> ScenarioRun:
    """Lay a scenario out as epochs: the changes in force from day 0, then on each later date.

    ``model`` must already carry every band edge the scenario needs. Path ``p`` uses base set
    ``base_index[p]`` (default ``p % n_sets``) transformed by the changes in force, so a
    scenario and its baseline use the same posterior draw on the same path.
    """
    n = params.n_sets
    if base_index is None:
        base_index = np.arange(n_paths, dtype=np.int64) % n
    first = as_of + dt.timedelta(days=1)
    days = switch_days(scenario, as_of, horizon)
    blocks = []
    for day0 in [0, *days]:
        live = [c for c in scenario.changes
                if c.start is None or (c.start - first).days <= day0]
        blocks.append(apply_changes(model, params, live))
    stacked = Parameters.concat(blocks)
    set_index = base_index[:, None] + n * np.arange(len(blocks))[None, :]
    return ScenarioRun(params=stacked, switch_days=np.asarray(days, dtype=np.int64),
                       set_index=set_index,
                       pipeline=neglect_pipeline(model, pipeline, scenario.changes, seed))
