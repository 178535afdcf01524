"""The report page in a real headless browser: it loads with no console error, fetches nothing,
shows every chart, and a screenshot is taken.

Needs Playwright for Python (the ``test`` extra) and Debian's ``chromium`` (``make browser``
installs it with apt when missing; ``$FORECAST_CHROMIUM`` names another binary). Playwright
drives the system chromium (``executable_path``): nothing is downloaded. Without either the
test is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from forecast.cli import main

# The network is closed: no sandbox (we run as root), no GPU, nothing phoning home.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
CHARTS = ("flow", "velocity", "conversion", "days", "cohorts", "sticky", "costs", "fan")


def chromium_path() -> str | None:
    """The chromium binary: ``$FORECAST_CHROMIUM``, else ``chromium`` on the PATH."""
    named = os.environ.get("FORECAST_CHROMIUM")
    if named:
        return named if os.access(named, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="Playwright for Python is not installed (pip install -e '.[test]')")
    executable = chromium_path()
    if executable is None:
        named = os.environ.get("FORECAST_CHROMIUM")
        pytest.skip(f"$FORECAST_CHROMIUM={named} is not an executable" if named else
                    "no chromium on the PATH: run `make browser` (apt-get install chromium) "
                    "or set $FORECAST_CHROMIUM")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as pw:
        try:
            context = pw.chromium.launch_persistent_context(
                str(profile), executable_path=executable, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1100, "height": 900})
        except sync_api.Error as exc:
            pytest.skip(f"chromium at {executable} does not start: {str(exc).splitlines()[0]}")
        yield context
        context.close()


@pytest.fixture(scope="module")
def page_file(tmp_path_factory) -> Path:
    """The report of the bundled b2b sample with a spend file and a small fresh forecast."""
    from forecast.model import load_model

    base = tmp_path_factory.mktemp("browser")
    spend = base / "spend.csv"
    lines = ["segment,month,spend"]
    for i, seg in enumerate(load_model("b2b").segment_names):
        lines += [f"{seg},2026-{m:02d},{10000 + 1000 * i}" for m in range(1, 10)]
    spend.write_text("\n".join(lines) + "\n")
    out = base / "report.html"
    res = CliRunner().invoke(main, ["report", "--spend", str(spend), "--paths", "100",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_page_loads_with_every_chart_and_no_errors(browser, page_file, tmp_path):
    page = browser.new_page()
    problems, requests = [], []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning", "assert") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(page_file.as_uri(), wait_until="load")
    assert problems == []
    fetched = [u for u in requests if not u.startswith("data:") and u != page_file.as_uri()]
    assert fetched == [], "the page fetched something besides itself"
    shown = page.eval_on_selector_all(
        "img[data-chart]", "imgs => imgs.map(i => [i.dataset.chart, i.complete, "
                           "i.naturalWidth, i.getBoundingClientRect().width])")
    assert [s[0] for s in shown] == list(CHARTS)
    for name, complete, natural, width in shown:
        assert complete and natural > 300 and width > 300, f"chart {name} is not displayed"
    assert page.title().startswith("Funnel report: b2b as of 2026-09-30")
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 100_000
    keep = os.environ.get("FORECAST_REPORT_SCREENSHOT")
    if keep:  # e.g. for a CI artifact
        shutil.copyfile(shot, keep)
    page.close()
