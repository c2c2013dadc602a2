"""The quarantine (隔离区): reading it, masking it, and retrying what it holds.

Rows get into ``cdcsync.quarantine`` through the checkpoint transaction (cdcsync.engine.checkpoint).
This module is the other half: list/show without patient data, and retry:

1. an insert, update or snapshot read: re-read the CURRENT row from the mirror table by primary
   key (it may have been corrected since); a row that is gone is marked ``discarded`` with the
   reason in ``message``. A delete (or truncate): the stored before-image is sent again as that
   delete, unless the row is back in the mirror (a later change superseded the delete: marked
   ``discarded``);
2. the row goes through the validation stage with the rules in force (the daemon's own stage,
   :func:`cdcsync.validate.stage.transform_for`; a fixed mapping takes effect here);
3. what passes is sent to the destination's sink as an event with the SAME id (so a receiver
   that already has it drops it), and on acceptance marked ``released``, moving its count from
   ``quarantined`` to ``delivered`` in ``cdcsync.delivery_stats`` in the same transaction;
4. what still fails stays ``held`` with its new rule/field/message and ``attempts + 1``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from cdcsync.engine.calendar import BusinessCalendar, business_day
from cdcsync.engine.checkpoint import note_acks
from cdcsync.event import (
    SINK_REJECTED_RULE,
    Batch,
    Change,
    Event,
    Op,
    Row,
    Transform,
    dumps,
    is_snapshot_id,
    str_to_lsn,
)
from cdcsync.mapping.mapper import unmapped_row
from cdcsync.sink import Sink
from cdcsync.spec import Spec, load_spec

log = logging.getLogger(__name__)

MASK = "***"
STATUSES = ("held", "released", "discarded")
GONE_RULE = "GONE001"
GONE_MESSAGE = "镜像库中已无此记录（已删除或主键已变），不再重发"
SUPERSEDED_RULE = "GONE002"
SUPERSEDED_MESSAGE = "该记录删除后又重新写入镜像库，删除已被后续变更取代，不再重发"
NO_IMAGE_MESSAGE = "隔离条目中没有被删除记录的内容，无法重发删除"


@dataclass
class Entry:
    event_id: str
    destination: str
    table_name: str
    primary_key: dict[str, Any]
    lsn: str
    rule_id: str
    field: str | None
    message: str
    raw_row: dict[str, Any] | None
    first_seen: dt.datetime
    last_seen: dt.datetime
    attempts: int
    status: str
    op: str | None = None  # the original change (NULL for rows quarantined before migration 003)
    tx_id: int | None = None
    commit_ts: dt.datetime | None = None
    business_date: dt.date | None = None  # the day the engine counted it on (NULL before migration 074)

    def summary(self) -> dict[str, Any]:
        """Everything but the raw row (safe to print and log)."""
        return {
            "event_id": self.event_id, "destination": self.destination, "table": self.table_name,
            "primary_key": self.primary_key, "lsn": self.lsn, "rule_id": self.rule_id, "field": self.field,
            "message": self.message, "first_seen": self.first_seen.isoformat(timespec="seconds"),
            "last_seen": self.last_seen.isoformat(timespec="seconds"), "attempts": self.attempts,
            "status": self.status,
            "business_date": self.business_date.isoformat() if self.business_date else None,
        }


@dataclass(frozen=True)
class Filters:
    table: str | None = None
    rule: str | None = None
    since: dt.datetime | None = None
    destination: str | None = None
    status: str | None = "held"  # None: every status
    event_id: str | None = None


_COLUMNS = ("event_id, destination, table_name, primary_key, lsn::text AS lsn, rule_id, field, message, raw_row,"
            " first_seen, last_seen, attempts, status, op, tx_id, commit_ts, business_date")


def _where(f: Filters) -> tuple[sql.Composable, list[Any]]:
    parts: list[sql.Composable] = []
    args: list[Any] = []
    for column, value in (("table_name", f.table), ("rule_id", f.rule), ("destination", f.destination),
                          ("status", f.status), ("event_id", f.event_id)):
        if value is not None:
            parts.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            args.append(value)
    if f.since is not None:
        parts.append(sql.SQL("last_seen >= %s"))
        args.append(f.since)
    if not parts:
        return sql.SQL("true"), args
    return sql.SQL(" AND ").join(parts), args


def list_entries(conn: psycopg.Connection[Any], filters: Filters = Filters(), limit: int | None = None
                 ) -> list[Entry]:
    where, args = _where(filters)
    query = sql.SQL("SELECT " + _COLUMNS + " FROM cdcsync.quarantine WHERE {} ORDER BY first_seen, lsn, event_id"
                    ).format(where)
    if limit is not None:
        query = query + sql.SQL(" LIMIT {}").format(sql.Literal(limit))
    with conn.cursor(row_factory=dict_row) as cur:
        return [Entry(**r) for r in cur.execute(query, args).fetchall()]


def find_entry(conn: psycopg.Connection[Any], key: str, destination: str | None = None) -> list[Entry]:
    """Entries whose event id equals ``key`` or ends with it (ids are long; a unique tail is enough)."""
    where, args = _where(Filters(destination=destination, status=None))
    query = sql.SQL("SELECT " + _COLUMNS + " FROM cdcsync.quarantine WHERE {} AND (event_id = %s OR event_id LIKE %s)"
                    " ORDER BY destination, event_id").format(where)
    pattern = "%" + key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, [*args, key, pattern]).fetchall()
    exact = [r for r in rows if r["event_id"] == key]
    return [Entry(**r) for r in (exact or rows)]


def masked_row(spec: Spec, table: str, row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``row`` with every pii field of the table (and its ``_local`` twin) replaced by ``***``.

    pii covers names, ID numbers, phones, addresses, dates of birth and every free-text field
    (cdcsync/spec/dataset.yaml). A column the spec does not know (a table outside it, a column
    the hospital added) cannot be judged, so it is masked too."""
    if row is None:
        return None
    if not spec.has_table(table):  # not in the spec: we cannot tell what is patient data
        return {k: MASK for k in row}
    t = spec.table(table)
    shown = {f.name for f in t.fields if not f.pii}

    def visible(k: str) -> bool:
        return k in shown or (k.endswith("_local") and k.removesuffix("_local") in shown)

    return {k: (v if visible(k) or v in (None, "") else MASK) for k, v in row.items()}


