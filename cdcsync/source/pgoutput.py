"""Decoder for the pgoutput logical replication protocol, version 1.

Message layout: https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html

The decoder keeps the relation cache (a Relation message always precedes the first change of a
table in a session and follows any change of its columns, so a cache entry is simply replaced)
and the current transaction, so a DML message comes out as a ready :class:`Change` carrying the
commit LSN, xid, commit time and its ordinal in the transaction. It is the hot path: offsets
and ``struct.unpack_from`` on one ``bytes`` object, per-relation converter tuples, no per-byte
loops.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import struct
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

from cdcsync.event import Change, Row
from cdcsync.source.typeconv import TEXT, Converter, converter_for, lossy_text

try:  # the optional C extension (setup.py); without it the generated Python parser runs
    from cdcsync.source import _pgtuple
except ImportError:  # pragma: no cover - built without a C compiler
    _pgtuple = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)

_u8 = struct.Struct(">B").unpack_from
_i16 = struct.Struct(">h").unpack_from
_i32 = struct.Struct(">i").unpack_from
_u32 = struct.Struct(">I").unpack_from
_q = struct.Struct(">q").unpack_from
_Q = struct.Struct(">Q").unpack_from
_begin = struct.Struct(">QqI").unpack_from  # final_lsn, commit_ts, xid
_commit = struct.Struct(">BQQq").unpack_from  # flags, commit_lsn, end_lsn, commit_ts
_col = struct.Struct(">iI").unpack_from  # type oid (as int32), typmod (fetched separately)


class DecodeError(ValueError):
    """A pgoutput message we cannot make sense of (protocol bug or unsupported feature)."""


def pg_time(us: int) -> dt.datetime:
    """PostgreSQL's int64 microseconds since 2000-01-01 UTC → aware datetime."""
    return PG_EPOCH + dt.timedelta(microseconds=us)


@dataclass(slots=True)
class Column:
    name: str
    type_oid: int
    typmod: int
    key: bool  # part of the replica identity (every column under REPLICA IDENTITY FULL)


@dataclass(slots=True)
class Relation:
    relid: int
    schema: str
    name: str
    replident: str  # d default, n nothing, f full, i index
    columns: list[Column]
    names: tuple[str, ...] = ()
    convs: tuple[Converter, ...] = ()
    fast: tuple[Converter | None, ...] = ()
    parse: TupleParser = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.names = tuple(c.name for c in self.columns)
        self.convs = tuple(converter_for(c.type_oid) for c in self.columns)
        self.fast = tuple(None if conv is TEXT else conv for conv in self.convs)
        self.parse = build_parser(self)


@dataclass(slots=True, frozen=True)
class Begin:
    final_lsn: int
    commit_ts: dt.datetime
    xid: int


