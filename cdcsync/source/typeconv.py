"""PostgreSQL text output → Python values, chosen once per column by type OID.

Every converter takes the raw UTF-8 bytes of a value as pgoutput (or COPY, after unescaping)
sends it. The connections set ``DateStyle=ISO`` and ``extra_float_digits=3`` so the text is
parseable and exact. Values Python cannot represent (``infinity``, BC dates, year > 9999) stay
strings rather than failing the stream. Arrays, intervals, uuid and anything unknown stay text.
A value a converter still cannot take (bytes that are not UTF-8, JSON that Python cannot hold) is
kept as :func:`lossy_text` and its column named in ``Change.undecodable``: the validation stage
quarantines that row instead of the stream stopping on it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

Converter = Callable[[bytes], Any]

# Session settings for every connection whose text output we parse (stream and snapshot).
SESSION_OPTIONS = "-c DateStyle=ISO,YMD -c extra_float_digits=3 -c IntervalStyle=postgres"


def _text(b: bytes) -> str:
    return b.decode("utf-8")


def _bool(b: bytes) -> bool:
    return b == b"t"


def _numeric(b: bytes) -> Decimal:
    return Decimal(b.decode("ascii"))  # 'NaN' and 'Infinity' are valid Decimals too


def _float(b: bytes) -> float:
    return float(b)  # accepts 'NaN', 'Infinity', '-Infinity'


def _bytea(b: bytes) -> bytes:
    # bytea_output=hex (the default since 9.0): \x0a0b...
    if b[:2] == b"\\x":
        return bytes.fromhex(b[2:].decode("ascii"))
    return b  # escape format: leave as-is rather than guess


def _lenient(parse: Callable[[str], Any]) -> Converter:
    def conv(b: bytes) -> Any:
        s = b.decode("ascii")
        try:
            return parse(s)
        except ValueError:
            return s  # infinity, BC, year > 9999: keep PostgreSQL's own text
    return conv


def _json(b: bytes) -> Any:
    return orjson.loads(b)


CONVERTERS: dict[int, Converter] = {
    16: _bool,
    17: _bytea,
    20: int, 21: int, 23: int, 26: int,
    25: _text, 1042: _text, 1043: _text, 19: _text, 18: _text,
    700: _float, 701: _float,
    1700: _numeric,
    1082: _lenient(dt.date.fromisoformat),
    1083: _lenient(dt.time.fromisoformat),
    1114: _lenient(dt.datetime.fromisoformat),
    1184: _lenient(dt.datetime.fromisoformat),
    114: _json, 3802: _json,
}


TEXT: Converter = _text


def lossy_text(b: bytes) -> str:
    """Stand-in for a value no converter could take (not UTF-8, JSON Python cannot hold, …): its
    text with undecodable bytes replaced, so the row stays serializable for the quarantine."""
    return bytes(b).decode("utf-8", "replace")


def convert_each(raw: list[bytes | None], convs: list[Converter], names: list[str]
                 ) -> tuple[list[Any], tuple[str, ...]]:
    """One row converted column by column after the one-pass conversion failed: (values, names of
    the columns that did not convert, kept as :func:`lossy_text`)."""
    vals: list[Any] = []
    bad: list[str] = []
    for v, conv, name in zip(raw, convs, names, strict=True):
        if v is None:
            vals.append(None)
            continue
        try:
            vals.append(conv(v))
        except Exception:  # the value's fault, never the stream's
            vals.append(lossy_text(v))
            bad.append(name)
    return vals, tuple(bad)


def converter_for(type_oid: int) -> Converter:
    """The converter for a type; text for arrays, enums, domains and other types."""
    return CONVERTERS.get(type_oid, _text)
