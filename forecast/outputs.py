"""Rendering and writing results: the stdout table, CSV / Parquet / JSON files, the fan chart.

Files are written atomically as a set: everything goes to a temporary directory beside the
target first, and only when all of it is written are the files moved into place, so a failed
run leaves the output directory as it was.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.summarize import quantile_label

# ---- the table on stdout ---------------------------------------------------------------------


def money(x: float, currency: str = "USD") -> str:
    """Compact currency: 1234567 -> '$1.23M' (USD), other currencies as a suffix."""
    sign = "-" if x < 0 else ""
    x = abs(x)
    if not math.isfinite(x):  # no unit for these
        return f"{sign}${x}" if currency == "USD" else f"{sign}{x} {currency}"
    units = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"), (1.0, ""))
    for i, (div, unit) in enumerate(units):
        # the unit whose rounded figure stays below 1,000 (999,999 is "$1M", not "$1000k")
        if x >= div or div == 1.0:
            digits = f"{x / div:.3g}" if x / div < 100 and div > 1 else f"{x / div:.0f}"
            if i > 0 and float(digits) >= 1000:
                div, unit = units[i - 1]
                digits = f"{x / div:.3g}"
            text = f"{digits}{unit}"
            break
    return f"{sign}${text}" if currency == "USD" else f"{sign}{text} {currency}"


def expired_label(stage: str) -> str:
    """The table's column of expiries: "expired SQLs" for an acronym stage, else "expired from
    opportunity" (not "expired OPPORTUNITYs")."""
    return f"expired {stage.upper()}s" if len(stage) <= 3 else f"expired from {stage}"


def quantile_columns(bands: pd.DataFrame) -> list[str]:
    """The quantile columns of a bands frame ("p10", "p2.5", ...), lowest level first."""
    qcols = [c for c in bands.columns if c.startswith("p") and c[1:2].isdigit()]
    return sorted(qcols, key=lambda c: float(c[1:]))


def _won_centre_band(qcols: list[str]) -> tuple[str | None, tuple[str, str] | None]:
    """The won-deals column's centre and band among the quantile columns (sorted): the centre
    is the median (P50) when it was asked for, or the one quantile when only one was, else
    none (the top or bottom quantile is no centre); the band runs from the lowest quantile to
    the highest (none with a single quantile)."""
    band = (qcols[0], qcols[-1]) if len(qcols) >= 2 else None
    if "p50" in qcols:
        return "p50", band
    return (qcols[0] if len(qcols) == 1 else None), band


def won_deals_label(qcols: list[str]) -> str:
    """The won-deals column's header: "won deals P50 [P10-P90]", "won deals P10-P90" (no
    median asked for), "won deals P90" (one quantile), "won deals mean" (none)."""
    mid, band = _won_centre_band(qcols)
    if mid is None and band is None:
        return "won deals mean"
    text = "won deals"
    if mid is not None:
        text += f" {mid.upper()}"
    if band is not None:
        lo, hi = band[0].upper(), band[1].upper()
        text += f" [{lo}-{hi}]" if mid is not None else f" {lo}-{hi}"
    return text


def won_deals_text(row: pd.Series, qcols: list[str]) -> str:
    """One period's won-deals cell, in the shape of :func:`won_deals_label`."""
    mid, band = _won_centre_band(qcols)
    if mid is None and band is None:
        return f"{row['mean']:.1f}"
    parts = [] if mid is None else [f"{row[mid]:.0f}"]
    if band is not None:
        inner = f"{row[band[0]]:.0f}-{row[band[1]]:.0f}"
        parts.append(f"[{inner}]" if mid is not None else inner)
    return " ".join(parts)


def render_table(bands: pd.DataFrame, header: list[str], currency: str,
                 qualified_stage: str) -> str:
    """The human table: bookings bands per period, then won deals, expired SQLs, lost value."""
    qcols = quantile_columns(bands)
    by = {m: g.set_index("period") for m, g in bands.groupby("metric", sort=False)}
    periods = list(by["bookings"].index)
    cols = ["period", "days", "bookings mean", *(f"{c.upper()}" for c in qcols),
            won_deals_label(qcols), expired_label(qualified_stage), "lost to expiry"]
    rows = []
    for p in periods:
        b = by["bookings"].loc[p]
        won_txt = won_deals_text(by["won_deals"].loc[p], qcols)
        exp = by[f"expired_{qualified_stage}"].loc[p]["mean"]
        lost = by["lost_to_expiry"].loc[p]["mean"]
        rows.append([p, str(int(b["days"])), money(b["mean"], currency),
                     *(money(b[c], currency) for c in qcols), won_txt, f"{exp:.1f}",
                     money(lost, currency)])
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows, strict=True)]
    lines = [*header, ""]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    lines.append(fmt.format(*cols))
    lines.append("  ".join("-" * w for w in widths))
    for i, r in enumerate(rows):
        if i == len(rows) - 1:
            lines.append("  ".join("-" * w for w in widths))
        lines.append(fmt.format(*r))
    lines.append("")
    lines.append("bookings: won deal value per period; expired / lost to expiry: means over paths "
                 "(lost to expiry = expected value of leads that went cold and did not come back "
                 "within the horizon).")
    return "\n".join(lines)


