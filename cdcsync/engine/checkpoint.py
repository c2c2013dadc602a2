"""Acknowledged positions, delivery statistics and quarantine rows, written in one transaction.

Statistics and quarantine rows of a transaction are held in memory until the transaction's
commit is acknowledged as a whole (a huge transaction spans several batches), and are then
written together with the new acknowledged LSN. After a crash, every transaction above the
recorded LSN is replayed and counted again from scratch, every transaction at or below it is
skipped: nothing is counted twice, nothing is lost.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from cdcsync.engine.accounting import BEIJING, PendingAccounts, Totals, write_aggregates
from cdcsync.engine.calendar import BusinessCalendar
from cdcsync.event import Ack, Batch, Event, Rejected, Row, dumps, dumps_str_keys, lsn_to_str, str_to_lsn
from cdcsync.source.catalog import PkLookup

log = logging.getLogger(__name__)

_EVERYTHING = 1 << 64


@dataclass(slots=True)
class CheckpointState:
    acked_lsn: int
    snapshot_done: bool
    exists: bool


def _json(value: Any) -> Jsonb:
    # Row values hold Decimal/datetime/bytes: serialize them our way, then hand over as jsonb.
    return Jsonb(value, dumps=lambda v: dumps(v).decode())


class Checkpointer:
    """Per destination; owns a normal (non-replication) connection to the mirror database."""

    def __init__(self, conn: psycopg.Connection[Any], destination: str, slot: str,
                 pk_lookup: PkLookup | None = None, interval_s: float = 0.0,
                 calendar: BusinessCalendar | None = None) -> None:
        """``calendar``: the business fields and timeliness classes of the delay histograms
        (the pipeline passes its own; None: the packaged spec's)."""
        self.conn = conn
        self.destination = destination
        self.slot = slot
        self.calendar = calendar or BusinessCalendar.packaged()
        self.acked_lsn = 0
        self.accounts = PendingAccounts(self.calendar)  # per transaction, until written
        # Acknowledged transactions are written at most every ``interval_s`` (one transaction for
        # many batches). Until then they are not confirmed to PostgreSQL: a crash replays them,
        # and the deterministic ids make that harmless.
        self.interval_s = interval_s
        self.due_at = 0.0  # time.monotonic() of the next write
        self._pending: tuple[int, int] | None = None  # (commit_through, flush_lsn) acked, unwritten
        self.keys = DeliveredKeys(destination, pk_lookup or (lambda schema, table: ()))

    # -- state ------------------------------------------------------------------------------

    def load(self) -> CheckpointState:
        with self.conn.transaction():
            row = self.conn.execute(
                "SELECT acked_lsn::text, snapshot_done FROM cdcsync.checkpoint WHERE destination = %s",
                (self.destination,)).fetchone()
        self.reset_pending()
        if row is None:
            self.acked_lsn = 0
            return CheckpointState(0, False, False)
        self.acked_lsn = str_to_lsn(row[0])
        return CheckpointState(self.acked_lsn, bool(row[1]), True)

    def reset_pending(self) -> None:
        """Forget unacknowledged partial transactions (they will be replayed after a reconnect)."""
        self.keys.clear()
        self.accounts.clear()
        self._pending = None

    def start_snapshot(self) -> None:
        """A (re)started initial snapshot: position back to zero, snapshot not done."""
        with self.conn.transaction():
            self.conn.execute(
                "INSERT INTO cdcsync.checkpoint (destination, slot_name, acked_lsn, snapshot_done)"
                " VALUES (%s, %s, '0/0', false) ON CONFLICT (destination) DO UPDATE SET"
                " slot_name = EXCLUDED.slot_name, acked_lsn = '0/0', snapshot_done = false, updated_at = now()",
                (self.destination, self.slot))
        self.acked_lsn = 0
        self.reset_pending()

    def mark_streaming(self, lsn: int) -> None:
        """No snapshot wanted: record the slot's start position and call the snapshot done."""
        with self.conn.transaction():
            self.conn.execute(
                "INSERT INTO cdcsync.checkpoint (destination, slot_name, acked_lsn, snapshot_done)"
                " VALUES (%s, %s, %s, true) ON CONFLICT (destination) DO UPDATE SET"
                " slot_name = EXCLUDED.slot_name, acked_lsn = EXCLUDED.acked_lsn, snapshot_done = true,"
                " updated_at = now()",
                (self.destination, self.slot, lsn_to_str(lsn)))
        self.acked_lsn = lsn

    # -- recording --------------------------------------------------------------------------

    def record(self, batch: Batch, ack: Ack, sink_rejections: list[Rejected] | None = None,
               position: bool = True) -> int | None:
        """Account for an acknowledged batch; returns the LSN now safe to flush, or None when
        the batch did not complete any transaction. ``position=False`` (an ad-hoc re-snapshot
        outside the stream): statistics and quarantine only, the position is not touched."""
        self.keys.track(batch.events, ack.rejected)
        self.accounts.add(batch, ack.rejected, sink_rejections or (), dt.datetime.now(BEIJING))
        if self.keys.full:  # a long snapshot writes no checkpoint until its end
            with self.conn.transaction():
                self.keys.write(self.conn)
        if batch.snapshot_done_lsn is not None:
            self._pending = None  # the snapshot's write covers everything
            self._write(_EVERYTHING, batch.snapshot_done_lsn, snapshot_done=True, position=position)
            return batch.snapshot_done_lsn if position else None
        if not position:
            return None
        if batch.commit_through is None or batch.flush_lsn is None or batch.flush_lsn <= self.acked_lsn:
            return None
        self._pending = (batch.commit_through, batch.flush_lsn)
        return self.write_pending() if time.monotonic() >= self.due_at else None

    @property
    def pending(self) -> bool:
        """Acknowledged transactions wait to be written (their LSN is not confirmed yet)."""
        return self._pending is not None

    def write_pending(self) -> int | None:
        """Write what was acknowledged since the last write; returns the LSN now safe to flush."""
        if self._pending is None:
            return None
        through, flush_lsn = self._pending
        self._pending = None
        self._write(through, flush_lsn, snapshot_done=None)
        self.due_at = time.monotonic() + self.interval_s
        return flush_lsn

    def _write(self, through: int, flush_lsn: int, snapshot_done: bool | None, position: bool = True) -> None:
        """Write every transaction committed at or below ``through`` and, with ``position``, the
        position ``flush_lsn``: one database transaction."""
        t = self.accounts.take(through)
        self._store(t, flush_lsn, snapshot_done, position)
        if position:
            self.acked_lsn = max(self.acked_lsn, flush_lsn)
        if t.rejections:
            log.warning("destination %s: %d change(s) quarantined", self.destination, len(t.rejections))
        log.debug("checkpoint %s at %s", self.destination, lsn_to_str(flush_lsn))

    def _store(self, t: Totals, flush_lsn: int, snapshot_done: bool | None, position: bool) -> None:
        """The SQL of :meth:`_write` (database-free tests of the accounting replace this alone)."""
        rejections, last_event = t.rejections, t.last_event
        stats = [(self.destination, table, day, d, q) for (table, day), (d, q) in t.counts.items()]
        with self.conn.transaction():
            with self.conn.pipeline():  # one round trip for the figures
                cur = self.conn.cursor()
                if position:
                    cur.execute(
                        "INSERT INTO cdcsync.checkpoint (destination, slot_name, acked_lsn, last_event_at, last_ack_at,"
                        " snapshot_done) VALUES (%s, %s, %s, %s, now(), coalesce(%s, false))"
                        " ON CONFLICT (destination) DO UPDATE SET slot_name = EXCLUDED.slot_name,"
                        " acked_lsn = EXCLUDED.acked_lsn,"
                        " last_event_at = coalesce(EXCLUDED.last_event_at, checkpoint.last_event_at),"
                        " last_ack_at = now(), snapshot_done = coalesce(%s, checkpoint.snapshot_done),"
                        " updated_at = now()",
                        (self.destination, self.slot, lsn_to_str(flush_lsn), last_event, snapshot_done, snapshot_done))
                if stats:
                    cur.executemany(
                        "INSERT INTO cdcsync.delivery_stats AS s (destination, table_name, business_date,"
                        " delivered, quarantined, batches) VALUES (%s, %s, %s, %s, %s, 1)"
                        " ON CONFLICT (destination, table_name, business_date) DO UPDATE SET"
                        " delivered = s.delivered + EXCLUDED.delivered,"
                        " quarantined = s.quarantined + EXCLUDED.quarantined,"
                        " batches = s.batches + 1, last_ack_at = now()",
                        stats)
                write_aggregates(self.conn, self.destination, t.latency)
                if rejections:
                    cur.executemany(
                        "INSERT INTO cdcsync.quarantine AS q (event_id, destination, table_name, primary_key, lsn,"
                        " rule_id, field, message, raw_row, op, tx_id, commit_ts, business_date)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                        " ON CONFLICT (destination, event_id) DO UPDATE SET attempts = q.attempts + 1,"
                        " last_seen = now(), rule_id = EXCLUDED.rule_id, field = EXCLUDED.field,"
                        " message = EXCLUDED.message, raw_row = EXCLUDED.raw_row, status = 'held',"
                        " business_date = coalesce(q.business_date, EXCLUDED.business_date)",
                        [(r.event_id, self.destination, r.table, _json(r.primary_key), lsn_to_str(r.lsn),
                          r.rule_id, r.field, r.message, _json(r.raw_row), r.op, r.tx_id, r.commit_ts,
                          r.business_date) for r in rejections])
            self.keys.write(self.conn)  # COPY: outside pipeline mode, same transaction
            if snapshot_done:  # rare: rewrite the log to the keys the destination holds now
                self.keys.compact(self.conn)


# -- the checkpoint table for everything else (CLI, status, quarantine retry, backup/restore) --------


def _table_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def checkpoint_exists(conn: psycopg.Connection[Any]) -> bool:
    """The table exists (a database restored from a backup may predate it)."""
    return _table_exists(conn, "cdcsync.checkpoint")


def positions(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """destination -> acknowledged LSN (text); empty without the table."""
    if not checkpoint_exists(conn):
        return {}
    return {str(d): str(lsn) for d, lsn in conn.execute(
        "SELECT destination, acked_lsn::text FROM cdcsync.checkpoint ORDER BY 1").fetchall()}


def destination_slots(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """(destination, slot name) of every checkpoint, by destination; empty without the table."""
    if not checkpoint_exists(conn):
        return []
    return [(str(d), str(s)) for d, s in conn.execute(
        "SELECT destination, slot_name FROM cdcsync.checkpoint ORDER BY 1").fetchall()]


def read_checkpoint(conn: psycopg.Connection[Any], destination: str) -> tuple[Any, ...] | None:
    """(acked LSN text, last_event_at, last_ack_at, snapshot_done) of one destination, or None."""
    return conn.execute(
        "SELECT acked_lsn::text, last_event_at, last_ack_at, snapshot_done FROM cdcsync.checkpoint"
        " WHERE destination = %s", (destination,)).fetchone()


def reset_to_snapshot(conn: psycopg.Connection[Any], destination: str) -> None:
    """The destination's slot is gone: position back to zero, a new initial snapshot next run."""
    conn.execute("UPDATE cdcsync.checkpoint SET snapshot_done = false, acked_lsn = '0/0', updated_at = now()"
                 " WHERE destination = %s", (destination,))


def resume_at(conn: psycopg.Connection[Any], destination: str, lsn: str) -> None:
    """A new slot at ``lsn`` (text) for a destination that had acknowledged everything before it."""
    conn.execute("UPDATE cdcsync.checkpoint SET acked_lsn = %s::pg_lsn, snapshot_done = true,"
                 " updated_at = now() WHERE destination = %s", (lsn, destination))


def note_acks(cur: psycopg.Cursor[Any], destinations: list[str]) -> None:
    """Deliveries outside the stream (quarantine retry) were acknowledged: ``last_ack_at``."""
    cur.executemany("UPDATE cdcsync.checkpoint SET last_ack_at = now(), updated_at = now() WHERE destination = %s",
                    [(d,) for d in destinations])


class DeliveredKeys:
    """The primary keys a destination has acknowledged and not acknowledged a delete for
    (``cdcsync.delivered_keys``), so a re-snapshot after a lost slot can send deletes for rows
    that vanished while the WAL holding their deletes was gone.

    Changes to the set are collected from acknowledged events (last operation per key wins) and
    appended with one COPY per checkpoint write into an unindexed log (measured: ~4 µs per key,
    against ~16 µs for an indexed upsert); the set is the latest entry per key, computed when a
    snapshot needs it and compacted (:func:`compact_keys`) when a snapshot completes and, off
    the stream's thread, whenever the log has grown well past the set (``cdcsync/ops/compaction.py``).
    Inserts and snapshot reads add a key, deletes remove it, an update removes the old key when
    it changes the key, a truncate clears the table. Each
    entry of a present key also records the event id and the digest (:func:`version_digest`) of the version
    delivered (:class:`KnownIds` reuses them in a re-snapshot). Writing a key before its
    transaction's position is checkpointed is safe: an acknowledged insert is at the destination,
    an acknowledged delete is too, and a replay after a crash applies the same operations again.
    """

    FLUSH_AT = 20_000  # pending keys written without waiting for a checkpoint (long snapshots)

    def __init__(self, destination: str, pk_lookup: PkLookup) -> None:
        self.destination = destination
        self.pk_lookup = pk_lookup
        # (table, pk JSON) -> (present, id of the event holding the version, its version_digest)
        self._ops: dict[tuple[str, str], tuple[bool, str | None, str | None]] = {}
        self._truncated: set[str] = set()

    @property
    def full(self) -> bool:
        return len(self._ops) >= self.FLUSH_AT

    def clear(self) -> None:
        self._ops.clear()
        self._truncated.clear()

    def track(self, events: list[Event], rejected: dict[str, str] | None) -> None:
        ops = self._ops
        keyers: dict[tuple[str, str], Callable[[Row], str] | None] = {}
        for ev in events:
            op = ev.op
            if rejected and ev.id in rejected:
                continue
            key = (ev.schema, ev.table)
            try:
                pk_of = keyers[key]
            except KeyError:
                cols = self.pk_lookup(ev.schema, ev.table)
                pk_of = keyers[key] = pk_formatter(cols) if cols else None
            if op == "t":
                self._truncated.add(ev.table)
                for k in [k for k in ops if k[0] == ev.table]:
                    del ops[k]
                continue
            if pk_of is None:
                continue  # no primary key: nothing to address a delete by
            before, after = ev.before, ev.after
            if op == "d":
                if before is not None:
                    ops[(ev.table, pk_of(before))] = _GONE
            elif after is not None:  # c, r, u: the id and digest of the version now held
                pk = pk_of(after)
                if op == "u" and before is not None and (old := pk_of(before)) != pk:
                    ops[(ev.table, old)] = _GONE  # the key changed
                ops[(ev.table, pk)] = (True, ev.id, version_digest(ev))

    def write(self, conn: psycopg.Connection[Any]) -> None:
        """Append the collected changes (inside the caller's transaction): one COPY, no index."""
        if not self._ops and not self._truncated:
            return
        dest = self.destination
        with conn.cursor().copy("COPY cdcsync.delivered_keys (destination, table_name, pk, present, event_id,"
                                " row_digest) FROM STDIN") as cp:
            for table in sorted(self._truncated):  # before the changes collected after the truncate
                cp.write_row((dest, table, "", False, None, None))
            for (table, pk), (present, eid, digest) in self._ops.items():
                cp.write_row((dest, table, pk, present, eid, digest))
        self.clear()

    def compact(self, conn: psycopg.Connection[Any]) -> None:
        """Keep only the latest entry of each key the destination holds (after a snapshot), and
        record it like a periodic compaction, so that the next one counts from here."""
        t0 = time.monotonic()
        mark = keys_seq_now(conn)
        row = conn.execute("SELECT count(*) FROM cdcsync.delivered_keys WHERE destination = %s",
                           (self.destination,)).fetchone()
        before = int(row[0]) if row else 0
        deleted = compact_keys(conn, self.destination)
        record_compaction(conn, self.destination, mark, before, before - deleted, time.monotonic() - t0)


# The log's newest sequence value (0 before its first entry); readable with the daemon's grants.
_SEQ_NOW = ("SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('cdcsync.delivered_keys', 'seq')"
            "::regclass), 0)")


def keys_seq_now(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(_SEQ_NOW).fetchone()
    return int(row[0]) if row else 0


def record_compaction(conn: psycopg.Connection[Any], destination: str, mark: int, before: int, after: int,
                      seconds: float) -> None:
    """``cdcsync.delivered_keys_compaction``: the destination's log was compacted from ``before``
    to ``after`` entries, starting when the log's sequence stood at ``mark``."""
    conn.execute(
        "INSERT INTO cdcsync.delivered_keys_compaction AS s (destination, compacted_at, seq_mark, live_entries,"
        " entries_before, seconds) VALUES (%s, now(), %s, %s, %s, %s) ON CONFLICT (destination) DO UPDATE SET"
        " compacted_at = now(), seq_mark = EXCLUDED.seq_mark, live_entries = EXCLUDED.live_entries,"
        " entries_before = EXCLUDED.entries_before, seconds = EXCLUDED.seconds",
        (destination, mark, after, before, seconds))


def compaction_status(conn: psycopg.Connection[Any], destination: str) -> dict[str, Any] | None:
    """The destination's log for monitoring: its last compaction (None before the first) and the
    entries appended since (by all destinations: the sequence is shared), which the next periodic
    compaction waits for. None on a database not migrated to 073 yet."""
    if not _table_exists(conn, "cdcsync.delivered_keys_compaction"):
        return None
    row = conn.execute("SELECT compacted_at, seq_mark, live_entries, entries_before, seconds"
                       " FROM cdcsync.delivered_keys_compaction WHERE destination = %s", (destination,)).fetchone()
    last = None if row is None else {"at": row[0].isoformat(), "entries_before": int(row[3]),
                                     "entries_after": int(row[2]), "seconds": round(float(row[4]), 3)}
    return {"last_compaction": last, "appended_since": keys_seq_now(conn) - (int(row[1]) if row else 0)}


def compact_keys(conn: psycopg.Connection[Any], destination: str, table: str | None = None) -> int:
    """Delete ``destination``'s log entries that are not the latest entry of a key it holds
    (:data:`LATEST_KEYS_CTE`): entries superseded by a later entry of their key, deletes, entries
    older than their table's latest truncate, truncate markers. With ``table``, that table's
    entries only: the rule is per table, so compacting table by table (each in its own
    transaction) ends where one statement over all tables would, and every step in between
    holds the same set. Returns the entries deleted.

    One statement, so one MVCC snapshot: entries appended by transactions it cannot see (not
    committed when it starts) are neither deleted nor taken into account. A destination has one
    writer, whose entries only grow in ``seq``, so such entries are later than everything this
    statement sees and still decide their keys afterwards."""
    with conn.transaction():  # a savepoint inside the caller's transaction
        # Freshly appended entries have no statistics yet (estimated: 1 row), and the planner then
        # rescans `latest` once per entry: quadratic (9,000 entries: 52 s; as a hash anti-join: 0.04 s).
        conn.execute("SET LOCAL enable_nestloop = off")
        cur = conn.execute(LATEST_KEYS_CTE + " DELETE FROM cdcsync.delivered_keys d WHERE d.destination = %(d)s"
                           " AND (%(t)s::text IS NULL OR d.table_name = %(t)s::text)"
                           # an anti-join: NOT IN over a large set falls back to a rescan per row
                           " AND NOT EXISTS (SELECT 1 FROM latest l WHERE l.seq = d.seq)",
                           {"d": destination, "t": table})
        return max(cur.rowcount, 0)


# The keys a destination holds: per key its latest entry, when present and newer than the
# table's latest truncate. %(d)s: destination; %(t)s: one table, or NULL for all.
LATEST_KEYS_CTE = """
WITH ops AS (
    SELECT seq, table_name, pk, present, event_id, row_digest FROM cdcsync.delivered_keys
     WHERE destination = %(d)s AND (%(t)s::text IS NULL OR table_name = %(t)s::text)
), last AS (
    SELECT DISTINCT ON (table_name, pk) seq, table_name, pk, present, event_id, row_digest FROM ops WHERE pk <> ''
     ORDER BY table_name, pk, seq DESC
), trunc AS (
    SELECT table_name, max(seq) AS seq FROM ops WHERE pk = '' GROUP BY table_name
), latest AS (
    SELECT l.seq, l.table_name, l.pk, l.event_id, l.row_digest FROM last l LEFT JOIN trunc t USING (table_name)
     WHERE l.present AND l.seq > coalesce(t.seq, 0)
)"""

_GONE: tuple[bool, str | None, str | None] = (False, None, None)


def version_digest(ev: Event) -> str | None:
    """What a destination's version of a row is recognized by after a restore: BLAKE2b-128 of the
    row as the source holds it (:attr:`Event.image`, pgoutput's TupleData; a snapshot builds the
    same bytes) and of the mapping and spec versions the transform applied. Equal digests mean
    the transform sends the same content again. None (never reused) without an image.
    Not a security digest: the cheapest stdlib hash of 128 bits, on bytes already in hand."""
    image = ev.image
    if image is None:
        return None
    versions = (ev.mapping_version, ev.spec_version)
    state = _DIGESTS.get(versions)
    if state is None:
        if len(_DIGESTS) > 64:  # versions change a few times a year; a bound all the same
            _DIGESTS.clear()
        state = _DIGESTS[versions] = blake2b(f"{versions[0]}\0{versions[1]}\0".encode(), digest_size=16)
    h = state.copy()  # a copy of a prepared state: a third cheaper than a new object
    h.update(image)
    return h.hexdigest()


_DIGESTS: dict[tuple[str | None, str | None], blake2b] = {}


class KnownIds:
    """In a re-snapshot (after a restore from a backup, or a lost slot): the id under which the
    destination already holds a row, when the row is unchanged since (same digest), so it is
    re-sent as a duplicate the platform drops rather than as a new event. Keys are loaded one
    table at a time, as the snapshot reads them (memory: the largest table's delivered keys)."""

    def __init__(self, conninfo: str, destination: str, pk_lookup: PkLookup) -> None:
        self.conninfo = conninfo
        self.destination = destination
        self.pk_lookup = pk_lookup
        self.table: tuple[str, str] | None = None
        self.known: dict[str, tuple[str, str]] = {}
        self.reused = 0

    def _load(self, schema: str, table: str) -> None:
        self.table = (schema, table)
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            rows = conn.execute(LATEST_KEYS_CTE + " SELECT pk, event_id, row_digest FROM latest"
                                " WHERE event_id IS NOT NULL AND row_digest IS NOT NULL",
                                {"d": self.destination, "t": table}).fetchall()
        self.known = {str(pk): (str(eid), str(dg)) for pk, eid, dg in rows}

    def reuse(self, ev: Event) -> None:
        """Give ``ev`` (a snapshot read) the id its unchanged row was delivered under, if any."""
        if ev.op != "r" or ev.after is None:
            return
        if self.table != (ev.schema, ev.table):
            self._load(ev.schema, ev.table)
        cols = self.pk_lookup(ev.schema, ev.table)
        if not cols or not self.known:
            return
        held = self.known.get(pk_json(ev.after, cols))
        if held is not None and held[1] == version_digest(ev):
            ev.id = held[0]
            self.reused += 1


def pk_json(row: Row, cols: tuple[str, ...]) -> str:
    """The key of ``row`` as stored in ``delivered_keys.pk``: JSON of its primary-key columns."""
    return dumps({c: row.get(c) for c in cols}).decode()


def pk_formatter(cols: tuple[str, ...]) -> Callable[[Row], str]:
    """:func:`pk_json` for one table's key columns, cheaper (the ack path calls it for every
    event; tests/test_delivered_keys.py holds the two to the same text)."""
    if len(cols) == 1:
        col = cols[0]
        head = "{" + dumps(col).decode() + ":"

        def one(row: Row) -> str:
            value = row.get(col)
            if type(value) is int:  # the common single key; not bool, whose JSON is not str()
                return head + str(value) + "}"
            return dumps_str_keys({col: value}).decode()
        return one

    def many(row: Row) -> str:
        return dumps_str_keys({c: row.get(c) for c in cols}).decode()
    return many
