"""A private PostgreSQL cluster for the demo and the tests.

PostgreSQL refuses to run as root, so when we are root the cluster is owned by and run as an
unprivileged user (``postgres`` by default) and every directory it needs is made theirs.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SETTINGS: dict[str, str] = {
    "wal_level": "logical",
    "max_replication_slots": "20",
    "max_wal_senders": "20",
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "max_connections": "100",
    "shared_buffers": "128MB",
    "logging_collector": "off",
    "log_min_messages": "warning",
    "timezone": "'Asia/Shanghai'",
}


class ClusterError(RuntimeError):
    """The private cluster could not be created, started or stopped."""


def find_bindir() -> Path:
    """Locate the PostgreSQL server binaries: PATH, ``pg_config --bindir``, then Debian's layout."""
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.CalledProcessError):
            pass
    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        candidates.append(Path(found))
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists() and (bindir / "postgres").exists():
            return bindir
    raise ClusterError(
        "找不到 PostgreSQL 服务端程序（initdb/pg_ctl/postgres）。请安装：apt-get install -y postgresql"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_user() -> str | None:
    """The account PostgreSQL runs as: ``None`` means the current one (we are not root)."""
    if os.geteuid() != 0:
        return None
    user = os.environ.get("CDCSYNC_PG_USER", "postgres")
    try:
        pwd.getpwnam(user)
    except KeyError as exc:
        raise ClusterError(
            f"以 root 运行时需要非特权用户 {user!r} 来运行 PostgreSQL（可用环境变量 CDCSYNC_PG_USER 指定）"
        ) from exc
    return user


@dataclass
class LocalCluster:
    """A PostgreSQL cluster in ``datadir`` listening on 127.0.0.1:``port``."""

    datadir: Path
    port: int = 0
    fsync: bool = True
    superuser: str = "postgres"
    initdb_args: tuple[str, ...] = ()  # e.g. ("--wal-segsize=1",) for tests that fill the WAL fast

    def __post_init__(self) -> None:
        self.datadir = Path(self.datadir).absolute()
        self.bindir = find_bindir()
        self.user = _run_user()
        port_file = self.datadir / "cdcsync.port"
        if not self.port:
            self.port = int(port_file.read_text()) if port_file.exists() else free_port()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    @property
    def log_file(self) -> Path:
        return self.datadir.parent / f"{self.datadir.name}.log"

    def init(self) -> None:
        if self.initialized:
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        self._hand_over(self.datadir)
        self._hand_over(self.datadir.parent, recursive=False)
        self._check_reachable()
        self._pg(
            "initdb", "-D", str(self.datadir), "-U", self.superuser, "--auth=trust",
            "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions", *self.initdb_args,
        )
        settings = dict(DEFAULT_SETTINGS, port=str(self.port))
        if not self.fsync:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        conf = "".join(f"{k} = {v}\n" for k, v in settings.items())
        with open(self.datadir / "postgresql.auto.conf", "a", encoding="utf-8") as fh:
            fh.write(conf)
        # Replication connections over TCP need their own pg_hba line.
        with open(self.datadir / "pg_hba.conf", "a", encoding="utf-8") as fh:
            fh.write("host replication all 127.0.0.1/32 trust\n")
        (self.datadir / "cdcsync.port").write_text(str(self.port))

    def start(self, timeout: float = 60.0) -> None:
        if self.running():
            return
        self.log_file.touch()
        self._hand_over(self.log_file, recursive=False)
        self._pg("pg_ctl", "-D", str(self.datadir), "-l", str(self.log_file), "-w",
                 "-t", str(int(timeout)), "-o", f"-p {self.port}", "start")

    def stop(self, mode: str = "fast") -> None:
        if self.running():
            self._pg("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def running(self) -> bool:
        if not self.initialized:
            return False
        res = self._pg("pg_ctl", "-D", str(self.datadir), "status", check=False)
        return res.returncode == 0

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.datadir, ignore_errors=True)
        self.log_file.unlink(missing_ok=True)

    # -- connections -------------------------------------------------------------------------

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={self.superuser} dbname={dbname}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    # -- helpers -----------------------------------------------------------------------------

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / tool), *args]
        res = subprocess.run(cmd, capture_output=True, text=True, user=self.user, cwd="/")
        if check and res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-5:]
            raise ClusterError(f"{tool} 失败（退出码 {res.returncode}）：" + " | ".join(tail))
        return res

    def _hand_over(self, path: Path, recursive: bool = True) -> None:
        if self.user is None:
            return
        pw = pwd.getpwnam(self.user)
        os.chown(path, pw.pw_uid, pw.pw_gid)
        if recursive:
            for root, dirs, files in os.walk(path):
                for name in dirs + files:
                    os.chown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)

    def _check_reachable(self) -> None:
        """Fail early with advice when the run-as user cannot reach the data directory."""
        if self.user is None:
            return
        res = subprocess.run(["test", "-w", str(self.datadir)], user=self.user, cwd="/")
        if res.returncode != 0:
            raise ClusterError(
                f"用户 {self.user} 无法访问目录 {self.datadir}（上级目录权限不足）。"
                "请换一个目录，例如 --data-dir /var/tmp/cdcsync"
            )


def throwaway_cluster(prefix: str, parent: str | None = None, initdb_args: tuple[str, ...] = ()) -> LocalCluster:
    """A started cluster (fsync off) in a new temporary directory, for tests and benchmarks.
    The directory is ``cluster.datadir.parent``; remove it after ``cluster.destroy()``."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(base, 0o755)  # the run-as user must reach the data directory inside
    cluster = LocalCluster(base / "pg", fsync=False, initdb_args=initdb_args)
    cluster.init()
    cluster.start()
    return cluster


def wait_ready(dsn: str, timeout: float = 30.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(dsn, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
