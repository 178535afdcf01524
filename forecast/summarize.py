"""From per-path daily outputs to bands by period: mean, standard deviation and quantiles."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecast.simulate import SimulationResult

PERIODS = {"day": "D", "week": "W", "month": "M", "quarter": "Q", "year": "Y"}


@dataclass(frozen=True)
class Periods:
    """Calendar periods covering a horizon: labels, first and last date, and day ranges."""

    labels: list[str]
    start: list[dt.date]
    end: list[dt.date]
    first_day: np.ndarray  # index of each period's first day in the horizon
    last_day: np.ndarray  # index of each period's last day (its occupancy day)

    def __len__(self) -> int:
        return len(self.labels)


def periods(as_of: dt.date, horizon: int, by: str) -> Periods:
    """Split the days ``as_of + 1 .. as_of + horizon`` into calendar periods (the first and
    last may be partial)."""
    if by not in PERIODS:
        raise ValueError(f"--by must be one of {', '.join(PERIODS)}, got {by!r}")
    dates = pd.date_range(as_of + dt.timedelta(days=1), periods=horizon, freq="D")
    per = dates.to_period(PERIODS[by])
    change = np.flatnonzero(np.r_[True, per[1:] != per[:-1]])
    last = np.r_[change[1:] - 1, horizon - 1]
    labels = []
    for i in change:
        p = per[i]
        if by == "week":
            labels.append(f"week of {p.start_time.date().isoformat()}")
        elif by == "quarter":
            labels.append(f"{p.year}Q{p.quarter}")
        else:
            labels.append(str(p))
    return Periods(labels=labels, start=[dates[i].date() for i in change],
                   end=[dates[i].date() for i in last], first_day=change, last_day=last)


def metric_names(result: SimulationResult) -> list[str]:
    """The metrics reported per period, in display order."""
    return model_metric_names(result.model)


def model_metric_names(model) -> list[str]:
    """:func:`metric_names` of any run of ``model``."""
    names = ["bookings", "won_deals", f"expired_{model.qualified_stage}", "lost_to_expiry",
             "expired_all", "recaptured", "arrivals"]
    names += [f"in_{s}" for s in model.states]
    return names


def per_period(result: SimulationResult, per: Periods) -> dict[str, np.ndarray]:
    """``{metric: array[path, period]}``: flows summed over each period, stocks at its end."""
    model = result.model
    q = model.state_index(model.qualified_stage)

    def flow(x: np.ndarray) -> np.ndarray:
        return np.add.reduceat(x, per.first_day, axis=1)

    out = {
        "bookings": flow(result.bookings),
        "won_deals": flow(result.won),
        f"expired_{model.qualified_stage}": flow(result.expired[:, :, q]),
        "lost_to_expiry": flow(result.lost_to_expiry),
        "expired_all": flow(result.expired.sum(axis=2)),
        "recaptured": flow(result.recaptured),
        "arrivals": flow(result.arrivals),
    }
    occ_pos = np.searchsorted(result.occupancy_days, per.last_day)
    if not np.array_equal(result.occupancy_days[np.minimum(occ_pos, len(result.occupancy_days)
                                                            - 1)], per.last_day):
        raise ValueError("the simulation did not record occupancy at these period ends")
    for i, s in enumerate(model.states):
        out[f"in_{s}"] = result.occupancy[:, occ_pos, i]
    return out


def quantile_label(q: float) -> str:
    """0.1 -> 'p10', 0.5 -> 'p50', 0.025 -> 'p2.5'."""
    return "p" + f"{100 * q:.10g}"


def bands(result: SimulationResult, by: str = "month",
          quantiles: tuple[float, ...] = (0.1, 0.5, 0.9), *, cumulative: bool = False
          ) -> pd.DataFrame:
    """Bands per period and metric: one row each, with mean, sd and the requested quantiles.

    With ``cumulative``, flows are summed from the start of the horizon to each period's end.
    A final ``total`` period covers the whole horizon (flows summed, stocks at the end).
    """
    per = periods(result.as_of, result.horizon, by)
    values = per_period(result, per)
    rows = []
    labels = [*per.labels, "total"]
    starts = [*per.start, per.start[0]]
    ends = [*per.end, per.end[-1]]
    days = [*(per.last_day - per.first_day + 1), result.horizon]
    for name, x in values.items():
        is_stock = name.startswith("in_")
        if cumulative and not is_stock:
            x = np.cumsum(x, axis=1)
        total = x[:, -1:] if (is_stock or cumulative) else x.sum(axis=1, keepdims=True)
        x = np.concatenate([x, total], axis=1).astype(float)
        qs = np.quantile(x, quantiles, axis=0) if len(quantiles) else np.empty((0, x.shape[1]))
        for j, label in enumerate(labels):
            row = {"period": label, "start": starts[j], "end": ends[j], "days": int(days[j]),
                   "metric": name, "mean": x[:, j].mean(), "sd": x[:, j].std(ddof=1)
                   if x.shape[0] > 1 else 0.0}
            for qi, qv in enumerate(quantiles):
                row[quantile_label(qv)] = qs[qi, j]
            rows.append(row)
    return pd.DataFrame(rows)


def parse_quantiles(text: str) -> tuple[float, ...]:
    """'0.1,0.5,0.9' -> (0.1, 0.5, 0.9); sorted, unique, each strictly between 0 and 1."""
    try:
        qs = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"--quantiles takes numbers like 0.1,0.5,0.9, got {text!r}") from None
    if not qs or any(not 0 < q < 1 for q in qs):
        raise ValueError(f"--quantiles must be between 0 and 1 (exclusive), got {text!r}")
    return tuple(qs)
