"""Calendar effects: which kind of day each date is, and the multipliers it gets.

Closing moves (to ``won`` and ``lost``) and arrivals can run faster on some days: a day of the
week, the month of the quarter (deals bunch up in the quarter's last month), the last days of a
month. Won and lost closes have calendars of their own: in real pipelines they can move in
opposite directions (the public CRM sample closes more deals won and fewer lost in a quarter's
last month). A parameter set carries short vectors (``Parameters.close_calendar``: per closing
move, ``CLOSES`` order, 7 weekday, 3 month-of-quarter and 1 month-end multipliers;
``Parameters.arrivals_calendar``: 3 month-of-quarter and 1 month-end; arrivals have their
weekday pattern already). The simulator and the fit both turn dates into multipliers here, so
they cannot disagree.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

N_CLOSE, N_ARRIVALS = 11, 4
CLOSES = ("won", "lost")  # the closing moves with a calendar, in ``close_calendar``'s order
N_TYPES = 42  # kinds of day: weekday (7) x month of the quarter (3) x month end or not (2)


def day_types(start: dt.date, days: int, month_end_days: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(weekday, quarter_month, month_end)`` of the ``days`` dates from ``start``: Monday = 0,
    the month's place in its quarter (0, 1, 2), and whether it is one of the month's last
    ``month_end_days`` days."""
    dates = pd.date_range(start, periods=days, freq="D")
    weekday = dates.day_of_week.to_numpy().astype(np.int64)
    quarter_month = ((dates.month.to_numpy() - 1) % 3).astype(np.int64)
    month_end = (dates.days_in_month - dates.day).to_numpy() < month_end_days
    return weekday, quarter_month, month_end


def close_multipliers(close_calendar: np.ndarray, start: dt.date, days: int,
                      month_end_days: int) -> np.ndarray:
    """``[set, day, close]``: the multiplier of the hazards of each closing move (``CLOSES``) on
    each date from ``start``."""
    wd, qm, me = day_types(start, days, month_end_days)
    c = np.asarray(close_calendar, dtype=float)  # [set, close, 11]
    out = c[:, :, wd] * c[:, :, 7 + qm] * np.where(me, c[:, :, 10:11], 1.0)
    return np.moveaxis(out, 1, 2)


def arrival_multipliers(arrivals_calendar: np.ndarray, start: dt.date, days: int,
                        month_end_days: int) -> np.ndarray:
    """``[set, day]``: the multiplier of arrivals on each date (beyond the weekday pattern)."""
    _, qm, me = day_types(start, days, month_end_days)
    a = np.asarray(arrivals_calendar, dtype=float)
    return a[:, qm] * np.where(me, a[:, 3:4], 1.0)


def type_index(start: dt.date, days: int, month_end_days: int) -> np.ndarray:
    """The kind of each date (0 .. 41): ``weekday + 7 * (quarter_month + 3 * month_end)``."""
    wd, qm, me = day_types(start, days, month_end_days)
    return wd + 7 * (qm + 3 * me.astype(np.int64))


def type_parts() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(weekday, quarter_month, month_end)`` of each of the 42 kinds of day."""
    tau = np.arange(N_TYPES)
    return tau % 7, (tau // 7) % 3, tau // 21


def close_vector_multipliers(close_calendar: np.ndarray) -> np.ndarray:
    """``[set, close, 42]``: each closing move's multiplier on each kind of day."""
    wd, qm, me = type_parts()
    c = np.asarray(close_calendar, dtype=float)
    return c[:, :, wd] * c[:, :, 7 + qm] * np.where(me == 1, c[:, :, 10:11], 1.0)