#: The metrics that are amounts of money (in the model's currency); the others are counts.
MONEY_METRICS = ("bookings", "lost_to_expiry")


def with_units(frame: pd.DataFrame, currency: str) -> pd.DataFrame:
    """``frame`` with a ``unit`` column after its ``metric`` column: the currency for amounts
    of money (:data:`MONEY_METRICS`), ``count`` for the rest (deals, leads), so that a file
    read without its run's metadata still says what its numbers are."""
    out = frame.copy()
    unit = np.where(out["metric"].isin(MONEY_METRICS), currency, "count")
    out.insert(out.columns.get_loc("metric") + 1, "unit", unit)
    return out


def wide_bands(bands: pd.DataFrame, currency: str) -> pd.DataFrame:
    """Bands as they are written to CSV / Parquet: one row per period and metric, with its
    unit (:func:`with_units`)."""
    out = with_units(bands, currency)
    out["start"] = pd.to_datetime(out["start"]).dt.date.astype(str)
    out["end"] = pd.to_datetime(out["end"]).dt.date.astype(str)
    return out


def summary_json(meta: dict, bands: pd.DataFrame) -> str:
    """Run metadata plus the bands, as JSON (NaN written as null)."""
    records = wide_bands(bands, meta["currency"]).to_dict(orient="records")

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, np.integer):
            return int(v)
        if isinstance(v, np.floating):
            return float(v)
        return v

    payload = {**meta, "bands": [{k: clean(v) for k, v in r.items()} for r in records]}
    return json.dumps(payload, indent=2, default=str)


# ---- the fan chart ---------------------------------------------------------------------------


def fan_chart(path: Path, dates: pd.DatetimeIndex, cumulative: np.ndarray,
              period_bands: pd.DataFrame, quantiles: tuple[float, ...], title: str,
              currency: str) -> None:
    """Cumulative bookings fan (quantile bands over days) above per-period bookings bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _: money(v, currency))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 7.5), height_ratios=[3, 2],
                                   constrained_layout=True)
    qs = sorted(set(quantiles) | {0.5})
    levels = np.quantile(cumulative, qs, axis=0)
    pairs = [(i, len(qs) - 1 - i) for i in range(len(qs) // 2)]
    for n, (i, j) in enumerate(pairs):
        ax1.fill_between(dates, levels[i], levels[j], color="tab:blue",
                         alpha=0.18 + 0.17 * n, lw=0,
                         label=f"{quantile_label(qs[i]).upper()}-{quantile_label(qs[j]).upper()}")
    ax1.plot(dates, levels[qs.index(0.5)], color="tab:blue", lw=2, label="P50")
    ax1.plot(dates, cumulative.mean(axis=0), color="black", lw=1, ls="--", label="mean")
    ax1.set_title(title, loc="left", fontsize=11)
    ax1.set_ylabel(f"cumulative bookings ({currency})")
    ax1.yaxis.set_major_formatter(fmt)
    ax1.grid(alpha=0.3)
    ax1.legend(loc="upper left", frameon=False)
    ax1.set_xlim(dates[0], dates[-1])

    b = period_bands[(period_bands["metric"] == "bookings")
                     & (period_bands["period"] != "total")]
    x = np.arange(len(b))
    # The per-period band is what the bands hold (the quantiles asked for), not the fan's grid.
    qcols = quantile_columns(b)
    has_median = "p50" in qcols
    ax2.bar(x, b["mean"], color="tab:blue", alpha=0.35, label="mean")
    if len(qcols) >= 2:
        ax2.vlines(x, b[qcols[0]], b[qcols[-1]], color="tab:blue",
                   label=f"{qcols[0].upper()}-{qcols[-1].upper()}")
    if has_median:  # (without one, the bar is the centre)
        ax2.plot(x, b["p50"], "o", color="tab:blue", label="P50")
    ax2.set_xticks(x, [f"{p}\n({d} d)" for p, d in zip(b["period"], b["days"], strict=True)])
    ax2.set_ylabel(f"bookings per period ({currency})")
    ax2.yaxis.set_major_formatter(fmt)
    ax2.grid(alpha=0.3, axis="y")
    ax2.legend(loc="upper left", frameon=False)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- atomic output directory -----------------------------------------------------------------


def write_outputs(out_dir: Path, writers: dict[str, Callable[[Path], None]]) -> list[Path]:
    """Write every ``{file name: writer(path)}`` into ``out_dir``, all or nothing.

    The writers run in a temporary directory beside ``out_dir``; if any fails, nothing in
    ``out_dir`` changes. Then each file is moved into place with an atomic rename.
    """
    out_dir = Path(out_dir)
    parent = out_dir.resolve().parent
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir}: exists and is not a directory")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=parent))
    try:
        for name, writer in writers.items():
            writer(tmp / name)
        out_dir.mkdir(exist_ok=True)
        written = []
        for name in writers:
            os.replace(tmp / name, out_dir / name)
            written.append(out_dir / name)
        return written
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
