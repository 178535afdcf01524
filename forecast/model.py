"""Funnel model files (``models/*.toml``): the structure of a funnel and its default parameters.

A model file declares the active stages in order, the entry stage for new arrivals, the moves
allowed out of each stage and out of ``nurture`` (with a hazard per age band), the age bands,
the segments (arrivals, deal size, conversion multiplier), the recycle effect, the mapping from
CRM stage names to model stages, and priors for the fit. See ``models/b2b.toml`` for a fully
commented example.

States are numbered for the simulator: active stages ``0 .. S-1`` in funnel order, then
``nurture = S``, ``won = S+1``, ``lost = S+2``. ``won`` and ``lost`` are absorbing.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from forecast.calendar import CLOSES

NURTURE, WON, LOST = "nurture", "won", "lost"
SPECIAL_STAGES = (NURTURE, WON, LOST)

# The most new leads a day one segment may have (its mean over the week): far above any
# funnel (a million a day is already hours a path), and a typo or a scenario gone wrong past
# it, refused rather than let overflow into negative or zero arrivals (1e18 did). The
# lead-by-lead kernel numbers a day's arrivals in 2**24 substreams per segment: a day's draw
# stays below that even at seven times the mean on one weekday, though a calendar or a drift
# walk on top could in principle pass it (the draws would then share streams, not fail).
MAX_ARRIVALS_PER_DAY = 1e6

# Kinds of move, derived from the positions of source and destination (never declared).
ADVANCE, SKIP, EXPIRY, RECAPTURE, CLOSE_LOST = "advance", "skip", "expiry", "recapture", "lost"


class ModelError(ValueError):
    """A model file is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class Segment:
    """One channel / product / region: its arrivals, conversion multiplier and deal size."""

    name: str
    arrivals_per_day: float
    arrivals_dispersion: float  # negative-binomial size; 0 means Poisson (no over-dispersion)
    conversion_multiplier: float
    deal_mean: float
    deal_sigma: float  # log-scale standard deviation of the lognormal deal size

    @property
    def deal_mu(self) -> float:
        """Log-scale mean of the lognormal whose mean is ``deal_mean``."""
        return math.log(self.deal_mean) - 0.5 * self.deal_sigma**2


@dataclass(frozen=True)
class Calendar:
    """Calendar multipliers (``[calendar]``): on the hazards of closing moves (to ``won`` and
    ``lost``) and on arrivals, by the date. Each list is normalised to a mean of 1.

    ``close_*`` apply to both closing moves, ``won_*`` and ``lost_*`` to one of them, on top
    (won and lost closes can move in opposite directions: more wins and fewer losses in a
    quarter's last month). ``*_day_of_week``: Monday first; ``*_quarter_month``: by month of the
    quarter (first, second, third); ``*_month_end``: on the last ``month_end_days`` days of
    every month, on top.
    """

    # per closing move (forecast.calendar.CLOSES: won, lost): weekday (7), month of the
    # quarter (3), month end (1), as Parameters.close_calendar stores them
    close: tuple[tuple[float, ...], ...] = ((1.0,) * 11,) * 2
    arrivals_quarter_month: tuple[float, ...] = (1.0,) * 3
    arrivals_month_end: float = 1.0
    month_end_days: int = 5
    declared: bool = False  # the model file has a [calendar] table: `forecast fit` fits it

    def arrivals_vector(self) -> tuple[float, ...]:
        return (*self.arrivals_quarter_month, self.arrivals_month_end)


