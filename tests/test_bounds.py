"""The kernels never index outside their arrays.

Numba does not check indices unless asked, and an index past a path's block of an output
array lands in the next path's, which another thread may be writing: a lost update, silently,
once in a while. Until 2026-12-05 the cohort kernel counted every nurture leaver's expiry
(zero) into ``expired[day, nurture]``, a column the array does not have, that is into the next
day's first column, or past the path's last day into the next path's first. These runs compile
the kernels afresh with ``NUMBA_BOUNDSCHECK=1`` (an ``IndexError`` on any such index) in a
process of their own, on runs that reach every kernel: by cohorts with one epoch (the exit
tables) and with several (the stretches), lead by lead (a calendar), and the leads going on
alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent("""
    import sys
    from dataclasses import replace

    import numpy as np

    sys.path.insert(0, {tests!r})
    from conftest import AS_OF, mixed_pipeline

    from forecast.model import load_model
    from forecast.parameters import default_parameters
    from forecast.simulate import simulate

    model = load_model("b2b")
    params = default_parameters(model).with_arrivals_scaled(0.3)
    pipeline = mixed_pipeline(model, ages=[0, 7, 30, 90, 180, 400], amount_every=3, size=400)
    cal = params.close_calendar.copy()
    cal[:, :, 0] = 1.5
    runs = {{"one epoch": {{}}, "epochs": {{"switch_days": np.array([9, 30])}},
             "calendar": {{"params": replace(params, close_calendar=cal)}}}}
    for name, options in runs.items():
        p = options.pop("params", params)
        for horizon in (1, 2, 45):
            r = simulate(model, p, pipeline, AS_OF, horizon, 40, 3, parallel=False,
                         **{{k: v for k, v in options.items() if horizon > 30}})
            assert r.won.sum() >= 0
        print(name, int(r.won.sum()), int(r.recaptured.sum()), int(r.expired.sum()))
""")


def test_the_kernels_stay_inside_their_arrays(tmp_path):
    tests = Path(__file__).resolve().parent
    path = os.pathsep.join(filter(None, [str(tests.parent), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": path}  # this checkout's kernels, compiled afresh with the checks
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(tests=str(tests))], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.split("\n")
    assert [line.split()[0] for line in lines if line] == ["one", "epochs", "calendar"]
    for line in filter(None, lines):  # each run wins deals, recaptures and expires leads
        assert all(int(x) > 0 for x in line.split()[-3:]), line
