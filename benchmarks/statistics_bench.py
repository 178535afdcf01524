"""Benchmark of ``forecast.statistics.sufficient_statistics`` on a ~1,000,000-row event log.

The log is simulated from a model's defaults (``simulate_history``) with arrivals scaled so
that it has about ``BENCH_ROWS`` rows (default 1,000,000): a short pilot history gives the
rows per arrival, which sets the scale. The timing covers ``sufficient_statistics`` alone (the
log is already in memory, as after ``read_event_log``); the best of ``BENCH_REPEAT`` runs
(default 3) is reported, with the first (cold) run alongside.

Environment: ``BENCH_ROWS``, ``BENCH_MODEL`` (default ``b2b``), ``BENCH_DAYS`` (default 365),
``BENCH_REPEAT``.

Usage: ``python benchmarks/statistics_bench.py`` (not ``statistics.py``: run as a script, that
name would shadow the standard library module).
"""

from __future__ import annotations

import datetime as dt
import os
import time

import pandas as pd

from forecast.eventlog import EventLog
from forecast.model import load_model
from forecast.parameters import default_parameters
from forecast.simulate.engine import simulate_history
from forecast.statistics import crude_hazards, sufficient_statistics

START = dt.date(2025, 10, 1)


def synthetic_log(model_name: str, rows: int, days: int, seed: int = 0) -> EventLog:
    """A simulated event log of about ``rows`` rows over ``days`` days."""
    model = load_model(model_name)
    params = default_parameters(model)
    pilot = simulate_history(model, params, START, days, seed)
    scale = max(rows / max(len(pilot), 1), 1e-3)
    frame = simulate_history(model, params.with_arrivals_scaled(scale), START, days, seed)
    frame["entered_at"] = pd.to_datetime(frame["entered_at"]).astype("datetime64[ns]")
    return EventLog(frame=frame, path=f"simulated:{model_name}", as_of=None, sha256="")


def main() -> None:
    rows = int(os.environ.get("BENCH_ROWS", 1_000_000))
    model_name = os.environ.get("BENCH_MODEL", "b2b")
    days = int(os.environ.get("BENCH_DAYS", 365))
    repeat = max(int(os.environ.get("BENCH_REPEAT", 3)), 1)
    model = load_model(model_name)
    t0 = time.perf_counter()
    log = synthetic_log(model_name, rows, days)
    build = time.perf_counter() - t0
    as_of = START + dt.timedelta(days=days - 1)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        stats = sufficient_statistics(log, model, as_of)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    crude_hazards(stats)
    crude = time.perf_counter() - t0
    n = len(log.frame)
    best = min(times)
    print(f"model {model_name}, {days} days from {START}, log built in {build:.1f} s")
    print(f"rows            {n:,}")
    print(f"leads           {stats.n_leads:,}")
    print(f"events          {int(stats.events.sum()):,}")
    print(f"exposure        {stats.exposure.sum():,.0f} lead-days")
    print(f"seconds         {best:.3f} (best of {repeat}; first run {times[0]:.3f})")
    print(f"rows/second     {n / best:,.0f}")
    print(f"crude_hazards   {crude * 1000:.1f} ms")


if __name__ == "__main__":
    main()