@dataclass(frozen=True)
class FunnelModel:
    """A validated funnel model file.

    ``hazards[s][d]`` is the per-day hazard, one value per age band, of the move from state
    name ``s`` (an active stage or ``nurture``) to state name ``d``, before segment and recycle
    multipliers.
    """

    path: str
    name: str
    currency: str
    stages: tuple[str, ...]
    entry: str
    qualified_stage: str
    amount_stage: str | None
    age_bands: tuple[int, ...]
    recycle_levels: int
    recycle_advance_multiplier: tuple[float, ...]
    segments: tuple[Segment, ...]
    default_segment: str
    day_of_week: tuple[float, ...]
    hazards: dict[str, dict[str, tuple[float, ...]]]
    crm_stages: dict[str, str]
    priors: dict = field(default_factory=dict)
    documented: dict = field(default_factory=dict)
    sha256: str = ""
    segment_aliases: dict[str, str] = field(default_factory=dict)
    calendar: Calendar = field(default_factory=Calendar)

    # ---- numbering -------------------------------------------------------------------------
    @property
    def states(self) -> tuple[str, ...]:
        """All state names in simulator order: active stages, nurture, won, lost."""
        return (*self.stages, NURTURE, WON, LOST)

    @property
    def n_active(self) -> int:
        return len(self.stages)

    @property
    def n_transient(self) -> int:
        """Active stages plus nurture: the states a lead can leave."""
        return len(self.stages) + 1

    @property
    def segment_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.segments)

    def state_index(self, name: str) -> int:
        return self.states.index(name)

    def move_kind(self, source: str, dest: str) -> str:
        """Classify a move by the positions of its ends (single source of truth for kinds)."""
        if dest == LOST:
            return CLOSE_LOST
        if source == NURTURE:
            return RECAPTURE
        if dest == NURTURE:
            return EXPIRY
        i, j = self.state_index(source), self.state_index(dest)
        if dest == WON:
            return ADVANCE if i == self.n_active - 1 else SKIP
        if j < i:
            return EXPIRY
        return ADVANCE if j == i + 1 else SKIP

    def move_kinds(self) -> np.ndarray:
        """``kinds[s, d]`` as codes: 0 none, 1 advance/skip, 2 expiry, 3 recapture, 4 lost."""
        code = {ADVANCE: 1, SKIP: 1, EXPIRY: 2, RECAPTURE: 3, CLOSE_LOST: 4}
        out = np.zeros((self.n_transient, len(self.states)), dtype=np.int8)
        for s, dests in self.hazards.items():
            for d in dests:
                out[self.state_index(s), self.state_index(d)] = code[self.move_kind(s, d)]
        return out

    def map_stage(self, crm_name: str) -> str | None:
        """Map a CRM stage name (or a model state name) to a model state, case-insensitively."""
        key = crm_name.strip().casefold()
        for state in self.states:
            if state.casefold() == key:
                return state
        return self._crm_lookup.get(key)

    @property
    def _crm_lookup(self) -> dict[str, str]:
        return {k.strip().casefold(): v for k, v in self.crm_stages.items()}

    def map_segment(self, name: str) -> str | None:
        """Map a segment name or a ``[segment_aliases]`` spelling to a segment (any case)."""
        key = name.strip().casefold()
        for segment in self.segment_names:
            if segment.casefold() == key:
                return segment
        for alias, segment in self.segment_aliases.items():
            if alias.strip().casefold() == key:
                return segment
        return None


# ---- loading ---------------------------------------------------------------------------------

def bundled_models_dir() -> Path:
    """The directory holding the bundled model files (installed package or source checkout)."""
    packaged = resources.files("forecast") / "_bundled" / "models"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "models"


def resolve_model_path(name_or_path: str | Path | None) -> Path:
    """``None`` -> the bundled default; a bare name like ``consumer`` -> that bundled model."""
    if name_or_path is None:
        name_or_path = "b2b"
    p = Path(name_or_path)
    if p.suffix != ".toml" and not p.exists():
        candidate = bundled_models_dir() / f"{p.name}.toml"
        if candidate.exists():
            return candidate
        raise ModelError(f"{name_or_path}: no such model file (bundled models: "
                         f"{', '.join(sorted(bundled_model_names()))})")
    if not p.exists():
        raise ModelError(f"{p}: no such model file")
    return p


def bundled_model_names() -> list[str]:
    """The names of the bundled model files (``--model NAME``), the default first."""
    names = sorted(q.stem for q in bundled_models_dir().glob("*.toml"))
    return sorted(names, key=lambda n: n != "b2b")


def load_model(name_or_path: str | Path | None = None) -> FunnelModel:
    """Read and validate a funnel model file; raise :class:`ModelError` naming file and key."""
    path = resolve_model_path(name_or_path)
    raw_bytes = path.read_bytes()
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not valid TOML: {exc}") from exc
    return _parse(raw, str(path), hashlib.sha256(raw_bytes).hexdigest())