def counts(conn: psycopg.Connection[Any], filters: Filters = Filters(status=None)) -> dict[tuple[str, str, str], int]:
    """(table, rule, status) -> number of entries."""
    where, args = _where(filters)
    query = sql.SQL("SELECT table_name, rule_id, status, count(*) FROM cdcsync.quarantine WHERE {}"
                    " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3").format(where)
    return {(t, r, s): n for t, r, s, n in conn.execute(query, args).fetchall()}


# --- retry ------------------------------------------------------------------------------------


@dataclass
class RetryResult:
    released: list[str] = field(default_factory=list)
    still_held: list[str] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)
    rejected_by_sink: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.released) + len(self.still_held) + len(self.discarded) + len(self.rejected_by_sink)


def read_current_row(conn: psycopg.Connection[Any], schema: str, table: str, pk: Mapping[str, Any]
                     ) -> Row | None:
    """The row as it is now in the mirror table (values as Python types, like the stream's)."""
    if not pk:
        return None
    cond = sql.SQL(" AND ").join(
        sql.SQL("{} = %s").format(sql.Identifier(k)) for k in pk
    )
    query = sql.SQL("SELECT * FROM {}.{} WHERE {}").format(sql.Identifier(schema), sql.Identifier(table), cond)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, list(pk.values())).fetchall()
    return rows[0] if len(rows) == 1 else None


