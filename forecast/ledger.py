"""The run ledger: every recorded forecast and its bands, in an embedded DuckDB file.

A ledger is one DuckDB database file (default ``forecasts.duckdb`` in the working directory;
``--ledger PATH`` or the ``FORECAST_LEDGER`` environment variable name another). It is created
on first use and migrated forward when an older schema is found (:func:`migrate`).

Schema (version 2)
------------------
``schema_version(version, applied_at, description)``
    One row per migration applied.
``runs``
    One row per recorded run: ``run_id`` (from a sequence), ``recorded_at`` (UTC), ``as_of``,
    the model's name, path and SHA-256, the posterior's path and SHA-256 (NULL without one),
    the history's path and SHA-256, ``scenario`` (NULL for a forecast; a what-if run of
    ``forecast scenario`` has its scenario's name, or ``baseline``), ``seed``, ``paths``,
    ``horizon_days``, ``package_version``, ``currency`` and ``quantile_grid``, the quantile
    levels of the run's bands (:data:`GRID`: 0.01, 0.02, ..., 0.99).
``bands``
    Long form, one row per run, grain (``month``, ``quarter``, ``year``), ``cumulative``,
    period and metric: ``period`` label ('2027-01', '2027Q1', '2027'), ``period_start`` and
    ``period_end`` (the days of the horizon inside the period: the first and last periods may
    be partial), ``days``, ``metric``, then ``mean``, ``sd`` (over paths, ddof 1), ``min``,
    ``max`` and ``quantiles``, a ``DOUBLE[]`` list aligned with the run's ``quantile_grid``.
    Flows (bookings, won deals, expiries, ...) are stored twice: within the period
    (``cumulative = false``) and from the as-of date to the period's end (``cumulative =
    true``). Occupancy (``in_<state>``) is a level at the period's end, stored once with
    ``cumulative = false``.

``actuals`` (version 2)
    What actually closed, recorded by ``forecast actuals`` from a history: one row per
    ``model_name``, ``grain`` (``day``, ``month``, ``quarter``, ``year``), ``period`` and
    ``metric`` (``bookings``, ``won_deals``): ``period_start`` and ``period_end`` (the calendar
    period's days), ``value``, ``complete`` (the history covers the whole period), the
    history's path, SHA-256, first and last dates, and ``recorded_at``. Day rows (zeros
    included) say which days are known, so that an actual can be summed over any span, e.g. a
    run's partial first month or the days from its as-of date. Recording a history replaces
    the rows of the periods it covers, except that a complete period is never replaced by an
    incomplete one (a history that starts later, say).

The quantiles are a list column rather than one row per quantile: a band is always read whole
(interpolating a quantile or the CDF needs its neighbours), it is 99 times fewer rows, and in
SQL the list index is the percentile: ``quantiles[50]`` is the P50, ``quantiles[90]`` the P90.

Writing
-------
A run is recorded in one transaction: the ``runs`` row and all its bands, or nothing. DuckDB
lets one process at a time open a file for writing (readers from other processes are locked
out too while it does), so :func:`connect` retries a lock conflict with exponential backoff
until a timeout (default 30 s), then raises :class:`LedgerLockedError` naming the file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forecast import __version__
from forecast.outputs import MONEY_METRICS  # amounts, not counts (here and re-exported)

DEFAULT_FILE = "forecasts.duckdb"
ENV_VAR = "FORECAST_LEDGER"
DEFAULT_TIMEOUT = 30.0
GRAINS = ("month", "quarter", "year")
#: The fixed quantile grid of the recorded bands: 0.01, 0.02, ..., 0.99.
GRID = tuple(round(k / 100, 2) for k in range(1, 100))


class LedgerError(Exception):
    """A ledger that cannot be opened, read or written; the message names the file."""


class LedgerLockedError(LedgerError):
    """Another process held the ledger for longer than the timeout."""


# ---- schema and migrations -------------------------------------------------------------------

_V1 = (
    """CREATE TABLE schema_version (
        version INTEGER PRIMARY KEY,
        applied_at TIMESTAMP NOT NULL,
        description VARCHAR NOT NULL)""",
    "CREATE SEQUENCE run_id_seq START 1",
    """CREATE TABLE runs (
        run_id BIGINT PRIMARY KEY DEFAULT nextval('run_id_seq'),
        recorded_at TIMESTAMP NOT NULL,
        as_of DATE NOT NULL,
        model_name VARCHAR NOT NULL,
        model_path VARCHAR NOT NULL,
        model_sha256 VARCHAR NOT NULL,
        posterior_path VARCHAR,
        posterior_sha256 VARCHAR,
        history_path VARCHAR NOT NULL,
        history_sha256 VARCHAR NOT NULL,
        scenario VARCHAR,
        seed UBIGINT NOT NULL,
        paths BIGINT NOT NULL,
        horizon_days INTEGER NOT NULL,
        package_version VARCHAR NOT NULL,
        currency VARCHAR NOT NULL,
        quantile_grid DOUBLE[] NOT NULL)""",
    """CREATE TABLE bands (
        run_id BIGINT NOT NULL REFERENCES runs (run_id),
        grain VARCHAR NOT NULL CHECK (grain IN ('month', 'quarter', 'year')),
        cumulative BOOLEAN NOT NULL,
        period VARCHAR NOT NULL,
        period_start DATE NOT NULL,
        period_end DATE NOT NULL,
        days INTEGER NOT NULL,
        metric VARCHAR NOT NULL,
        mean DOUBLE NOT NULL,
        sd DOUBLE NOT NULL,
        min DOUBLE NOT NULL,
        max DOUBLE NOT NULL,
        quantiles DOUBLE[] NOT NULL,
        PRIMARY KEY (run_id, grain, cumulative, period, metric))""",
)

_V2 = (
    """CREATE TABLE actuals (
        model_name VARCHAR NOT NULL,
        grain VARCHAR NOT NULL CHECK (grain IN ('day', 'month', 'quarter', 'year')),
        period VARCHAR NOT NULL,
        period_start DATE NOT NULL,
        period_end DATE NOT NULL,
        metric VARCHAR NOT NULL,
        value DOUBLE NOT NULL,
        complete BOOLEAN NOT NULL,
        history_path VARCHAR NOT NULL,
        history_sha256 VARCHAR NOT NULL,
        history_first DATE NOT NULL,
        history_last DATE NOT NULL,
        recorded_at TIMESTAMP NOT NULL,
        PRIMARY KEY (model_name, grain, period, metric))""",
)

Step = str | Callable[..., None]


@dataclass(frozen=True)
class Migration:
    """One schema version: the SQL statements (or callables taking the connection) that bring
    the schema from the previous version to ``version``."""

    version: int
    description: str
    steps: tuple[Step, ...]


#: Applied in order; append a new :class:`Migration` to change the schema, never edit one.
MIGRATIONS: list[Migration] = [
    Migration(1, "runs and bands", _V1),
    Migration(2, "actuals", _V2),
]


def ledger_path(path: str | os.PathLike | None = None) -> Path:
    """The ledger file: ``path`` if given, else ``$FORECAST_LEDGER``, else
    ``./forecasts.duckdb``."""
    if path is not None and str(path) != "":
        return Path(path)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else Path.cwd() / DEFAULT_FILE


def connect(path: str | os.PathLike, *, read_only: bool = False,
            timeout: float = DEFAULT_TIMEOUT):
    """Open the ledger, waiting while another process holds its lock.

    Parameters
    ----------
    path : path-like
        The DuckDB file; created (empty) when opened for writing and absent.
    read_only : bool
        Open for reading only; the file must exist.
    timeout : float
        Seconds to keep retrying a lock conflict (exponential backoff from 50 ms to 1 s, with
        jitter so that waiting processes do not retry in step).

    Returns
    -------
    duckdb.DuckDBPyConnection

    Raises
    ------
    LedgerLockedError
        The lock was still held after ``timeout`` seconds.
    LedgerError
        The file is missing (``read_only``) or is not a DuckDB database.
    """
    import duckdb

    path = Path(path)
    if read_only and not path.exists():
        raise LedgerError(f"{path}: no ledger there (record a run with `forecast run --ledger`)")
    if not read_only and not path.parent.is_dir():
        raise LedgerError(f"{path}: directory {path.parent} does not exist")
    check_file(path, writable=not read_only)
    if path.is_file() and path.stat().st_size == 0:
        # An empty file (`touch forecasts.duckdb`, an aborted copy) holds no ledger, and
        # DuckDB refuses to open it: nothing to read; for writing, the ledger is created in
        # its place.
        if read_only:
            raise LedgerError(f"{path}: an empty file, no ledger yet (record a run with "
                              "`forecast run --ledger`)")
        # (another writer may have made the ledger since: only a file still empty goes)
        if path.stat().st_size == 0:
            path.unlink(missing_ok=True)
    backoff = _Backoff(timeout)
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise LedgerError(f"{path}: cannot open the ledger ({db_error(exc)})") \
                    from None
            if not backoff.wait():
                raise LedgerLockedError(
                    f"{path}: the ledger is locked by another forecast process; waited "
                    f"{timeout:g} s (set a longer --ledger-timeout, or retry later)") from None
        except duckdb.Error as exc:
            raise LedgerError(f"{path}: cannot open the ledger ({db_error(exc)})") from None


def db_error(exc: BaseException) -> str:
    """A DuckDB error in one line: a fatal error's text spans lines (the database invalidated,
    the rollback that failed, the original error): the innermost original error is kept. A
    checksum that does not match says the file is damaged."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    for line in lines:
        if line.lower().startswith("original error:"):
            text = line.split(":", 1)[1].strip().strip('"')
    if "Corrupt database file" in text:
        text += "; the file is damaged: restore it from a backup"
    return text