def _parse(raw: dict, path: str, sha: str) -> FunnelModel:
    def err(key: str, msg: str) -> ModelError:
        return ModelError(f"{path}: [{key}] {msg}")

    def table(key: str, parent: dict = raw) -> dict:
        value = parent.get(key.rsplit(".", 1)[-1])
        if not isinstance(value, dict):
            raise err(key, "missing table" if value is None else "must be a table")
        return value

    def number(key: str, value, *, low: float = 0.0, strict: bool = False,
               high: float = math.inf) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise err(key, f"must be a number, got {value!r}")
        v = float(value)
        if not math.isfinite(v) or v < low or (strict and v == low):
            raise err(key, f"must be {'>' if strict else '>='} {low:g}, got {value!r}")
        if v > high:
            raise err(key, f"must be at most {high:,.0f}, got {value!r}")
        return v

    def optional_table(key: str) -> dict:
        return table(key) if key in raw else {}

    def known_keys(key: str, value: dict, known) -> None:
        """A typo must not pass silently (a mistyped key would quietly take its default)."""
        for k in value:
            if k not in known:
                raise err(f"{key}.{k}", f"unknown key (expected {', '.join(known)})")

    known_top = {"funnel", "crm_stages", "moves", "recycle", "segments", "segment_aliases",
                 "arrivals", "calendar", "priors", "documented"}
    for key in raw:
        if key not in known_top:
            raise err(key, f"unknown table (expected one of {', '.join(sorted(known_top))})")

    funnel = table("funnel")
    known_keys("funnel", funnel, ("name", "currency", "stages", "entry", "qualified_stage",
                                  "amount_stage", "age_bands", "default_segment"))
    name = funnel.get("name", Path(path).stem)
    currency = str(funnel.get("currency", "USD"))
    stages = funnel.get("stages")
    if not isinstance(stages, list) or not stages or not all(isinstance(s, str) for s in stages):
        raise err("funnel.stages", "must be a non-empty list of stage names")
    if len(set(stages)) != len(stages):
        raise err("funnel.stages", f"duplicate stage names in {stages}")
    for s in stages:
        if s in SPECIAL_STAGES:
            raise err("funnel.stages", f"{s!r} is a reserved state, not an active stage")
    states = (*stages, *SPECIAL_STAGES)

    def stage_key(key: str, *, required: bool = True, active: bool = True) -> str | None:
        value = funnel.get(key.split(".")[-1])
        if value is None and not required:
            return None
        if value not in stages if active else value not in states:
            raise err(key, f"{value!r} is not an active stage (stages: {', '.join(stages)})")
        return value

    entry = stage_key("funnel.entry")
    qualified = stage_key("funnel.qualified_stage")
    amount_stage = stage_key("funnel.amount_stage", required=False)

    bands = funnel.get("age_bands")
    if (not isinstance(bands, list) or not bands
            or not all(isinstance(b, int) and not isinstance(b, bool) for b in bands)):
        raise err("funnel.age_bands", "must be a list of whole days, starting at 0")
    if bands[0] != 0:
        raise err("funnel.age_bands", f"must start at 0, got {bands[0]}")
    if any(b2 <= b1 for b1, b2 in itertools.pairwise(bands)):
        raise err("funnel.age_bands", f"must be strictly increasing, got {bands}")
    n_bands = len(bands)

    # ---- moves ----
    moves = table("moves")
    hazards: dict[str, dict[str, tuple[float, ...]]] = {}
    for source, dests in moves.items():
        key = f"moves.{source}"
        if source not in (*stages, NURTURE):
            raise err(key, f"unknown source stage {source!r} "
                           f"(stages: {', '.join(stages)}, nurture)")
        if not isinstance(dests, dict) or not dests:
            raise err(key, "must be a table of destination = [hazard per age band]")
        hazards[source] = {}
        for dest, values in dests.items():
            dkey = f"{key}.{dest}"
            if dest not in states:
                raise err(dkey, f"unknown destination {dest!r} (states: {', '.join(states)})")
            if dest == source:
                raise err(dkey, "a stage cannot move to itself")
            if isinstance(values, int | float) and not isinstance(values, bool):
                values = [values] * n_bands
            if not isinstance(values, list) or len(values) != n_bands:
                raise err(dkey, f"needs one hazard per age band ({n_bands} values for {bands})")
            hazards[source][dest] = tuple(number(dkey, v) for v in values)
    for s in stages:
        if s not in hazards:
            raise err(f"moves.{s}", "missing: every active stage needs its moves")

    # ---- recycle ----
    recycle = optional_table("recycle")
    known_keys("recycle", recycle, ("advance_multiplier",))
    mult = recycle.get("advance_multiplier", [1.0])
    if not isinstance(mult, list) or not mult:
        raise err("recycle.advance_multiplier", "must be a list, one multiplier per recycle level")
    mult = tuple(number("recycle.advance_multiplier", m) for m in mult)

    # ---- segments ----
    segs_raw = table("segments")
    segments = []
    for sname, sraw in segs_raw.items():
        key = f"segments.{sname}"
        if not isinstance(sraw, dict):
            raise err(key, "must be a table")
        allowed = {"arrivals_per_day", "arrivals_dispersion", "conversion_multiplier",
                   "deal_mean", "deal_sigma"}
        for k in sraw:
            if k not in allowed:
                raise err(f"{key}.{k}", f"unknown key (expected {', '.join(sorted(allowed))})")
        for k in ("arrivals_per_day", "deal_mean"):
            if k not in sraw:
                raise err(f"{key}.{k}", "missing")
        segments.append(Segment(
            name=sname,
            arrivals_per_day=number(f"{key}.arrivals_per_day", sraw["arrivals_per_day"],
                                    high=MAX_ARRIVALS_PER_DAY),
            arrivals_dispersion=number(f"{key}.arrivals_dispersion",
                                       sraw.get("arrivals_dispersion", 0.0)),
            conversion_multiplier=number(f"{key}.conversion_multiplier",
                                         sraw.get("conversion_multiplier", 1.0)),
            deal_mean=number(f"{key}.deal_mean", sraw["deal_mean"], strict=True),
            deal_sigma=number(f"{key}.deal_sigma", sraw.get("deal_sigma", 1.0)),
        ))
    if not segments:
        raise err("segments", "declare at least one segment")
    seg_names = [s.name for s in segments]
    default_segment = funnel.get("default_segment", seg_names[0])
    if default_segment not in seg_names:
        raise err("funnel.default_segment",
                  f"{default_segment!r} is not a segment ({', '.join(seg_names)})")

    # Other spellings of segment names in the data (e.g. "GTXPro" for "GTX Pro").
    aliases = optional_table("segment_aliases")
    folded = {n.casefold(): n for n in seg_names}
    for alias, target in aliases.items():
        key = f"segment_aliases.{alias}"
        if target not in seg_names:
            raise err(key, f"maps to {target!r}, which is not a segment ({', '.join(seg_names)})")
        other = folded.get(alias.strip().casefold())
        if other is not None and other != target:
            raise err(key, f"already means segment {other!r}; a spelling names one segment")
        folded[alias.strip().casefold()] = target

    arrivals = optional_table("arrivals")
    known_keys("arrivals", arrivals, ("day_of_week",))
    dow = arrivals.get("day_of_week", [1.0] * 7)
    if not isinstance(dow, list) or len(dow) != 7:
        raise err("arrivals.day_of_week", "needs 7 multipliers, Monday first")
    dow = [number("arrivals.day_of_week", v) for v in dow]
    if sum(dow) <= 0:
        raise err("arrivals.day_of_week", "must not be all zero")
    dow = tuple(7.0 * v / sum(dow) for v in dow)  # normalised: mean 1 over the week

    calendar = _parse_calendar(raw.get("calendar", {}), err, number)
    if "calendar" in raw and not raw["calendar"]:
        calendar = Calendar(declared=True)  # an empty [calendar]: fit it, defaults of 1

    crm = optional_table("crm_stages")
    for crm_name, target in crm.items():
        if target not in states:
            raise err(f"crm_stages.{crm_name}",
                      f"maps to {target!r}, which is not a state ({', '.join(states)})")

    model = FunnelModel(
        path=path, name=str(name), currency=currency, stages=tuple(stages), entry=entry,
        qualified_stage=qualified, amount_stage=amount_stage, age_bands=tuple(bands),
        recycle_levels=len(mult), recycle_advance_multiplier=mult, segments=tuple(segments),
        default_segment=default_segment, day_of_week=dow, hazards=hazards, crm_stages=dict(crm),
        priors=dict(optional_table("priors")), documented=_parse_documented(
            optional_table("documented"), err, number), sha256=sha,
        segment_aliases=dict(aliases), calendar=calendar,
    )
    _check_reachability(model, err)
    return model


