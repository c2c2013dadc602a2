"""The last error of each component (a destination's stream, the data API, mappings …), kept in
the process for the monitoring status. Messages are technical and never carry patient data."""

from __future__ import annotations

import datetime as dt
import threading

_lock = threading.Lock()
_LAST_ERRORS: dict[str, dict[str, str]] = {}


def record_error(component: str, message: str) -> None:
    at = dt.datetime.now(dt.UTC).astimezone().isoformat(timespec="seconds")
    with _lock:
        _LAST_ERRORS[component] = {"message": message, "at": at}


def last_errors() -> dict[str, dict[str, str]]:
    with _lock:
        return {k: dict(v) for k, v in _LAST_ERRORS.items()}
