"""Run the reference platform from Python (tests, demo, benchmarks): in this process on a thread,
or as a subprocess; on a free loopback port; wait until it answers; stop it."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cdcsync.crypto.sm2 import SM2PrivateKey
from cdcsync.upstream_sim.app import HEALTH_PATH, STATS_PATH, Faults, SimState, TrustedKeys, create_app
from cdcsync.upstream_sim.certs import HospitalCertPolicy
from cdcsync.upstream_sim.cli import DataDir, prepare_data_dir
from cdcsync.upstream_sim.hospitals import HOSPITALS_PATH
from cdcsync.upstream_sim.store import CountingStore, SqliteStore, Store


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class SimHandle:
    url: str  # base URL, e.g. https://127.0.0.1:40123
    port: int
    data_dir: Path
    ca_bundle: Path | None  # None for plain HTTP
    platform_key: SM2PrivateKey
    process: subprocess.Popen[bytes] | None = None
    _server: Any = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _store: Store | None = field(default=None, repr=False)
    state: SimState | None = None  # in-process only

    @property
    def platform_pub(self) -> Path:
        return DataDir(self.data_dir).platform_pub

    def client(self, timeout: float = 10.0) -> httpx.Client:
        verify = ssl.create_default_context(cafile=str(self.ca_bundle)) if self.ca_bundle else True
        return httpx.Client(base_url=self.url, verify=verify, timeout=timeout)

    def stats(self) -> dict[str, Any]:
        with self.client() as c:
            r = c.get(STATS_PATH)
            r.raise_for_status()
            data: dict[str, Any] = r.json()
            return data

    def hospitals(self) -> list[dict[str, Any]]:
        """``GET /api/v1/sim/hospitals``: each hospital's online state, last heartbeat and faults."""
        with self.client() as c:
            r = c.get(HOSPITALS_PATH)
            r.raise_for_status()
            rows: list[dict[str, Any]] = r.json()["hospitals"]
            return rows

    def received_ids(self) -> dict[str, str]:
        """id -> table_name of every stored event (reads received.sqlite directly)."""
        import sqlite3

        db = sqlite3.connect(DataDir(self.data_dir).received)
        try:
            return dict(db.execute("SELECT id, table_name FROM events").fetchall())
        finally:
            db.close()

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(timeout)
            self._server = None
            if self._store is not None:
                self._store.close()

    def __enter__(self) -> SimHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_ready(handle: SimHandle, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if handle.process is not None and handle.process.poll() is not None:
            raise RuntimeError(f"upstream-sim exited with code {handle.process.returncode}")
        try:
            with handle.client(timeout=2) as c:
                if c.get(HEALTH_PATH).status_code == 200:
                    return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.05)
    handle.stop()
    raise RuntimeError(f"upstream-sim did not become ready in {timeout:.0f} s: {last}")


def start_subprocess(
    data_dir: Path,
    *,
    hospital_pubs: list[Path] = (),  # type: ignore[assignment]
    port: int | None = None,
    tls: bool = True,
    args: list[str] | None = None,
    log_file: Path | None = None,
    ready_timeout: float = 30.0,
) -> SimHandle:
    """``python -m cdcsync.upstream_sim`` on 127.0.0.1; extra CLI ``args`` for fault injection."""
    key, _ = prepare_data_dir(data_dir, tls=tls)  # before start, so the paths are known
    port = port or free_port()
    cmd = [sys.executable, "-m", "cdcsync.upstream_sim", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir)]
    if not tls:
        cmd.append("--insecure-http")
    for p in hospital_pubs:
        cmd += ["--hospital-pub", str(p)]
    cmd += args or []
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if log_file else subprocess.DEVNULL,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    finally:
        if log_file:
            out.close()  # type: ignore[union-attr]
    scheme = "https" if tls else "http"
    handle = SimHandle(f"{scheme}://127.0.0.1:{port}", port, data_dir,
                       DataDir(data_dir).ca_bundle if tls else None, key, process=proc)
    _wait_ready(handle, ready_timeout)
    return handle


def start_in_process(
    data_dir: Path,
    *,
    hospital_pubs: list[Path] = (),  # type: ignore[assignment]
    port: int | None = None,
    tls: bool = True,
    store: str = "sqlite",
    faults: Faults | None = None,
    window_s: float = 300.0,
    certs: HospitalCertPolicy | None = None,
    ready_timeout: float = 15.0,
    announced: dict[str, str] | None = None,
) -> SimHandle:
    """The same app served by uvicorn on a thread of this process (``handle.state`` is live)."""
    import uvicorn

    key, tls_files = prepare_data_dir(data_dir, tls=tls)
    st: Store = SqliteStore(DataDir(data_dir).received) if store == "sqlite" else CountingStore()
    state = SimState(platform_key=key, trusted=TrustedKeys(hospital_pubs, DataDir(data_dir).trusted), store=st,
                     faults=faults or Faults(), window_s=window_s, certs=certs,
                     hospitals_path=DataDir(data_dir).hospitals, announced=dict(announced or {}),
                     releases_dir=DataDir(data_dir).releases)
    port = port or free_port()
    config = uvicorn.Config(
        create_app(state), host="127.0.0.1", port=port, access_log=False, log_level="warning",
        ssl_certfile=str(tls_files.cert) if tls_files else None, ssl_keyfile=str(tls_files.key) if tls_files else None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"upstream-sim:{port}", daemon=True)
    thread.start()
    scheme = "https" if tls else "http"
    handle = SimHandle(f"{scheme}://127.0.0.1:{port}", port, data_dir, tls_files.ca_cert if tls_files else None, key,
                       _server=server, _thread=thread, _store=st, state=state)
    _wait_ready(handle, ready_timeout)  # stops the server itself on failure
    return handle
