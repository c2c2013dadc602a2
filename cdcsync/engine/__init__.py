"""The CDC engine: the loop that carries changes from ``source/`` through validation and mapping to ``sink/``.

Following one row (docs/engine.md):

* ``pipeline`` — one destination's session: connect, snapshot or resume, the stream loop and its
  timers, and :func:`~cdcsync.engine.pipeline.run_pipeline_forever` (reconnect with backoff);
* ``feed`` — the stream's messages into the batcher (decode, skip what was delivered before a
  crash, commits, keepalives); the replication connection (``source/protocol.py``) owns the wire;
* ``batcher`` — bounded batches (``Limits``), the delivery window, counters (``Counters``);
* ``delivery`` — the window of batches in flight (threads for a remote sink);
* ``checkpoint`` — acked LSN, delivery stats, quarantine rows and delivered keys in one
  transaction, and every other use of the checkpoint table;
* ``accounting`` — what the checkpoint holds per transaction until it writes it, the delay
  histograms and the send-attempt counters;
* ``calendar`` — the business calendar (the day a change counts for) built from the spec;
* ``passthrough`` — the envelope-only transform of the engine's own tests and benchmarks;
* ``daemon`` (one pipeline per destination, ``cdcsync run``), ``status``/``health`` (what
  ``cdcsync status``, 8883 and the status page show) and ``cli`` (``run``, ``snapshot``,
  ``slots``, ``status``).

The ``Transform`` protocol and the event-id scheme live with ``Event`` in :mod:`cdcsync.event`.
"""
