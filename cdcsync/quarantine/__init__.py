"""The quarantine: changes that failed validation or mapping, or that a platform refused for good.

``store`` reads and retries the rows of ``cdcsync.quarantine`` (written only by the checkpoint
transaction); ``cli`` is ``cdcsync quarantine list|show|retry``.
"""
