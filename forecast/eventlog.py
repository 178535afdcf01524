"""The event log (the input contract): read, validate, and turn into the open pipeline.

One row per stage entry, long format, CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``):

========== ========= ===============================================================
column     required  meaning
========== ========= ===============================================================
lead_id    yes       the lead / deal identity (read as text)
stage      yes       the stage entered: a model state or a CRM name from [crm_stages]
entered_at yes       ISO 8601 date or datetime (only the date part is kept)
amount     no        deal value known at this row; empty means unknown
segment    no        one of the model's segments; empty means the lead's segment from
                     its other rows, else the model's default segment
========== ========= ===============================================================

Column names are matched case-insensitively after stripping whitespace (a column named twice
is an error); other columns are ignored, as are rows empty in all five columns and blank lines
(empty or only whitespace). Cells are stripped of surrounding whitespace. Every problem raises
:class:`InputError` naming the file, the row (spreadsheet numbering: the header is row 1 and
each record one row, even when a quoted cell spans several lines; blank lines count) or the
Parquet record (1-based), and the column.

Validation is vectorised with pyarrow compute and numpy; string columns are dictionary-encoded
so that per-value work (stage mapping, date and number parsing) runs once per distinct value.
Only the message for the first offending row is built in Python.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from forecast.model import NURTURE, WON, FunnelModel
from forecast.simulate import Pipeline

REQUIRED = ("lead_id", "stage", "entered_at")
OPTIONAL = ("amount", "segment")
COLUMNS = (*REQUIRED, *OPTIONAL)
SUFFIXES = (".csv", ".csv.gz", ".parquet")

# Dates outside this window are refused: they are CRM placeholders (0001-01-01, 9999-12-31)
# rather than stage entries, and they would not fit pandas' nanosecond timestamps anyway.
EARLIEST, LATEST = np.datetime64("1900-01-01", "D"), np.datetime64("2199-12-31", "D")
# An ISO 8601 calendar date, optionally followed by a time of day and a UTC offset.
_ISO = (r"^\d{4}-\d{2}-\d{2}"
        r"(?:[T ](?:[01]\d|2[0-3])(?::[0-5]\d(?::[0-5]\d(?:[.,]\d+)?)?)?"
        r"(?:Z|[+-](?:[01]\d|2[0-3])(?::?[0-5]\d)?)?)?$")
_DATE_HINT = "expected ISO 8601 like 2026-11-23"
# Spellings of "unknown amount" besides an empty cell (case-insensitive).
_UNKNOWN_AMOUNT = frozenset({"nan", "na", "n/a", "null", "none"})
# The text of a CSV line that holds nothing but whitespace (or an empty quoted cell): a blank line.
_BLANK_LINE = re.compile(r'\s*|"\s*"\s*')

Locator = Callable[..., str]
_GZIP_MAGIC = b"\x1f\x8b"
# Files that are no CSV text, by their first bytes: (magic, what the file is).
_NOT_CSV = ((b"PK\x03\x04", "a zip archive (an Excel .xlsx workbook?)"),
            (b"\xd0\xcf\x11\xe0", "an old Excel .xls workbook"),
            (b"PAR1", "a Parquet file (name it .parquet)"))
# The largest amount taken as a deal value: beyond any real deal in any currency, and below
# the range where sums over thousands of deals and their squares lose meaning or overflow. A
# bigger number is a mistake (an id or phone number in the amount column, a unit slip).
MAX_AMOUNT = 1e15


class InputError(ValueError):
    """Bad input: the message names the file, the row (or record) and the column."""


@dataclass(frozen=True, eq=False)
class EventLog:
    """A validated event log.

    Attributes
    ----------
    frame : pandas.DataFrame
        Columns ``lead_id`` (str), ``stage`` (model state name), ``entered_at``
        (datetime64[ns] at midnight), ``amount`` (float64, NaN unknown), ``segment`` (segment
        name); sorted by ``lead_id``, then file order; a RangeIndex.
    path : str
        The file as given.
    as_of : datetime.date or None
        The as-of date the log was checked against (no row after it), if any.
    sha256 : str
        Hex digest of the file's bytes.
    notes : tuple of str
        What an importer (``forecast.importers``) did beyond a one-to-one translation, e.g.
        rows it skipped and why; empty for an event log read as it is.
    pos : numpy.ndarray of int64 or None
        Per row of ``frame`` (by position), where it comes from in the file: the position
        ``at`` locates. None for a log not read from a file (e.g. built in memory); code that
        filters or reorders ``frame`` must do the same to ``pos`` (or drop it).
    at : callable or None
        ``at(pos[i], column)`` -> ``"file, row 14, column stage"`` for a contract column: the
        file's row (or Parquet record) and column, as the reader's own errors name them; for a
        log read through an importer, the export's row and original column (see :meth:`where`).
    recorded_after : int
        Rows or events of the file left out as after the day the history was read as of (an
        importer's ``known_at``, or the cut of a past ``--as-of``): the file runs past that
        day, so it is no stale export.
    """

    frame: pd.DataFrame
    path: str
    as_of: dt.date | None
    sha256: str
    notes: tuple[str, ...] = ()
    pos: np.ndarray | None = None
    at: Locator | None = None
    recorded_after: int = 0

    @property
    def located(self) -> bool:
        """Whether the log knows where each row of ``frame`` is in the file."""
        return self.pos is not None and self.at is not None and len(self.pos) == len(self.frame)

    def where(self, row: int, column: str) -> str:
        """``"file, row 14, column stage"`` for row ``row`` (by position) of ``frame`` and a
        contract column, as the reader's errors name it; just the file when not ``located``."""
        return self.at(self.pos[int(row)], column) if self.located else self.path


# ---- reading ---------------------------------------------------------------------------------

def read_event_log(path: str | Path, model: FunnelModel, *,
                   as_of: dt.date | None = None) -> EventLog:
    """Read and validate an event log (CSV, CSV.gz or Parquet, chosen by extension).

    Parameters
    ----------
    path : str or Path
        The event log file.
    model : FunnelModel
        Maps stage names (``model.map_stage``) and knows the segments.
    as_of : datetime.date, optional
        When given, a row dated after it is an error.

    Returns
    -------
    EventLog

    Raises
    ------
    InputError
        For any problem with the file or its contents; the message names the file, the row
        and the column.
    """
    label = str(path)
    path = Path(path)
    kind = _kind(path, label)
    data = _read_bytes(path, label)
    rows = None
    if kind == "parquet":
        columns, unit, at = _parse_parquet(data, label), "records", _locator(label, "record", 1)
    else:
        (columns, rows), unit, at = _parse_csv(data, label, gz=kind == "csv.gz"), "rows", \
            _locator(label, "row", 2)
    columns, pos = _drop_blank(columns, label, unit, rows)
    if as_of is not None:
        as_of = _as_date(as_of)
    frame, pos = validate_events(columns, pos, model, at, as_of=as_of)
    return EventLog(frame=frame, path=label, as_of=as_of,
                    sha256=hashlib.sha256(data).hexdigest(), pos=pos, at=at)


#: Days between a history's last event and the as-of date before the history is called stale
#: (a week: no event over a weekend or a holiday is normal; a week without any is not).
STALE_DAYS = 7


def latest_date(log: EventLog) -> dt.date:
    """The latest ``entered_at`` in the log (the default as-of date)."""
    latest = log.frame["entered_at"].max()
    if pd.isna(latest):
        raise InputError(f"{log.path}: the event log has no rows")
    return latest.date()


def _kind(path: Path, label: str) -> str:
    """``csv``, ``csv.gz`` or ``parquet`` from the file name; anything else is an error."""
    name = path.name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix[1:]
    raise InputError(f"{label}: unsupported file type (accepted: {', '.join(SUFFIXES)}); "
                     "export the event log as CSV or Parquet")


def _read_bytes(path: Path, label: str) -> bytes:
    if not path.exists():
        raise InputError(f"{label}: no such file; check the path")
    if path.is_dir():
        raise InputError(f"{label}: is a directory, not an event log file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{label}: cannot be read ({exc.strerror or exc}); "
                         "check the file's permissions") from exc


def _locator(label: str, unit: str, first: int) -> Locator:
    """``at(pos, column)`` -> ``"file, row 14, column stage"``; ``at(pos)`` -> ``"row 14"``.

    ``pos`` is the 0-based data row (CSV) or record (Parquet).
    """
    def at(position: int, column: str | None = None) -> str:
        where = f"{unit} {int(position) + first}"
        return where if column is None else f"{label}, {where}, column {column}"
    return at


def _match_columns(names: list[str], label: str) -> dict[str, int]:
    """Positions of the contract's columns among ``names`` (stripped, case-insensitive)."""
    found: dict[str, int] = {}
    for i, name in enumerate(names):
        key = str(name).strip().casefold()
        if key in COLUMNS:
            if key in found:
                raise InputError(f"{label}: columns {names[found[key]]!r} (column "
                                 f"{found[key] + 1}) and {name!r} (column {i + 1}) both name "
                                 f"{key}; keep one of them")
            found[key] = i
    for column in REQUIRED:
        if column not in found:
            shown = ", ".join(repr(str(n)) for n in names) or "none"
            raise InputError(f"{label}: missing required column {column} (columns found: "
                             f"{shown}); the log needs {', '.join(REQUIRED)}")
    return found


def _csv_records(data: bytes) -> Iterator[tuple[list[str], str]]:
    """Each CSV record of ``data`` (header first) as (its cells, its text without line ends).

    Read with the csv module, which counts a quoted cell spanning lines as one record (as the
    pyarrow reader does); an empty line is an empty record. Used for the header, and for row
    numbers when pyarrow cannot give them (ragged and whitespace-only lines).
    """
    raw: list[str] = []

    def lines() -> Iterator[str]:
        for line in io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline=""):
            raw.append(line)
            yield line

    for record in csv.reader(lines(), strict=False):
        text = "".join(raw).rstrip("\r\n")
        raw.clear()
        yield record, text