class _Backoff:
    """Waits between retries of a locked ledger: exponential from 50 ms to 1 s, with jitter so
    that waiting processes do not retry in step, until ``timeout`` seconds have passed."""

    def __init__(self, timeout: float):
        self.deadline = time.monotonic() + timeout
        self.delay = 0.05
        self.jitter = random.Random()

    def wait(self) -> bool:
        """Sleep before the next try; ``False`` (at once) when the time is up."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(self.delay * self.jitter.uniform(0.5, 1.5), left))
        self.delay = min(self.delay * 2, 1.0)
        return True


def check_file(path: str | os.PathLike, *, writable: bool = True) -> None:
    """Raise :class:`LedgerError` unless ``path`` is absent, empty or a DuckDB file (by its
    magic bytes; no lock taken): what a command checks before its work, so that a ``--ledger``
    that names some other file fails at once, not after a fit and a simulation. With
    ``writable`` (the default: the commands that record), the file, or the directory it is to
    be created in, must be writable too."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise LedgerError(f"{path}: not a ledger (it is a directory)")
    if writable:
        if path.exists() and not os.access(path, os.W_OK):
            raise LedgerError(f"{path}: the ledger is read-only (no permission to write it, "
                              "or a read-only file system); nothing can be recorded in it")
        if not path.exists() and path.parent.is_dir() \
                and not os.access(path.parent, os.W_OK | os.X_OK):
            raise LedgerError(f"{path}: directory {path.parent} is not writable (or on a "
                              "read-only file system): no ledger can be created there")
    if path.is_file() and path.stat().st_size > 0:
        try:
            with open(path, "rb") as fh:
                head = fh.read(12)
        except OSError as exc:
            raise LedgerError(f"{path}: cannot read the ledger ({exc.strerror})") from None
        if head[8:12] != b"DUCK":  # DuckDB's magic bytes, after an 8-byte checksum
            raise LedgerError(f"{path}: not a ledger (a ledger is a DuckDB database file, "
                              "made by `forecast run --ledger`)")