def _parse_documented(raw: dict, err, number) -> dict:
    """The optional ``[documented]`` table: facts with their tolerances, checked by the tests.

    Fact names are open (a model documents what it can), so a typo shows as a fact without its
    ``<fact>_tolerance`` or a tolerance without its fact. (``[priors]`` keys are checked by
    ``forecast.fit.priors_of``, against the priors the fit knows.)
    """
    for key, value in raw.items():
        number(f"documented.{key}", value, low=-math.inf)
        fact = key.removesuffix("_tolerance")
        if fact == key and f"{key}_tolerance" not in raw:
            raise err(f"documented.{key}", f"has no {key}_tolerance")
        if fact != key and fact not in raw:
            raise err(f"documented.{key}", f"is the tolerance of an unknown fact {fact!r} "
                      f"(facts: {', '.join(k for k in raw if not k.endswith('_tolerance'))})")
    return dict(raw)


def _parse_calendar(raw, err, number) -> Calendar:
    """The optional ``[calendar]`` table; absent, every multiplier is 1."""
    if not isinstance(raw, dict):
        raise err("calendar", "must be a table")
    lists, scalars = {"arrivals_quarter_month": 3}, ["arrivals_month_end"]
    for who in ("close", *CLOSES):
        lists |= {f"{who}_day_of_week": 7, f"{who}_quarter_month": 3}
        scalars.append(f"{who}_month_end")
    for key in raw:
        if key not in (*lists, *scalars, "month_end_days"):
            raise err(f"calendar.{key}", "unknown key (expected "
                      f"{', '.join([*lists, *scalars, 'month_end_days'])})")
    out = {}
    for key, n in lists.items():
        values = raw.get(key, [1.0] * n)
        if not isinstance(values, list) or len(values) != n:
            raise err(f"calendar.{key}", f"needs {n} multipliers")
        values = [number(f"calendar.{key}", v) for v in values]
        if sum(values) <= 0:
            raise err(f"calendar.{key}", "must not be all zero")
        out[key] = tuple(n * v / sum(values) for v in values)  # mean 1
    for key in scalars:
        out[key] = number(f"calendar.{key}", raw.get(key, 1.0), strict=True)
    days = raw.get("month_end_days", 5)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 27:
        raise err("calendar.month_end_days", f"must be a whole number of days from 1 to 27, "
                                             f"got {days!r}")

    def vector(who):
        return (*out[f"{who}_day_of_week"], *out[f"{who}_quarter_month"], out[f"{who}_month_end"])

    close = tuple(tuple(a * b for a, b in zip(vector("close"), vector(who), strict=True))
                  for who in CLOSES)
    return Calendar(close=close, arrivals_quarter_month=out["arrivals_quarter_month"],
                    arrivals_month_end=out["arrivals_month_end"], month_end_days=days,
                    declared=bool(raw))


def _check_reachability(model: FunnelModel, err) -> None:
    """Every active stage must be reachable from the entry stage, and ``won`` from the entry."""
    graph = {s: {d for d, h in dests.items() if any(v > 0 for v in h)}
             for s, dests in model.hazards.items()}

    def reach(start: str) -> set[str]:
        seen, todo = {start}, [start]
        while todo:
            for d in graph.get(todo.pop(), ()):
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return seen

    from_entry = reach(model.entry)
    if WON not in from_entry:
        raise err("moves", f"'won' is unreachable from the entry stage {model.entry!r} "
                           "(no chain of moves with a positive hazard leads there)")
    for s in model.stages:
        if s not in from_entry:
            raise err(f"moves.{s}", f"stage {s!r} is unreachable from the entry stage "
                                    f"{model.entry!r}")
    for s in (*model.stages, NURTURE):
        if s in graph and not graph[s] & {WON, LOST} and not (reach(s) & {WON, LOST}):
            raise err(f"moves.{s}", f"leads in {s!r} can never close (won or lost)")
