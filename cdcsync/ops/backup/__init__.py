"""Backups that are proven restorable (``cdcsync backup …``, docs/operations.md).

  catalog    one directory per backup: ``manifest.json`` (files with SM3 digests and sizes,
             LSNs, times, the source's row counts and row-hash samples) and ``verify.json``;
             listing, the latest verified backup, the status/alert summary
  pgtools    the PostgreSQL client programs and how they are run
  logical    ``pg_dump -Fc`` in a replication slot's exported snapshot + ``pg_dumpall --globals-only``
  files      the archive of configuration, code tables, certificates; secrets SM4-encrypted
  physical   ``pg_basebackup`` (tar, WAL streamed, checksummed manifest)
  verify     digests, ``pg_verifybackup``, a test restore into a throwaway cluster compared with the source
  restore    restore into a target database, never over a live one unless forced and confirmed;
             the stream afterwards (slots re-created, WAL position checked)
  retention  keep N daily and M weekly
  cli        the ``cdcsync backup`` click group

Its config section is :mod:`cdcsync.settings.backup`. The catalogue is files, not tables: it must
survive the loss of the database it backs up.
"""