def schema_version(con) -> int:
    """The schema version of an open ledger: 0 for an empty database.

    Raises
    ------
    LedgerError
        The database has tables but no ``schema_version``: it is not a forecast ledger.
    """
    tables = {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
    ).fetchall()}
    if "schema_version" not in tables:
        if tables:
            raise LedgerError(f"{_name(con)}: not a forecast ledger (tables "
                              f"{', '.join(sorted(tables))} but no schema_version)")
        return 0
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(con, migrations: Iterable[Migration] | None = None) -> int:
    """Bring an open read-write ledger to the latest schema; return the version it is at.

    The pending migrations (those above the file's version) run in order inside one
    transaction, each recorded in ``schema_version``: a failed step leaves the file as it was.

    Raises
    ------
    LedgerError
        The file's schema is newer than this package knows, or a migration step failed.
    """
    migrations = list(MIGRATIONS if migrations is None else migrations)
    latest = migrations[-1].version
    current = schema_version(con)
    if current > latest:
        raise LedgerError(f"{_name(con)}: ledger schema version {current} is newer than this "
                          f"forecast ({__version__}) reads (up to {latest}); upgrade "
                          "pipeline-forecast")
    pending = [m for m in migrations if m.version > current]
    if not pending:
        return current
    con.execute("BEGIN TRANSACTION")
    try:
        for m in pending:
            for step in m.steps:
                if callable(step):
                    step(con)
                else:
                    con.execute(step)
            con.execute("INSERT INTO schema_version VALUES (?, ?, ?)",
                        [m.version, _utcnow(), m.description])
        con.execute("COMMIT")
    except Exception as exc:
        _rollback(con)
        raise LedgerError(f"{_name(con)}: migrating the ledger from schema version {current} "
                          f"failed ({exc}); the file is unchanged") from exc
    return latest


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _name(con) -> str:
    row = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = "
                      "current_database()").fetchone()
    return str(row[0]) if row and row[0] else "ledger"


# ---- what a run records ----------------------------------------------------------------------


@dataclass(frozen=True)
class RunRecord:
    """The inputs and settings of a run, as stored in ``runs`` (paths made absolute, so that
    the ledger reads the same from any directory)."""

    as_of: dt.date
    model_name: str
    model_path: str
    model_sha256: str
    history_path: str
    history_sha256: str
    seed: int
    paths: int
    horizon_days: int
    currency: str
    posterior_path: str | None = None
    posterior_sha256: str | None = None
    scenario: str | None = None
    package_version: str = __version__


def occupancy_days(as_of: dt.date, horizon: int, also: Iterable[int] = ()) -> np.ndarray:
    """Day indices at which the simulation must record occupancy for the ledger's grains.

    The ends of every month, quarter and year inside the horizon (and the horizon's last day),
    plus ``also`` (e.g. the ends of the periods the run prints).
    """
    from forecast.summarize import periods

    days = set(int(d) for d in also)
    for grain in GRAINS:
        days.update(int(d) for d in periods(as_of, horizon, grain).last_day)
    return np.array(sorted(days), dtype=np.int64)


def ledger_bands(result, grid: tuple[float, ...] = GRID) -> pd.DataFrame:
    """The bands a run records, computed from its per-path results.

    Parameters
    ----------
    result : forecast.simulate.SimulationResult
        With occupancy recorded at least on :func:`occupancy_days`.
    grid : tuple of float
        Quantile levels.

    Returns
    -------
    pandas.DataFrame
        One row per grain, cumulative, period and metric (the ``bands`` table's columns but
        ``run_id``); ``quantiles`` holds one float array per row, aligned with ``grid``.
        Periods are those of :func:`forecast.summarize.bands` without its ``total`` row (the
        last cumulative period is the total).
    """
    from forecast.summarize import bands, quantile_label

    levels = (0.0, *grid, 1.0)
    cols = [quantile_label(q) for q in levels]
    frames = []
    for grain in GRAINS:
        for cumulative in (False, True):
            b = bands(result, by=grain, quantiles=levels, cumulative=cumulative)
            b = b[b["period"] != "total"]
            if cumulative:
                b = b[~b["metric"].str.startswith("in_")]
            q = b[cols].to_numpy(dtype=float)
            frames.append(pd.DataFrame({
                "grain": grain, "cumulative": cumulative, "period": b["period"].to_numpy(),
                "period_start": b["start"].to_numpy(), "period_end": b["end"].to_numpy(),
                "days": b["days"].to_numpy(dtype=np.int64),
                "metric": b["metric"].to_numpy(), "mean": b["mean"].to_numpy(dtype=float),
                "sd": b["sd"].to_numpy(dtype=float), "min": q[:, 0], "max": q[:, -1],
                "quantiles": list(q[:, 1:-1]),
            }))
    return pd.concat(frames, ignore_index=True)


def record(path: str | os.PathLike, run: RunRecord, bands: pd.DataFrame, *,
           timeout: float = DEFAULT_TIMEOUT, grid: tuple[float, ...] = GRID,
           before_commit: Callable[[int], None] | None = None) -> int:
    """Record a run and its bands in one transaction; return its ``run_id``.

    Creates and migrates the ledger as needed. Nothing is recorded if any part fails.
    ``before_commit(run_id)``, if given, runs inside the transaction after the inserts (the
    run's other outputs, written all or nothing): if it raises, nothing is recorded and its
    exception propagates as it is. A lock conflict that shows only inside the transaction (at
    COMMIT, on the write-ahead log of a writer that has just closed) rolls it back and tries
    the whole transaction again, ``before_commit`` included, until ``timeout``.

    Parameters
    ----------
    path : path-like
        The ledger file.
    run : RunRecord
        The run's inputs and settings.
    bands : pandas.DataFrame
        From :func:`ledger_bands` with the same ``grid``.
    timeout : float
        Seconds to wait for another process's lock (see :func:`connect`).
    grid : tuple of float
        The quantile levels of ``bands['quantiles']``.

    Raises
    ------
    LedgerError
        The ledger could not be opened, migrated or written; it is unchanged.
    """
    path = Path(path)
    return _retrying(path, timeout, lambda: _record_once(path, run, bands, timeout, grid,
                                                         before_commit))


def _record_once(path: Path, run: RunRecord, bands: pd.DataFrame, timeout: float,
                 grid: tuple[float, ...], before_commit) -> int:
    con = connect(path, timeout=timeout)
    try:
        migrate(con)
        con.execute("BEGIN TRANSACTION")
        try:
            run_id = _insert_run(con, run, grid)
            _insert_bands(con, run_id, bands, len(grid))
        except BaseException:
            _rollback(con)
            raise
        if before_commit is not None:
            try:
                before_commit(run_id)
            except BaseException as exc:
                _rollback(con)
                raise _Passed(exc) from exc
        try:
            con.execute("COMMIT")
        except BaseException:
            _rollback(con)
            raise
    except _Passed as wrapped:
        raise wrapped.__cause__ from None
    except LedgerError:
        raise
    except Exception as exc:
        raise LedgerError(f"{path}: could not record the run ({db_error(exc)}); nothing was "
                          "recorded") from exc
    finally:
        con.close()
    return run_id


