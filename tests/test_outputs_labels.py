"""What `forecast run` prints and writes says what it holds: the won-deals column's centre and
band for any quantile list, and byte-identical machine-readable outputs for the same seed (no
wall-clock timings in them). `sweep` and `scenario` tables likewise: a column per quantile
asked for, and a centre that is the median or, without one, the mean (never an edge
quantile)."""

from __future__ import annotations

import io
import json
import re

import pandas as pd
import pytest
from click.testing import CliRunner

from forecast import outputs
from forecast.cli import main

FAST = ["--paths", "120", "--quiet"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


# ---- the won-deals column -------------------------------------------------------------------

def _won_column(table: str) -> tuple[str, dict[str, str]]:
    """The won-deals header of a `run` table and its cell per period."""
    lines = table.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("period "))
    head = re.split(r"\s{2,}", lines[at].strip())
    col = next(i for i, h in enumerate(head) if h.startswith("won deals"))
    cells = {}
    for line in lines[at + 2:]:
        if not line.strip():
            break
        if set(line.replace(" ", "")) == {"-"}:  # the rule above the total
            continue
        row = re.split(r"\s{2,}", line.strip())
        cells[row[0]] = row[col]
    return head[col], cells


@pytest.mark.parametrize(("quantiles", "label", "shape"), [
    ("0.9,0.1", "won deals P10-P90", "{p10}-{p90}"),  # no median asked for: no centre
    ("0.025,0.975", "won deals P2.5-P97.5", "{p2.5}-{p97.5}"),
    ("0.9,0.5,0.1", "won deals P50 [P10-P90]", "{p50} [{p10}-{p90}]"),
    ("0.75,0.25,0.5,0.05", "won deals P50 [P5-P75]", "{p50} [{p5}-{p75}]"),
    ("0.9", "won deals P90", "{p90}"),  # one quantile: shown as what it is
])
def test_won_deals_column_centre_is_the_median_and_band_reads_low_high(quantiles, label,
                                                                       shape):
    table = invoke("run", *FAST, "--quantiles", quantiles)
    assert table.exit_code == 0, table.output
    csv = invoke("run", *FAST, "--quantiles", quantiles, "--format", "csv")
    bands = pd.read_csv(io.StringIO(csv.stdout))
    won = bands[bands["metric"] == "won_deals"].set_index("period")
    head, cells = _won_column(table.stdout)
    assert head == label
    assert set(cells) == set(won.index)
    for period, cell in cells.items():
        values = {c: f"{won.at[period, c]:.0f}" for c in won.columns
                  if re.fullmatch(r"p[\d.]+", c)}
        assert cell == re.sub(r"\{(p[\d.]+)\}", lambda m, v=values: v[m[1]], shape), \
            period


def test_render_table_sorts_the_quantile_columns():
    """Bands whose quantile columns come high first (not what `run` builds, but any caller):
    the table still reads low to high and the won-deals band is [low-high]."""
    rows = []
    for metric, scale in (("bookings", 1e5), ("won_deals", 1.0), ("expired_sql", 1.0),
                          ("lost_to_expiry", 1e4)):
        for period in ("2026-10", "total"):
            rows.append({"period": period, "start": "2026-10-01", "end": "2026-10-31",
                         "days": 31, "metric": metric, "mean": 10 * scale, "sd": scale,
                         "p90": 15 * scale, "p50": 10 * scale, "p10": 7 * scale})
    table = outputs.render_table(pd.DataFrame(rows), ["header"], "USD", "sql")
    head = next(line for line in table.splitlines() if line.startswith("period "))
    assert re.search(r"P10\s+P50\s+P90\s+won deals P50 \[P10-P90\]", head)
    assert _won_column(table)[1] == {"2026-10": "10 [7-15]", "total": "10 [7-15]"}


# ---- sweep and scenario tables ----------------------------------------------------------------

