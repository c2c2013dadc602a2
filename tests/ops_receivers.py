"""Local receivers for alert tests: a tiny SMTP sink and a webhook receiver, both on loopback
threads, keeping what they got for the test to read."""

from __future__ import annotations

import email
import email.policy
import json
import socketserver
import threading
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _SmtpHandler(socketserver.StreamRequestHandler):
    def _say(self, line: str) -> None:
        self.wfile.write((line + "\r\n").encode())

    def handle(self) -> None:
        self._say("220 sink ESMTP")
        data: list[bytes] | None = None
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            if data is not None:
                if raw in (b".\r\n", b".\n"):
                    self.server.messages.append(email.message_from_bytes(b"".join(data), policy=email.policy.default))  # type: ignore[attr-defined]
                    data = None
                    self._say("250 queued")
                else:
                    data.append(raw[1:] if raw.startswith(b"..") else raw)
                continue
            cmd = raw.decode(errors="replace").strip().upper()
            if cmd.startswith(("EHLO", "HELO")):
                self._say("250 sink")
            elif cmd == "DATA":
                data = []
                self._say("354 go ahead")
            elif cmd == "QUIT":
                self._say("221 bye")
                return
            else:
                self._say("250 ok")


class SmtpSink(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SmtpHandler)
        self.messages: list[Message] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _HookHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.received.append((dict(self.headers), body))  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class WebhookReceiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _HookHandler)
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(b) for _, b in self.received]

    def close(self) -> None:
        self.shutdown()
        self.server_close()
