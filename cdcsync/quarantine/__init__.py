"""The quarantine: changes that failed validation or mapping, or that a platform refused for good.

Beside the flow ``source/ → validate/ + mapping/ → engine/ → sink/``: ``validate/`` and
``mapping/`` reject into it, ``engine/``'s checkpoint writes it, and staff retry from it (the
retried rows re-enter the flow at ``validate/``).

``store`` reads and retries the rows of ``cdcsync.quarantine`` (written only by the checkpoint
transaction); ``cli`` is ``cdcsync quarantine list|show|retry``.
"""