class _Passed(Exception):
    """Carries ``before_commit``'s own exception through :func:`record`'s handlers."""


def _rollback(con) -> None:
    """Roll back, unless a failed COMMIT has already ended the transaction (DuckDB then
    refuses a ROLLBACK, and that error would hide the COMMIT's own)."""
    try:
        con.execute("ROLLBACK")
    except Exception as exc:
        if "no transaction is active" not in str(exc):
            raise


def _lock_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` or an exception it came from is DuckDB's lock conflict on a file of
    the ledger (the write-ahead log, at COMMIT: a process that has just closed the ledger may
    hold it a moment longer)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc)
        if "Conflicting lock" in text or "Could not set lock" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _retrying(path: Path, timeout: float, attempt):
    """``attempt()``, tried again (each time a whole transaction, rolled back on failure)
    while it fails on a lock conflict that :func:`connect` could not see, until ``timeout``
    seconds have passed, with the backoff of :func:`connect`."""
    backoff = _Backoff(timeout)
    while True:
        try:
            return attempt()
        except LedgerLockedError:
            raise
        except LedgerError as exc:
            if not (_lock_conflict(exc) and backoff.wait()):
                raise


def _insert_run(con, run: RunRecord, grid: tuple[float, ...]) -> int:
    fields = asdict(run)
    for key in ("history_path", "posterior_path", "model_path"):  # readable from anywhere
        if fields[key]:
            fields[key] = os.path.abspath(fields[key])
    fields["recorded_at"] = _utcnow()
    fields["quantile_grid"] = list(grid)
    names = list(fields)
    row = con.execute(
        f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
        "RETURNING run_id", [fields[n] for n in names]).fetchone()
    return int(row[0])


def _insert_bands(con, run_id: int, bands: pd.DataFrame, n_grid: int) -> None:
    import pyarrow as pa

    q = np.stack(bands["quantiles"].to_numpy()) if len(bands) else np.zeros((0, n_grid))
    if q.shape[1] != n_grid:
        raise ValueError(f"bands carry {q.shape[1]} quantiles, the grid has {n_grid}")
    table = pa.table({
        "grain": pa.array(bands["grain"], pa.string()),
        "cumulative": pa.array(bands["cumulative"], pa.bool_()),
        "period": pa.array(bands["period"], pa.string()),
        "period_start": pa.array(pd.to_datetime(bands["period_start"]).dt.date, pa.date32()),
        "period_end": pa.array(pd.to_datetime(bands["period_end"]).dt.date, pa.date32()),
        "days": pa.array(bands["days"], pa.int32()),
        "metric": pa.array(bands["metric"], pa.string()),
        "mean": pa.array(bands["mean"], pa.float64()),
        "sd": pa.array(bands["sd"], pa.float64()),
        "min": pa.array(bands["min"], pa.float64()),
        "max": pa.array(bands["max"], pa.float64()),
        "quantiles": pa.array(list(q), pa.list_(pa.float64())),
    })
    con.register("_new_bands", table)
    try:
        con.execute(
            "INSERT INTO bands SELECT ?, grain, cumulative, period, period_start, period_end, "
            "days, metric, mean, sd, min, max, quantiles FROM _new_bands", [run_id])
    finally:
        con.unregister("_new_bands")


# ---- reading ---------------------------------------------------------------------------------


def open_for_reading(path: str | os.PathLike, *, timeout: float = DEFAULT_TIMEOUT):
    """Open an existing ledger read-only. An older schema is read as it is when the later
    versions only add tables (:func:`_read_older`): reading must not change the file, or an
    older forecast that still writes to it (a nightly job not yet upgraded) would find a
    schema newer than it knows and stop. Otherwise it is migrated first, when writable."""
    path = Path(path)
    con = connect(path, read_only=True, timeout=timeout)
    try:
        version = schema_version(con)
    except Exception:
        con.close()
        raise
    if version < MIGRATIONS[-1].version:
        con.close()
        if version > 0:
            try:
                return _read_older(path, version, timeout)
            except LedgerError as cannot:
                # A later version changes a table: migrate, if we may write (else say so).
                try:
                    check_file(path, writable=True)
                except LedgerError:
                    raise cannot from None
        con = connect(path, timeout=timeout)
        try:
            migrate(con)
        finally:
            con.close()
        con = connect(path, read_only=True, timeout=timeout)
    elif version > MIGRATIONS[-1].version:
        con.close()
        raise LedgerError(f"{path}: ledger schema version {version} is newer than this "
                          f"forecast ({__version__}) reads; upgrade pipeline-forecast")
    return con


def _read_older(path: Path, version: int, timeout: float):
    """An older ledger opened read-only, without migrating it: the tables that later versions
    add are created empty as temporary tables of the connection (the file is not touched).

    Raises
    ------
    LedgerError
        A later version changes the schema in a way that cannot be read so.
    """
    import re

    if version == 0:
        raise LedgerError(f"{path}: no runs recorded yet (an empty database)")
    con = connect(path, read_only=True, timeout=timeout)
    try:
        for m in MIGRATIONS:
            if m.version <= version:
                continue
            for step in m.steps:
                if callable(step) or not re.match(r"\s*CREATE TABLE\b", step):
                    raise LedgerError(
                        f"{path}: ledger schema version {version} is older than this forecast "
                        f"({__version__}) reads, and the file cannot be written to migrate it "
                        "(read-only); open it once with write access, or read it with the "
                        "version that wrote it")
                con.execute(re.sub(r"^\s*CREATE TABLE", "CREATE TEMP TABLE", step))
    except BaseException:
        con.close()
        raise
    return con


@contextlib.contextmanager
def reading(path: str | os.PathLike, *, timeout: float = DEFAULT_TIMEOUT) -> Iterator:
    """``with reading(path) as con:`` the ledger opened by :func:`open_for_reading`, closed on
    leaving; a DuckDB error while opening or reading it (a damaged file: a block whose checksum
    does not match) is raised as a :class:`LedgerError` naming the file, in one line."""
    import duckdb

    path = Path(path)
    try:
        con = open_for_reading(path, timeout=timeout)
    except duckdb.Error as exc:
        raise LedgerError(f"{path}: cannot read the ledger ({db_error(exc)})") from None
    try:
        yield con
    except duckdb.Error as exc:
        raise LedgerError(f"{path}: cannot read the ledger ({db_error(exc)})") from None
    finally:
        with contextlib.suppress(duckdb.Error):
            con.close()


def list_runs(path: str | os.PathLike, *, timeout: float = DEFAULT_TIMEOUT) -> pd.DataFrame:
    """All recorded runs, oldest first (without their bands)."""
    with reading(path, timeout=timeout) as con:
        return con.execute("SELECT * FROM runs ORDER BY run_id").df()


def find_run(con, run: str | int = "latest", as_of: dt.date | None = None,
             model: str | None = None) -> dict:
    """The ``runs`` row of ``run`` ('latest' or an id), or the latest run as of ``as_of``;
    with ``model``, of that model only (a ledger may hold several models' runs).

    'latest' (with or without ``as_of``) skips what-if runs (``scenario`` set); an id finds
    any run.

    Raises
    ------
    LedgerError
        No runs, no such run id, or no run with that as-of date (or of that model).
    """
    if model is not None:
        known = [r[0] for r in con.execute(
            "SELECT DISTINCT model_name FROM runs ORDER BY model_name").fetchall()]
        if known and model not in known:
            raise LedgerError(f"no run of model {model!r} recorded (models: "
                              f"{', '.join(known)})")
    where, args = ([], []) if model is None else (["model_name = ?"], [model])
    if str(run) == "latest":
        where.append("scenario IS NULL")  # the latest forecast, not a what-if run
    else:
        try:
            where.append("run_id = ?")
            args.append(int(run))
        except ValueError:
            raise LedgerError(f"--run takes 'latest' or a run id, got {run!r}") from None
    if as_of is not None:
        where.append("as_of = ?")
        args.append(as_of)
    sql = "SELECT * FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "") \
        + " ORDER BY run_id DESC LIMIT 1"
    cur = con.execute(sql, args)
    row = cur.fetchone()
    if row is None:
        if con.execute("SELECT count(*) FROM runs").fetchone()[0] == 0:
            raise LedgerError("no runs recorded yet")
        of = "" if model is None else f" of model {model}"
        if str(run) != "latest":
            raise LedgerError(f"no run{of} with id {run}"
                              + (f" and as-of date {as_of}" if as_of else ""))
        if as_of is None:
            raise LedgerError(f"no forecast{of} recorded yet, only what-if runs of `forecast "
                              "scenario` (pick one with --run ID)")
        raise LedgerError(f"no forecast{of} with as-of date {as_of}")
    return dict(zip([d[0] for d in cur.description], row, strict=True))


