"""The typed values that flow between the stages: Change → Event → Batch → Ack.

Event ids are deterministic so that a replay after a crash produces the same ids and a receiver
can drop duplicates:

* streamed change: ``{origin}:{commit_lsn:016X}:{ordinal}`` — ``origin`` is
  ``{org_code}.{database name}``, ``commit_lsn`` the LSN of the transaction's commit record
  (pgoutput Begin.final_lsn), ``ordinal`` the 0-based position of the change in its transaction
  (every Insert/Update/Delete and every truncated relation counts). PostgreSQL decodes a
  transaction identically every time, so both parts survive any replay.
* snapshot read (op ``r``): ``{origin}:r{consistent_lsn:016X}:{schema}.{table}:{key}`` — the
  consistent point of the slot whose exported snapshot was read, and the row's primary key
  (SHA-1 prefix of its JSON) or, for a table without one, the row's position in the COPY.

Serialization (orjson): Decimal as a string with every digit, timestamps RFC 3339 / ISO-8601
with the offset when the type has one and microseconds when non-zero, dates ``YYYY-MM-DD``,
bytea base64, ``timetz`` as PostgreSQL's text.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal, Protocol

import orjson

Op = Literal["c", "u", "d", "r", "t"]
Row = dict[str, Any]


@lru_cache(maxsize=4096)  # every event of a transaction formats the same commit LSN
def lsn_to_str(lsn: int) -> str:
    """PostgreSQL's textual LSN form, ``16/B374D848``."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def str_to_lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


@dataclass(slots=True)
class Change:
    """One decoded row change (or snapshot row) of an ``emr`` table."""

    op: Op
    schema: str
    table: str
    before: Row | None
    after: Row | None
    lsn: int  # commit LSN of the transaction (snapshot: the slot's consistent point)
    tx_id: int
    commit_ts: dt.datetime
    ordinal: int  # position in the transaction (snapshot: position in the table's COPY)
    snapshot: bool = False
    key: str | None = None  # snapshot only: digest of the primary key, for the id
    size: int = 0  # bytes on the wire (pgoutput message or COPY row): the batcher's size estimate
    # Columns whose value the decoder could not convert (kept as lossy text so the row stays
    # serializable); the validation stage quarantines such a change. None in the common case.
    undecodable: tuple[str, ...] | None = None
    # The after-image as pgoutput's TupleData (text values; a snapshot row builds the same bytes):
    # what the destination's row version is recognized by after a restore. None when the
    # decoder could not see every value (an unchanged TOASTed one).
    image: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def row(self) -> Row | None:
        """The row the change is about: after-image, or before-image for a delete."""
        return self.after if self.after is not None else self.before


@dataclass(slots=True, frozen=True)
class Rejection:
    """A change the transform refused (validation or mapping); it goes to quarantine."""

    rule_id: str
    field: str | None
    message: str


@dataclass(slots=True)
class Event:
    """A Debezium-style envelope around one change."""

    id: str
    op: Op
    before: Row | None
    after: Row | None
    org_code: str
    db: str
    schema: str
    table: str
    lsn: int
    tx_id: int
    commit_ts: dt.datetime
    snapshot: bool
    ts_ms: int
    mapping_version: str | None = None  # code tables the row was mapped with (validation stage)
    spec_version: str | None = None  # dataset spec the row was validated against
    image: bytes | None = field(default=None, compare=False, repr=False)  # the Change's, not sent

    def source(self) -> dict[str, Any]:
        """Where the change comes from: the same for every event of a transaction and table."""
        return {
            "org_code": self.org_code,
            "db": self.db,
            "schema": self.schema,
            "table": self.table,
            "lsn": lsn_to_str(self.lsn),
            "tx_id": self.tx_id,
            "commit_ts": self.commit_ts,
            "snapshot": self.snapshot,
            "spec_version": self.spec_version,
            "mapping_version": self.mapping_version,
        }

    def source_key(self) -> tuple[Any, ...]:
        """Events with equal keys have equal ``source()``."""
        return (self.lsn, self.tx_id, self.commit_ts, self.table, self.schema, self.snapshot, self.spec_version,
                self.mapping_version, self.org_code, self.db)

    def encode(self) -> bytes:
        """The JSON bytes of this one event. For many events at a time :func:`encode_events` is
        several times cheaper."""
        return dumps_str_keys(envelopes([self])[0])


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(obj)).decode("ascii")
    raise TypeError(f"cannot serialize {type(obj).__name__}")


# orjson writes datetime/date/time itself (C speed; microseconds when non-zero); only Decimal and
# bytes go through ``_default``. ``timetz`` columns stay text (orjson refuses an aware time).
_OPTS = orjson.OPT_NON_STR_KEYS


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=_default, option=_OPTS)


def envelopes(events: Iterable[Event]) -> list[dict[str, Any]]:
    """``{id, op, before, after, source, ts_ms}`` per event, ready for orjson. The ``source``
    block is encoded once per transaction and table and spliced in as a fragment (~30 % of the
    encoding work otherwise)."""
    sources: dict[tuple[Any, ...], orjson.Fragment] = {}
    out: list[dict[str, Any]] = []
    append = out.append
    for e in events:
        key = e.source_key()
        src = sources.get(key)
        if src is None:
            src = sources[key] = orjson.Fragment(dumps(e.source()))
        append({"id": e.id, "op": e.op, "before": e.before, "after": e.after, "source": src, "ts_ms": e.ts_ms})
    return out


