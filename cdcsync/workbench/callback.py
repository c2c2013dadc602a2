"""The HIS callback (院内传报卡数据回传 by push): POST each ``writeback.report_card`` row to the HIS.

The table is the outbox: a row is pending until the HIS answers 2xx (then ``written_back_at`` is
set), so nothing is lost while the HIS is down or the front end restarts. Rows go out one by one in
``writeback_id`` order; a failure stops the round (the HIS never sees a later event before an
earlier one) and the row is retried after an exponential backoff (``callback_next_at``). Delivery
is at least once: the HIS deduplicates by the ``X-Cdcsync-Writeback-Id`` header.

Each body is signed like an SSO ticket, with the same per-HIS key: ``X-Cdcsync-Signature`` is the
base64url of HMAC-SM3(key, timestamp + "." + body), ``X-Cdcsync-Timestamp`` Unix seconds.
Logs name row ids and HTTP statuses only, never the card.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import psycopg
from psycopg.rows import dict_row

from cdcsync.crypto.sm3 import hmac_sm3
from cdcsync.settings.workbench import HisCallbackSettings
from cdcsync.workbench.sso import HisRegistry, b64url

log = logging.getLogger("cdcsync.workbench.callback")

_PAYLOAD_COLUMNS = ("writeback_id, event, card_id, version, card_status, case_id, org_code, patient_id, visit_id,"
                    " disease_code, disease_name, doctor_id, dept_code, reason, card, created_at")


def sign(key: bytes, timestamp: str, body: bytes) -> str:
    return b64url(hmac_sm3(key, timestamp.encode("ascii"), b".", body))


class CallbackSender:
    def __init__(self, cfg: HisCallbackSettings, registry: HisRegistry, conninfo: Callable[[], str]) -> None:
        self.cfg = cfg
        self.registry = registry
        self.conninfo = conninfo
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    def _backoff(self, attempts: int) -> dt.timedelta:
        return dt.timedelta(seconds=min(self.cfg.max_backoff_s, 2.0 ** min(attempts, 20)))

    def run_once(self, client: httpx.Client) -> int:
        """Send the pending rows that are due, in order; the number sent."""
        key = self.registry.secret(self.cfg.his)
        if key is None:
            log.error("HIS callback: no key for HIS %s (cdcsync sso add-his)", self.cfg.his)
            return 0
        sent = 0
        with psycopg.connect(self.conninfo(), autocommit=True, application_name="cdcsync-his-callback") as conn:
            while not self.stop_event.is_set():
                with conn.cursor(row_factory=dict_row) as cur:
                    cur.execute(f"SELECT {_PAYLOAD_COLUMNS}, callback_attempts, callback_next_at"
                                " FROM writeback.report_card WHERE written_back_at IS NULL"
                                " ORDER BY writeback_id LIMIT 1")
                    row = cur.fetchone()
                if row is None:
                    return sent
                if row["callback_next_at"] is not None and row["callback_next_at"] > dt.datetime.now(dt.UTC):
                    return sent  # the oldest pending row waits for its retry: so do the later ones
                attempts = int(row.pop("callback_attempts")) + 1
                row.pop("callback_next_at")
                body = orjson.dumps(row)
                ts = str(int(time.time()))
                error: str | None = None
                try:
                    resp = client.post(self.cfg.url, content=body, headers={
                        "Content-Type": "application/json", "X-Cdcsync-His": self.cfg.his,
                        "X-Cdcsync-Writeback-Id": str(row["writeback_id"]), "X-Cdcsync-Timestamp": ts,
                        "X-Cdcsync-Signature": sign(key, ts, body)})
                    if not 200 <= resp.status_code < 300:
                        error = f"HTTP {resp.status_code}"
                except httpx.HTTPError as exc:
                    error = type(exc).__name__
                if error is None:
                    conn.execute("UPDATE writeback.report_card SET written_back_at = now(), callback_attempts = %s,"
                                 " callback_error = NULL, his_note = coalesce(his_note, '回调接口已接收')"
                                 " WHERE writeback_id = %s", (attempts, row["writeback_id"]))
                    sent += 1
                    continue
                log.warning("HIS callback: row %s not taken (%s), attempt %d", row["writeback_id"], error, attempts)
                conn.execute("UPDATE writeback.report_card SET callback_attempts = %s, callback_error = %s,"
                             " callback_next_at = now() + %s WHERE writeback_id = %s",
                             (attempts, error, self._backoff(attempts), row["writeback_id"]))
                return sent
        return sent

    def _loop(self) -> None:
        with httpx.Client(timeout=self.cfg.timeout_s, trust_env=False) as client:
            while not self.stop_event.is_set():
                try:
                    self.run_once(client)
                except psycopg.Error as exc:  # the database away for a moment: try again next round
                    log.warning("HIS callback: database error %s", type(exc).__name__)
                self.stop_event.wait(self.cfg.interval_s)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name="his-callback", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout)


def payload_of(body: bytes) -> dict[str, Any]:
    """What a HIS (or a test) reads from a callback body."""
    value = orjson.loads(body)
    assert isinstance(value, dict)
    return value
