"""Where changes come from: the first stage of ``source/ → validate/ + mapping/ → engine/ → sink/``.

``protocol`` is the replication connection (psycopg 3 COPY_BOTH; ``read_message`` hands the engine
``(end LSN, payload)`` and owns ``received_lsn``), ``pgoutput`` decodes the payloads into ``Change``
(typed values via ``typeconv``; tuples parsed by the optional C extension ``_pgtuple`` or in Python),
``snapshot`` reads a consistent snapshot of the mirror, ``slots`` creates and lists replication slots,
``catalog`` reads primary keys from the catalog, and ``walsafety`` watches retained WAL.
"""
