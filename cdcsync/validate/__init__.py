"""Validation of mirror-table rows against the dataset spec (see docs/validation.md).

In the flow ``source/ → validate/ + mapping/ → engine/ → sink/`` it is the transform the engine
runs on every change: the compiler builds one function per table that checks the row and maps its
codes (``mapping/``); a failing row goes to the quarantine instead of on.

The rule ids and :class:`Violation` are defined in :mod:`cdcsync.spec.violations` (the mapper
reports in them too) and re-exported here; the compiler lives in :mod:`cdcsync.validate.compiler`,
its hot reload in :mod:`cdcsync.validate.reload` and the pipeline stage in :mod:`cdcsync.validate.stage`.
"""

from __future__ import annotations

from cdcsync.spec.violations import (
    FIELD_RULE_IDS,
    FORMAT,
    LENGTH,
    NOT_IN_DOMAIN,
    REQUIRED,
    TYPE,
    UNMAPPED,
    Violation,
)

__all__ = [
    "FIELD_RULE_IDS",
    "FORMAT",
    "LENGTH",
    "NOT_IN_DOMAIN",
    "REQUIRED",
    "TYPE",
    "UNMAPPED",
    "Violation",
]