def dumps_str_keys(obj: Any) -> bytes:
    """The bytes of :func:`dumps`, faster for dicts keyed by strings (rows: column names); the
    slower non-string-key mode is only a fallback."""
    try:
        return orjson.dumps(obj, default=_default)
    except TypeError:  # a non-string key after all (e.g. from a custom transform)
        return dumps(obj)


def encode_events(events: Iterable[Event]) -> bytes:
    """The JSON array of ``events`` in one orjson call (one call per event costs ~5x more: each
    result is a separate allocation)."""
    return dumps_str_keys(envelopes(events))


def encode_lines(events: Iterable[Event]) -> bytes:
    """JSON Lines: one event per line."""
    return b"".join([dumps_str_keys(env) + b"\n" for env in envelopes(events)])


@dataclass(slots=True, frozen=True)
class Rejected:
    """A rejection with what the quarantine needs to keep it (no event was delivered)."""

    event_id: str
    schema: str
    table: str
    primary_key: dict[str, Any]
    lsn: int
    rule_id: str
    field: str | None
    message: str
    raw_row: Row | None
    business_date: dt.date
    op: Op = "c"  # the original change, so that a retry sends the same envelope
    tx_id: int = 0
    commit_ts: dt.datetime | None = None


@dataclass(slots=True)
class Batch:
    """Events to send together.

    ``commit_through``: highest commit LSN whose transaction is complete in this batch or an
    earlier one (None: the batch ends inside the first transaction it touches, or is a snapshot
    part). ``flush_lsn``: the position to confirm to PostgreSQL once the batch is acked (the end
    LSN of that transaction's commit record).
    """

    events: list[Event] = field(default_factory=list)
    rejections: list[Rejected] = field(default_factory=list)
    commit_through: int | None = None
    flush_lsn: int | None = None
    nbytes: int = 0
    snapshot_done_lsn: int | None = None  # set on the last batch of an initial snapshot
    business_dates: list[dt.date] = field(default_factory=list)  # parallel to events

    def __len__(self) -> int:
        return len(self.events) + len(self.rejections)



class EventIds:
    """The event-id scheme of the module docstring: the one place ids are formatted. The
    ``{origin}:{commit_lsn}:`` part of a streamed change is formatted once per transaction and
    kept in :attr:`prefix` (hot paths may use ``prefix + str(ordinal)`` while ``lsn`` matches)."""

    __slots__ = ("origin", "lsn", "prefix")

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.lsn = -1  # the transaction ``prefix`` belongs to
        self.prefix = ""

    def __call__(self, change: Change) -> str:
        if change.snapshot:
            return f"{self.origin}:r{change.lsn:016X}:{change.schema}.{change.table}:{change.key or change.ordinal}"
        if change.lsn != self.lsn:
            self.lsn = change.lsn
            self.prefix = f"{self.origin}:{change.lsn:016X}:"
        return self.prefix + str(change.ordinal)


def event_id(origin: str, change: Change) -> str:
    """The id of one change (see :class:`EventIds` for a stream of them)."""
    return EventIds(origin)(change)


def is_snapshot_id(event_id: str) -> bool:
    """A snapshot read's id: ``{origin}:r{lsn}:…`` (a streamed change's: ``{origin}:{lsn}:…``)."""
    return event_id.partition(":")[2].startswith("r")


class Transform(Protocol):
    """Validation/mapping stage: a Change becomes an Event, or a Rejection for quarantine.

    For a real destination this is always the validation stage built by
    :func:`cdcsync.validate.stage.transform_for`; :class:`cdcsync.engine.passthrough.PassThroughTransform`
    is for tests and benchmarks of the engine alone."""

    @property
    def origin(self) -> str:
        """``{org_code}.{database}``: the first part of every event id (also of quarantined ones)."""
        ...

    def __call__(self, change: Change) -> Event | Rejection: ...


SINK_REJECTED_RULE = "sink.rejected"  # quarantine rule of an event a destination rejected in its Ack


@dataclass(slots=True)
class Ack:
    """What a destination made of a batch: every event id is accepted or rejected."""

    accepted: Sequence[str]
    rejected: dict[str, str] = field(default_factory=dict)  # id -> reason
    rejected_fields: dict[str, str] = field(default_factory=dict)  # id -> the field the platform named
    # id -> quarantine rule id where it is not the default ``sink.rejected`` (a refused event: PLT422…)
    rejected_rules: dict[str, str] = field(default_factory=dict)

    @classmethod
    def all_of(cls, events: Iterable[Event]) -> Ack:
        return cls(accepted=[e.id for e in events])

    def missing(self, batch: Batch) -> list[str]:
        """Ids of the batch the destination said nothing about (a sink bug or a lost reply)."""
        if len(self.accepted) + len(self.rejected) == len(batch.events):
            return []
        seen = set(self.accepted) | set(self.rejected)
        return [e.id for e in batch.events if e.id not in seen]
