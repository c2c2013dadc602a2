"""The hospital-facing HTTP listeners, each a FastAPI app served by uvicorn beside the streams.

Beside the flow ``source/ → validate/ + mapping/ → engine/ → sink/``: the data API feeds its
start (it writes ``emr.*`` like the HIS does, checked with the same validators), the other two
show what the engine did. The ``api`` config section is :mod:`cdcsync.settings.api`.

Modules:
  server       binds and runs the enabled listeners (``cdcsync run`` / ``cdcsync serve``)
  data_app     8881 data-operation API: HIS systems push EMR records (routers, named handlers,
               the pool of :mod:`cdcsync.db.pool`); data_deps: the dependencies every 8881 handler
               declares; data_check: what it accepts (the stream's validators, minus
               value-domain membership); data_schema: its OpenAPI models
  auth         API keys and their scopes; ratelimit: per-client token bucket and in-flight cap
  monitor_app  8883 monitoring for the national platform (serves :mod:`cdcsync.ops.status`)
  web_app      8884 PC web service (``/status.html``)
  errors       JSON errors with stable codes, the request log
  cli          ``cdcsync serve`` and ``cdcsync api-keys``

This package file stays free of FastAPI/uvicorn so the CLI's error list can name ApiStartError
without loading a web stack on every command.
"""

from __future__ import annotations


class ApiStartError(RuntimeError):
    """A listener could not start (port taken, bad address)."""
