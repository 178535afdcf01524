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
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp), str(ROOT)],
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


def test_installed_forecast_run_works_from_anywhere(installed, tmp_path):
    """`forecast run` with no files of one's own, from an unrelated directory.

    The numba kernels run as plain Python here (NUMBA_DISABLE_JIT): compiling the installed
    copy afresh would take minutes, and the compiled kernels are tested everywhere else.
    """
    _, site = installed
    env = {**os.environ, "PYTHONPATH": str(site), "NUMBA_DISABLE_JIT": "1"}
    code = ("import forecast, sys; assert forecast.__file__.startswith(sys.argv[1]), "
            "forecast.__file__; from forecast.cli import main; "
            "main(['run', '--paths', '1', '--horizon', '2', '--quiet'])")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code, str(site)], cwd=tmp_path,
                         env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Bookings forecast: model b2b" in out.stdout
    assert str(site) in out.stdout  # the model and the sample were found inside the install