def released_day(calendar: BusinessCalendar, entry: Entry) -> dt.date:
    """The day the engine counted a quarantined row for (its statistics move from quarantined to
    delivered on that day): as stored with it (migration 074). For rows quarantined before that,
    the calendar's rule on the row as the quarantine keeps it (JSON: a business time comes back as
    ISO text), else the commit date; ``first_seen`` only for rows quarantined before the commit
    time was kept (migration 003)."""
    if entry.business_date is not None:
        return entry.business_date
    commit_ts = entry.commit_ts
    fallback = calendar.commit_day(commit_ts) if commit_ts is not None else entry.first_seen.date()
    row = entry.raw_row
    name = calendar.day_field(entry.table_name)
    if row is None or name is None:
        return fallback
    value = row.get(name)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return fallback
    return business_day(value) or fallback


def _op_of(entry: Entry) -> Op:
    return cast(Op, entry.op or ("r" if is_snapshot_id(entry.event_id) else "c"))


def _change_for(entry: Entry, before: Row | None, after: Row | None) -> Change:
    """The original change (op, transaction, commit time) around the row to send now."""
    return Change(_op_of(entry), "emr", entry.table_name, before, after, str_to_lsn(entry.lsn), entry.tx_id or 0,
                  entry.commit_ts or entry.first_seen, 0, is_snapshot_id(entry.event_id))


def _deleted_image(spec: Spec, entry: Entry) -> Row | None:
    """The before-image of a quarantined delete as the mirror had it (a row the platform refused
    was stored as sent, i.e. mapped: it goes through the stage again from its local codes)."""
    if entry.raw_row is None:
        return None
    if spec.has_table(entry.table_name):
        return unmapped_row(spec.table(entry.table_name), entry.raw_row)
    return dict(entry.raw_row)


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=lambda v: dumps(v).decode())


def _chunks(entries: Sequence[Entry], size: int) -> Iterator[Sequence[Entry]]:
    for i in range(0, len(entries), size):
        yield entries[i:i + size]


def retry(conn: psycopg.Connection[Any], stage: Transform, sinks: Mapping[str, Sink],
          filters: Filters = Filters(), spec: Spec | None = None, batch_size: int = 500,
          calendar: BusinessCalendar | None = None) -> RetryResult:
    """Retry the held entries matching ``filters`` (see the module docstring). ``stage``: the
    validation stage of the daemon (:func:`cdcsync.validate.stage.transform_for`); ``spec``: the
    stage's dataset spec (default: the packaged one); ``calendar``: its business calendar (the
    engine's rule for the day a released row counts for; default: built from ``spec``)."""
    spec = spec or load_spec()
    calendar = calendar or BusinessCalendar(spec)
    if calendar.tz is None:  # "the commit date" means the database's day, as in the engine
        calendar.tz = conn.info.timezone
    result = RetryResult()
    filters = Filters(filters.table, filters.rule, filters.since, filters.destination, "held", filters.event_id)
    entries = [e for e in list_entries(conn, filters) if e.destination in sinks]
    for chunk in _chunks(entries, batch_size):
        by_dest: dict[str, list[tuple[Entry, Event, dt.date]]] = {}
        updates: list[tuple[Any, ...]] = []
        discards: list[tuple[Any, ...]] = []
        for entry in chunk:
            row = read_current_row(conn, "emr", entry.table_name, entry.primary_key)
            op = _op_of(entry)
            image = _deleted_image(spec, entry) if op == "d" and row is None else None
            if op == "d" and image is None:
                # The row is back (a later change superseded the delete), or nothing to resend.
                rule, why = (SUPERSEDED_RULE, SUPERSEDED_MESSAGE) if row is not None else (GONE_RULE, NO_IMAGE_MESSAGE)
                discards.append((rule, why, entry.destination, entry.event_id))
                result.discarded.append(entry.event_id)
                continue
            if op == "d" or op == "t":
                change = _change_for(entry, image, None)  # the delete (truncate) itself, sent again
            elif row is None:
                discards.append((GONE_RULE, GONE_MESSAGE, entry.destination, entry.event_id))
                result.discarded.append(entry.event_id)
                continue
            else:
                change = _change_for(entry, None, row)
            out = stage(change)
            if not isinstance(out, Event):
                updates.append((out.rule_id, out.field, out.message, _jsonb(change.row), entry.destination,
                                entry.event_id))
                result.still_held.append(entry.event_id)
                continue
            out.id = entry.event_id  # the id it was quarantined under: a receiver that has it drops it
            day = released_day(calendar, entry)
            by_dest.setdefault(entry.destination, []).append((entry, out, day))
        released: list[tuple[str, Entry, dt.date]] = []
        sink_rejects: list[tuple[Any, ...]] = []
        for dest, items in by_dest.items():
            batch = Batch(events=[ev for _, ev, _ in items], business_dates=[d for _, _, d in items])
            ack = sinks[dest].send(batch)
            accepted = set(ack.accepted)
            for entry, ev, day in items:
                reason = ack.rejected.get(ev.id)
                if ev.id in accepted and reason is None:
                    released.append((dest, entry, day))
                    result.released.append(ev.id)
                else:
                    why = reason or "目的地未确认该事件"
                    image = ev.after if ev.after is not None else ev.before  # a delete keeps its before-image
                    rule = ack.rejected_rules.get(ev.id, SINK_REJECTED_RULE)  # PLT…: the platform refuses it
                    sink_rejects.append((rule, ack.rejected_fields.get(ev.id), f"目的地拒收：{why}", _jsonb(image),
                                         dest, ev.id))
                    result.rejected_by_sink.append(ev.id)
        _record(conn, updates + sink_rejects, discards, released)
    if entries:
        log.info("quarantine retry: %d released, %d still held, %d discarded, %d rejected by destination",
                 len(result.released), len(result.still_held), len(result.discarded), len(result.rejected_by_sink))
    return result


