"""The package works after a plain (non-editable) install: bundled model and sample included."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Build the wheel and install it (no dependencies: they are this venv's) into a folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "-w", str(tmp), str(ROOT)],
        capture_output=True, text=True, check=False)
    if build.returncode != 0:
        pytest.skip(f"could not build the wheel here: {build.stderr.strip()[-300:]}")
    wheel = next(tmp.glob("*.whl"))
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet",
                    "--target", str(site), str(wheel)], check=True)
    return wheel, site


def test_wheel_ships_models_and_samples(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("forecast/_bundled/models/b2b.toml", "forecast/_bundled/models/consumer.toml",
                 "forecast/samples/b2b_history.csv.gz", "forecast/cli.py"):
        assert name in names


CHECK_INSTALL = """
import sys
import forecast
from forecast.cli import main
from forecast.eventlog import open_pipeline, read_event_log
from forecast.model import load_model
from forecast.samples import sample_history_path

site, small_log = sys.argv[1], sys.argv[2]
assert forecast.__file__.startswith(site), forecast.__file__
model = load_model()
sample = sample_history_path(model)
assert model.path.startswith(site) and str(sample).startswith(site), (model.path, sample)
log = read_event_log(sample, model)
assert len(open_pipeline(log, model, log.frame["entered_at"].max().date())) > 1000
main(["run", "--paths", "2", "--horizon", "3", "--quiet", "--history", small_log])
"""


def test_installed_forecast_run_works_from_anywhere(installed, tmp_path):
    """From an unrelated directory, the installed copy finds and reads its own bundled model
    and sample history, and `forecast run` works.

    One subprocess (each start imports numba and pandas afresh). The numba kernels run as plain
    Python here (NUMBA_DISABLE_JIT): compiling the installed copy afresh would take minutes, and
    the compiled kernels are tested everywhere else; for the same reason the run simulates a
    small history rather than the bundled sample's 6,000 open leads.
    """
    _, site = installed
    log = tmp_path / "log.csv"
    log.write_text("lead_id,stage,entered_at,amount\nA,lead,2026-09-01,\n"
                   "B,opportunity,2026-09-20,50000\nC,sql,2026-09-29,\n")
    env = {**os.environ, "PYTHONPATH": str(site), "NUMBA_DISABLE_JIT": "1"}
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", CHECK_INSTALL, str(site),
                          str(log)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Bookings forecast: model b2b" in out.stdout
    assert f"{site}/forecast/_bundled/models/b2b.toml" in out.stdout