def read_bands(con, run_id: int, grain: str = "month", cumulative: bool | None = None,
               metric: str | None = None) -> pd.DataFrame:
    """A run's stored bands for one grain (and optionally one metric), in period order.

    ``cumulative=None`` returns both forms. ``quantiles`` comes back as one float array per row.
    """
    if grain not in GRAINS:
        raise LedgerError(f"--by must be one of {', '.join(GRAINS)}, got {grain!r}")
    where, args = ["run_id = ?", "grain = ?"], [run_id, grain]
    if cumulative is not None:
        where.append("cumulative = ?")
        args.append(cumulative)
    if metric is not None:
        where.append("metric = ?")
        args.append(metric)
    frame = con.execute(
        "SELECT * FROM bands WHERE " + " AND ".join(where)
        + " ORDER BY cumulative, metric, period_start", args).df()
    frame["quantiles"] = [np.asarray(q, dtype=float) for q in frame["quantiles"]]
    frame["period_start"] = pd.to_datetime(frame["period_start"]).dt.date
    frame["period_end"] = pd.to_datetime(frame["period_end"]).dt.date
    return frame


# ---- actuals ---------------------------------------------------------------------------------

#: The metrics with recorded actuals (``forecast actuals``).
ACTUAL_METRICS = ("bookings", "won_deals")
ACTUAL_COLUMN = "actual"


def record_actuals(path: str | os.PathLike, model_name: str, actuals: pd.DataFrame, *,
                   history_path: str, history_sha256: str, timeout: float = DEFAULT_TIMEOUT,
                   currency: str | None = None) -> dict:
    """Record a history's actuals in one transaction, replacing those of the same periods.

    ``actuals`` has no currency column (a schema change would stop older forecasts still
    writing to the ledger): with ``currency`` (the model's), actuals are refused when runs of
    ``model_name`` in another currency are recorded, since they would be shown beside those
    forecasts as if comparable.

    Parameters
    ----------
    path : path-like
        The ledger file; created and migrated as needed.
    model_name : str
        The model the history was read with (actuals are kept per model, like runs).
    actuals : pandas.DataFrame
        From :func:`forecast.trend.actuals_frame`.
    history_path, history_sha256 : str
        Provenance, stored on every row (the path made absolute).
    timeout : float
        Seconds to wait for another process's lock (see :func:`connect`).

    Returns
    -------
    dict
        ``replaced`` (rows of earlier recordings replaced), ``kept`` (new incomplete rows not
        written because a complete one was there, or an incomplete one covering more of the
        period) and ``written``.

    Raises
    ------
    LedgerError
        The ledger could not be opened, migrated or written, or holds runs of the model name
        in another currency; it is unchanged.
    """
    import pyarrow as pa

    path = Path(path)
    history_path = os.path.abspath(history_path)
    day_rows = actuals[actuals["grain"] == "day"]
    first = min(day_rows["period_start"]) if len(day_rows) else None
    last = max(day_rows["period_end"]) if len(day_rows) else None
    n = len(actuals)
    table = pa.table({
        "model_name": pa.array([model_name] * n, pa.string()),
        "grain": pa.array(actuals["grain"], pa.string()),
        "period": pa.array(actuals["period"], pa.string()),
        "period_start": pa.array(list(actuals["period_start"]), pa.date32()),
        "period_end": pa.array(list(actuals["period_end"]), pa.date32()),
        "metric": pa.array(actuals["metric"], pa.string()),
        "value": pa.array(actuals["value"], pa.float64()),
        "complete": pa.array(actuals["complete"], pa.bool_()),
    })
    key = ("a.model_name = n.model_name AND a.grain = n.grain AND a.period = n.period "
           "AND a.metric = n.metric")
    return _retrying(path, timeout, lambda: _record_actuals_once(
        path, table, key, first, last, history_path, history_sha256, timeout,
        model_name, currency))


