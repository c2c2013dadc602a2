"""Delivery latency and transmission counters: the engine writes them
(:mod:`cdcsync.engine.accounting`, inside its checkpoint transaction); the reporting package reads
them. The names stay importable from here for the reports and their tests."""

from __future__ import annotations

from cdcsync.engine.accounting import (
    BEIJING,
    LATENCY_BOUNDS,
    N_BUCKETS,
    TIMELINESS_LIMITS,
    DelayHistogram,
    TransmissionLog,
    bucket,
    merge,
    record_transmission,
    write_aggregates,
)

__all__ = ["BEIJING", "LATENCY_BOUNDS", "N_BUCKETS", "TIMELINESS_LIMITS", "DelayHistogram", "TransmissionLog",
           "bucket", "merge", "record_transmission", "write_aggregates"]
