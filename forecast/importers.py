"""CRM importers: turn common CRM exports into the event log (:class:`EventLog`).

:func:`read_history` reads a history file in one of these layouts (``format``):

``eventlog``
    The long event log itself (:func:`forecast.eventlog.read_event_log`).
``hubspot``
    A HubSpot contacts export: one row per contact, one "became X date" column per lifecycle
    stage (:func:`read_hubspot`).
``salesforce``
    Salesforce opportunity stage history (``OpportunityHistory``): one row per stage change
    (:func:`read_salesforce`).
``opportunities``
    A plain table with one row per deal: created and closed dates and a status
    (:func:`read_opportunities`).

Every importer reads CSV, CSV.gz or Parquet (by extension), matches column names in any script
ignoring case, spaces, underscores and punctuation (``Opportunity ID`` = ``OpportunityId`` =
``opportunity_id``, ``Código`` = ``código``; two columns matching one name are an error), maps
CRM stage names through the model (``[crm_stages]``) and segment names through the model
(segment names and ``[segment_aliases]``), and returns a validated :class:`EventLog`. The
checks are those of the event log (:func:`forecast.eventlog.validate_events`), run on the
events built from the export, so an :class:`InputError` always names the export file, its row
(spreadsheet numbering: the header is row 1; Parquet records from 1) and its original column.

Dates: ISO 8601 dates or datetimes (``2017-03-01``, ``2017-03-01T14:05:00.000Z``,
``2017-03-01 14:05``) or US ``month/day/year`` with an optional time (``3/1/2017``,
``3/1/2017 2:05 PM``, also ``3-1-2017``); with ``date_order="day-first"``
(``--date-order day-first``), ``day/month/year`` instead (``1/3/2017``, ``01.03.2017``,
``01-03-2017``); a date that only reads the other way round is an error that says so, and a
file in which no date shows the order (both numbers at 12 or below in every one) is noted
(:func:`_date_order_notes`). Parquet
date and timestamp columns as stored. Only the date is kept, as
written (a ``Z`` stamp keeps its UTC date); the time of day only orders events within a day.

Decisions where the exports are ambiguous (each is tested in ``tests/test_importers.py``):

- HubSpot: a contact's events are sorted by date (ties in lifecycle order), so an MQL date
  before the lead date is not an error. Consecutive events that map to the same model state
  (``Subscriber`` and ``Lead`` both being ``lead``) are one stay: only the first is kept. The
  ``evangelist`` column is ignored by default (it comes after the sale; ``skip_stages``). The
  contact's amount goes on its last event (the value known now). A contact id on two rows is
  a duplicate row. Contacts without any lifecycle date are skipped (counted in ``notes``).
- Salesforce: rows are sorted by ``CreatedDate`` (full timestamp, closes last among rows of
  the same timestamp, then file order) within a deal, since history exports are often in
  another order. The entry into ``Closed Won`` /
  ``Closed Lost`` (any stage the model maps to won or lost) is dated by that row's
  ``CloseDate`` when present (the business close date; ``CreatedDate`` is when it was keyed
  in), else by its ``CreatedDate``; a ``CloseDate`` before the deal's earlier stage changes is
  an error. ``CloseDate`` on other rows is the expected close date and is ignored. History rows
  that stay in the same model state are folded: one event per state entry, plus one per later
  day on which the amount changed; rows after the close in the same closed state (edits) are
  folded into the close, and their latest amount becomes the deal's amount. A deal closed and
  then reopened (or moved from ``Closed Won`` to ``Closed Lost``) keeps only its final close:
  the earlier close rows are dropped (counted in ``notes``), so the deal stays in its stage
  before the close until the reopening, as the CRM itself now shows it; an amount known only on
  a dropped close goes on to the deal's next row, and a final close whose ``CloseDate`` is
  before the reopening (Salesforce keeps the first close's) is dated by its ``CreatedDate``.
  Identical rows are duplicates.
- Plain deal tables: a row with a created date gives an entry event (``entry_stage``) and, if
  its status is won or lost, a close event at the closed date. Statuses are read through the
  model's ``[crm_stages]`` (names of won, of lost, and of any other state: open) plus the values
  given (``""`` for a blank status); any other status is an error, not an open deal. The amount
  goes on the won event (and on the entry event of an open deal); lost deals carry no amount
  (exports record 0 for them). Open rows without a created date (e.g. ``Prospecting``) are
  skipped and counted in ``notes``: they have not entered the modelled funnel yet. A won or lost
  row without a created or closed date, or closed before it was created, is an error; an open
  deal's closed date (an expected close date) is checked as a date and otherwise ignored. A deal
  id on two rows is a duplicate row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from forecast.eventlog import (
    _ISO,
    EARLIEST,
    LATEST,
    EventLog,
    InputError,
    Locator,
    _as_date,
    _check_amounts,
    _dates,
    _drop_blank,
    _first,
    _kind,
    _locator,
    _numpy_bool,
    _parse_csv,
    _parse_parquet,
    _read_bytes,
    _segment_codes,
    _show,
    _sorted_codes,
    _stage_codes,
    _text,
    read_event_log,
    validate_events,
)
from forecast.model import LOST, WON, FunnelModel

FORMATS = ("eventlog", "hubspot", "salesforce", "opportunities")
AUTO = "auto"
"""Default of optional column options: use the column if one of the usual names is present."""

# HubSpot lifecycle stages in lifecycle order: (internal name, label), the label being the name
# [crm_stages] maps. Columns: hs_lifecyclestage_<internal>_date, or the UI labels below.
HUBSPOT_STAGES = (
    ("subscriber", "Subscriber"),
    ("lead", "Lead"),
    ("marketingqualifiedlead", "Marketing Qualified Lead"),
    ("salesqualifiedlead", "Sales Qualified Lead"),
    ("opportunity", "Opportunity"),
    ("customer", "Customer"),
    ("evangelist", "Evangelist"),
    ("other", "Other"),
)
_HUBSPOT_LABELS = {
    "subscriber": ("Became a Subscriber Date",),
    "lead": ("Became a Lead Date",),
    "marketingqualifiedlead": ("Became a Marketing Qualified Lead Date",),
    "salesqualifiedlead": ("Became a Sales Qualified Lead Date",),
    "opportunity": ("Became an Opportunity Date",),
    "customer": ("Became a Customer Date",),
    "evangelist": ("Became an Evangelist Date",),
    "other": ("Became an Other Lifecycle Stage Date", "Became a Other Lifecycle Stage Date",
              "Became an Other Date"),
}

# The usual names of each column, first match wins.
_HUBSPOT_ID = ("hs_object_id", "Record ID", "vid", "Contact ID")
_HUBSPOT_AMOUNT = ("amount", "recent_deal_amount", "Recent Deal Amount")
_SF_ID = ("OpportunityId", "Opportunity ID")
_SF_STAGE = ("StageName", "Stage", "To Stage")
_SF_CREATED = ("CreatedDate", "Created Date", "Last Modified", "Edit Date")
_SF_AMOUNT = ("Amount",)
_SF_CLOSE = ("CloseDate", "Close Date")
_OPP_ID = ("opportunity_id", "deal_id", "id")
_OPP_CREATED = ("created_date", "created_at", "create_date", "createdate", "engage_date")
_OPP_CLOSED = ("closed_date", "closed_at", "close_date")
_OPP_STATUS = ("status", "deal_stage", "stage")
_OPP_AMOUNT = ("amount", "close_value", "value", "deal_value")

# An ISO 8601 date or datetime, and a US month/day/year with an optional time, in parts.
_ISO_PARTS = (r"^(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})"
              r"(?:[T ](?P<H>[01]\d|2[0-3])(?::(?P<M>[0-5]\d)(?::(?P<S>[0-5]\d)(?:[.,]\d+)?)?)?"
              r"(?:Z|[+-](?:[01]\d|2[0-3])(?::?[0-5]\d)?)?)?$")
_US_PARTS = (r"^(?P<m>\d{1,2})[/-](?P<d>\d{1,2})[/-](?P<y>\d{4})"
             r"(?:[ T](?P<H>\d{1,2}):(?P<M>[0-5]\d)(?::(?P<S>[0-5]\d)(?:[.,]\d+)?)?"
             r"\s*(?P<p>[AaPp][Mm])?)?$")
# With ``date_order="day-first"``: day/month/year (also with dots or dashes: 25.03.2017).
_DMY_PARTS = (r"^(?P<d>\d{1,2})[./-](?P<m>\d{1,2})[./-](?P<y>\d{4})"
              r"(?:[ T](?P<H>\d{1,2}):(?P<M>[0-5]\d)(?::(?P<S>[0-5]\d)(?:[.,]\d+)?)?"
              r"\s*(?P<p>[AaPp][Mm])?)?$")
_DATE_HINT = ("expected ISO 8601 like 2017-03-01 or 2017-03-01T14:05:00Z, or US "
              "month/day/year like 3/1/2017 (day/month/year with --date-order day-first)")
_DATE_HINT_DAY_FIRST = ("expected ISO 8601 like 2017-03-01 or 2017-03-01T14:05:00Z, or "
                        "day/month/year like 1/3/2017 or 01.03.2017 (--date-order day-first)")
DATE_ORDERS = ("month-first", "day-first")


# ---- the entry point -------------------------------------------------------------------------

def read_history(path: str | Path, model: FunnelModel, *, format: str = "eventlog",
                 as_of: dt.date | None = None, **options) -> EventLog:
    """Read a history file in one of the supported layouts and return the validated event log.

    Parameters
    ----------
    path : str or Path
        The file: CSV, CSV.gz or Parquet, chosen by extension.
    model : FunnelModel
        Maps CRM stage names (``[crm_stages]``) and segment names.
    format : {"eventlog", "hubspot", "salesforce", "opportunities"}
        The layout of the file.
    as_of : datetime.date, optional
        When given, an event dated after it is an error.
    **options
        The options of the format's reader (:func:`read_hubspot`, :func:`read_salesforce`,
        :func:`read_opportunities`); ``eventlog`` takes none.

    Returns
    -------
    EventLog

    Raises
    ------
    InputError
        For an unknown format and for any problem with the file; the message names the file,
        the row and the original column.
    """
    key = str(format).strip().casefold()
    if key == "eventlog":
        if options:
            raise TypeError(f"the eventlog format takes no options (got {', '.join(options)})")
        return read_event_log(path, model, as_of=as_of)
    readers: dict[str, Callable[..., EventLog]] = {
        "hubspot": read_hubspot, "salesforce": read_salesforce,
        "opportunities": read_opportunities}
    if key not in readers:
        raise InputError(f"{path}: unknown history format {format!r} "
                         f"(formats: {', '.join(FORMATS)})")
    return readers[key](path, model, as_of=as_of, **options)


# ---- HubSpot contacts ------------------------------------------------------------------------

def read_hubspot(path: str | Path, model: FunnelModel, *, as_of: dt.date | None = None,
                 id_column: str | None = None, amount_column: str | None = AUTO,
                 segment_column: str | None = None,
                 skip_stages: Iterable[str] = ("evangelist",),
                 date_order: str = "month-first") -> EventLog:
    """Read a HubSpot contacts export: one row per contact, one date column per lifecycle stage.

    Each non-empty lifecycle date becomes an event whose stage is the lifecycle stage's label
    (``Lead``, ``Marketing Qualified Lead``, ...) mapped through the model. Date columns are
    ``hs_lifecyclestage_<stage>_date`` or their UI labels ("Became a Lead Date", ...).

    Parameters
    ----------
    path : str or Path
        The export (CSV, CSV.gz or Parquet).
    model : FunnelModel
        Maps the lifecycle stages and the segments.
    as_of : datetime.date, optional
        When given, a date after it is an error.
    id_column : str, optional
        The contact id column; by default the first of ``hs_object_id``, ``Record ID``,
        ``vid``, ``Contact ID``.
    amount_column : str or None, optional
        The deal value column, put on the contact's last event. By default ``amount`` or
        ``Recent Deal Amount`` when present; ``None`` for no amounts.
    segment_column : str, optional
        A column of segment names (e.g. ``Original Source`` with matching segments or
        ``[segment_aliases]``); by default every contact is in the model's default segment.
    skip_stages : iterable of str, optional
        Lifecycle stages (internal names or labels) whose columns are ignored.
    date_order : {"month-first", "day-first"}, optional
        How dates that are not ISO 8601 read: ``3/1/2017`` is 1 March (US, the default) or,
        day-first, 3 January (also ``03.01.2017``, ``03-01-2017``).

    Returns
    -------
    EventLog
        ``notes`` counts the contacts without any lifecycle date (skipped).

    Raises
    ------
    InputError
        For any problem with the file, naming its row and original column.
    """
    label = str(path)
    if isinstance(skip_stages, str):
        skip_stages = (skip_stages,)
    skip = {_norm(s) for s in skip_stages}
    known = {_norm(n) for stage in HUBSPOT_STAGES for n in stage}
    for name in skip_stages:
        if _norm(name) not in known:
            raise InputError(f"{label}: skip_stages names {name!r}, which is not a HubSpot "
                             f"lifecycle stage ({', '.join(s for s, _ in HUBSPOT_STAGES)})")
    stages = [(rank, internal, crm) for rank, (internal, crm) in enumerate(HUBSPOT_STAGES)
              if _norm(internal) not in skip and _norm(crm) not in skip]
    wanted = [_want("lead_id", id_column, _HUBSPOT_ID, "id_column", "the contact id"),
              _want("amount", amount_column, _HUBSPOT_AMOUNT, "amount_column", "the amount"),
              _want("segment", segment_column, (), "segment_column", "the segment")]
    wanted += [_Wanted(f"stage:{internal}",
                       (f"hs_lifecyclestage_{internal}_date", *_HUBSPOT_LABELS[internal]),
                       False, "", f"the {crm} date") for _, internal, crm in stages]
    table = _read_table(path, [w for w in wanted if w is not None])
    present = [(rank, internal, crm) for rank, internal, crm in stages
               if f"stage:{internal}" in table.columns]
    if not present:
        expected = ", ".join(f"hs_lifecyclestage_{i}_date" for _, i, _ in stages[:5])
        raise InputError(f"{label}: no lifecycle date columns (expected {expected}, ... or "
                         f"their labels like 'Became a Lead Date'; columns found: "
                         f"{table.found()}); export the contacts with their lifecycle dates")

    at, pos = table.at, table.pos
    day_first = _day_first(path, date_order)
    ids = _ids(table, "contact")
    _check_unique(ids, table, "contact", "a contacts export has one row per contact")
    amount = _check_amounts(table.columns, pos, at)
    segment = _segment_codes(table.columns, model, pos, at)

    rows, days, state, rank, column = [], [], [], [], []
    for r, internal, crm in present:
        key = f"stage:{internal}"
        day, _ = _parse_when(table.columns[key], pos, at, key, day_first=day_first)
        filled = np.flatnonzero(~np.isnat(day))
        if not filled.size:
            continue
        target = model.map_stage(crm) or model.map_stage(internal)
        if target is None:
            raise InputError(f"{at(pos[filled[0]], key)}: the HubSpot lifecycle stage {crm!r} "
                             f"is not a stage of model {model.name} (states: "
                             f"{', '.join(model.states)}); map {crm!r} under [crm_stages] in "
                             f"the model file, or pass skip_stages to ignore this column")
        rows.append(filled)
        days.append(day[filled])
        state.append(np.full(filled.size, model.state_index(target), dtype=np.int64))
        rank.append(np.full(filled.size, r, dtype=np.int64))
        column.append(np.full(filled.size, table.keys.index(key), dtype=np.int64))
    if not rows:
        raise InputError(f"{label}: no contact has a lifecycle date (columns "
                         f"{', '.join(table.names[f'stage:{i}'] for _, i, _ in present)} are "
                         "empty); export the contacts with their lifecycle dates")
    row, day, st, rk, col = (np.concatenate(a) for a in (rows, days, state, rank, column))
    day_number = day.astype(np.int64)
    day_number -= day_number.min()
    # By contact, then date, then lifecycle stage (one int64 key sorts faster than lexsort).
    order = np.argsort((row * (day_number.max() + 1) + day_number) * len(HUBSPOT_STAGES) + rk)
    row, day, st, col = row[order], day[order], st[order], col[order]
    first = np.r_[True, row[1:] != row[:-1]]
    keep = first | np.r_[True, st[1:] != st[:-1]]  # a repeated state is the same stay
    row, day, st, col = row[keep], day[keep], st[keep], col[keep]
    last = np.r_[row[1:] != row[:-1], True]
    notes = _date_order_notes(table, [f"stage:{internal}" for _, internal, _ in present],
                              day_first)
    n_without = pos.size - int(np.r_[True, row[1:] != row[:-1]].sum())
    if n_without:
        notes.append(f"skipped {n_without} contact{'s' if n_without != 1 else ''} without any "
                     "lifecycle date")
    return _finish(table, model, as_of, row=row, state=st, days=day,
                   amount=np.where(last, amount[row], np.nan), amount_row=row,
                   segment=segment[row], date_column=col, stage_column=col, ids=ids,
                   notes=notes)


# ---- Salesforce opportunity stage history ----------------------------------------------------

def read_salesforce(path: str | Path, model: FunnelModel, *, as_of: dt.date | None = None,
                    id_column: str | None = None, stage_column: str | None = None,
                    date_column: str | None = None, amount_column: str | None = AUTO,
                    close_column: str | None = AUTO,
                    segment_column: str | None = None,
                    date_order: str = "month-first",
                    known_at: dt.date | None = None) -> EventLog:
    """Read Salesforce opportunity stage history: one row per stage change of a deal.

    Stage names (``Prospecting``, ..., ``Closed Won``, ``Closed Lost``) are mapped through the
    model. Rows are put in ``CreatedDate`` order within each deal; an event is dated by
    ``CreatedDate``, except the entry into a won or lost stage, dated by its ``CloseDate``
    when present. Rows staying in the same model state are folded (see the module notes).

    Parameters
    ----------
    path : str or Path
        The export (CSV, CSV.gz or Parquet).
    model : FunnelModel
        Maps the stage names and the segments.
    as_of : datetime.date, optional
        When given, a date after it is an error.
    id_column, stage_column, date_column : str, optional
        By default ``OpportunityId``, ``StageName`` and ``CreatedDate`` (or their report
        labels ``Opportunity ID``, ``Stage``, ``Created Date``).
    amount_column, close_column : str or None, optional
        By default ``Amount`` and ``CloseDate`` when present; ``None`` not to use them.
    segment_column : str, optional
        A column of segment names; by default every deal is in the model's default segment.
    date_order : {"month-first", "day-first"}, optional
        How dates that are not ISO 8601 read: ``3/1/2017`` is 1 March (US, the default) or,
        day-first, 3 January (also ``03.01.2017``, ``03-01-2017``).
    known_at : datetime.date, optional
        The history as the CRM held it at the end of this day: rows recorded (``CreatedDate``)
        after it are left out before anything else, so a reopening recorded later does not
        undo a close made by then, and a close recorded later but dated back (``CloseDate``)
        is not known yet. (``forecast run --as-of`` in the past; the events dated after it
        are then cut as for any history.)

    Returns
    -------
    EventLog
        ``notes`` counts the folded history rows, the closes a later row undid (a reopened
        deal), the re-closes dated by CreatedDate and the rows recorded after ``known_at``.

    Raises
    ------
    InputError
        For any problem with the file, naming its row and original column.
    """
    table = _read_table(path, [w for w in (
        _want("lead_id", id_column, _SF_ID, "id_column", "the opportunity id"),
        _want("stage", stage_column, _SF_STAGE, "stage_column", "the stage name"),
        _want("created", date_column, _SF_CREATED, "date_column", "the stage change date"),
        _want("amount", amount_column, _SF_AMOUNT, "amount_column", "the amount"),
        _want("close", close_column, _SF_CLOSE, "close_column", "the close date"),
        _want("segment", segment_column, (), "segment_column", "the segment"),
    ) if w is not None])
    day_first = _day_first(path, date_order)
    later_rows = 0
    if known_at is not None:  # the rows the CRM had recorded by then, and no others
        known_at = _as_date(known_at)
        recorded, _ = _parse_when(table.columns["created"], table.pos, table.at, "created",
                                  required=True, day_first=day_first)
        keep = recorded <= np.datetime64(known_at, "D")
        if not keep.any():
            raise InputError(f"{table.label}: every row is after --as-of {known_at} (the "
                             f"history starts on {recorded.min()})")
        later_rows = int((~keep).sum())
        mask = pa.array(keep)
        table = replace(table, columns={k: v.filter(mask) for k, v in table.columns.items()},
                        pos=table.pos[keep])
    at, pos, columns = table.at, table.pos, table.columns
    as_of = _as_date(as_of) if as_of is not None else None
    ids = _ids(table, "opportunity")
    state = _stage_codes(columns["stage"], model, pos, at)
    created, seconds = _parse_when(columns["created"], pos, at, "created", required=True,
                                   times=True, day_first=day_first)
    _check_as_of(created, pos, at, "created", as_of)
    close = (_parse_when(columns["close"], pos, at, "close", day_first=day_first)[0]
             if "close" in columns
             else np.full(pos.size, np.datetime64("NaT"), dtype="datetime64[D]"))
    amount = _check_amounts(columns, pos, at)
    segment = _segment_codes(columns, model, pos, at)
    _check_duplicate_rows(table, ["lead_id", "stage", "created", "amount", "close", "segment"])

    lead, _ = _sorted_codes(ids)
    day_number = created.astype(np.int64)
    day_number -= day_number.min()
    # By deal, then CreatedDate and time, closes last among rows of the same time (exports
    # without times list a day's rows in any order, and a close listed before that day's last
    # stage change must not read as a close undone), then file order (stable).
    key = ((lead.astype(np.int64) * (day_number.max() + 1) + day_number) * 86400 + seconds) * 2 \
        + (state >= model.state_index(WON))
    order = np.argsort(key, kind="stable")
    lead, state, created, close, amount, segment = (
        a[order] for a in (lead, state, created, close, amount, segment))
    closed = state >= model.state_index(WON)
    # A deal closed and then reopened (or closed again the other way): only its final close
    # counts. The earlier closes are dropped, so the deal stays in its stage before the close
    # until the reopening, which is the CRM's own current view of the deal; an amount known
    # only on a dropped row goes on to the deal's next row.
    reopened = _reopened_closes(lead, state, closed)
    undone = np.isin(lead, lead[reopened])  # rows of the deals with a close undone
    n_reopened_deals = np.unique(lead[reopened]).size
    reopen_note = ""
    if n_reopened_deals:
        first = int(np.argmin(np.where(reopened, table.pos[order], np.iinfo(np.int64).max)))
        rows_dropped = int(reopened.sum())
        reopen_note = (
            f"{n_reopened_deals} deal{'s' if n_reopened_deals != 1 else ''} closed and then "
            f"reopened or closed the other way (the first: "
            f"{_show(ids[int(order[first])].as_py())}, "
            f"{at(table.pos[order[first]], 'stage')}): dropped {rows_dropped} close "
            f"row{'s' if rows_dropped != 1 else ''} that a later row undid; only a deal's final "
            "close counts, and until a reopening it stays in its stage before the close")
        amount = _carry_amounts(amount, lead, reopened)
        keep = ~reopened
        order, lead, state, created, close, amount, segment, closed, undone = (
            a[keep] for a in (order, lead, state, created, close, amount, segment, closed,
                              undone))
    n = order.size
    new_lead = np.r_[True, lead[1:] != lead[:-1]]
    new_run = new_lead | np.r_[True, state[1:] != state[:-1]]
    # One group per (run, day) for open states, one per run for won / lost.
    new_group = np.where(closed, new_run, new_run | np.r_[True, created[1:] != created[:-1]])
    starts = np.flatnonzero(new_group)
    with_amount = np.where(np.isnan(amount), -1, np.arange(n))
    amount_row = np.maximum.reduceat(with_amount, starts)  # last row with an amount, or -1
    g_amount = np.where(amount_row >= 0, amount[np.maximum(amount_row, 0)], np.nan)
    g_count = starts.size
    g_lead_start = np.maximum.accumulate(np.where(new_lead[starts], np.arange(g_count), 0))
    known = np.maximum.accumulate(np.where(np.isnan(g_amount), -1, np.arange(g_count)))
    before = np.r_[-1, known[:-1]]
    previous = np.where(before >= g_lead_start, g_amount[np.maximum(before, 0)], np.nan)
    keep = new_run[starts] | (~np.isnan(g_amount) & (g_amount != previous))
    starts, g_amount, amount_row = starts[keep], g_amount[keep], amount_row[keep]

    by_close = closed[starts] & ~np.isnat(close[starts])
    # Salesforce keeps a reopened deal's CloseDate when it closes again: a final close whose
    # CloseDate is before the reopening is dated by its CreatedDate instead (and noted).
    later = starts[by_close & ~new_lead[starts]]
    stale = later[undone[later] & (close[later] < created[later - 1])]
    by_close[np.isin(starts, stale)] = False
    _check_close_order(table, order, starts[by_close & ~new_lead[starts]], close, created)
    days = np.where(by_close, close[starts], created[starts])
    folded = n - starts.size
    notes = _date_order_notes(table, ["created", "close"], day_first)
    if later_rows:
        notes.append(f"left out {later_rows} history row{'s' if later_rows != 1 else ''} "
                     f"recorded ({table.names['created']}) after {known_at}: the CRM did not "
                     "have them then (a reopening or a close recorded later)")
    if folded:
        notes.append(f"folded {folded} history row{'s' if folded != 1 else ''} that stay in "
                     "the same model state without a new amount")
    if reopen_note:
        notes.append(reopen_note)
    if stale.size:
        notes.append(f"{stale.size} reopened deal{'s' if stale.size != 1 else ''} closed again "
                     f"with a {table.names['close']} before the reopening (the first: "
                     f"{at(table.pos[order[stale[0]]], 'close')}): dated by "
                     f"{table.names['created']} instead")
    keys = table.keys
    date_column = np.where(by_close, keys.index("close") if "close" in keys else 0,
                           keys.index("created"))
    row = order[starts]
    log = _finish(table, model, as_of, row=row, state=state[starts], days=days,
                  amount=g_amount, amount_row=np.where(amount_row >= 0, order[amount_row], row),
                  segment=segment[starts], date_column=date_column,
                  stage_column=np.full(row.size, keys.index("stage")), ids=ids, notes=notes)
    return replace(log, recorded_after=later_rows)


def _carry_amounts(amount: np.ndarray, lead: np.ndarray, dropped: np.ndarray) -> np.ndarray:
    """``amount`` with each amount of a ``dropped`` row put on the next kept row of its deal
    when that row has none of its own (the amount the deal was known for goes on)."""
    out = amount.copy()
    kept = np.flatnonzero(~dropped)
    given = ~np.isnan(amount)
    for i in np.flatnonzero(dropped & given):  # in order: a later dropped amount wins
        j = np.searchsorted(kept, i)
        if j < kept.size and lead[kept[j]] == lead[i] and not given[kept[j]]:
            out[kept[j]] = amount[i]
    return out


def _reopened_closes(lead: np.ndarray, state: np.ndarray, closed: np.ndarray) -> np.ndarray:
    """Rows (grouped by lead, in time order) that close a deal which later moves on.

    A deal's final run is its last rows in its last state; a closed row before that run was
    undone by what followed it (a reopening, or a close the other way).
    """
    n = lead.size
    if n == 0:
        return np.zeros(0, dtype=bool)
    starts = np.flatnonzero(np.r_[True, lead[1:] != lead[:-1]])
    ends = np.r_[starts[1:], n] - 1
    lead_of_row = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, n]))
    final_state = state[ends][lead_of_row]
    differs = np.where(state != final_state, np.arange(n), -1)
    last_differ = np.maximum.reduceat(differs, starts)[lead_of_row]
    return closed & (np.arange(n) <= last_differ)


# ---- plain deal tables -----------------------------------------------------------------------

def read_opportunities(path: str | Path, model: FunnelModel, *, as_of: dt.date | None = None,
                       id_column: str | None = None, created_column: str | None = None,
                       closed_column: str | None = None, status_column: str | None = None,
                       amount_column: str | None = AUTO, segment_column: str | None = None,
                       won_values: Iterable[str] = (),
                       lost_values: Iterable[str] = (),
                       open_values: Iterable[str] = (),
                       entry_stage: str | None = None,
                       date_order: str = "month-first") -> EventLog:
    """Read a table with one row per deal: created date, closed date, status, amount.

    A deal enters ``entry_stage`` on its created date and, when its status is won or lost,
    closes on its closed date. See the module notes for amounts and skipped rows.

    Parameters
    ----------
    path : str or Path
        The table (CSV, CSV.gz or Parquet).
    model : FunnelModel
        Knows the stages and the segments.
    as_of : datetime.date, optional
        When given, an event dated after it is an error.
    id_column, created_column, closed_column, status_column : str, optional
        By default the first present of: ``opportunity_id``, ``deal_id``, ``id``;
        ``created_date``, ``created_at``, ``create_date``, ``createdate``, ``engage_date``;
        ``closed_date``, ``closed_at``, ``close_date``; ``status``, ``deal_stage``, ``stage``.
    amount_column : str or None, optional
        By default the first present of ``amount``, ``close_value``, ``value``,
        ``deal_value``; ``None`` for no amounts.
    segment_column : str, optional
        A column of segment names (e.g. the product); by default every deal is in the model's
        default segment.
    won_values, lost_values, open_values : iterable of str, optional
        Status values (any case) of won, lost and open deals, besides those the model knows:
        the names its ``[crm_stages]`` maps to won, to lost and to any other state (open), the
        state names themselves, and ``Won`` / ``Closed Won``, ``Lost`` / ``Closed Lost`` and
        ``Open``. A status in none of the three is an error (a typo must not turn a closed
        deal into an open one), as is a status in two.
    entry_stage : str, optional
        The active stage a deal enters on its created date (a model stage or a CRM name);
        by default the model's entry stage.
    date_order : {"month-first", "day-first"}, optional
        How dates that are not ISO 8601 read: ``3/1/2017`` is 1 March (US, the default) or,
        day-first, 3 January (also ``03.01.2017``, ``03-01-2017``).

    Returns
    -------
    EventLog
        ``notes`` counts the open rows skipped for want of a created date.

    Raises
    ------
    InputError
        For any problem with the file or the options, naming the row and original column.
    """
    label = str(path)
    entry = model.entry if entry_stage is None else model.map_stage(str(entry_stage))
    if entry not in model.stages:
        raise InputError(f"{label}: entry_stage {entry_stage!r} is not an active stage of model "
                         f"{model.name} (stages: {', '.join(model.stages)})")
    known = {WON: {"won", "closed won"}, LOST: {"lost", "closed lost"},
             "open": {"open", *(stage.casefold() for stage in model.stages)}}
    for name, state in model._crm_lookup.items():  # to nurture too: not closed, so open
        known[state if state in (WON, LOST) else "open"].add(name)
    given = {WON: _values(won_values), LOST: _values(lost_values), "open": _values(open_values)}
    for kind_name, values in given.items():
        clash = sorted(values & set().union(*(v for k, v in known.items() if k != kind_name)))
        if clash:
            state = next(k for k, v in known.items() if clash[0] in v)
            raise InputError(f"{label}: status {clash[0]!r} is given as {kind_name}, but the "
                             f"model {model.name} reads it as {state}; give each status one "
                             "meaning")
    won_set, lost_set = known[WON] | given[WON], known[LOST] | given[LOST]
    open_set = known["open"] | given["open"]
    clash = sorted(won_set & lost_set | open_set & (won_set | lost_set))
    if clash:
        raise InputError(f"{label}: status {clash[0]!r} is in two of the won, lost and open "
                         "values; give each status one meaning")
    table = _read_table(path, [w for w in (
        _want("lead_id", id_column, _OPP_ID, "id_column", "the deal id"),
        _want("created", created_column, _OPP_CREATED, "created_column", "the created date"),
        _want("closed", closed_column, _OPP_CLOSED, "closed_column", "the closed date"),
        _want("status", status_column, _OPP_STATUS, "status_column", "the status"),
        _want("amount", amount_column, _OPP_AMOUNT, "amount_column", "the amount"),
        _want("segment", segment_column, (), "segment_column", "the segment"),
    ) if w is not None])
    at, pos, columns, names = table.at, table.pos, table.columns, table.names
    day_first = _day_first(path, date_order)
    ids = _ids(table, "deal")
    _check_unique(ids, table, "deal", "the table has one row per deal")
    index, statuses = _encode_text(columns["status"])
    kinds = np.array([2 if s.strip().casefold() in won_set
                      else 3 if s.strip().casefold() in lost_set
                      else 1 if s.strip().casefold() in open_set else -1
                      for s in statuses], dtype=np.int64)  # 1 open, 2 won, 3 lost
    kind = kinds[index]
    i = _first(kind < 0)
    if i is not None:
        raise InputError(f"{at(pos[i], 'status')}: {_show(statuses[index[i]])} is not a won, "
                         f"lost or open status of model {model.name} (won: "
                         f"{', '.join(sorted(won_set))}; lost: {', '.join(sorted(lost_set))}; "
                         f"open: {', '.join(sorted(open_set))}); map it to a state in the "
                         "model's [crm_stages], or name it with --won-values, --lost-values or "
                         "--open-values")
    created, _ = _parse_when(columns["created"], pos, at, "created", day_first=day_first)
    closed, _ = _parse_when(columns["closed"], pos, at, "closed", day_first=day_first)
    amount = _check_amounts(columns, pos, at)
    segment = _segment_codes(columns, model, pos, at)

    is_closed = kind >= 2
    for mask, key, what in ((is_closed & np.isnat(created), "created", "its created date"),
                            (is_closed & np.isnat(closed), "closed", "its closed date")):
        i = _first(mask)
        if i is not None:
            status = "won" if kind[i] == 2 else "lost"
            raise InputError(f"{at(pos[i], key)}: {names[key]} is empty, but the deal is "
                             f"{status} ({names['status']} {_show(statuses[index[i]])}); a "
                             f"closed deal needs {what}")
    i = _first(is_closed & (closed < created))
    if i is not None:
        raise InputError(f"{at(pos[i], 'closed')}: {closed[i]} is before {names['created']} "
                         f"{created[i]} on the same row; a deal cannot close before it was "
                         "created")
    entered = np.flatnonzero(~np.isnat(created))
    if not entered.size:
        raise InputError(f"{label}: no row has a {names['created']} date, so no deal has "
                         "entered the funnel; check created_column")
    skipped = pos.size - entered.size
    notes = _date_order_notes(table, ["created", "closed"], day_first)
    if skipped:
        notes.append(f"skipped {skipped} open row{'s' if skipped != 1 else ''} without "
                     f"{names['created']} (not yet in the modelled funnel)")

    closing = entered[is_closed[entered]]
    row = np.concatenate([entered, closing])
    first = np.r_[np.zeros(entered.size, dtype=np.int64), np.ones(closing.size, dtype=np.int64)]
    order = np.lexsort((first, row))  # each deal's entry, then its close
    row, is_close = row[order], first[order] == 1
    won, lost = model.state_index(WON), model.state_index(LOST)
    state = np.where(is_close, np.where(kind[row] == 2, won, lost), model.state_index(entry))
    days = np.where(is_close, closed[row], created[row])
    with_amount = np.where(is_close, kind[row] == 2, kind[row] == 1)  # won close, open entry
    keys = table.keys
    return _finish(table, model, as_of, row=row, state=state, days=days,
                   amount=np.where(with_amount, amount[row], np.nan), amount_row=row,
                   segment=segment[row],
                   date_column=np.where(is_close, keys.index("closed"), keys.index("created")),
                   stage_column=np.where(is_close, keys.index("status"), keys.index("created")),
                   ids=ids, notes=notes)


# ---- reading the export ----------------------------------------------------------------------

@dataclass(frozen=True)
class _Wanted:
    """A column to find: its key, the header names it may have (first match wins)."""

    key: str
    names: tuple[str, ...]
    required: bool
    option: str
    what: str


def _want(key: str, value: str | None, usual: tuple[str, ...], option: str,
          what: str) -> _Wanted | None:
    """The column for an option: ``AUTO`` -> the usual names if present; ``None`` -> unused
    when optional (required columns: the usual names); a name -> that column, required."""
    required = key in ("lead_id", "stage", "created", "closed", "status")
    if value is None:
        return _Wanted(key, usual, True, option, what) if required else None
    if value == AUTO:
        return _Wanted(key, usual, required, option, what) if usual else None
    return _Wanted(key, (str(value),), True, option, what)


def _norm(name: object) -> str:
    """A column or stage name for matching: case-folded letters, digits and marks only.

    Unicode-aware, so a name in any script matches itself (``製品``, ``Código``) and two
    different names never fold together; NFKC first, so full-width letters and composed or
    decomposed accents match their usual forms. Combining marks are kept (they tell Devanagari
    or Thai names apart); spaces, underscores and punctuation are dropped, as before.
    """
    text = unicodedata.normalize("NFKC", str(name)).casefold()
    return "".join(c for c in text if c.isalnum() or unicodedata.category(c).startswith("M"))


@dataclass(frozen=True)
class _Table:
    """The columns read from an export (blank rows dropped) and how to name their cells."""

    label: str
    columns: dict[str, pa.Array]
    pos: np.ndarray  # per kept row: its 0-based data row (record) in the file
    names: dict[str, str]  # key -> the column's name in the file
    unit: str
    first: int
    header: tuple[str, ...]
    sha256: str

    @property
    def keys(self) -> list[str]:
        return list(self.columns)

    @property
    def at(self) -> Locator:
        """``at(pos, key)`` -> ``"file, row 14, column StageName"``; ``at(pos)`` -> ``"row 14"``."""
        base = _locator(self.label, self.unit, self.first)
        names = self.names

        def at(position: int, column: str | None = None) -> str:
            return base(position, None if column is None else names.get(column, column))
        return at

    def found(self) -> str:
        return ", ".join(repr(h) for h in self.header) or "none"


def _read_table(path: str | Path, wanted: list[_Wanted]) -> _Table:
    label = str(path)
    path = Path(path)
    kind = _kind(path, label)
    data = _read_bytes(path, label)
    names: dict[str, str] = {}
    header: list[str] = []

    def match(columns: list[str], label: str) -> dict[str, int]:
        header.extend(str(c) for c in columns)
        normed = [_norm(c) for c in columns]
        found: dict[str, int] = {}
        for want in wanted:
            for name in want.names:
                hits = [i for i, c in enumerate(normed) if c and c == _norm(name)]
                if len(hits) > 1:
                    raise InputError(f"{label}: columns {columns[hits[0]]!r} (column "
                                     f"{hits[0] + 1}) and {columns[hits[1]]!r} (column "
                                     f"{hits[1] + 1}) both name {want.what}; keep one of them")
                if hits:
                    found[want.key] = hits[0]
                    break
            else:
                if want.required:
                    shown = ", ".join(repr(str(c)) for c in columns) or "none"
                    looked = " or ".join(want.names)
                    flag = "--" + want.option.replace("_", "-")
                    raise InputError(f"{label}: missing column {looked} ({want.what}; columns "
                                     f"found: {shown}); name it with {flag}")
        used: dict[int, str] = {}
        for key, i in found.items():
            if i in used:
                raise InputError(f"{label}: column {columns[i]!r} cannot be both "
                                 f"{_what(wanted, used[i])} and {_what(wanted, key)}")
            used[i] = key
        names.update({key: str(columns[i]).strip() for key, i in found.items()})
        return dict(sorted(found.items(), key=lambda item: item[1]))

    file_rows = None
    if kind == "parquet":
        columns, unit, first = _parse_parquet(data, label, match), "record", 1
    else:
        (columns, file_rows), unit, first = \
            _parse_csv(data, label, gz=kind == "csv.gz", match=match), "row", 2
    columns, pos = _drop_blank(columns, label, unit + "s", file_rows)
    return _Table(label=label, columns=columns, pos=pos, names=names, unit=unit, first=first,
                  header=tuple(header), sha256=hashlib.sha256(data).hexdigest())


def _what(wanted: list[_Wanted], key: str) -> str:
    return next(w.what for w in wanted if w.key == key)


def _values(values: Iterable[str] | None) -> set[str]:
    if values is None:
        return set()
    if isinstance(values, str):
        values = (values,)
    return {str(v).strip().casefold() for v in values}  # "" names the blank status


def _encode_text(values: pa.Array) -> tuple[np.ndarray, list[str]]:
    encoded = _text(values).dictionary_encode()
    return (encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64),
            encoded.dictionary.to_pylist())


# ---- row checks ------------------------------------------------------------------------------

def _ids(table: _Table, what: str) -> pa.Array:
    """The id column as stripped text; an empty id is an error."""
    ids = _text(table.columns["lead_id"])
    i = _first(_numpy_bool(pc.equal(ids, "")))
    if i is not None:
        raise InputError(f"{table.at(table.pos[i], 'lead_id')}: {table.names['lead_id']} is "
                         f"empty; every row needs the {what} it belongs to")
    return ids


def _check_unique(ids: pa.Array, table: _Table, what: str, why: str) -> None:
    """One row per id: the first repeat in the file is an error."""
    if len(pc.unique(ids)) == len(ids):
        return
    codes = ids.dictionary_encode().indices.to_numpy(zero_copy_only=False)
    repeat = pd.Series(codes, copy=False).duplicated().to_numpy()
    i = _first(repeat)
    if i is None:
        return
    j = int(np.flatnonzero(codes == codes[i])[0])
    raise InputError(f"{table.at(table.pos[i], 'lead_id')}: {what} {_show(ids[i].as_py())} is "
                     f"also on {table.at(table.pos[j])}; {why}, so remove or merge the "
                     "duplicate")


def _check_duplicate_rows(table: _Table, keys: list[str]) -> None:
    """No row may repeat an earlier one in every column read."""
    present = [k for k in keys if k in table.columns]
    codes = pd.DataFrame({k: _encode_text(table.columns[k])[0] for k in present}, copy=False)
    i = _first(codes.duplicated().to_numpy())
    if i is None:
        return
    same = np.flatnonzero((codes == codes.iloc[i]).all(axis=1).to_numpy())[0]
    shown = ", ".join(table.names[k] for k in present[:-1]) + f" and {table.names[present[-1]]}"
    raise InputError(f"{table.at(table.pos[i], 'lead_id')}: this row repeats "
                     f"{table.at(table.pos[same])} (same {shown}); delete the duplicate")


def _check_close_order(table: _Table, order: np.ndarray, closing: np.ndarray, close: np.ndarray,
                       created: np.ndarray) -> None:
    """A close dated by its CloseDate must not precede the deal's previous history row.

    ``order``: the rows in (deal, CreatedDate) order; ``closing``: indices into that order of
    closes dated by CloseDate that are not a deal's first row; ``close`` / ``created``: dates
    in that order.
    """
    early = closing[close[closing] < created[closing - 1]]
    if not early.size:
        return
    k = int(early[np.argmin(table.pos[order[early]])])
    at, names = table.at, table.names
    raise InputError(f"{at(table.pos[order[k]], 'close')}: {close[k]} is earlier than the "
                     f"deal's previous stage change ({at(table.pos[order[k - 1]])}, "
                     f"{names['created']} {created[k - 1]}); correct the {names['close']}, or "
                     f"leave it empty to date the close by {names['created']}")


def _check_as_of(days: np.ndarray, pos: np.ndarray, at: Locator, key: str,
                 as_of: dt.date | None) -> None:
    if as_of is None:
        return
    i = _first(days > np.datetime64(as_of, "D"))
    if i is not None:
        raise InputError(f"{at(pos[i], key)}: {days[i]} is after --as-of {as_of}; a typo in "
                         "the date? Otherwise pass a later --as-of (cutting the export there "
                         "would lose the deals open then and closed later)")


def _day_first(path: str | Path, date_order: str) -> bool:
    if date_order not in DATE_ORDERS:
        raise InputError(f"{Path(path).name}: date order {date_order!r} is not one of "
                         f"{', '.join(DATE_ORDERS)}")
    return date_order == "day-first"


def _date_order_notes(table: _Table, keys: list[str], day_first: bool) -> list[str]:
    """A note when no date in the columns ``keys`` shows the order of day and month.

    A date written with slashes, dots or dashes whose two numbers are both 12 or below and
    differ (``04/03/2024``) reads as two dates; a file holding only such dates was read in the
    order asked for (month-first by default) without any evidence for it: an export of
    activity that never falls after the 12th of a month is as likely European as American.
    One date with its day above 12 settles it (a day first above 12 is an error already).
    """
    decisive, example = False, None
    for key in keys:
        values = table.columns.get(key)
        if values is None or not (pa.types.is_string(values.type)
                                  or pa.types.is_large_string(values.type)):
            continue
        parts = pc.extract_regex(_text(values), _DMY_PARTS if day_first else _US_PARTS)
        valid = _numpy_bool(pc.is_valid(parts))
        if not valid.any():
            continue
        day, month = (np.where(valid, pc.cast(pc.if_else(valid, parts.field(name), "0"),
                                              pa.int64()).to_numpy(zero_copy_only=False), 0)
                      for name in "dm")
        decisive |= bool(np.any(valid & (day > 12)))
        either = np.flatnonzero(valid & (day != month) & (day <= 12) & (month <= 12))
        if example is None and either.size:
            example = (table.at(table.pos[either[0]], key), values[int(either[0])].as_py())
    if decisive or example is None:
        return []
    where, shown = example
    read, other, fix = (("day/month/year", "month/day/year", "drop --date-order day-first")
                        if day_first else
                        ("month/day/year", "day/month/year", "pass --date-order day-first"))
    return [f"no date shows whether the day or the month comes first (none has a number "
            f"above 12), so each also reads as {other} (the first: {_show(str(shown).strip())}, "
            f"{where}); they were read as {read}: {fix} if the export writes {other}"]


def _parse_when(values: pa.Array, pos: np.ndarray, at: Locator, key: str, *,
                required: bool = False, times: bool = False, day_first: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per row: (the date as datetime64[D], NaT if empty; seconds after midnight, 0 if none).

    Seconds are only worked out for ISO 8601 text when ``times`` is true (else 0).

    Raises for text that is no date (or an empty cell when ``required``) and for dates outside
    the plausible window, naming the row and ``at``'s name for ``key``.
    """
    kind = values.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        days = _dates(values)
        seconds = np.zeros(days.size, dtype=np.int64)
        if pa.types.is_timestamp(kind):
            local = pc.local_timestamp(values) if kind.tz is not None else values
            stamps = local.to_numpy(zero_copy_only=False)
            known = ~np.isnat(stamps)
            seconds[known] = ((stamps[known] - stamps[known].astype("datetime64[D]"))
                              // np.timedelta64(1, "s"))
    else:
        text = _text(values)
        days = np.full(len(text), np.datetime64("NaT"), dtype="datetime64[D]")
        seconds = np.zeros(len(text), dtype=np.int64)
        bad = np.zeros(len(text), dtype=bool)
        iso = _numpy_bool(pc.match_substring_regex(text, _ISO))
        # ISO 8601 (the usual case, often with a distinct time on every row): the date part
        # and the time fields are at fixed places. Others (US dates, errors): per distinct text.
        for rows, parse in ((np.flatnonzero(iso), _parse_iso),
                            (np.flatnonzero(~iso), _parse_other)):
            if rows.size:
                part = text if rows.size == len(text) else text.take(pa.array(rows))
                days[rows], seconds[rows], bad[rows] = (parse(part, times, day_first)
                                                        if parse is _parse_other else
                                                        parse(part, times))
        i = _first(bad)
        if i is not None:
            shown = text[i].as_py()
            other = _parse_distinct(pa.array([shown.strip()]), not day_first)[2]
            hint = _DATE_HINT_DAY_FIRST if day_first else _DATE_HINT
            if not other[0]:  # a date read the other way round
                hint = ("it reads as day/month/year: pass --date-order day-first" if not day_first
                        else "it reads as month/day/year: drop --date-order day-first")
            raise InputError(f"{at(pos[i], key)}: {_show(shown)} is not a date ({hint})")
    if required:
        i = _first(np.isnat(days))
        if i is not None:
            raise InputError(f"{at(pos[i], key)}: the date is empty; every row needs one")
    i = _first((days < EARLIEST) | (days > LATEST))
    if i is not None:
        raise InputError(f"{at(pos[i], key)}: {_show(values[i].as_py())} is not a plausible "
                         f"date (expected {EARLIEST} to {LATEST}); replace placeholder dates "
                         "with the real ones")
    return days, seconds


def _parse_iso(text: pa.Array, times: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For texts of ISO 8601 shape: (date, seconds after midnight or 0, not-a-date mask)."""
    index, (days, _, bad) = _per_distinct(pc.utf8_slice_codeunits(text, 0, 10))
    if not times:
        return days[index], np.zeros(index.size, dtype=np.int64), bad[index]

    def field(start: int, after: pa.Array | None = None) -> np.ndarray:
        digits = pc.utf8_slice_codeunits(text, start, start + 2)
        if after is not None:
            digits = pc.if_else(after, digits, "")
        digits = pc.if_else(pc.equal(digits, ""), "0", digits)
        return pc.cast(digits, pa.int64()).to_numpy(zero_copy_only=False)

    minutes = pc.equal(pc.utf8_slice_codeunits(text, 13, 14), ":")
    secs = pc.and_(minutes, pc.equal(pc.utf8_slice_codeunits(text, 16, 17), ":"))
    seconds = field(11) * 3600 + field(14, minutes) * 60 + field(17, secs)
    return days[index], seconds, bad[index]


def _parse_other(text: pa.Array, times: bool, day_first: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For other texts (US or, with ``day_first``, day/month/year dates; errors): (date,
    seconds after midnight, not-a-date mask).

    Their times are always parsed (they are few distinct texts); ``times`` is not needed.
    """
    index, (days, seconds, bad) = _per_distinct(text, day_first)
    return days[index], seconds[index], bad[index]


def _per_distinct(text: pa.Array, day_first: bool = False
                  ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """(per-row index into the distinct texts, :func:`_parse_distinct` of those)."""
    encoded = text.dictionary_encode()
    index = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return index, _parse_distinct(encoded.dictionary, day_first)


def _parse_distinct(text: pa.Array, day_first: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For distinct stripped texts: (date, seconds after midnight, not-a-date mask)."""
    iso = pc.extract_regex(text, _ISO_PARTS)
    us = pc.extract_regex(text, _DMY_PARTS if day_first else _US_PARTS)
    is_iso = _numpy_bool(pc.is_valid(iso))
    is_us = _numpy_bool(pc.is_valid(us)) & ~is_iso

    def part(name: str) -> np.ndarray:
        out = np.zeros(len(text), dtype=np.int64)
        for parts, mask in ((iso, is_iso), (us, is_us)):
            values = parts.field(name)
            digits = pc.if_else(pc.equal(values, ""), "0", values)
            out = np.where(mask, pc.cast(digits, pa.int64()).to_numpy(zero_copy_only=False), out)
        return out

    year, month, day, hour, minute, second = (part(p) for p in "ymdHMS")
    noon = pc.utf8_lower(us.field("p"))
    has_p = is_us & _numpy_bool(pc.not_equal(noon, ""))
    ok = (is_iso | is_us) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= 31)
    ok &= np.where(has_p, (hour >= 1) & (hour <= 12), hour <= 23)
    hour = np.where(has_p, hour % 12 + np.where(_numpy_bool(pc.equal(noon, "pm")), 12, 0), hour)
    months = np.where(ok, (year - 1970) * 12 + month - 1, 0).astype("datetime64[M]")
    days = months.astype("datetime64[D]") + np.where(ok, day - 1, 0)
    ok &= days.astype("datetime64[M]") == months  # 2017-02-30 is no date
    empty = _numpy_bool(pc.equal(text, ""))
    days = np.where(ok, days, np.datetime64("NaT"))
    return days, hour * 3600 + minute * 60 + second, ~ok & ~empty


# ---- events ----------------------------------------------------------------------------------

class _EventLocator:
    """Locates an event (by its position) in the export: its row and original column."""

    def __init__(self, table: _Table, order: np.ndarray, rows: dict[str, np.ndarray],
                 columns: dict[str, np.ndarray]) -> None:
        self.base = table.at
        self.pos = table.pos
        self.keys = table.keys
        self.order = order  # event index at each position
        self.rows = rows  # contract column -> per event: index of its table row
        self.columns = columns  # contract column -> per event: index into table.keys

    def __call__(self, position: int, column: str | None = None) -> str:
        event = self.order[int(position)]
        which = column or "entered_at"
        row = self.pos[self.rows[which][event]]
        if column is None:
            return self.base(row)
        return self.base(row, self.keys[self.columns[column][event]])


def _finish(table: _Table, model: FunnelModel, as_of: dt.date | None, *, row: np.ndarray,
            state: np.ndarray, days: np.ndarray, amount: np.ndarray, amount_row: np.ndarray,
            segment: np.ndarray, date_column: np.ndarray, stage_column: np.ndarray,
            ids: pa.Array, notes: list[str]) -> EventLog:
    """Validate the events built from an export (each lead's in time order) -> EventLog.

    ``row``: per event, the table row it comes from; ``date_column`` / ``stage_column``: per
    event, the index in ``table.keys`` of the column its date / stage comes from.
    """
    n = row.size
    keys = table.keys

    def constant(key: str) -> np.ndarray:
        return np.full(n, keys.index(key) if key in keys else 0, dtype=np.int64)

    rows = {"lead_id": row, "stage": row, "entered_at": row, "amount": amount_row,
            "segment": row}
    columns = {"lead_id": constant("lead_id"), "stage": stage_column,
               "entered_at": date_column, "amount": constant("amount"),
               "segment": constant("segment")}
    # Positions follow the file: by source row, then event order within the row.
    order = np.lexsort((np.arange(n), table.pos[row]))
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n)
    at = _EventLocator(table, order, rows, columns)
    segment_names = pa.array(["", *model.segment_names], pa.string())
    events = {
        "lead_id": ids.take(pa.array(row)),
        "stage": pa.array(list(model.states), pa.string()).take(pa.array(state)),
        "entered_at": pa.array(np.asarray(days, dtype="datetime64[D]")),
        "amount": pa.array(np.asarray(amount, dtype=np.float64)),
        "segment": segment_names.take(pa.array(segment + 1)),
    }
    if as_of is not None:
        as_of = _as_date(as_of)
    frame, pos = validate_events(events, pos, model, at, as_of=as_of)
    return EventLog(frame=frame, path=table.label, as_of=as_of, sha256=table.sha256,
                    notes=tuple(notes), pos=pos, at=at)
