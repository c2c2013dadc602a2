"""cdcsync: hospital-side front end (前置软件) of the national infectious-disease surveillance system.

The packages follow the data: ``source/ → validate/ + mapping/ → engine/ → sink/`` (with
``event.py`` the envelope between them); ``api/``, ``ops/``, ``recon/``, ``quarantine/``,
``crypto/``, ``surveil/``, ``workbench/``, ``control/``, ``synth/`` and ``upstream_sim/`` sit beside
that flow; ``spec/``, ``settings/`` + ``config.py`` and ``db/`` below it. The README's
Architecture section draws the same tree; tests/test_import_graph.py keeps it free of cycles.
"""

__version__ = "0.1.0"
