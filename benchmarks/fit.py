"""Fit benchmark (`make bench`): a ~1,000,000-row history from file to posterior file.

Simulates a b2b event log of about ``BENCH_FIT_ROWS`` rows (default 1,000,000) over a year,
writes it as CSV.gz, then times what `forecast fit` does: read and validate the log, compute
the sufficient statistics, compile and sample the PyMC model (2 chains x ``BENCH_FIT_DRAWS``
tuning steps and draws, default 1000, the CLI's defaults) with each sampler in
``BENCH_FIT_SAMPLERS`` (default ``nutpie,pymc``), and write the posterior.

Usage: ``python benchmarks/fit.py``.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import tempfile
import time
from pathlib import Path

from statistics_bench import START, synthetic_log  # the sibling script

from forecast.eventlog import read_event_log
from forecast.fit import fit, save_posterior
from forecast.model import load_model
from forecast.statistics import sufficient_statistics


def main() -> None:
    rows = int(os.environ.get("BENCH_FIT_ROWS", 1_000_000))
    draws = int(os.environ.get("BENCH_FIT_DRAWS", 1000))
    samplers = os.environ.get("BENCH_FIT_SAMPLERS", "nutpie,pymc").split(",")
    days = 365
    model = load_model("b2b")
    print(f"fit benchmark on {platform.machine()}, {os.cpu_count()} cores; b2b, {days} days")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.csv.gz"
        log = synthetic_log("b2b", rows, days)
        log.frame.to_csv(path, index=False, float_format="%.2f")
        t0 = time.perf_counter()
        log = read_event_log(path, model)
        read_s = time.perf_counter() - t0
        as_of = START + dt.timedelta(days=days - 1)
        t0 = time.perf_counter()
        stats = sufficient_statistics(log, model, as_of)
        stats_s = time.perf_counter() - t0
        print(f"rows                     {len(log.frame):,} ({stats.n_leads:,} leads, "
              f"{path.stat().st_size / 1e6:.1f} MB gzipped CSV)")
        print(f"read + validate          {read_s:.2f} s")
        print(f"sufficient statistics    {stats_s:.2f} s")
        for sampler in samplers:
            result = fit(stats, model, draws=draws, tune=draws, chains=2, seed=0,
                         sampler=sampler, progress=False)
            t0 = time.perf_counter()
            save_posterior(result.idata, Path(tmp) / f"{sampler}.nc")
            write_s = time.perf_counter() - t0
            d, tm = result.diagnostics, result.timings
            print(f"{sampler:8s} 2 x ({draws} tune + {draws} draws): {tm['compile_s']:.0f} s "
                  f"build + compile, "
                  f"{tm['sampling_s']:.0f} s sampling; max R-hat {d['max_rhat']:.3f}, "
                  f"min ESS {d['min_ess_bulk']:.0f}, {d['divergences']} divergences; "
                  f"posterior written in {write_s:.2f} s "
                  f"({(Path(tmp) / f'{sampler}.nc').stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