def _record_actuals_once(path: Path, table, key: str, first, last, history_path: str,
                         history_sha256: str, timeout: float, model_name: str,
                         currency: str | None) -> dict:
    con = connect(path, timeout=timeout)
    try:
        migrate(con)
        con.register("_new_actuals", table)
        con.execute("BEGIN TRANSACTION")
        try:
            others = [] if currency is None else [r[0] for r in con.execute(
                "SELECT DISTINCT currency FROM runs WHERE model_name = ? AND currency <> ? "
                "ORDER BY currency", [model_name, currency]).fetchall()]
            if others:
                raise LedgerError(
                    f"{path}: the recorded runs of model {model_name} are in "
                    f"{', '.join(others)}, and this model's currency is {currency}: its actuals "
                    "would be shown beside those forecasts as if comparable (actuals carry no "
                    "currency); give this model another name (`name` in its [funnel] table) "
                    "to record its actuals; nothing was recorded")
            before = con.execute("SELECT count(*) FROM actuals").fetchone()[0]
            # An incomplete period is replaced only by a complete one or by one the new
            # history covers at least as many days of (an older, shorter export must not
            # replace what a longer one recorded); a complete one only by a complete one.
            covered_new = ("datediff('day', greatest(n.period_start, ?::DATE), "
                           "least(n.period_end, ?::DATE))")
            covered_old = ("datediff('day', greatest(a.period_start, a.history_first), "
                           "least(a.period_end, a.history_last))")
            replace = (f"(n.complete OR (NOT a.complete AND {covered_new} >= {covered_old}))")
            kept = con.execute(
                f"SELECT count(*) FROM _new_actuals n JOIN actuals a ON {key} "
                f"WHERE NOT {replace}", [first, last]).fetchone()[0]
            con.execute(f"DELETE FROM actuals a USING _new_actuals n WHERE {key} "
                        f"AND {replace}", [first, last])
            after_delete = con.execute("SELECT count(*) FROM actuals").fetchone()[0]
            con.execute(
                "INSERT INTO actuals SELECT n.model_name, n.grain, n.period, n.period_start, "
                "n.period_end, n.metric, n.value, n.complete, ?, ?, ?, ?, ? "
                f"FROM _new_actuals n WHERE NOT EXISTS (SELECT 1 FROM actuals a WHERE {key})",
                [history_path, history_sha256, first, last, _utcnow()])
            written = con.execute("SELECT count(*) FROM actuals").fetchone()[0] - after_delete
            con.execute("COMMIT")
        except BaseException:
            _rollback(con)
            raise
        finally:
            con.unregister("_new_actuals")
    except LedgerError:
        raise
    except Exception as exc:
        raise LedgerError(f"{path}: could not record the actuals ({db_error(exc)}); nothing was "
                          "recorded") from exc
    finally:
        con.close()
    return {"replaced": int(before - after_delete), "kept": int(kept), "written": int(written)}


def read_actual_days(con, model_name: str, metric: str, start: dt.date,
                     end: dt.date) -> pd.Series:
    """The recorded daily actuals of a metric between two dates (inclusive), by date.

    Days not recorded are absent from the series (not zero).
    """
    frame = con.execute(
        "SELECT period_start, value FROM actuals WHERE model_name = ? AND grain = 'day' "
        "AND metric = ? AND period_start BETWEEN ? AND ? ORDER BY period_start",
        [model_name, metric, start, end]).df()
    return pd.Series(frame["value"].to_numpy(dtype=float),
                     index=pd.to_datetime(frame["period_start"]).dt.date, dtype=float)


def span_actual(days: pd.Series, start: dt.date, end: dt.date) -> float:
    """The sum of ``days`` over ``start .. end`` if every day is recorded, else NaN."""
    if days is None or days.empty:
        return float("nan")
    inside = days[(days.index >= start) & (days.index <= end)]
    if len(inside) != (end - start).days + 1:
        return float("nan")
    return float(inside.sum())


def period_actual(con, model_name: str, grain: str, period: str, metric: str) -> float:
    """A whole calendar period's recorded actual, NaN unless recorded and complete."""
    row = con.execute(
        "SELECT value FROM actuals WHERE model_name = ? AND grain = ? AND period = ? "
        "AND metric = ? AND complete", [model_name, grain, period, metric]).fetchone()
    return float(row[0]) if row else float("nan")


# ---- trend of one period across runs ---------------------------------------------------------