def _table(text: str, first: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table whose header starts with ``first``."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(first))
    rows = []
    for line in lines[at + 2:]:
        if not line.strip():
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return re.split(r"\s{2,}", lines[at].strip()), rows


SWEEP = ["sweep", "--lever", "win_rate", "--from", 0, "--to", 0.05, "--steps", 2, *FAST]


@pytest.mark.parametrize(("quantiles", "columns"), [
    ("0.9,0.1", ["P10", "P90"]),  # no median: no third column repeating P10
    ("0.5", ["P50"]),
    ("0.25,0.5,0.75,0.05", ["P5", "P25", "P50", "P75"]),
])
def test_sweep_table_has_a_column_per_quantile_asked_for(quantiles, columns):
    from forecast.outputs import money

    table = invoke(*SWEEP, "--quantiles", quantiles)
    assert table.exit_code == 0, table.output
    rows = json.loads(invoke(*SWEEP, "--quantiles", quantiles, "--format", "json").stdout)["rows"]
    head, cells = _table(table.stdout, "win_rate ")
    assert head == ["win_rate", *columns, "mean", "won deals"]
    assert len(cells) == len(rows) == 2
    for cell, row in zip(cells, rows, strict=True):
        for text, col in zip(cell[1:-1], [*columns, "mean"], strict=True):
            assert text == money(row[f"bookings_{col.lower()}"], "USD"), col


@pytest.mark.parametrize(("quantiles", "first", "shape"), [
    ("0.9,0.1", "baseline mean [P10 to P90]", "{mean} [{p10} to {p90}]"),
    ("0.1,0.5,0.9", "baseline P50 [P10 to P90]", "{p50} [{p10} to {p90}]"),
    ("0.5", "baseline P50", "{p50}"),
    ("0.25", "baseline P25", "{p25}"),  # one quantile, not the median: that one, no band
    ("0.9", "baseline P90", "{p90}"),
])
def test_scenario_table_centre_is_the_median_or_else_the_mean(quantiles, first, shape):
    from forecast.outputs import money

    args = ["scenario", "scenarios/win_rate_plus_5_points.toml", "--by", "quarter", *FAST,
            "--quantiles", quantiles]
    table = invoke(*args)
    assert table.exit_code == 0, table.output
    rows = json.loads(invoke(*args, "--format", "json").stdout)["rows"]
    head, cells = _table(table.stdout, "period ")
    assert head[1:3] == ["days", first]
    assert [c[0] for c in cells] == [r["period"] for r in rows]
    for cell, row in zip(cells, rows, strict=True):
        assert cell[1] == str(row["days"])
        for i, name in enumerate(("baseline", "scenario", "delta"), start=2):
            want = re.sub(r"\{(\w+)\}", lambda m, r=row, n=name: money(r[f"{n}_{m[1]}"], "USD"),
                          shape)
            assert cell[i] == want, (name, row["period"])


# ---- same seed, same bytes ------------------------------------------------------------------

def test_run_json_on_stdout_is_byte_identical_for_the_same_seed():
    first = invoke("run", *FAST, "--seed", 7, "--format", "json")
    second = invoke("run", *FAST, "--seed", 7, "--format", "json")
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    assert first.stdout_bytes == second.stdout_bytes
    payload = json.loads(first.stdout)
    assert payload["seed"] == 7 and payload["bands"]
    assert not [k for k in payload if "second" in k or "elapsed" in k or "time" in k]


def test_run_out_files_are_byte_identical_for_the_same_seed(tmp_path):
    for name in ("a", "b"):
        res = invoke("run", *FAST, "--seed", 7, "--out", tmp_path / name)
        assert res.exit_code == 0, res.output
    for name in ("summary.json", "bands.csv", "bands.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["seed"] == 7
    assert not [k for k in summary if "second" in k or "elapsed" in k or "time" in k]


# ---- units ----------------------------------------------------------------------------------

def test_machine_readable_outputs_say_their_currency(tmp_path):
    """CSV, Parquet and JSON outputs name what their numbers are: a `unit` column (the
    model's currency for bookings and money lost to expiry, `count` for the rest) where rows
    are metrics, a `currency` column and field where every amount is money. A file passed on
    without its run's metadata still says EUR, not an implied dollar."""
    from pathlib import Path

    model = tmp_path / "eur.toml"
    b2b = Path(__file__).resolve().parents[1] / "models" / "b2b.toml"
    model.write_text(b2b.read_text().replace('currency = "USD"', 'currency = "EUR"'))
    run = ["--model", model, *FAST, "--horizon", 40]
    frame = pd.read_csv(io.StringIO(invoke("run", *run, "--format", "csv").output))
    units = dict(zip(frame["metric"], frame["unit"], strict=False))
    assert units["bookings"] == units["lost_to_expiry"] == "EUR"
    assert units["won_deals"] == units["arrivals"] == "count"
    assert list(frame.columns[:6]) == ["period", "start", "end", "days", "metric", "unit"]
    ledger = tmp_path / "l.duckdb"
    assert invoke("run", *run, "--out", tmp_path / "out", "--ledger", ledger).exit_code == 0
    parquet = pd.read_parquet(tmp_path / "out" / "bands.parquet")
    assert set(parquet.loc[parquet["metric"] == "bookings", "unit"]) == {"EUR"}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["currency"] == "EUR" and summary["bands"][0]["unit"] == "EUR"
    bands = pd.read_csv(io.StringIO(invoke("bands", "--ledger", ledger, "--format",
                                           "csv").output))
    assert set(bands["unit"]) == {"EUR"}
    res = invoke("sweep", *run, "--lever", "win_rate", "--from", 0, "--to", 0.1, "--steps", 2,
                 "--format", "csv")
    assert set(pd.read_csv(io.StringIO(res.output))["currency"]) == {"EUR"}
    res = invoke("sweep", *run, "--lever", "win_rate", "--from", 0, "--to", 0.1, "--steps", 2,
                 "--format", "json")
    assert json.loads(res.output)["currency"] == "EUR"
    sc = tmp_path / "more.toml"
    sc.write_text('name = "more"\n[[change]]\nlever = "arrivals"\nmultiply = 1.2\n')
    payload = json.loads(invoke("scenario", sc, *run, "--format", "json").output)
    assert payload["currency"] == "EUR" and payload["rows"][0]["unit"] == "EUR"
