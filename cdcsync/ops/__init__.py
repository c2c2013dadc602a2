"""Operations, beside the flow ``source/ → validate/ + mapping/ → engine/ → sink/``: what keeps the
front end running and tells people when it does not.

  status      the full status dict (8883, the web page, heartbeats and faults read the same one)
  loop        the ops loop the daemon starts: heartbeats, fault detection, alerts, run records
  heartbeat, faults, alerts, runtime, platform_ping   its parts
  compaction  the thread the loop starts beside it: keeps ``cdcsync.delivered_keys`` bounded
  doctor      pre-flight checks (``cdcsync doctor``); evaluate: the daily dynamic evaluation
  backup/     verified backups, restore, retention (``cdcsync backup``)

Its config sections are in ``cdcsync/settings/`` (ops, backup).
"""