def trend(con, period: str, metric: str = "bookings", *, quantiles=(0.1, 0.5, 0.9),
          last: int | None = None, model_name: str | None = None) -> tuple[pd.DataFrame, dict]:
    """How one period's within-period band moved across the recorded runs.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        An open ledger (:func:`open_for_reading`).
    period : str
        '2027' (year), '2027Q1' (quarter) or '2027-01' (month); the grain follows.
    metric : str
        A stored flow metric (bookings, won_deals, ...).
    quantiles : sequence of float
        Levels to show, within the stored grid.
    last : int, optional
        Only the last ``last`` runs (by as-of date, then run id).
    model_name : str, optional
        Only runs of this model; needed when runs of several models cover the period.

    Returns
    -------
    (pandas.DataFrame, dict)
        One row per run whose horizon covers the whole period, ordered by as-of date then
        run id: ``run_id, as_of, recorded_at, model_name, mean, sd``, one ``p<level>`` column
        per quantile, then ``actual`` (the period's complete recorded actual, or NaN). The
        dict has ``grain``, ``start``, ``end``, ``model_name``, ``currency``, ``actual``,
        ``partial`` (runs skipped because they cover only part of the period) and ``runs``
        (rows before ``last``).

    Raises
    ------
    LedgerError
        A bad label, or no run covers the whole period.
    """
    from forecast.summarize import quantile_label
    from forecast.trend import PeriodError, parse_period

    try:
        grain, start, end = parse_period(period)
    except PeriodError as exc:
        raise LedgerError(str(exc)) from None
    period = period.strip()
    where = ["b.grain = ?", "NOT b.cumulative", "b.period = ?", "b.metric = ?",
             "r.scenario IS NULL"]  # the forecasts, not what-if runs
    args: list = [grain, period, metric]
    if model_name is not None:
        where.append("r.model_name = ?")
        args.append(model_name)
    frame = con.execute(
        "SELECT r.run_id, r.as_of, r.recorded_at, r.model_name, r.currency, r.quantile_grid, "
        "b.period_start, b.period_end, b.mean, b.sd, b.quantiles FROM bands b JOIN runs r "
        f"USING (run_id) WHERE {' AND '.join(where)} ORDER BY r.as_of, r.run_id", args).df()
    whole = (pd.to_datetime(frame["period_start"]).dt.date == start) \
        & (pd.to_datetime(frame["period_end"]).dt.date == end)
    partial = int((~whole).sum())
    frame = frame[whole].reset_index(drop=True)
    which = f" of model {model_name}" if model_name else ""
    if frame.empty:
        if partial:
            raise LedgerError(f"no recorded run{which} covers all of {period} ({start} to "
                              f"{end}); {partial} cover only part of it")
        known = [r[0] for r in con.execute(
            "SELECT DISTINCT metric FROM bands WHERE NOT cumulative ORDER BY metric").fetchall()]
        if known and metric not in known:
            raise LedgerError(f"no metric {metric!r} in the ledger (metrics: "
                              f"{', '.join(known)})")
        raise LedgerError(f"no recorded run{which} covers {period} ({start} to {end}) for "
                          f"metric {metric!r}")
    models = sorted(frame["model_name"].unique())
    if len(models) > 1:
        raise LedgerError(f"runs of several models cover {period} ({', '.join(models)}); "
                          "choose one with --model")
    n_runs = len(frame)
    if last is not None:
        frame = frame.tail(last).reset_index(drop=True)
    currencies = sorted(frame["currency"].astype(str).unique())
    if len(currencies) > 1 and metric in MONEY_METRICS:  # amounts in different units
        since = frame.index[frame["currency"] != frame["currency"].iloc[-1]].max()
        raise LedgerError(
            f"runs of model {models[0]} covering {period} are in several currencies "
            f"({', '.join(currencies)}): their amounts do not compare; the last "
            f"{len(frame) - since - 1} are in {frame['currency'].iloc[-1]} (show them with "
            f"--last {len(frame) - since - 1})")
    qs = list(quantiles)
    values = np.stack([interpolate_quantiles(np.asarray(q, dtype=float)[None, :],
                                             list(g), qs)[0]
                       for q, g in zip(frame["quantiles"], frame["quantile_grid"],
                                       strict=True)])
    out = pd.DataFrame({
        "run_id": frame["run_id"].astype(np.int64),
        "as_of": pd.to_datetime(frame["as_of"]).dt.date,
        "recorded_at": pd.to_datetime(frame["recorded_at"]),
        "model_name": frame["model_name"], "mean": frame["mean"], "sd": frame["sd"]})
    for j, q in enumerate(qs):
        out[quantile_label(q)] = values[:, j]
    actual = period_actual(con, models[0], grain, period, metric) \
        if metric in ACTUAL_METRICS else float("nan")
    out[ACTUAL_COLUMN] = actual
    info = {"grain": grain, "start": start, "end": end, "model_name": models[0],
            "currency": str(frame["currency"].iloc[-1]), "actual": actual,
            "partial": partial, "runs": n_runs}
    return out, info


# ---- answers from the stored grid ------------------------------------------------------------


def interpolate_quantiles(values: np.ndarray, grid: Iterable[float],
                          quantiles: Iterable[float]) -> np.ndarray:
    """Quantiles at any levels inside the grid, by linear interpolation between grid points.

    Parameters
    ----------
    values : numpy.ndarray
        ``[row, grid point]``: each row's quantiles at ``grid``.
    grid, quantiles : sequences of float
        Stored levels (increasing) and wanted levels, each within ``[grid[0], grid[-1]]``.

    Returns
    -------
    numpy.ndarray
        ``[row, wanted level]``. A wanted level on the grid returns the stored value exactly.
    """
    grid = np.asarray(list(grid), dtype=float)
    quantiles = np.asarray(list(quantiles), dtype=float)
    lo, hi = grid[0], grid[-1]
    bad = quantiles[(quantiles < lo - 1e-12) | (quantiles > hi + 1e-12)]
    if bad.size:
        raise LedgerError(f"quantile {bad[0]:g} is outside the recorded grid [{lo:g}, {hi:g}]")
    values = np.atleast_2d(np.asarray(values, dtype=float))
    return np.stack([np.interp(quantiles, grid, row) for row in values]) if len(values) \
        else np.zeros((0, quantiles.size))


def probability_at_least(target: float, values: np.ndarray, grid: Iterable[float],
                         vmin: float, vmax: float) -> float:
    """P(X >= target) from stored quantiles: the interpolated empirical CDF.

    The quantile function is taken as piecewise linear through ``(0, vmin)``, the grid points
    and ``(1, vmax)``; ``P(X < target)`` is the level where it first reaches ``target``
    (so a point mass at ``target`` counts as reached). Exact to the grid's resolution (0.01)
    plus the Monte Carlo error of the stored quantiles.
    """
    levels = np.r_[0.0, np.asarray(list(grid), dtype=float), 1.0]
    q = np.r_[vmin, np.asarray(values, dtype=float), vmax]
    if target <= q[0]:
        return 1.0
    if target > q[-1]:
        return 0.0
    i = int(np.argmax(q >= target))  # first level with Q >= target; i >= 1
    frac = (target - q[i - 1]) / (q[i] - q[i - 1])
    below = levels[i - 1] + frac * (levels[i] - levels[i - 1])
    return float(1.0 - below)


# ---- what `forecast bands` shows -------------------------------------------------------------