def _is_blank_line(record: list[str], width: int) -> bool:
    """A record pyarrow reports as a one-field row but that is only whitespace: a blank line."""
    return width != 1 and len(record) == 1 and not record[0].strip()


def _not_utf8(data: bytes, label: str) -> InputError:
    """The error for a file that is not UTF-8: where its first bad byte is (the line, as an
    editor counts it, and the byte), and what the file most likely is."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[start:exc.start].decode("utf-8")) + 1  # valid up to the bad byte
        return InputError(
            f"{label}, line {line}, character {column}: byte 0x{data[exc.start]:02X} is not "
            "UTF-8 text (an Excel 'CSV' in Windows-1252 or Latin-1?); save it as 'CSV UTF-8'")
    return InputError(f"{label}: not UTF-8 text; save it as 'CSV UTF-8'")


def _csv_header(data: bytes, label: str) -> list[str]:
    """The names in the first record, as written (duplicates and empty names kept)."""
    try:
        records = _csv_records(data)
        first = next(records, None)
        if first is None or not any(name.strip() for name in first[0]):
            if first is None or not data.decode("utf-8-sig").strip():
                raise InputError(f"{label}: the file is empty (no header, no data rows); "
                                 "export the event log again")
            raise InputError(f"{label}, row 1: the header row is blank; the column names must "
                             "be on the first line")
        return first[0]
    except UnicodeDecodeError as exc:
        raise _not_utf8(data, label) from exc
    except csv.Error as exc:
        raise InputError(f"{label}: cannot read the header row ({_one_line(exc)}); "
                         "check its quoting") from exc


def _parse_csv(data: bytes, label: str, *, gz: bool,
               match: Callable[[list[str], str], dict[str, int]] = _match_columns,
               ) -> tuple[dict[str, pa.Array], np.ndarray | None]:
    """The columns ``match`` picks from the header (by default the contract's), as text.

    Returns the columns, one entry per data row (empty lines included; lines of only
    whitespace left out), keys those of ``match``'s answer; and, when lines were left out,
    each entry's 0-based data row in the file (else None: entry i is data row i).
    """
    import pyarrow.csv as pcsv

    # A download saved as .csv may be gzip-compressed all the same: the magic number says so
    # (no CSV text starts with it), so read it as .csv.gz rather than call it "not UTF-8".
    if gz or data.startswith(_GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{label}: not a valid gzip file ({exc}); "
                             "re-compress it or pass the plain .csv") from exc
    for magic, what in _NOT_CSV:
        if data.startswith(magic):
            raise InputError(f"{label}: {what}, not CSV text; save or export it as "
                             "'CSV UTF-8 (comma delimited)'")
    header = _csv_header(data, label)
    if len(header) == 1:
        sep = next((c for c in (";", "\t", "|") if c in header[0]), None)
        if sep is not None:
            name = {";": "semicolons", "\t": "tabs", "|": "pipes"}[sep]
            raise InputError(f"{label}, row 1: the header is one column "
                             f"{_show(header[0])}: the file is separated by {name}, not "
                             "commas; export it as 'CSV UTF-8 (comma delimited)'")
    found = match(header, label)
    names = [f"f{i}" for i in range(len(header))]
    bad_rows: list = []
    skipped: list = []

    def invalid(row) -> str:
        if row.actual_columns == 1 and _BLANK_LINE.fullmatch(row.text or ""):
            skipped.append(row)  # a line of whitespace: blank, like an empty line
            return "skip"
        bad_rows.append(row)
        return "error"

    try:
        table = pcsv.read_csv(
            io.BytesIO(data),
            read_options=pcsv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pcsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False,
                                            invalid_row_handler=invalid),
            convert_options=pcsv.ConvertOptions(
                column_types={names[i]: pa.string() for i in found.values()},
                include_columns=[names[i] for i in found.values()], null_values=[],
                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except pa.ArrowInvalid as exc:
        if bad_rows:
            raise _ragged_row(data, bad_rows[0], len(header), label) from exc
        if "UTF8" in str(exc):
            raise _not_utf8(data, label) from exc
        raise InputError(f"{label}: cannot be read as CSV ({_one_line(exc)}); "
                         "check the quoting") from exc
    columns = {key: table.column(names[i]).combine_chunks() for key, i in found.items()}
    rows = _kept_rows(data, len(skipped), table.num_rows, len(header)) if skipped else None
    return columns, rows


def _kept_rows(data: bytes, n_skipped: int, n_kept: int, width: int) -> np.ndarray | None:
    """The 0-based data rows pyarrow kept, given that it skipped ``n_skipped`` blank lines.

    None if the csv module does not find them (the numbering is then that of the kept rows).
    """
    skipped: list[int] = []
    try:
        records = _csv_records(data)
        next(records, None)  # the header
        for i, (record, _) in enumerate(records):
            if _is_blank_line(record, width):
                skipped.append(i)
                if len(skipped) == n_skipped:
                    break
    except (csv.Error, UnicodeDecodeError):
        return None
    if len(skipped) != n_skipped or skipped[-1] >= n_kept + n_skipped:
        return None
    return np.delete(np.arange(n_kept + n_skipped), skipped)


def _ragged_row(data: bytes, row, width: int, label: str) -> InputError:
    """The error for the first CSV row with the wrong number of fields.

    Its row number counts records, as every other message does (a quoted cell spanning lines
    is one row); pyarrow does not give it, so the csv module finds the row.
    """
    fields, text, where = row.actual_columns, row.text or "", ""
    try:
        records = _csv_records(data)
        next(records, None)  # the header
        for i, (record, raw) in enumerate(records):
            if record and len(record) != width and not _is_blank_line(record, width):
                fields, text, where = len(record), raw, f", row {i + 2}"
                break
    except (csv.Error, UnicodeDecodeError):
        pass
    return InputError(f"{label}{where}: has {fields} fields but the header has {width} "
                      f"({_show(text)}); check the commas and quoting on that row")


def _parse_parquet(data: bytes, label: str,
                   match: Callable[[list[str], str], dict[str, int]] = _match_columns,
                   ) -> dict[str, pa.Array]:
    """The columns ``match`` picks (by default the contract's), as stored, one per record."""
    import pyarrow.parquet as pq

    try:
        source = pq.ParquetFile(io.BytesIO(data))
        names = list(source.schema_arrow.names)
        found = match(names, label)
        table = source.read(columns=[names[i] for i in found.values()])
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{label}: not a readable Parquet file ({_one_line(exc)}); "
                         "export the event log again") from exc
    return {key: table.column(names[i]).combine_chunks() for key, i in found.items()}


def _drop_blank(columns: dict[str, pa.Array], label: str, unit: str,
                file_rows: np.ndarray | None = None,
                ) -> tuple[dict[str, pa.Array], np.ndarray]:
    """Drop rows empty in every contract column; return the columns and 0-based positions.

    ``file_rows``: each entry's 0-based row in the file, when that is not simply its index
    (see :func:`_parse_csv`).
    """
    blank = _numpy_bool(_is_blank(columns["lead_id"]))
    if blank.any():  # only rows without a lead_id can be blank: look at those alone
        rows = np.flatnonzero(blank)
        for key, values in columns.items():
            if key != "lead_id":
                blank[rows] &= _numpy_bool(_is_blank(values.take(pa.array(rows))))
    if blank.all():
        raise InputError(f"{label}: no data {unit} (only a header); "
                         "the event log needs one row per stage entry")
    pos = np.flatnonzero(~blank)
    if blank.any():
        keep = pa.array(pos)
        columns = {key: values.take(keep) for key, values in columns.items()}
    if file_rows is not None:
        pos = file_rows[pos]
    return columns, pos


def _is_blank(values: pa.Array) -> pa.Array:
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return pc.fill_null(pc.equal(pc.utf8_trim_whitespace(values), ""), True)
    return pc.is_null(values, nan_is_null=True)


def _as_date(value: dt.date) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


# ---- small helpers ---------------------------------------------------------------------------

def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 160 else text[:157] + "..."


def _show(value: object) -> str:
    """A cell value for a one-line message."""
    text = str(value).replace("\r", "\\r").replace("\n", "\\n")
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _numpy_bool(values: pa.Array) -> np.ndarray:
    return np.array(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _as_string(values: pa.Array) -> pa.Array:
    """Any column as an arrow string array; whole-number floats (ids) lose their '.0'."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_floating(values.type):
        values = pc.if_else(pc.is_nan(values), pa.scalar(None, values.type), values)
        present = pc.drop_null(values)
        if len(present) and pc.all(pc.equal(pc.floor(present), present)).as_py():
            values = pc.cast(values, pa.int64(), safe=False)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = pc.cast(values, pa.string())
    return values


def _text(values: pa.Array) -> pa.Array:
    """Cells as stripped text; null -> ''."""
    return pc.utf8_trim_whitespace(pc.fill_null(_as_string(values), ""))


def _encode(values: pa.Array) -> tuple[np.ndarray, list]:
    """Dictionary-encode: (per-row index into the distinct values, the distinct values)."""
    encoded = values.dictionary_encode()
    indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return indices, encoded.dictionary.to_pylist()


def _arrow(series: pd.Series) -> pa.Array:
    values = pa.array(series.array)
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _names(codes: np.ndarray, names: tuple[str, ...] | list[str]) -> pd.Series:
    """A str Series from indices into ``names``."""
    return pa.array(list(names), pa.string()).take(pa.array(codes)).to_pandas().astype(str)


# ---- column checks ---------------------------------------------------------------------------

def _lead_codes(values: pa.Array, pos: np.ndarray,
                at: Locator) -> tuple[np.ndarray, pa.Array]:
    """(per-row rank of the lead_id among the sorted distinct ids, the sorted ids)."""
    text = _text(values)
    i = _first(_numpy_bool(pc.equal(text, "")))
    if i is not None:
        raise InputError(f"{at(pos[i], 'lead_id')}: lead_id is empty; every row needs the "
                         "lead or deal it belongs to")
    return _sorted_codes(text)


def _sorted_codes(text: pa.Array) -> tuple[np.ndarray, pa.Array]:
    encoded = text.dictionary_encode()
    order = pc.sort_indices(encoded.dictionary).to_numpy()
    rank = np.empty(order.size, dtype=np.int32)
    rank[order] = np.arange(order.size, dtype=np.int32)
    codes = rank[encoded.indices.to_numpy(zero_copy_only=False)]
    return codes, encoded.dictionary.take(pa.array(order))


def _accepted_stages(model: FunnelModel) -> str:
    states = {s.casefold() for s in model.states}
    crm = [name for name in model.crm_stages if name.strip().casefold() not in states]
    text = ", ".join(model.states)
    return f"{text}, or the CRM names {', '.join(crm)}" if crm else text


def _stage_codes(values: pa.Array, model: FunnelModel, pos: np.ndarray,
                 at: Locator) -> np.ndarray:
    """Per row: the model state index of the (mapped) stage."""
    index, names = _encode(_text(values))
    states = {s: i for i, s in enumerate(model.states)}
    lookup = np.array([states.get(model.map_stage(n), -1) if n else -1 for n in names],
                      dtype=np.int64)
    codes = lookup[index]
    i = _first(codes < 0)
    if i is not None:
        value = names[index[i]]
        what = "stage is empty" if not value else \
            f"{_show(value)} is not a stage of model {model.name}"
        raise InputError(f"{at(pos[i], 'stage')}: {what} (accepted: {_accepted_stages(model)}); "
                         "map other CRM names under [crm_stages] in the model file")
    return codes


def _dates(values: pa.Array) -> np.ndarray:
    """Per row: the date (datetime64[D]), NaT where missing or not ISO 8601."""
    kind = values.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        if pa.types.is_timestamp(kind):
            if kind.tz is not None:
                values = pc.local_timestamp(values)  # the wall-clock date, as recorded
            values = pc.floor_temporal(values, unit="day")
        days = pc.cast(values, pa.date32()).to_numpy(zero_copy_only=False)
        return days.astype("datetime64[D]")
    text = _text(values)
    shaped = pc.match_substring_regex(text, _ISO)
    index, distinct = _encode(pc.if_else(shaped, pc.utf8_slice_codeunits(text, 0, 10), ""))
    parsed = pd.to_datetime(pd.Series(distinct, dtype=object), format="%Y-%m-%d",
                            errors="coerce")
    return np.asarray(parsed.to_numpy(), dtype="datetime64[D]")[index]


def _check_dates(values: pa.Array, pos: np.ndarray, at: Locator,
                 as_of: dt.date | None) -> np.ndarray:
    days = _dates(values)
    i = _first(np.isnat(days))
    if i is not None:
        value = values[i].as_py()
        what = "entered_at is empty" if value is None or not str(value).strip() else \
            f"{_show(str(value).strip())} is not a date"
        raise InputError(f"{at(pos[i], 'entered_at')}: {what} ({_DATE_HINT})")
    i = _first((days < EARLIEST) | (days > LATEST))
    if i is not None:
        raise InputError(f"{at(pos[i], 'entered_at')}: {_show(values[i].as_py())} is not a "
                         f"plausible date (expected {EARLIEST} to {LATEST}); replace "
                         "placeholder dates with the real stage entry date")
    if as_of is not None:
        i = _first(days > np.datetime64(as_of, "D"))
        if i is not None:
            raise InputError(f"{at(pos[i], 'entered_at')}: {days[i]} is after --as-of "
                             f"{as_of}; pass a later --as-of or filter the log to rows on or "
                             "before it")
    return days


def _parse_amounts(values: pa.Array, pos: np.ndarray, at: Locator) -> np.ndarray:
    """Per row: the amount as float64, NaN when unknown; raise on text that is no number."""
    kind = values.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return np.asarray(pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False),
                          dtype=np.float64)
    index, distinct = _encode(_text(values))
    unknown = np.array([v == "" or v.casefold() in _UNKNOWN_AMOUNT for v in distinct])
    numbers = pd.to_numeric(pd.Series(distinct, dtype=object).where(~unknown),
                            errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    i = _first((np.isnan(numbers) & ~unknown)[index])
    if i is not None:
        raise InputError(f"{at(pos[i], 'amount')}: {_show(distinct[index[i]])} is not a number "
                         "(write plain digits like 125000.50, without currency signs or "
                         "thousands separators; leave it empty if unknown)")
    return numbers[index]


def _check_amounts(columns: dict[str, pa.Array], pos: np.ndarray, at: Locator) -> np.ndarray:
    if "amount" not in columns:
        return np.full(pos.size, np.nan)
    amount = _parse_amounts(columns["amount"], pos, at)
    i = _first(np.isinf(amount))
    if i is not None:
        raise InputError(f"{at(pos[i], 'amount')}: {_show(columns['amount'][i].as_py())} is "
                         "not a finite number; leave it empty if unknown")
    i = _first(amount < 0)
    if i is not None:
        raise InputError(f"{at(pos[i], 'amount')}: {_show(columns['amount'][i].as_py())} is "
                         "negative; amounts are deal values (leave it empty if unknown)")
    i = _first(amount > MAX_AMOUNT)
    if i is not None:
        raise InputError(f"{at(pos[i], 'amount')}: {_show(columns['amount'][i].as_py())} is "
                         f"not a plausible deal amount (over {MAX_AMOUNT:,.0f}); correct the "
                         "cell, or leave it empty if unknown")
    return amount


def _segment_codes(columns: dict[str, pa.Array], model: FunnelModel, pos: np.ndarray,
                   at: Locator) -> np.ndarray:
    """Per row: the segment index, -1 where the cell is empty (or the column absent)."""
    if "segment" not in columns:
        return np.full(pos.size, -1, dtype=np.int64)
    index, names = _encode(_text(columns["segment"]))
    known = {name: i for i, name in enumerate(model.segment_names)}
    lookup = np.array([known.get(model.map_segment(n), -2) if n else -1 for n in names],
                      dtype=np.int64)
    codes = lookup[index]
    i = _first(codes == -2)
    if i is not None:
        raise InputError(f"{at(pos[i], 'segment')}: {_show(names[index[i]])} is not a segment "
                         f"of model {model.name} (segments: {', '.join(model.segment_names)}); "
                         f"leave it empty for the default segment {model.default_segment}")
    return codes


# ---- row checks (rows sorted by lead, then file order) ---------------------------------------

def _earliest(hits: np.ndarray, pos: np.ndarray) -> int | None:
    """Of the (sorted-order) indices ``hits``, the one earliest in the file."""
    return int(hits[np.argmin(pos[hits])]) if hits.size else None


def _check_duplicates(lead: np.ndarray, days: np.ndarray, state: np.ndarray,
                      amount: np.ndarray, segment: np.ndarray, pos: np.ndarray,
                      at: Locator, n_states: int) -> None:
    """No row may repeat an earlier one (same lead_id, stage, date, amount and segment)."""
    day = (days - EARLIEST).astype(np.int64)  # < 2**17 inside the accepted window
    key = ((lead.astype(np.int64) << 17) | day) * n_states + state
    candidate = pd.Series(key, copy=False).duplicated(keep=False).to_numpy()
    if not candidate.any():
        return
    rows = np.flatnonzero(candidate)
    group = pd.DataFrame({"k": key[rows], "a": amount[rows], "s": segment[rows]}) \
        .groupby(["k", "a", "s"], dropna=False, sort=False).ngroup().to_numpy()
    first_pos = pd.Series(pos[rows]).groupby(group).transform("min").to_numpy()
    k = _earliest(np.flatnonzero(pos[rows] != first_pos), pos[rows])
    if k is None:
        return
    raise InputError(f"{at(pos[rows[k]], 'lead_id')}: this row repeats {at(first_pos[k])} "
                     "(same lead_id, stage, entered_at, amount and segment); delete the "
                     "duplicate")


def _check_time_order(lead: np.ndarray, days: np.ndarray, ids: pd.Series, pos: np.ndarray,
                      at: Locator) -> None:
    """A lead's rows must not go back in time (in file order)."""
    back = np.flatnonzero((lead[1:] == lead[:-1]) & (days[1:] < days[:-1])) + 1
    k = _earliest(back, pos)
    if k is None:
        return
    raise InputError(f"{at(pos[k], 'entered_at')}: {days[k]} is earlier than the previous row "
                     f"of lead {_show(ids.iloc[k])} ({at(pos[k - 1])}, {days[k - 1]}); a "
                     "lead's rows must be in time order, so sort the log by lead_id and "
                     "entered_at")


def _check_closed(lead: np.ndarray, state: np.ndarray, ids: pd.Series, pos: np.ndarray,
                  at: Locator, model: FunnelModel) -> None:
    """Nothing may follow a lead's won or lost row."""
    closed = state[:-1] >= model.state_index(WON)
    after = np.flatnonzero((lead[1:] == lead[:-1]) & closed) + 1
    k = _earliest(after, pos)
    if k is None:
        return
    # Row k-1 is the lead's first close: an earlier close would make row k-1 the offender.
    raise InputError(f"{at(pos[k], 'stage')}: lead {_show(ids.iloc[k])} was already closed "
                     f"({model.states[state[k - 1]]} at {at(pos[k - 1])}); a closed lead cannot "
                     "re-enter the funnel, so give a reopened deal a new lead_id")


def _lead_starts(lead: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For rows grouped by lead: (first-row mask, lead start per row, lead end per row)."""
    n = lead.size
    first = np.r_[True, lead[1:] != lead[:-1]]
    last = np.r_[lead[1:] != lead[:-1], True]
    start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    end = np.minimum.accumulate(np.where(last, np.arange(n), n)[::-1])[::-1]
    return first, start, end


def _fill_segments(segment: np.ndarray, lead: np.ndarray, default: int) -> np.ndarray:
    """Empty segments (-1) take the lead's previous, else next, segment, else ``default``."""
    if (segment >= 0).all():
        return segment
    n = segment.size
    _, start, end = _lead_starts(lead)
    valid = segment >= 0
    prev = np.maximum.accumulate(np.where(valid, np.arange(n), -1))
    nxt = np.minimum.accumulate(np.where(valid, np.arange(n), n)[::-1])[::-1]
    out = np.full(n, default, dtype=np.int64)
    use_next = (nxt <= end) & (nxt < n)
    out[use_next] = segment[nxt[use_next]]
    use_prev = prev >= start
    out[use_prev] = segment[prev[use_prev]]
    return out


def validate_events(columns: dict[str, pa.Array], pos: np.ndarray, model: FunnelModel,
                    at: Locator, *, as_of: dt.date | None = None,
                    ) -> tuple[pd.DataFrame, np.ndarray]:
    """Check every column and row rule of already-parsed columns; return the contract frame.

    The event log reader and the CRM importers (``forecast.importers``) share this: an importer
    builds the contract's columns from another layout and passes a locator that names the
    original file's row and column, so every message points at what the user can fix.

    Parameters
    ----------
    columns : dict of str to pyarrow.Array
        ``lead_id``, ``stage`` and ``entered_at``, optionally ``amount`` and ``segment``, one
        entry per row. Text, numbers, dates or timestamps, as :func:`read_event_log` accepts
        them.
    pos : numpy.ndarray of int
        Per row, a distinct position that increases in file order: what ``at`` locates, and
        how the first offending row in the file is chosen.
    model : FunnelModel
        Maps stage and segment names.
    at : callable
        ``at(position, column)`` -> ``"file, row 14, column stage"`` and ``at(position)`` ->
        ``"row 14"``, where ``column`` is a contract column name.
    as_of : datetime.date, optional
        When given, a row dated after it is an error.

    Returns
    -------
    frame : pandas.DataFrame
        The contract frame (see :class:`EventLog`), sorted by ``lead_id`` and then by the
        order of ``columns``.
    pos : numpy.ndarray of int64
        ``pos`` in the frame's order: per frame row, its position (``EventLog.pos``).

    Raises
    ------
    InputError
        For the first problem found, located with ``at``.
    """
    lead, sorted_ids = _lead_codes(columns["lead_id"], pos, at)
    state = _stage_codes(columns["stage"], model, pos, at)
    days = _check_dates(columns["entered_at"], pos, at, as_of)
    amount = _check_amounts(columns, pos, at)
    segment = _segment_codes(columns, model, pos, at)

    order = np.argsort(lead, kind="stable")
    lead, state, days, amount, segment, pos = (
        a[order] for a in (lead, state, days, amount, segment, pos))
    ids = sorted_ids.take(pa.array(lead)).to_pandas().astype(str)
    _check_duplicates(lead, days, state, amount, segment, pos, at, len(model.states))
    _check_time_order(lead, days, ids, pos, at)
    _check_closed(lead, state, ids, pos, at, model)
    segment = _fill_segments(segment, lead, model.segment_names.index(model.default_segment))
    frame = pd.DataFrame({
        "lead_id": ids.reset_index(drop=True),
        "stage": _names(state, model.states),
        "entered_at": days.astype("datetime64[ns]"),
        "amount": amount.astype(np.float64),
        "segment": _names(segment, model.segment_names),
    })
    return frame, np.asarray(pos, dtype=np.int64)


# ---- the open pipeline -----------------------------------------------------------------------

def open_pipeline(log: EventLog, model: FunnelModel, as_of: dt.date) -> Pipeline:
    """The leads open at ``as_of``: those whose last row on or before it is active or nurture.

    Parameters
    ----------
    log : EventLog
        A validated log; rows after ``as_of`` are ignored.
    model : FunnelModel
        The model the log was read with.
    as_of : datetime.date
        The forecast's as-of date.

    Returns
    -------
    Pipeline
        One entry per open lead, in ``lead_id`` order. ``state``: model state index;
        ``age``: whole days since the lead entered its current state (the first of its
        trailing rows with that stage); ``segment``: index of its last non-empty segment
        (default segment if none); ``recycle``: expiry moves so far (into nurture from an
        active stage, or back to an earlier active stage), capped at
        ``model.recycle_levels - 1``; ``amount``: last known amount, NaN if none.
    """
    cut = np.datetime64(_as_date(as_of), "D").astype("datetime64[ns]")
    frame = log.frame
    keep = frame["entered_at"].to_numpy(dtype="datetime64[ns]") <= cut
    if not keep.any():
        return Pipeline.empty()
    if not keep.all():
        frame = frame[keep]
    lead, order = _lead_groups(pc.fill_null(_as_string(_arrow(frame["lead_id"])), ""))
    state = _frame_codes(frame["stage"], model.states, "stage", log.path)[order]
    days = frame["entered_at"].to_numpy(dtype="datetime64[ns]")[order]
    amount = frame["amount"].to_numpy(dtype=np.float64, na_value=np.nan)[order]
    segment = _frame_codes(frame["segment"], model.segment_names, "segment", log.path)[order]

    first, start, _ = _lead_starts(lead)
    ends = np.flatnonzero(np.r_[lead[1:] != lead[:-1], True])
    recycle = _recycle_counts(state, first, model)[ends]
    stay = np.maximum.accumulate(np.where(first | np.r_[True, state[1:] != state[:-1]],
                                          np.arange(lead.size), 0))
    age = ((cut - days[stay[ends]]) // np.timedelta64(1, "D")).astype(np.int64)
    known = _last_where(~np.isnan(amount), start)[ends]
    amount = np.where(known >= 0, amount[np.maximum(known, 0)], np.nan)
    default = model.segment_names.index(model.default_segment)
    seg_row = _last_where(segment >= 0, start)[ends]
    segment = np.where(seg_row >= 0, segment[np.maximum(seg_row, 0)], default)

    current = state[ends]
    is_open = current < model.n_transient  # active stages and nurture
    return Pipeline(state=current[is_open].astype(np.int64), age=age[is_open],
                    segment=segment[is_open].astype(np.int64), recycle=recycle[is_open],
                    amount=amount[is_open].astype(np.float64))


def _lead_groups(ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(per-row lead number, the row order) for the rows sorted by lead_id, then as given."""
    n = len(ids)
    if not pc.any(pc.less(ids.slice(1), ids.slice(0, n - 1))).as_py():
        new = _numpy_bool(pc.not_equal(ids.slice(1), ids.slice(0, n - 1)))
        return np.cumsum(np.r_[0, new]), np.arange(n)
    codes, _ = _sorted_codes(ids)
    order = np.argsort(codes, kind="stable")
    return codes[order], order


def _frame_codes(values: pd.Series, names: tuple[str, ...], column: str,
                 path: str) -> np.ndarray:
    """Indices of a frame column's values into ``names``; -1 for empty cells."""
    index, distinct = _encode(_text(_arrow(values)))
    lookup = {name: i for i, name in enumerate(names)}
    unknown = [v for v in distinct if v and v not in lookup]
    if unknown:
        raise InputError(f"{path}: {column} {_show(unknown[0])} is not one of "
                         f"{', '.join(names)}; read the log with the same model")
    return np.array([lookup.get(v, -1) for v in distinct], dtype=np.int64)[index]


def _recycle_counts(state: np.ndarray, first: np.ndarray, model: FunnelModel) -> np.ndarray:
    """Per row: the lead's expiry moves up to and including that row, capped."""
    prev = np.r_[-1, state[:-1]]
    from_active = ~first & (prev < model.n_active)
    expiry = from_active & ((state == model.state_index(NURTURE)) | (state < prev))
    counts = np.cumsum(expiry)
    before_lead = np.where(first, counts - expiry, 0)
    counts -= np.maximum.accumulate(before_lead)
    return np.minimum(counts, model.recycle_levels - 1).astype(np.int64)


def _last_where(valid: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per row: the index of the lead's last row so far where ``valid``, else -1."""
    latest = np.maximum.accumulate(np.where(valid, np.arange(valid.size), -1))
    return np.where(latest >= start, latest, -1)

