"""Simulator benchmark (`make bench`): the reference workload of issue 2, and a scaling table.

Reference workload: 20,000 open leads spread over the stages, 300 arrivals a day over 5
segments, a 365-day horizon, 10,000 paths, `models/b2b.toml`. Prints wall time with JIT
compilation excluded (compile time is measured separately, in a fresh process with an empty
numba cache), peak memory, simulated transitions per second, and nanoseconds per transition
next to nanoseconds per raw random draw measured in the same process.

Each workload runs in its own subprocess so that its peak memory (max RSS) is its own.
Environment: BENCH_PATHS scales the path count of every workload (default 10000), for a quick
look on a slow machine; BENCH_SKIP_COMPILE=1 skips the fresh-compile measurement.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

AS_OF = dt.date(2026, 9, 30)


def reference_inputs(n_open: int, arrivals_per_day: float):
    """The workload's model, parameters and open pipeline: b2b, its arrivals scaled to
    ``arrivals_per_day``, ``n_open`` open leads spread over the stages."""
    import numpy as np

    from forecast.model import load_model
    from forecast.parameters import default_parameters
    from forecast.simulate import Pipeline

    model = load_model("b2b")
    params = default_parameters(model)
    params = params.with_arrivals_scaled(arrivals_per_day / params.arrivals_mean.sum())
    rng = np.random.default_rng(12345)
    # Open leads spread over the stages as in a real funnel: most at the top, some in nurture.
    shares = np.array([0.40, 0.25, 0.12, 0.08, 0.15])
    state = rng.choice(model.n_transient, size=n_open, p=shares)
    opp = model.state_index("opportunity")
    pipeline = Pipeline(
        state=state.astype(np.int64),
        age=rng.integers(0, 120, n_open).astype(np.int64),
        segment=rng.integers(0, len(model.segments), n_open).astype(np.int64),
        recycle=(rng.random(n_open) < 0.2).astype(np.int64),
        amount=np.where(state == opp, rng.lognormal(11.2, 0.9, n_open), np.nan),
    )
    return model, params, pipeline


def workload(n_open: int, arrivals_per_day: float, horizon: int, n_paths: int) -> dict:
    """Run one workload in this process (after a warm-up call) and return its figures."""
    import resource

    import numba
    import numpy as np

    from forecast.simulate import simulate
    from forecast.simulate.rng import path_states, uniform

    model, params, pipeline = reference_inputs(n_open, arrivals_per_day)
    t0 = time.perf_counter()
    simulate(model, params, pipeline, AS_OF, 5, 2, 0)  # compile, or load the cached kernels
    warmup = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = simulate(model, params, pipeline, AS_OF, horizon, n_paths, 0)
    wall = time.perf_counter() - t0
    transitions = int(res.moves.sum())

    @numba.njit
    def draws(st, n):
        acc = 0.0
        for _ in range(n):
            acc += uniform(st)
        return acc

    st = path_states(0, 0, 1)[0]
    draws(st, 10)
    n_draws = 50_000_000
    t0 = time.perf_counter()
    draws(st, n_draws)
    ns_draw = (time.perf_counter() - t0) / n_draws * 1e9
    threads = numba.get_num_threads()
    return {
        "open_leads": n_open, "arrivals_per_day": arrivals_per_day, "horizon": horizon,
        "paths": n_paths, "wall_s": wall, "warmup_s": warmup,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "transitions": transitions, "leads": int(res.arrivals.sum()) + n_open * n_paths,
        "transitions_per_s": transitions / wall,
        "ns_per_transition_per_thread": wall * threads / transitions * 1e9,
        "ns_per_draw": ns_draw, "threads": threads,
        "p50_bookings": float(np.median(res.bookings.sum(axis=1))),
    }


def run_child(args: list[str], env: dict | None = None) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         env=env, check=False)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"benchmark child failed: {args}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    scale = int(os.environ.get("BENCH_PATHS", "10000"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; load average {os.getloadavg()[0]:.2f}")
    if os.environ.get("BENCH_SKIP_COMPILE") != "1":
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "NUMBA_CACHE_DIR": cache}
            fresh = run_child(["--compile"], env)
        print(f"JIT compile, fresh cache: {fresh['compile_s']:.1f} s; "
              f"cached kernels load in {run_child(['--compile'])['compile_s']:.1f} s")
    ref = run_child(["20000", "300", "365", str(scale)])
    print("\nReference workload: 20,000 open leads, 300 arrivals/day over 5 segments, "
          f"365 days, {scale:,} paths, models/b2b.toml, {ref['threads']} threads")
    print(f"  wall time (compile excluded) {ref['wall_s']:8.2f} s   (target <= 10 s)")
    print(f"  peak memory (max RSS)        {ref['peak_rss_mb']:8.0f} MB  (target <= 2048 MB)")
    print(f"  leads simulated              {ref['leads']:12,d}")
    print(f"  transitions simulated        {ref['transitions']:12,d}")
    print(f"  transitions per second       {ref['transitions_per_s']:12,.0f}")
    print(f"  ns per transition per thread {ref['ns_per_transition_per_thread']:8.1f}")
    print(f"  ns per raw uniform draw      {ref['ns_per_draw']:8.2f}  (same process, 1 thread)")
    print(f"  median bookings over a year  ${ref['p50_bookings']:,.0f}")
    print("\nScaling (each row doubles one dimension of a quarter-size workload):")
    base = (20000, 300, 365, max(scale // 4, 1))
    # The last row: the base on one thread, so the threads' gain is measured, not assumed.
    rows = [("base", base, None), ("paths x2", (base[0], base[1], base[2], base[3] * 2), None),
            ("leads x2", (base[0] * 2, base[1] * 2, base[2], base[3]), None),
            ("horizon x2", (base[0], base[1], base[2] * 2, base[3]), None),
            ("1 thread", base, {**os.environ, "NUMBA_NUM_THREADS": "1"})]
    print(f"  {'':<11}{'open':>7}{'arr/day':>8}{'days':>6}{'paths':>7}{'wall s':>9}"
          f"{'peak MB':>9}{'ns/trans':>9}")
    for label, (n_open, arr, hor, paths), env in rows:
        r = run_child([str(n_open), str(arr), str(hor), str(paths)], env)
        print(f"  {label:<11}{n_open:>7}{arr:>8}{hor:>6}{paths:>7}{r['wall_s']:>9.2f}"
              f"{r['peak_rss_mb']:>9.0f}{r['ns_per_transition_per_thread']:>9.1f}")


def compile_only() -> dict:
    t0 = time.perf_counter()
    import numpy as np

    from forecast.model import load_model
    from forecast.parameters import default_parameters
    from forecast.simulate import Pipeline, simulate

    model = load_model("b2b")
    t1 = time.perf_counter()
    simulate(model, default_parameters(model), Pipeline.empty(), AS_OF, 3, 1, 0)
    return {"compile_s": time.perf_counter() - t1, "import_s": t1 - t0, "ok": bool(np.True_)}


if __name__ == "__main__":
    if len(sys.argv) == 1:
        main()
    elif sys.argv[1] == "--compile":
        print(json.dumps(compile_only()))
    else:
        n_open, arr, hor, paths = sys.argv[1:5]
        print(json.dumps(workload(int(n_open), float(arr), int(hor), int(paths))))
