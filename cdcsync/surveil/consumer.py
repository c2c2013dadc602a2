"""The rules consumer: an internal consumer of the stream that turns clinical signals into cases.

    replication stream (own slot ``cdcsync_surveil``) → decode → the delivery path's validation
    and mapping stage (:func:`cdcsync.validate.stage.transform_for`) → rule engine → cases

Exactly once: the cases, their evidence and history are written through ``CaseStore(conn)`` in
the SAME database transaction as the consumer's position (``cdcsync.surveil_checkpoint``,
``applied_lsn`` = the end LSN of the last source transaction applied). After a crash or ``kill -9``
the stream restarts at the recorded position: a source transaction is either wholly in that
transaction (committed: skipped on replay, its commit precedes the position) or not at all
(replayed from scratch). PostgreSQL is told a position only after it is committed.

One database transaction collects several source transactions (``surveil.batch_max_events``,
``surveil.linger_ms``); a source transaction bigger than that is applied in chunks inside one
database transaction, committed at its end, so memory stays bounded and no partial transaction
is ever checkpointed.

Why not :class:`cdcsync.pipeline.Pipeline` with a sink: a pipeline's sink acknowledges batches from
delivery threads and the checkpointer writes positions later in a transaction of its own, with
destination statistics, delivered keys and quarantine rows; the consumer's writes must be inside
the checkpoint transaction, and none of those extras apply (rejected rows are the delivery path's
to quarantine). The stream itself (replication connection, pgoutput decoder, slots, WAL safety,
the validation stage and the event ids) is the engine's code, reused as is.

A rule pack change applies from the next source transaction (:class:`EngineHolder`).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from cdcsync.config import Settings
from cdcsync.db.migrate import PUBLICATION
from cdcsync.event import Change, Event, lsn_to_str, str_to_lsn
from cdcsync.mapping.mapper import mapped_columns
from cdcsync.settings.surveil import SURVEIL_CONSUMER, SurveilSettings
from cdcsync.source.pgoutput import Begin, Commit, LogicalMessage, PgOutputDecoder, Truncate
from cdcsync.source.protocol import Keepalive, ReplicationConnection, with_session_options
from cdcsync.source.slots import get_slot
from cdcsync.source.walsafety import LOST
from cdcsync.surveil.cases import Actor, CaseStore
from cdcsync.surveil.engine import Engine, EngineHolder
from cdcsync.surveil.rules import DECIDING_COLUMNS, KEYS
from cdcsync.validate.compiler import Validators
from cdcsync.validate.reload import RulesHolder
from cdcsync.validate.stage import ValidationStage, transform_for

log = logging.getLogger(__name__)
RULE_TABLES = frozenset(KEYS)  # the tables the rule engine reads events of (diagnosis, lab_result, …)


class ConsumerError(RuntimeError):
    """The consumer cannot run (message for the admin, Chinese)."""


@dataclass(slots=True)
class ConsumerState:
    applied_lsn: int
    exists: bool


def surveil_tables_present(conn: psycopg.Connection[Any]) -> bool:
    """The mirror has the case tables (migration 030)."""
    row = conn.execute("SELECT to_regclass('cdcsync.surveil_case') IS NOT NULL"
                       " AND to_regclass('cdcsync.surveil_checkpoint') IS NOT NULL").fetchone()
    return bool(row and row[0])


def surveil_enabled(settings: Settings) -> bool:
    """``surveil.enabled``, or (unset) whether the mirror has the case tables. An unreachable database
    (boot order) counts as yes: the consumer retries, and stops quietly if the tables turn out missing."""
    cfg = settings.surveil
    if cfg.enabled is not None:
        return cfg.enabled
    try:
        with psycopg.connect(settings.database.conninfo(), autocommit=True, connect_timeout=10) as conn:
            return surveil_tables_present(conn)
    except psycopg.Error as exc:
        log.warning("surveil: database not reachable at start (%s); the rules consumer will retry",
                    type(exc).__name__)
        return True


class RulesConsumer:
    """One session at a time (``run_once``); :func:`run_consumer_forever` reconnects."""

    def __init__(self, settings: Settings, holder: RulesHolder, engines: EngineHolder,
                 stop: threading.Event | None = None) -> None:
        self.settings = settings
        self.cfg: SurveilSettings = settings.surveil
        self.slot = self.cfg.slot
        self.conninfo = settings.database.conninfo()
        self.transform = transform_for(settings, holder)
        self.engines = engines
        self.stop = stop or threading.Event()
        self.healthy = False
        # counters for status and tests
        self.applied_lsn = 0
        self.events_seen = 0  # validated and mapped
        self.events_skipped = 0  # left out before validation: no rule can act on them (_Prefilter)
        self.events_rejected = 0
        self.events_failed = 0  # events the rule engine raised on (skipped, logged by id)
        self.cases_opened = 0
        self.cases_expired = 0
        self.transactions = 0
        # tests/replay drain: end the session once this returns True for the applied position
        self.catch_up: Callable[[RulesConsumer, int], bool] | None = None
        self.caught_up = False
        self.after_commit: Callable[[int], None] | None = None  # tests: called with each applied LSN

    # -- state --------------------------------------------------------------------------------

    def _load(self, conn: psycopg.Connection[Any]) -> ConsumerState:
        row = conn.execute("SELECT applied_lsn::text FROM cdcsync.surveil_checkpoint WHERE consumer = %s",
                           (SURVEIL_CONSUMER,)).fetchone()
        conn.commit()
        if row is None:
            return ConsumerState(0, False)
        return ConsumerState(str_to_lsn(row[0]), True)

    def _write_position(self, conn: psycopg.Connection[Any], lsn: int, commit_ts: dt.datetime | None,
                        version: str) -> None:
        conn.execute(
            "INSERT INTO cdcsync.surveil_checkpoint (consumer, slot_name, applied_lsn, pack_version, last_commit_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (consumer) DO UPDATE SET slot_name = EXCLUDED.slot_name,"
            " applied_lsn = EXCLUDED.applied_lsn, pack_version = EXCLUDED.pack_version,"
            " last_commit_at = coalesce(EXCLUDED.last_commit_at, surveil_checkpoint.last_commit_at),"
            " updated_at = now()",
            (SURVEIL_CONSUMER, self.slot, lsn_to_str(lsn), version, commit_ts))

    def _expire(self, conn: psycopg.Connection[Any], version: str) -> None:
        """Mark open cases long past their due time as 已过期 (``surveil.expire_after_days``)."""
        if self.cfg.expire_after_days <= 0:
            return
        ids = CaseStore(conn).expire_overdue(dt.timedelta(days=self.cfg.expire_after_days),
                                             Actor(f"rules:{version}", "rules"))
        conn.commit()
        if ids:
            self.cases_expired += len(ids)
            log.info("surveil: %d case(s) expired (due more than %g days ago)", len(ids), self.cfg.expire_after_days)

    # -- session ------------------------------------------------------------------------------

    def run_once(self) -> None:
        self.healthy = False
        conn = psycopg.connect(with_session_options(self.conninfo, application_name="cdcsync-surveil"))
        repl: ReplicationConnection | None = None
        try:
            if not surveil_tables_present(conn):
                if self.cfg.enabled is None:  # not asked for, and this mirror has no case tables: off
                    log.info("surveil: the mirror has no case tables; rules consumer off")
                    self.caught_up = True  # ends run_consumer_forever
                    return
                raise ConsumerError("镜像库缺少监测预警病例表（cdcsync.surveil_case），请先执行 cdcsync db init")
            conn.commit()
            state = self._load(conn)
            slot = get_slot(conn, self.slot)
            conn.commit()
            if slot is not None and slot.wal_status == LOST:
                raise ConsumerError(f"监测预警复制槽 {self.slot} 已失效（WAL 已被回收）；请用 cdcsync slots drop "
                                    f"{self.slot} 删除后重启，期间的病例请用 cdcsync rules replay 补查")
            repl = ReplicationConnection(self.conninfo, application_name="cdcsync-surveil")
            if slot is None:
                # No snapshot: rules look at changes from now on; the past is `rules replay`'s.
                created = repl.create_slot(self.slot)
                if state.exists:
                    log.warning("surveil: slot %s was missing; recreated at %s (changes in between: run"
                                " cdcsync rules replay)", self.slot, lsn_to_str(created.consistent_point))
                else:
                    log.info("surveil: slot %s created at %s", self.slot, lsn_to_str(created.consistent_point))
                self._write_position(conn, created.consistent_point, None, self.engines.version)
                conn.commit()
                state = ConsumerState(created.consistent_point, True)
            elif not state.exists:
                assert slot.confirmed_flush_lsn is not None
                state = ConsumerState(str_to_lsn(slot.confirmed_flush_lsn), True)
                self._write_position(conn, state.applied_lsn, None, self.engines.version)
                conn.commit()
            if self.stop.is_set():
                return
            self._stream(conn, repl, state.applied_lsn)
        finally:
            if repl is not None:
                repl.close()
            conn.close()

    def _stream(self, conn: psycopg.Connection[Any], repl: ReplicationConnection, start: int) -> None:
        cfg = self.cfg
        repl.start(self.slot, start, PUBLICATION)
        decoder = PgOutputDecoder()
        tx = _Applier(self, conn, start)
        self.applied_lsn = start
        self.healthy = True
        linger = cfg.linger_ms / 1000.0
        status_interval = self.settings.stream.status_interval_s
        next_reload = time.monotonic() + cfg.reload_interval_s
        next_expire = time.monotonic()  # the first sweep right after start
        skip = False
        marker = 0
        while not self.stop.is_set():
            now = time.monotonic()
            if tx.pending_since is not None and not tx.in_tx and now - tx.pending_since >= linger:
                tx.commit()
            if now >= next_reload:
                self.engines.reload_if_changed()
                next_reload = now + cfg.reload_interval_s
            if now >= next_expire and tx.idle:  # nothing uncommitted: the sweep commits alone
                self._expire(conn, tx.engine.version)
                next_expire = now + cfg.expire_sweep_s
            if marker > tx.flush_pos and tx.idle:
                tx.flush_pos = marker
            if repl.status_due(status_interval):
                repl.send_status(tx.flush_pos)
            if self.catch_up is not None and tx.idle and self.catch_up(self, tx.flush_pos):
                self.caught_up = True
                break
            wait = 0.5 if tx.pending_since is None else max(0.0, min(0.5, tx.pending_since + linger - now))
            msg = repl.read_message(wait)
            budget = 500
            while msg is not None:
                if type(msg) is tuple:  # (end LSN, pgoutput payload): the connection tracks received_lsn
                    # A change of a table no rule reads is counted, not decoded; nor is an insert whose
                    # deciding code (read alone) the pre-filter rules out. m None: nothing to do.
                    payload = msg[1]
                    if decoder.skip_change(payload, RULE_TABLES):
                        m = None
                    elif (not skip and tx.prefilter is not None
                          and (peek := decoder.insert_value(payload, DECIDING_COLUMNS)) is not None
                          and peek[0] == "emr"
                          and not tx.prefilter.decide(tx.engine, peek[1], decoder.tx_lsn, peek[2])):
                        decoder.count_change()
                        self.events_skipped += 1
                        m = None
                    else:
                        m = decoder.decode(payload)
                    if type(m) is Change:
                        if not skip:
                            tx.add(m)
                    elif type(m) is Begin:
                        # committed before the recorded position: applied already (replayed after a crash)
                        skip = m.final_lsn < tx.applied
                        if not skip:
                            tx.begin()
                    elif type(m) is Commit:
                        if not skip:
                            tx.end(m.end_lsn, m.commit_ts)
                        skip = False
                    elif type(m) is Truncate:
                        if not skip:
                            for ch in m.changes:
                                tx.add(ch)
                    elif type(m) is LogicalMessage and not m.transactional and m.lsn > marker:
                        marker = m.lsn
                else:  # primary keepalive
                    assert isinstance(msg, Keepalive)
                    if tx.idle and msg.wal_end > tx.flush_pos:
                        tx.flush_pos = msg.wal_end  # nothing of ours is waiting: all before it is applied
                    if msg.reply:
                        repl.send_status(tx.flush_pos)
                budget -= 1
                if budget == 0:
                    break
                msg = repl.read_message(0)
        if tx.in_tx:
            conn.rollback()  # an unfinished source transaction: replayed next time
        else:
            tx.commit()
        repl.send_status(tx.flush_pos)
        repl.stop()
        log.info("surveil: stream stopped at %s", lsn_to_str(tx.flush_pos))


class _Prefilter:
    """Whether a change of a rule table may matter to the engine, decided BEFORE the validation
    and mapping stage (the costly part of a row; most diagnoses, lab results and orders are not
    notifiable). The engine's own test (``relevant``, national codes) is asked of the national code
    of the one column it reads, mapped with the code tables the stage uses for that transaction.
    Conservative: a row is left out only when the engine would certainly do nothing with it (an
    insert/update whose deciding code maps to nothing relevant; an unmapped code is a row the stage
    rejects anyway). Deletes, undecodable rows and tables without a deciding column always pass."""

    def __init__(self, stage: ValidationStage) -> None:
        self.stage = stage
        self._rules: Validators | None = None
        self._lookups: dict[str, tuple[str, dict[str, str]]] = {}  # table -> (column, local -> national)

    def _build(self, rules: Validators) -> None:
        self._rules = rules
        self._lookups = {}
        for table, column in DECIDING_COLUMNS.items():
            compiled = rules.tables.get(table)
            if compiled is None:
                continue
            try:
                fld = compiled.table.field(column)
            except KeyError:
                continue
            # only a coded column whose national code lands in the column itself (not a key column)
            if fld.domain and mapped_columns(compiled.table, column)[0] == column:
                self._lookups[table] = (column, rules.mapper.table_for(fld.domain, compiled.table.national_codes))

    def __call__(self, engine: Engine, change: Change) -> bool:
        after = change.after
        if (after is None or change.op not in ("c", "u", "r") or change.schema != "emr"
                or change.undecodable is not None or change.table not in DECIDING_COLUMNS):
            return True
        return self.decide(engine, change.table, change.lsn, after.get(DECIDING_COLUMNS[change.table]))

    def decide(self, engine: Engine, table: str, lsn: int, raw: Any) -> bool:
        """For an insert/update of ``emr.<table>`` in the transaction ``lsn`` whose deciding column
        holds ``raw`` (the HIS's code, as decoded): may the engine act on it?"""
        relevant = getattr(engine, "relevant", None)
        if relevant is None:
            return True
        rules = self.stage.rules_at(lsn)
        if rules is not self._rules:
            self._build(rules)
        hit = self._lookups.get(table)
        if hit is None:
            return True
        column, lookup = hit
        national = lookup.get(raw) if isinstance(raw, str) else None
        return bool(relevant(table, {column: national}))


class _Applier:
    """The open database transaction of the consumer: events in, cases + position out."""

    def __init__(self, consumer: RulesConsumer, conn: psycopg.Connection[Any], applied: int) -> None:
        self.c = consumer
        self.conn = conn
        self.applied = applied  # the position committed in cdcsync.surveil_checkpoint
        self.flush_pos = applied  # the position told to PostgreSQL
        self.events: list[Event] = []
        self.engine: Engine = consumer.engines.current()
        self.in_tx = False  # inside a source transaction
        self.pending_since: float | None = None  # monotonic time the oldest uncommitted work arrived
        self.pending_lsn: int | None = None  # end LSN of the last source transaction applied, uncommitted
        self.pending_ts: dt.datetime | None = None
        self.max_events = consumer.cfg.batch_max_events
        stage = consumer.transform
        self.prefilter = _Prefilter(stage) if isinstance(stage, ValidationStage) else None

    @property
    def idle(self) -> bool:
        return not self.in_tx and self.pending_lsn is None and not self.events

    def begin(self) -> None:
        engine = self.c.engines.current()
        if engine is not self.engine:
            # A new rule pack applies from this source transaction: the previous ones with the old.
            self._apply()
            self.engine = engine
        self.in_tx = True
        if self.pending_since is None:
            self.pending_since = time.monotonic()

    def add(self, change: Change) -> None:
        if change.table not in RULE_TABLES:
            return  # no rule reads it: not worth validating and mapping here (the delivery path does)
        if self.prefilter is not None and not self.prefilter(self.engine, change):
            self.c.events_skipped += 1
            return
        out = self.c.transform(change)
        self.c.events_seen += 1
        if type(out) is Event:
            self.events.append(out)
            if len(self.events) >= self.max_events:
                self._apply()  # inside the open database transaction: committed with the position
        else:
            self.c.events_rejected += 1  # quarantined by the delivery path; no rule sees an invalid row

    def end(self, end_lsn: int, commit_ts: dt.datetime) -> None:
        self.in_tx = False
        self.pending_lsn = end_lsn
        self.pending_ts = commit_ts
        self.c.transactions += 1
        if len(self.events) >= self.max_events:
            self.commit()

    def _apply(self) -> None:
        if not self.events:
            return
        events, self.events = self.events, []
        try:
            with self.conn.transaction():  # a savepoint in the open case transaction
                results = self.engine.apply(self.conn, events)
        except (psycopg.OperationalError, psycopg.errors.QueryCanceled):
            raise  # the connection, not the data: reconnect and replay from the checkpoint
        except Exception:
            # One row the engine cannot handle must not stop the consumer for good (it would fail
            # again on every replay): apply one event at a time and leave out the failing ones.
            results = []
            for ev in events:
                try:
                    with self.conn.transaction():
                        results.extend(self.engine.apply(self.conn, [ev]))
                except (psycopg.OperationalError, psycopg.errors.QueryCanceled):
                    raise
                except Exception as exc:  # logged by event id and type only: no patient data
                    self.c.events_failed += 1
                    log.error("surveil: rules failed on event %s (%s.%s): %s; skipped", ev.id, ev.schema, ev.table,
                              type(exc).__name__)
                    from cdcsync.engine.health import record_error

                    record_error("surveil", f"规则处理失败，已跳过事件 {ev.id}（{type(exc).__name__}）")
        self.c.cases_opened += sum(1 for r in results if r.created)

    def commit(self) -> None:
        """Apply what is collected and commit it with the position (no-op without a new position)."""
        if self.in_tx:
            return
        self._apply()
        if self.pending_lsn is None:
            self.pending_since = None
            return
        lsn = self.pending_lsn
        self.c._write_position(self.conn, lsn, self.pending_ts, self.engine.version)
        self.conn.commit()
        self.applied = lsn
        self.pending_lsn = None
        self.pending_ts = None
        self.pending_since = None
        if lsn > self.flush_pos:
            self.flush_pos = lsn
        self.c.applied_lsn = lsn
        if self.c.after_commit is not None:
            self.c.after_commit(lsn)


def run_consumer_forever(consumer: RulesConsumer) -> None:
    """Keep the consumer streaming: reconnect with exponential backoff (as the pipelines do)."""
    from cdcsync.engine.health import record_error

    delay = 0.5
    while not consumer.stop.is_set():
        try:
            consumer.run_once()
            if consumer.caught_up:
                return
            delay = 0.5
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            record_error("surveil", f"{type(exc).__name__}: {first}")
            if consumer.healthy:
                log.warning("surveil: stream lost (%s: %s); reconnecting", type(exc).__name__, first)
                delay = 0.5
            else:
                log.warning("surveil: %s: %s; retrying in %.1fs", type(exc).__name__, first, delay)
            if consumer.stop.wait(delay):
                return
            delay = min(30.0, delay * 2)


def start_consumer(settings: Settings, holder: RulesHolder, stop: threading.Event) -> threading.Thread | None:
    """Inside ``cdcsync run``: the consumer thread when surveillance is enabled (else None)."""
    if not surveil_enabled(settings):
        log.info("surveil: rules consumer disabled")
        return None
    from cdcsync.control.kinds import rules_pack_path

    engines = EngineHolder.load(settings.surveil.pack, holder, lambda: rules_pack_path(settings))
    consumer = RulesConsumer(settings, holder, engines, stop)
    thread = threading.Thread(target=run_consumer_forever, args=(consumer,), name="cdcsync-surveil", daemon=True)
    thread.start()
    log.info("surveil: rules consumer started (pack %s, slot %s)", engines.version, consumer.slot)
    return thread
