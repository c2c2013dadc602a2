"""The hospital-facing HTTP listeners, each a FastAPI app served by uvicorn beside the streams.

Modules:
  settings     section ``api`` of the config file (listeners, TLS, plain-HTTP findings)
  server       binds and runs the enabled listeners (``cdcsync run`` / ``cdcsync serve``)
  data_app     8881 data-operation API: HIS systems push EMR records (router + connection pool)
  auth         API keys and their scopes; ratelimit: per-client token bucket and in-flight cap
  monitor_app  8883 monitoring for the national platform (the figures of ``cdcsync status``)
  web_app      8884 PC web service (``/status.html``)
  errors       JSON errors with stable codes, the request log
  cli          ``cdcsync serve`` and ``cdcsync api-keys``

This package file stays free of FastAPI/uvicorn so the CLI's error list can name ApiStartError
without loading a web stack on every command.
"""

from __future__ import annotations


class ApiStartError(RuntimeError):
    """A listener could not start (port taken, bad address)."""
