"""Moved to :mod:`cdcsync.validate.reload` (it rebuilds compiled validators, so it sits with them).

This re-export keeps ``engine/daemon.py``, ``engine/cli.py`` and ``validate/stage.py`` working
until they import the new path; delete it then (tests/test_import_graph.py lists it as the one
allowed ``mapping → validate`` edge).
"""

from __future__ import annotations

from cdcsync.validate.reload import (
    Fingerprint,
    MappingWatcher,
    RulesHolder,
    RulesStatus,
    build_validators,
    fingerprint,
    persist_status,
    read_status,
)

__all__ = [
    "Fingerprint",
    "MappingWatcher",
    "RulesHolder",
    "RulesStatus",
    "build_validators",
    "fingerprint",
    "persist_status",
    "read_status",
]
