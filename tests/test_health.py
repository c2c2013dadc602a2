"""A destination that cannot reach its database reports it under the monitoring's last errors."""

from __future__ import annotations

import threading
import time

from cdcsync.config import Settings
from cdcsync.db.cluster import free_port
from cdcsync.engine.health import last_errors
from cdcsync.engine.pipeline import PassThroughTransform, Pipeline, run_pipeline_forever


def test_stream_errors_reach_last_errors() -> None:
    settings = Settings.model_validate({
        "org_code": "TESTORG01",
        "database": {"dsn": f"host=127.0.0.1 port={free_port()} dbname=emr user=cdcsync connect_timeout=2"},
        "destinations": [{"name": "nowhere", "kind": "memory", "null": True}],
    })
    pipe = Pipeline(settings, settings.destinations[0], transform=PassThroughTransform.for_settings(settings))
    thread = threading.Thread(target=run_pipeline_forever, args=(pipe,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while "destination.nowhere" not in last_errors() and time.monotonic() < deadline:
            time.sleep(0.1)
        error = last_errors()["destination.nowhere"]
        assert "OperationalError" in error["message"] and error["at"]
    finally:
        pipe.stop.set()
        thread.join(30)
    assert not thread.is_alive()
