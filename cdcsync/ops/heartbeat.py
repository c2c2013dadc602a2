"""Heartbeats to the platforms (docs/upstream-protocol.md section 7): a signed, encrypted JSON
document every ``ops.heartbeat.interval_s`` to each enabled ``kind: http`` destination — software
and data versions, stream state, lag, queue sizes, today's counts, the class of the last error,
open and recently resolved faults, today's evaluation scores. No patient data: only names of
destinations and files, counts, times, versions and codes.

It goes through the destination's own :class:`cdcsync.sink.http.HttpSink` (same keys, TLS trust
and envelope as the batches) on a connection of its own, so a heartbeat never waits behind a
batch and a blocked batch never silences the heartbeat.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from cdcsync import __version__
from cdcsync.ops.faults import FaultRecord, destination_failing, error_class

log = logging.getLogger(__name__)

HEARTBEAT_VERSION = 1
RUNNING = "running"
STOPPING = "stopping"


def stream_state(d: Mapping[str, Any]) -> str:
    """disabled | stopped (slot lost) | failing (sends fail / not reading) | running."""
    if not d.get("enabled", True):
        return "disabled"
    if d.get("stopped_reason"):
        return "stopped"
    return "failing" if destination_failing(d) else RUNNING


def _stream(d: Mapping[str, Any], environments: Mapping[str, str]) -> dict[str, Any]:
    today = d.get("today") or {}
    sends = d.get("sends_today") or {}
    name = str(d.get("destination"))
    return {
        "destination": name,
        "environment": environments.get(name, "production"),
        "state": stream_state(d),
        "lag_bytes": d.get("lag_bytes"),
        "lag_seconds": d.get("lag_seconds"),
        "wal_retained_bytes": d.get("wal_retained_bytes"),
        "quarantine_held": d.get("quarantined_held"),
        "last_ack_at": d.get("last_ack_at"),
        "today": {
            "captured": sum(int(v.get("captured", 0)) for v in today.values()),
            "delivered": sum(int(v.get("delivered", 0)) for v in today.values()),
            "quarantined": sum(int(v.get("quarantined", 0)) for v in today.values()),
            "send_attempts": int(sends.get("attempts") or 0),
            "send_failures": int(sends.get("failures") or 0),
            "retries": int(sends.get("retries") or 0),
        },
        "last_error_class": error_class(sends.get("last_error")),
    }


def heartbeat_payload(status: Mapping[str, Any], *, org_code: str, hospital: str, run_id: str, interval_s: float,
                      state: str, faults: Sequence[FaultRecord], scores: Mapping[str, Any] | None,
                      environments: Mapping[str, str], destination: str, now: dt.datetime | None = None
                      ) -> dict[str, Any]:
    """The heartbeat document for ``destination`` (section 7.2). ``status``: the monitoring
    status (:func:`cdcsync.ops.status.build_status`)."""
    now = now or dt.datetime.now(dt.UTC)
    return {
        "version": HEARTBEAT_VERSION,
        "kind": "heartbeat",
        "org_code": org_code,
        "hospital": hospital,
        "destination": destination,
        "environment": environments.get(destination, "production"),
        "sent_at": now.isoformat(timespec="milliseconds"),
        "interval_s": interval_s,
        "state": state,
        "run": {"run_id": run_id, "started_at": status.get("started_at"), "uptime_s": status.get("uptime_seconds")},
        "software": {"cdcsync": __version__, "spec_version": status.get("spec_version"),
                     "mapping_version": status.get("mapping_version"),
                     "rule_pack_version": status.get("rule_pack_version"),
                     "sm2_backend": (status.get("sm2_backend") or {}).get("backend")},
        "database_reachable": bool((status.get("database") or {}).get("reachable", True)),
        "streams": [_stream(d, environments) for d in status.get("destinations") or []],
        "faults": [f.as_dict() for f in faults],
        "evaluation": dict(scores) if scores else None,
    }


@dataclass
class HeartbeatResult:
    destination: str
    ok: bool
    at: float  # time.time()
    error: str | None = None
    announced: dict[str, Any] | None = None


class HeartbeatClient:
    """Sends heartbeats to one platform (a ``kind: http`` destination)."""

    def __init__(self, dest: Any, org_code: str, timeout_s: float) -> None:
        from cdcsync.sink.http import HttpSink

        self.name = dest.name
        self.url = dest.heartbeats_url
        # A sink of its own: its own connection, and a short timeout (the next beat is the retry).
        self._sink = HttpSink(dest.model_copy(update={"timeout_s": timeout_s}), org_code=org_code)
        self.last: HeartbeatResult | None = None

    def send(self, doc: Mapping[str, Any], run_id: str) -> HeartbeatResult:
        from cdcsync.sink.http import DeliveryError

        message_id = f"hb-{run_id[:12]}-{int(time.time() * 1000)}"
        try:
            reply = self._sink.post_signed(self.url, orjson.dumps(doc), message_id)
        except DeliveryError as exc:
            self.last = HeartbeatResult(self.name, False, time.time(), error_class(str(exc)) or "error")
            log.debug("heartbeat to %s failed: %s", self.name, exc)
            return self.last
        announced = None
        try:
            body = orjson.loads(reply)
            if isinstance(body, dict) and isinstance(body.get("announced"), dict):
                announced = body["announced"]
        except orjson.JSONDecodeError:
            pass
        self.last = HeartbeatResult(self.name, True, time.time(), None, announced)
        return self.last

    def close(self) -> None:
        self._sink.close()