TARGET_COLUMN = "p_reach_target"


def select_bands(stored: pd.DataFrame, run: dict, metric: str, quantiles: Iterable[float],
                 cumulative: bool = False, target: float | None = None,
                 actual_days: pd.Series | None = None) -> pd.DataFrame:
    """One metric's bands at any quantiles, from a run's stored bands (one grain).

    Parameters
    ----------
    stored : pandas.DataFrame
        From :func:`read_bands` (both forms, all metrics or this one).
    run : dict
        The run's ``runs`` row (its ``quantile_grid``).
    metric : str
        A stored metric.
    quantiles : sequence of float
        Levels within the grid; off-grid levels are interpolated.
    cumulative : bool
        From the as-of date to each period's end instead of within the period (flows only:
        occupancy is a level and is shown as stored).
    target : float, optional
        Adds :data:`TARGET_COLUMN`: P(metric >= target) over each row's span, as the bands
        shown: within the period, or with ``cumulative`` from the horizon's first day to the
        period's end (occupancy: the level at the period's end).
    actual_days : pandas.Series, optional
        The metric's recorded daily actuals (:func:`read_actual_days`), indexed by date. For
        the metrics of :data:`ACTUAL_METRICS` adds :data:`ACTUAL_COLUMN`: the actual over each
        row's span (the period's days in the horizon, or from the horizon's first day to the
        period's end with ``cumulative``), NaN unless every day of the span is recorded.

    Returns
    -------
    pandas.DataFrame
        ``run_id, period, start, end, days, metric, cumulative, mean, sd``, one ``p<level>``
        column per quantile, ``actual`` (bookings and won_deals only), then the target column
        if asked.
    """
    if target is not None and not np.isfinite(target):
        raise LedgerError(f"--target must be a finite amount, got {target!r}")
    available = sorted(stored["metric"].unique())
    if metric not in available:
        raise LedgerError(f"run {run['run_id']} has no metric {metric!r} (metrics: "
                          f"{', '.join(available)})")
    grid = list(run["quantile_grid"])
    quantiles = list(quantiles)
    level = metric.startswith("in_")
    mine = stored[stored["metric"] == metric]
    shown = mine[mine["cumulative"] == (cumulative and not level)].reset_index(drop=True)
    values = interpolate_quantiles(np.stack(shown["quantiles"].to_list()), grid, quantiles)
    start, days = shown["period_start"], shown["days"].astype(np.int64)
    if cumulative and not level:  # the span is from the horizon's first day to the period's end
        start, days = pd.Series([start.min()] * len(shown)), days.cumsum()
    out = pd.DataFrame({
        "run_id": shown["run_id"].astype(np.int64), "period": shown["period"],
        "start": start, "end": shown["period_end"], "days": days,
        "metric": metric, "cumulative": bool(cumulative and not level), "mean": shown["mean"],
        "sd": shown["sd"]})
    from forecast.summarize import quantile_label

    for j, q in enumerate(quantiles):
        out[quantile_label(q)] = values[:, j]
    if metric in ACTUAL_METRICS:
        days_known = actual_days if actual_days is not None else pd.Series(dtype=float)
        out[ACTUAL_COLUMN] = [span_actual(days_known, a, b)
                              for a, b in zip(out["start"], out["end"], strict=True)]
    if target is not None:  # over the row's own span, as its quantiles and its actual
        out[TARGET_COLUMN] = [
            probability_at_least(target, q, grid, lo, hi)
            for q, lo, hi in zip(shown["quantiles"], shown["min"], shown["max"], strict=True)]
    return out


def render_table(frame: pd.DataFrame, header: list[str], currency: str,
                 target: float | None = None) -> str:
    """The human table of :func:`select_bands`: money in compact currency, counts plain."""
    from forecast.outputs import money, quantile_columns

    metric = frame["metric"].iloc[0] if len(frame) else ""
    is_money = metric in MONEY_METRICS

    def fmt(x: float) -> str:
        if is_money:
            return money(x, currency)
        return f"{x:,.0f}" if abs(x - round(x)) < 1e-9 else f"{x:,.1f}"

    qcols = quantile_columns(frame)
    cols = ["period", "start", "end", "days", "mean", "sd", *(c.upper() for c in qcols)]
    has_actual = ACTUAL_COLUMN in frame.columns
    if has_actual:
        cols.append("actual")
    # the target's probability is over the row's span, as the bands: within the period, or
    # cumulative from the as-of date; for occupancy (a level, not a sum) at the period's end
    level = metric.startswith("in_")
    cumulative = bool(len(frame)) and bool(frame["cumulative"].iloc[0])
    if target is not None:
        over = "end" if level else "cum." if cumulative else "in period"
        target_col = f"P({over} >= {fmt(target)})"
        cols.append(target_col)
    rows = []
    for d in frame.to_dict("records"):
        row = [d["period"], str(d["start"]), str(d["end"]), str(d["days"]), fmt(d["mean"]),
               fmt(d["sd"]), *(fmt(d[c]) for c in qcols)]
        if has_actual:
            row.append("" if pd.isna(d[ACTUAL_COLUMN]) else fmt(d[ACTUAL_COLUMN]))
        if target is not None:
            row.append(f"{100 * d[TARGET_COLUMN]:.0f}%")
        rows.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows, strict=True)]
    line = "  ".join(f"{{:{'<' if i < 3 else '>'}{w}}}" for i, w in enumerate(widths))
    out = [*header, "", line.format(*cols), "  ".join("-" * w for w in widths)]
    out += [line.format(*r) for r in rows]
    if target is not None and level:
        out += ["", f"{target_col}: the probability that the leads in {metric[3:]} at the "
                    f"period's end number {fmt(target)} or more."]
    elif target is not None and cumulative:
        out += ["", f"{target_col}: the probability that the "
                    f"{metric.replace('_', ' ')} from the "
                    f"as-of date to the period's end reach {fmt(target)}."]
    elif target is not None:
        out += ["", f"{target_col}: the probability that the {metric.replace('_', ' ')} "
                    f"within the period (its days in the horizon, as the bands) reach "
                    f"{fmt(target)}; --cumulative: from the as-of date to the period's end."]
    return "\n".join(out)