def _record(conn: psycopg.Connection[Any], held: list[tuple[Any, ...]], discards: list[tuple[Any, ...]],
            released: list[tuple[str, Entry, dt.date]]) -> None:
    """One transaction: new reasons, discards, releases and the stats move."""
    with conn.transaction():
        cur = conn.cursor()
        if held:
            cur.executemany(
                "UPDATE cdcsync.quarantine SET rule_id = %s, field = %s, message = %s, raw_row = %s,"
                " attempts = attempts + 1, last_seen = now() WHERE destination = %s AND event_id = %s", held)
        if discards:
            cur.executemany(
                "UPDATE cdcsync.quarantine SET rule_id = %s, field = NULL, message = %s, status = 'discarded',"
                " attempts = attempts + 1, last_seen = now() WHERE destination = %s AND event_id = %s", discards)
        if released:
            cur.executemany(
                "UPDATE cdcsync.quarantine SET status = 'released', attempts = attempts + 1, last_seen = now()"
                " WHERE destination = %s AND event_id = %s", [(d, e.event_id) for d, e, _ in released])
            stats: dict[tuple[str, str, dt.date], int] = {}
            for dest, entry, day in released:
                key = (dest, entry.table_name, day)
                stats[key] = stats.get(key, 0) + 1
            cur.executemany(
                "INSERT INTO cdcsync.delivery_stats AS s (destination, table_name, business_date, delivered,"
                " quarantined, batches) VALUES (%s, %s, %s, %s, 0, 1) ON CONFLICT (destination, table_name,"
                " business_date) DO UPDATE SET delivered = s.delivered + EXCLUDED.delivered,"
                " quarantined = greatest(s.quarantined - EXCLUDED.delivered, 0), batches = s.batches + 1,"
                " last_ack_at = now()",
                [(d, t, day, n) for (d, t, day), n in stats.items()])
        if released:
            note_acks(cur, sorted({d for d, _, _ in released}))


__all__ = [
    "GONE_RULE",
    "MASK",
    "SUPERSEDED_RULE",
    "STATUSES",
    "Entry",
    "Filters",
    "RetryResult",
    "counts",
    "find_entry",
    "list_entries",
    "masked_row",
    "read_current_row",
    "retry",
]