@dataclass(slots=True, frozen=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_ts: dt.datetime


@dataclass(slots=True, frozen=True)
class Origin:
    lsn: int
    name: str


@dataclass(slots=True, frozen=True)
class TypeInfo:
    oid: int
    schema: str
    name: str


@dataclass(slots=True, frozen=True)
class LogicalMessage:
    transactional: bool
    lsn: int
    prefix: str
    content: bytes


@dataclass(slots=True)
class Truncate:
    changes: list[Change] = field(default_factory=list)
    cascade: bool = False
    restart_identity: bool = False


Message = Begin | Commit | Origin | Relation | TypeInfo | LogicalMessage | Truncate | Change | None


# --- per-relation tuple parser ------------------------------------------------------------------
#
# TupleData is parsed by a function generated once per Relation message: one straight-line block
# per column with its conversion inlined, building the row as a dict display. Compared with a
# loop over the columns this saves the per-column loop, index and call overhead, and the
# dict(zip(...)) of the row (about half of the decoding time). Anything unusual (an unchanged
# TOAST value, a binary value, a column count differing from the Relation) raises _Slow and the
# message is parsed again by the generic loop (PgOutputDecoder._tuple). So does a value that does
# not convert (text that is not UTF-8, JSON Python cannot hold): the generic loop keeps it as lossy
# text and names its column in Change.undecodable, for the validation stage to quarantine the row.

TupleParser = Callable[[bytes, int], tuple[Row, int]]


class _Slow(Exception):
    """The generated parser met something only the generic loop handles."""


_INT_OIDS = frozenset({20, 21, 23, 26})
_LENIENT = {1082: dt.date.fromisoformat, 1083: dt.time.fromisoformat,
            1114: dt.datetime.fromisoformat, 1184: dt.datetime.fromisoformat}
_len_at = struct.Struct(">xI").unpack_from  # skips the kind byte: length of a 't' value at its kind


def build_parser(rel: Relation) -> TupleParser:
    """``parse(buf, pos) -> (row, end)`` for the TupleData of ``rel``: the C parser when it was
    built (``cdcsync.source._pgtuple``, about 3x faster), else generated Python."""
    if _pgtuple is not None and not os.environ.get("CDCSYNC_PURE_PYTHON"):
        return build_c_parser(rel)
    return build_py_parser(rel)


def build_c_parser(rel: Relation) -> TupleParser:
    """The C parser bound to ``rel``'s columns: the same conversions as build_py_parser."""
    assert _pgtuple is not None
    kinds = bytearray()
    convs: list[Callable[[Any], Any] | None] = []
    for i, col in enumerate(rel.columns):
        conv = rel.convs[i]
        if conv is TEXT:
            kinds.append(0)
            convs.append(None)
        elif col.type_oid in _INT_OIDS:
            kinds.append(1)
            convs.append(None)
        elif col.type_oid == 1700:
            kinds.append(2)
            convs.append(Decimal)
        elif col.type_oid in _LENIENT:
            kinds.append(3)
            convs.append(_LENIENT[col.type_oid])
        else:
            kinds.append(4)
            convs.append(conv)
    return partial(_pgtuple.parse, tuple(rel.names), bytes(kinds), tuple(convs), _Slow)


def build_py_parser(rel: Relation) -> TupleParser:
    """Generate ``parse(buf, pos) -> (row, end)`` for the TupleData of ``rel``."""
    ns: dict[str, Any] = {"_Slow": _Slow, "L": _len_at, "_Decimal": Decimal}
    n = len(rel.columns)
    lines = ["def parse(buf, p):",
             f"    if buf[p:p + 2] != {n.to_bytes(2, 'big', signed=True)!r}:",
             "        raise _Slow",
             "    p += 2"]
    for i, col in enumerate(rel.columns):
        conv = rel.convs[i]
        lines += ["    if buf[p] == 116:",
                  "        s = p + 5",
                  "        p = s + L(buf, p)[0]"]
        if conv is TEXT:
            lines.append(f"        v{i} = buf[s:p].decode()")
        elif col.type_oid in _INT_OIDS:
            lines.append(f"        v{i} = int(buf[s:p])")
        elif col.type_oid == 1700:
            lines.append(f"        v{i} = _Decimal(buf[s:p].decode())")
        elif col.type_oid in _LENIENT:
            ns[f"P{i}"] = _LENIENT[col.type_oid]
            lines += ["        x = buf[s:p].decode()",
                      "        try:",
                      f"            v{i} = P{i}(x)",
                      "        except ValueError:",
                      f"            v{i} = x  # infinity, BC, year > 9999: PostgreSQL's own text"]
        else:
            ns[f"C{i}"] = conv
            lines.append(f"        v{i} = C{i}(buf[s:p])")
        lines += ["    elif buf[p] == 110:",
                  f"        v{i} = None",
                  "        p += 1",
                  "    else:",
                  "        raise _Slow"]
    items = ", ".join(f"{name!r}: v{i}" for i, name in enumerate(rel.names))
    lines.append(f"    return {{{items}}}, p")
    exec(compile("\n".join(lines) + "\n", f"<pgoutput {rel.schema}.{rel.name}>", "exec"), ns)  # noqa: S102
    parser: TupleParser = ns["parse"]
    return parser


def tuple_data(values: Sequence[bytes | None]) -> bytes:
    """The TupleData pgoutput sends for a row whose columns have these text forms (None: NULL):
    a snapshot row's :attr:`Change.image`, byte for byte what the stream carries for the same
    row (tests/test_row_image.py compares the two on a real server)."""
    parts = [len(values).to_bytes(2, "big")]
    for v in values:
        parts.append(b"n" if v is None else b"t" + len(v).to_bytes(4, "big") + v)
    return b"".join(parts)


class _Unchanged:
    """Marker for an unchanged TOASTed value ('u') until it is filled from the old tuple."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<unchanged toast>"


UNCHANGED: Any = _Unchanged()


def _cstr(buf: bytes, pos: int) -> tuple[str, int]:
    end = buf.index(0, pos)
    return buf[pos:end].decode("utf-8", "replace"), end + 1  # names: never stop the stream on one


class PgOutputDecoder:
    """Stateful decoder of one replication session (relation cache + current transaction)."""

    def __init__(self) -> None:
        self.relations: dict[int, Relation] = {}
        self.types: dict[int, TypeInfo] = {}
        self.in_tx = False
        self._lsn = 0
        self._xid = 0
        self._ts = PG_EPOCH
        self._ordinal = 0
        self._size = 0
        self._warned_toast: set[int] = set()
        self._bad: list[str] = []  # columns of the message being decoded that did not convert
        self._warned_bad: set[tuple[int, str]] = set()
        # relation id -> (relation, columns asked for, index of its plain-text column or -1): insert_value
        self._peek: dict[int, tuple[Relation, Mapping[str, str], int]] = {}

    # -- dispatch ---------------------------------------------------------------------------

    def decode(self, buf: bytes, start: int = 0) -> Message:
        """Decode one pgoutput message: ``buf[start:]`` (the stream passes the payload the
        replication connection handed it, ``start=0``)."""
        self._size = size = len(buf) - start
        kind = buf[start]
        if kind == 0x49:  # I: the hot path, inline (no method call per row): the
            # generated parser on a known relation; anything unusual goes through _insert
            rel = self.relations.get(_u32(buf, start + 1)[0])
            if rel is None:
                return self._insert(buf, start)  # raises DecodeError
            try:
                after = rel.parse(buf, start + 6)[0]  # start + 5 is 'N'
            except Exception:  # _Slow, or a value that does not convert
                return self._insert(buf, start)
            ch = Change("c", rel.schema, rel.name, None, after, self._lsn, self._xid, self._ts, self._ordinal,
                        False, None, size, None, buf[start + 6:])  # the TupleData ends the message
            self._ordinal += 1
            return ch
        if kind == 0x55:  # U
            return self._update(buf, start)
        if kind == 0x44:  # D
            return self._delete(buf, start)
        if kind == 0x42:  # B
            final_lsn, ts, xid = _begin(buf, start + 1)
            self.in_tx = True
            self._lsn, self._xid, self._ts, self._ordinal = final_lsn, xid, pg_time(ts), 0
            return Begin(final_lsn, self._ts, xid)
        if kind == 0x43:  # C
            flags, commit_lsn, end_lsn, ts = _commit(buf, start + 1)
            self.in_tx = False
            return Commit(flags, commit_lsn, end_lsn, pg_time(ts))
        if start:
            buf = buf[start:]  # the rare messages below work on the payload alone
        if kind == 0x52:  # R
            return self._relation(buf)
        if kind == 0x54:  # T
            return self._truncate(buf)
        if kind == 0x4D:  # M
            flags = buf[1]
            (lsn,) = _Q(buf, 2)
            prefix, pos = _cstr(buf, 10)
            (n,) = _u32(buf, pos)
            return LogicalMessage(bool(flags & 1), lsn, prefix, bytes(buf[pos + 4:pos + 4 + n]))
        if kind == 0x4F:  # O
            (lsn,) = _Q(buf, 1)
            name, _ = _cstr(buf, 9)
            return Origin(lsn, name)
        if kind == 0x59:  # Y
            (oid,) = _u32(buf, 1)
            schema, pos = _cstr(buf, 5)
            name, _ = _cstr(buf, pos)
            info = TypeInfo(oid, schema, name)
            self.types[oid] = info
            return info
        if kind in (0x53, 0x45, 0x63, 0x41):  # S E c A: streamed transactions (protocol >= 2)
            raise DecodeError("收到流式事务消息（protocol >= 2 才有），本程序只使用 proto_version 1")
        raise DecodeError(f"unknown pgoutput message type {chr(kind)!r}")

    @property
    def tx_lsn(self) -> int:
        """The final LSN of the transaction being decoded (``Change.lsn`` of its changes)."""
        return self._lsn

    def insert_value(self, buf: bytes, columns: Mapping[str, str]) -> tuple[str, str, str | None] | None:
        """For an insert of a known relation whose table ``columns`` names a plain-text column of:
        (schema, table, that column's value, None for SQL NULL), read without converting the other
        columns. None for anything else (other messages, other tables, a value that is not plain
        UTF-8 text): decode the message instead. Counts nothing (see :meth:`skip_change`)."""
        if buf[0] != 0x49:
            return None
        rel = self.relations.get(_u32(buf, 1)[0])
        if rel is None:
            return None
        hit = self._peek.get(rel.relid)
        if hit is None or hit[0] is not rel or hit[1] is not columns:  # a new relation message, other columns
            column = columns.get(rel.name)
            idx = rel.names.index(column) if column is not None and column in rel.names else -1
            if idx >= 0 and rel.fast[idx] is not None:  # not plain text
                idx = -1
            hit = self._peek[rel.relid] = (rel, columns, idx)
        idx = hit[2]
        if idx < 0:
            return None
        pos = 6  # 'I', relation id, 'N'
        (n,) = _i16(buf, pos)
        pos += 2
        if idx >= n:
            return None
        for _ in range(idx):
            kind = buf[pos]
            if kind == 0x74 or kind == 0x62:  # t / b: length-prefixed
                pos += 5 + _u32(buf, pos + 1)[0]
            elif kind == 0x6E or kind == 0x75:  # n / u
                pos += 1
            else:
                return None
        kind = buf[pos]
        if kind == 0x6E:
            return rel.schema, rel.name, None
        if kind != 0x74:
            return None
        ln = _u32(buf, pos + 1)[0]
        try:
            return rel.schema, rel.name, buf[pos + 5:pos + 5 + ln].decode()
        except UnicodeDecodeError:
            return None

    def count_change(self) -> None:
        """Count a change the caller chose not to decode (after :meth:`insert_value`), so that the
        ordinals of the changes after it stay what :meth:`decode` gives."""
        self._ordinal += 1

    def skip_change(self, buf: bytes, keep: Container[str]) -> bool:
        """True when ``buf`` is an insert, update or delete of a known relation whose table is not
        in ``keep``: the change is counted (the ordinals, hence the event ids, of the changes after
        it stay what :meth:`decode` gives) but its values are not converted. For a consumer that
        reads a few tables only (the rules consumer); anything else returns False: decode it."""
        kind = buf[0]
        if kind == 0x49 or kind == 0x55 or kind == 0x44:  # I U D
            rel = self.relations.get(_u32(buf, 1)[0])
            if rel is not None and rel.name not in keep:
                self._ordinal += 1
                return True
        return False

    # -- messages ---------------------------------------------------------------------------

    def _relation(self, buf: bytes) -> Relation:
        (relid,) = _u32(buf, 1)
        schema, pos = _cstr(buf, 5)
        name, pos = _cstr(buf, pos)
        replident = chr(buf[pos])
        (ncols,) = _i16(buf, pos + 1)
        pos += 3
        cols: list[Column] = []
        for _ in range(ncols):
            flags = buf[pos]
            cname, pos = _cstr(buf, pos + 1)
            (oid,) = _u32(buf, pos)
            (typmod,) = _i32(buf, pos + 4)
            pos += 8
            cols.append(Column(cname, oid, typmod, bool(flags & 1)))
        rel = Relation(relid, schema or "pg_catalog", name, replident, cols)
        old = self.relations.get(relid)
        if old is not None and old.names != rel.names:
            log.info("relation %s.%s columns changed (%d -> %d)", schema, name, len(old.names), len(rel.names))
        self.relations[relid] = rel
        self._warned_toast.discard(relid)
        return rel

    def _rel(self, relid: int) -> Relation:
        try:
            return self.relations[relid]
        except KeyError:
            raise DecodeError(f"change for relation {relid} before its Relation message") from None

    def _tuple(self, buf: bytes, pos: int, rel: Relation) -> tuple[list[Any], int]:
        (n,) = _i16(buf, pos)
        pos += 2
        convs = rel.fast  # None: plain text, decoded inline (most columns)
        u32 = _u32
        vals: list[Any] = [None] * n
        for i in range(n):
            kind = buf[pos]
            if kind == 0x74:  # t: text
                ln = u32(buf, pos + 1)[0]
                pos += 5
                conv = convs[i]
                try:
                    if conv is None:
                        vals[i] = buf[pos:pos + ln].decode()
                    else:
                        vals[i] = conv(buf[pos:pos + ln])
                except Exception as exc:  # the value's fault: quarantine the row
                    vals[i] = lossy_text(buf[pos:pos + ln])
                    self._undecodable(rel, i, exc)
                pos += ln
            elif kind == 0x6E:  # n: null
                pos += 1
            elif kind == 0x75:  # u: unchanged TOASTed value
                vals[i] = UNCHANGED
                pos += 1
            elif kind == 0x62:  # b: binary (not requested; keep the bytes)
                ln = u32(buf, pos + 1)[0]
                pos += 5
                vals[i] = bytes(buf[pos:pos + ln])
                pos += ln
            else:
                raise DecodeError(f"unknown tuple column kind {chr(kind)!r} in {rel.schema}.{rel.name}")
        return vals, pos

    def _undecodable(self, rel: Relation, i: int, exc: Exception) -> None:
        name = rel.names[i]
        self._bad.append(name)
        if (rel.relid, name) not in self._warned_bad:  # names and the error type only, never the value
            self._warned_bad.add((rel.relid, name))
            log.warning("table %s.%s column %s: a value could not be decoded (%s); its rows are quarantined",
                        rel.schema, rel.name, name, type(exc).__name__)

    def _take_bad(self) -> tuple[str, ...] | None:
        if not self._bad:
            return None
        bad = tuple(dict.fromkeys(self._bad))  # before- and after-image may name the same column
        self._bad = []
        return bad

    def _change(self, op: Any, rel: Relation, before: Row | None, after: Row | None,
                image: bytes | None = None) -> Change:
        ch = Change(op, rel.schema, rel.name, before, after, self._lsn, self._xid, self._ts, self._ordinal,
                    False, None, self._size, self._take_bad(), image)
        self._ordinal += 1
        return ch

    def _row(self, buf: bytes, pos: int, rel: Relation) -> tuple[Row, int]:
        """A whole tuple as a row: the generated parser, or the generic loop when it bails out."""
        try:
            return rel.parse(buf, pos)
        except Exception:  # _Slow, or a value that does not convert
            vals, end = self._tuple(buf, pos, rel)
            return dict(zip(rel.names, vals, strict=False)), end

    def _insert(self, buf: bytes, start: int) -> Change:
        """An insert off the inline path: unknown relation (DecodeError), unchanged-TOAST or a
        value that does not convert (the generic loop of :meth:`_row`)."""
        rel = self._rel(_u32(buf, start + 1)[0])
        self._bad.clear()
        after, _ = self._row(buf, start + 6, rel)  # start + 5 is 'N'
        return self._change("c", rel, None, after, buf[start + 6:])

    def _update(self, buf: bytes, start: int) -> Change:
        rel = self._rel(_u32(buf, start + 1)[0])
        pos = start + 5
        try:  # fast path: no unchanged-TOAST marker anywhere
            before: Row | None = None
            if buf[pos] in (0x4B, 0x4F):  # K (key only) or O (old tuple)
                before, pos = rel.parse(buf, pos + 1)
            if buf[pos] != 0x4E:
                raise DecodeError(f"update of {rel.schema}.{rel.name}: expected new tuple")
            after, _ = rel.parse(buf, pos + 1)
            return self._change("u", rel, before, after, buf[pos + 1:])
        except DecodeError:
            raise
        except Exception:  # _Slow, or a value that does not convert
            pass
        self._bad.clear()
        pos = start + 5
        old: list[Any] | None = None
        if buf[pos] in (0x4B, 0x4F):
            old, pos = self._tuple(buf, pos + 1, rel)
        if buf[pos] != 0x4E:
            raise DecodeError(f"update of {rel.schema}.{rel.name}: expected new tuple")
        image: bytes | None = buf[pos + 1:]
        new, _ = self._tuple(buf, pos + 1, rel)
        before = None if old is None else dict(zip(rel.names, old, strict=False))
        if any(v is UNCHANGED for v in new):
            self._fill_unchanged(rel, new, old)
            after = {k: v for k, v in zip(rel.names, new, strict=False) if v is not UNCHANGED}
            image = None  # the TupleData lacks the unchanged values
        else:
            after = dict(zip(rel.names, new, strict=False))
        return self._change("u", rel, before, after, image)

    def _fill_unchanged(self, rel: Relation, new: list[Any], old: list[Any] | None) -> None:
        for i, v in enumerate(new):
            if v is UNCHANGED:
                if old is not None and i < len(old) and old[i] is not UNCHANGED:
                    new[i] = old[i]
                elif rel.relid not in self._warned_toast:
                    self._warned_toast.add(rel.relid)
                    log.warning(
                        "table %s.%s: unchanged TOAST column %s cannot be filled; "
                        "set REPLICA IDENTITY FULL on the mirror table", rel.schema, rel.name, rel.names[i])

    def _delete(self, buf: bytes, start: int) -> Change:
        rel = self._rel(_u32(buf, start + 1)[0])
        self._bad.clear()
        before, _ = self._row(buf, start + 6, rel)  # start + 5 is 'K' or 'O'
        return self._change("d", rel, before, None)

    def _truncate(self, buf: bytes) -> Truncate:
        (nrels,) = _u32(buf, 1)
        options = buf[5]
        out = Truncate(cascade=bool(options & 1), restart_identity=bool(options & 2))
        for k in range(nrels):
            rel = self._rel(_u32(buf, 6 + 4 * k)[0])
            out.changes.append(self._change("t", rel, None, None))
        return out
