"""The stream's messages into the batcher: decode, skip what was delivered before, mark commits,
confirm keepalives when idle.

The replication connection hands over ``(end LSN, pgoutput payload)`` or a
:class:`~cdcsync.source.protocol.Keepalive` (it owns ``received_lsn`` and the wire format); the
stream loop of :class:`~cdcsync.engine.pipeline.Pipeline` calls :meth:`Feed.pump` between its
timers. Replay after a crash: PostgreSQL may send again a transaction whose commit precedes the
acknowledged position; every change of it is skipped (same ids, already at the destination).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from cdcsync.engine.batcher import Batcher, StatusSink
from cdcsync.event import Change
from cdcsync.source.pgoutput import Begin, Commit, LogicalMessage, PgOutputDecoder, Truncate
from cdcsync.source.protocol import Keepalive

Read = Callable[[float], "tuple[int, bytes] | Keepalive | None"]
BUDGET = 500  # messages per pump: the loop's timers are looked at between pumps


class Feed:
    """One streaming session's reader state: the skip flag of the transaction being received and
    the latest non-transactional logical message (a heartbeat or a drain target)."""

    def __init__(self, batcher: Batcher, read: Read, status: StatusSink, acked: int,
                 stop: threading.Event, decoder: PgOutputDecoder | None = None) -> None:
        self.batcher = batcher
        self.read = read
        self.status = status
        self.acked = acked  # transactions committed before this were delivered before
        self.stop = stop
        self.decoder = decoder or PgOutputDecoder()
        self.skip = False
        self.marker = 0  # LSN of the latest non-transactional logical message received

    def pump(self, timeout: float) -> bool:
        """Take what arrives within ``timeout`` seconds and then what is already buffered (at
        most :data:`BUDGET` messages, without touching the timers: the batcher's size limits act
        inside ``add``). True when no row data came: keepalives say the walsender caught up."""
        read = self.read
        msg = read(timeout)
        quiet = True
        batcher = self.batcher
        decode = self.decoder.decode
        add = batcher.add
        stop = self.stop
        skip = self.skip
        marker = self.marker
        acked = self.acked
        budget = BUDGET
        while msg is not None:
            if type(msg) is tuple:  # (end LSN, pgoutput payload)
                quiet = False
                m = decode(msg[1])
                if type(m) is Change:
                    if not skip:
                        add(m)
                elif type(m) is Begin:
                    # A transaction whose commit precedes the acknowledged position was
                    # delivered before a crash; PostgreSQL may send it again.
                    skip = m.final_lsn < acked
                    batcher.in_tx = not skip
                elif type(m) is Commit:
                    if not skip:
                        batcher.commit(m.commit_lsn, m.end_lsn)
                    batcher.in_tx = False
                    skip = False
                elif type(m) is Truncate:
                    if not skip:
                        for ch in m.changes:
                            add(ch)
                elif type(m) is LogicalMessage and not m.transactional and m.lsn > marker:
                    marker = m.lsn  # a heartbeat or drain target: confirmed once idle
            else:  # primary keepalive
                assert isinstance(msg, Keepalive)
                if batcher.idle and msg.wal_end > batcher.flush_pos:
                    batcher.flush_pos = msg.wal_end  # everything sent before it is acknowledged
                if msg.reply:
                    self.status.send_status(batcher.flush_pos)
            budget -= 1
            if budget == 0 or (budget & 31 == 0 and stop.is_set()):
                break
            msg = read(0)
        self.skip = skip
        self.marker = marker
        return quiet
