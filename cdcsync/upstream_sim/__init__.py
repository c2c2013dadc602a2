"""The reference platform (``cdcsync upstream-sim``): the receiving end of ``sink/``, outside the
flow ``source/ → validate/ + mapping/ → engine/ → sink/``. It checks the hospital's signature,
decrypts, de-duplicates, stores and answers with a signed ack, exactly as docs/upstream-protocol.md
says the national and provincial platforms do; tests, benchmarks and ``cdcsync demo`` deliver to it.

  app        the FastAPI app (the protocol), with fault injection for tests
  store      what it received (SQLite), per batch and per event
  certs      hospital certificates: which request comes from which hospital
  hospitals  heartbeats received, each hospital's online state and reported faults
  tls        its own TLS material
  runner     start it in a thread or a subprocess (tests, bench, demo)
  cli        ``cdcsync upstream-sim`` / ``python -m cdcsync.upstream_sim``
"""
